"""The reference evaluation images (make images) run by a real `hposteer pilot --runtime docker`:
a search completes with checkpoints saved, metadata stored and metrics uploaded, and a retried
point resumes from its checkpoint inside the container."""

from __future__ import annotations

from pathlib import Path

import pytest

from hposteer.client.artifacts import list_artifacts
from hposteer.client.http import ApiClient
from tests.conftest import LiveService, docker_with_image
from tests.support.pilots import hposteer_pilot, new_site, points

SPACE = {
    "hidden_units": {"method": "uniformint", "dimension": {"low": 16, "high": 64}},
    "alpha": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-2}},
    "learning_rate_init": {"method": "loguniform", "dimension": {"low": 1e-3, "high": 3e-2}},
    "activation": {"method": "categorical", "dimension": {"categories": ["relu", "tanh"]}},
    "batch_size": {"method": "categorical", "dimension": {"categories": [32, 64]}},
}


@pytest.mark.parametrize("name", ["sklearn-digits", "pytorch-digits"])
def test_an_evaluation_image_runs_a_search_with_checkpoints_metadata_and_metrics(
    live_service: LiveService, tmp_path: Path, name: str
) -> None:
    image = f"hposteer/evaluation-{name}"
    docker_with_image(image).close()
    site = new_site()
    with ApiClient(live_service.url, live_service.user_token) as api:
        task = api.submit_task(
            {
                "name": f"images.{name}",
                "evaluation_exec": "python3 /opt/hposteer/train.py --epochs 4 --seed %RNDM:100",
                "evaluation_container": image,
                "search_space": SPACE,
                "optimizer": "random",
                "max_points": 2,
                "n_points_per_iteration": 2,
                "n_parallel_evaluation": 2,
                "site": site,
                "checkpoint_to_save": ["ckpt"],
                "evaluation_meta": "out_metadata.json",
                "evaluation_metrics": "metrics.json",
            }
        )
        pilot = hposteer_pilot(
            live_service, site, tmp_path / "work", "--runtime", "docker", "--slots", "2", "--exit-when-idle", "2"
        )
        _, stderr = pilot.communicate(timeout=180)
        done = points(api, task["id"])
        details = [api.get_point(task["id"], p["id"]) for p in done]
        kinds = sorted(a["kind"] for a in list_artifacts(api, task["id"]))
    assert pilot.returncode == 0, stderr
    assert [p["state"] for p in done] == ["done", "done"], stderr
    for detail in details:
        meta = detail["attempts"][0]["meta"]
        assert meta["epochs"] == 4 and 0.5 < meta["accuracy"] <= 1.0 and meta["resumed"] is False, meta
        assert "epoch 4:" in detail["attempts"][0]["log_tail"]
    assert kinds == ["checkpoint", "checkpoint", "metrics", "metrics"]
