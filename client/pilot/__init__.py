"""The pilot agent: pulls points from the service and evaluates them on this machine."""
