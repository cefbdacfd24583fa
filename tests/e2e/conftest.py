"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import free_port


@pytest.fixture
def system(tmp_path: Path) -> Iterator[tuple[Path, int, IO[bytes]]]:
    """Where a real service process keeps its data, its port, and the log its processes share."""
    with (tmp_path / "service.log").open("ab") as log:
        yield tmp_path / "data", free_port(), log
