"""hposteer client side: the API client, `phpo`, the `hposteer` command and the pilot agent."""

from hposteer import __version__

__all__ = ["__version__"]
