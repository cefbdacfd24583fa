"""Fixtures of the deployment tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LiveService


@pytest.fixture
def token_file(live_service: LiveService, tmp_path: Path) -> Path:
    """The pilot token in a file only its owner reads, as the scripts require."""
    path = tmp_path / "secrets" / "pilot-token"
    path.parent.mkdir()
    path.write_text(live_service.pilot_token + "\n")
    path.chmod(0o600)
    return path
