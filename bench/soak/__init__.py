"""Chaos soak (docs/reliability.md#the-chaos-soak-make-soak): real service and pilot processes, SIGKILLs on a seeded
schedule, then the invariants of tests/support/invariants.py on the database. `make soak`."""
