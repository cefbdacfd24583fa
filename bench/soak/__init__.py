"""Chaos soak (reliability.md §4.7): real service and pilot processes, SIGKILLs on a seeded
schedule, then the invariants of tests/support/invariants.py on the database. `make soak`."""
