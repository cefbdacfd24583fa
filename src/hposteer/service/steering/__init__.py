"""Steering: the builtin optimisers, the steering containers, and the programs inside steering images.

* ``optimizers``: hposteer's own optimisers behind one ask-and-tell protocol and the in-process
  runners that drive them (the warm runner, the stateless ``generate``); pure Python over the
  core, the optimiser libraries imported only when an optimiser is built;
* ``containers``: the service side of a task's own steering container (``docker run`` or a warm
  container and ``docker exec``), with its hardening and limits;
* ``image_programs``: what runs inside a steering image (``hpogrid generate``, the prefork steering
  server and its standard-library client); never imports the service's other layers.
"""
