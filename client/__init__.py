"""hposteer client side: the API client, `phpo`, the `hposteer` command and the pilot agent."""
