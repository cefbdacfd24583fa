"""Programs that run inside a steering image (steering_images/Dockerfile), not in the service.

* ``hpogrid_generate``: ``hpogrid generate``, iDDS's steering command, over the builtin
  optimisers (``python -m hposteer.service.steering.image_programs.hpogrid_generate``);
* ``prefork_server``: the warm container's main process (the image's ``io.hposteer.steering-server``
  label), which imports the optimiser libraries once and forks one child per run;
* ``warm_client``: the ``hpogrid`` a warm run starts, run by file path with ``python -I -S``, so
  standard library only and no import of this package.

The image holds hposteer's wheel without its dependencies and one optimiser library: these
modules import only the standard library, the pure core and ``hposteer.service.steering.optimizers``
(import-linter contract in pyproject.toml).
"""
