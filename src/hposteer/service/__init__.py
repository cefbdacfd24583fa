"""hposteer steering service (the `service` extra): the API, the store, steering and the web UI."""

from hposteer import __version__

__all__ = ["__version__"]
