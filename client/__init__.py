"""hposteer client side: the API client, `phpo`, the `hposteer` command and the pilot agent."""

__version__ = "0.1.0"
