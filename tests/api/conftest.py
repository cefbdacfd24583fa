"""The API suite runs on both backends: ``live_service`` here is a real service on SQLite, then on a
fresh PostgreSQL database (skipped without PostgreSQL, failing under CI=true)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import LiveService, live_service_on


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live_service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    with live_service_on(tmp_path_factory.mktemp("service"), request.param) as service:
        yield service
