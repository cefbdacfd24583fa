"""Helpers shared by test modules (and bench/): live-service clients, pilots, processes, payloads, oracles.

Test modules import helpers from here, never from one another (tests/test_no_test_module_imports.py checks this).
No module here is named ``test_*``, so pytest collects nothing from this package.
"""
