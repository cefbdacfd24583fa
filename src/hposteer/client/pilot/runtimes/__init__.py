"""How payloads run: runtimes behind one small protocol, resolved by name from one table.

A runtime starts the evaluation command in a prepared working directory and hands back a
:class:`~hposteer.client.pilot.runtimes.base.Payload` that can be waited for and terminated as a whole.
``local`` runs it on this machine (no isolation); ``docker`` and ``podman`` in a hardened container
(docs/architecture.md#security), ``apptainer``/``singularity`` in ``apptainer exec`` for HPC sites. A runtime is
made once per pilot from its name and the pilot's options; container runtimes import their engine's
library only then, so ``local`` pilots never need it.

Modules:

* ``base``: the ``Runtime`` and ``Payload`` protocols, ``RuntimeOptions``, image references, log tails;
* ``local``, ``docker``, ``podman``, ``apptainer``: one runtime each (they import ``base``, never ``registry``);
* ``registry``: ``RUNTIMES`` by name and ``make_runtime``;
* ``container_args``: the hardened container's settings (pure functions); ``engine_cli``: what the
  command-line engines (podman, apptainer) share; ``seccomp``: podman's seccomp profile.
"""
