"""hposteer steering service."""
