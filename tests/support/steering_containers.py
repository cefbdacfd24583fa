"""The Docker engine for the live steering-container tests, and small steering scripts.

The live tests need a Docker engine and the image ``hposteer/base:bookworm`` (python3; built by
images/ and by .ci/run). Without them they are skipped, except under ``CI=true``, where they fail.
A steering script is a ``python3 -c '...'`` command: the working directory holds only ``%IN``.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import docker.errors
import pytest

from tests.conftest import IN_CI

IMAGE = "hposteer/base:bookworm"

# Proposes the categories of parameter "a" not yet in %IN, NUM_POINTS minus the pending ones at most
# (as hpogrid counts), so it is exhausted once every category was proposed.
GRID_SCRIPT = (
    "import json, sys; d = json.load(open(sys.argv[1])); seen = [p[0]['a'] for p in d['points']]; "
    "n = int(sys.argv[3]) - sum(p[1] is None for p in d['points']); "
    "cats = d['opt_space']['a']['dimension']['categories']; "
    "json.dump([{'a': c} for c in cats if c not in seen][:max(n, 0)], open(sys.argv[2], 'w'))"
).replace("'", '"')


def grid_command(infile: str = "%IN", outfile: str = "%OUT") -> str:
    return f"python3 -c '{GRID_SCRIPT}' {infile} {outfile} %NUM_POINTS"


def script_command(script: str) -> str:
    """``python3 -c`` with ``script`` (write its strings with double quotes)."""
    assert "'" not in script
    return f"python3 -c '{script}'"


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
        client.images.get(IMAGE)
    except docker.errors.DockerException as exc:
        if IN_CI:
            pytest.fail(f"CI=true but the Docker engine or {IMAGE} is not available: {exc}")
        pytest.skip(f"no Docker engine with {IMAGE} here: {exc}")
    yield client
    client.close()
