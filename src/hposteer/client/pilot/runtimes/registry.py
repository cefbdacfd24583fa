"""The runtimes by name (``RUNTIMES``), and :func:`make_runtime`, which resolves one once per pilot.

This module imports the runtimes; they never import it. Container runtimes are imported only when
one is made, so that ``local`` pilots never need their engine's library (the Docker SDK).
"""

from __future__ import annotations

from collections.abc import Callable

from hposteer.client.pilot.runtimes.base import Runtime, RuntimeOptions, RuntimeStartError
from hposteer.client.pilot.runtimes.local import LocalRuntime


def _local(options: RuntimeOptions) -> Runtime:
    return LocalRuntime()


def _docker(options: RuntimeOptions) -> Runtime:
    from hposteer.client.pilot.runtimes.docker import DockerRuntime  # the Docker SDK only for docker pilots

    return DockerRuntime(options)


def _podman(options: RuntimeOptions) -> Runtime:
    from hposteer.client.pilot.runtimes.podman import PodmanRuntime

    return PodmanRuntime(options)


def _apptainer(engine: str) -> Callable[[RuntimeOptions], Runtime]:
    def make(options: RuntimeOptions) -> Runtime:
        from hposteer.client.pilot.runtimes.apptainer import ApptainerRuntime

        return ApptainerRuntime(options, engine)

    return make


RUNTIMES: dict[str, Callable[[RuntimeOptions], Runtime]] = {
    "local": _local,
    "docker": _docker,
    "podman": _podman,  # podman.py: the docker runtime's container, through the podman CLI
    "apptainer": _apptainer("apptainer"),  # apptainer.py: not yet run on a live engine
    "singularity": _apptainer("singularity"),
}


def make_runtime(name: str, options: RuntimeOptions | None = None) -> Runtime:
    """The runtime called ``name``; RuntimeStartError if there is none or it cannot work here."""
    factory = RUNTIMES.get(name)
    if factory is None:
        raise RuntimeStartError(f"unknown runtime {name!r}; known runtimes: {', '.join(sorted(RUNTIMES))}")
    return factory(options or RuntimeOptions())
