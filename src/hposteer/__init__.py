"""hposteer: distributed hyperparameter-optimisation steering, compatible with PanDA/iDDS ``phpo``.

The distribution ships one top-level package with three parts:

* ``hposteer.core``: pure code both sides share (search spaces, placeholders, requirements);
* ``hposteer.client``: the API client, ``phpo``, the ``hposteer`` command and the pilot agent
  (the base install);
* ``hposteer.service``: the steering service (the ``service`` extra).

This module imports neither side, so ``import hposteer`` works with either installed alone.
"""

__version__ = "0.1.0"
