"""The whole system with containers on both sides, as real processes: `hposteer serve` steering the
task in the steering image (iDDS's docker-arguments form of --steeringExec), `phpo`, and a
`hposteer pilot --runtime docker` evaluating every point in the reference evaluation image with
checkpoints, metadata and metrics."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import IO

from tests.conftest import containers_under, docker_with_image
from tests.support.cli_processes import Service, command, token, wait_json

SPACE = {
    "hidden_units": {"method": "uniformint", "dimension": {"low": 16, "high": 64}},
    "alpha": {"method": "loguniform", "dimension": {"low": 1e-5, "high": 1e-2}},
    "learning_rate_init": {"method": "loguniform", "dimension": {"low": 1e-3, "high": 3e-2}},
    "activation": {"method": "categorical", "dimension": {"categories": ["relu", "tanh"]}},
    "batch_size": {"method": "categorical", "dimension": {"categories": [32, 64]}},
}
STEERING = (
    'run --rm -v "$(pwd)":/HPOiDDS hposteer/steering-nevergrad /bin/bash -c "hpogrid generate '
    "--n_point=%NUM_POINTS --max_point=%MAX_POINTS --infile=/HPOiDDS/%IN --outfile=/HPOiDDS/%OUT "
    '-l nevergrad --method RandomSearch"'
)


def test_steering_and_evaluations_both_run_in_containers(system: tuple[Path, int, IO[bytes]], tmp_path: Path) -> None:
    for image in ("hposteer/steering-nevergrad", "hposteer/evaluation-sklearn-digits"):
        docker_with_image(image).close()
    data_dir, port, log = system
    service = Service(data_dir, port, log)
    try:
        user, pilot_token = token(data_dir, "user", "eve"), token(data_dir, "pilot", "site")
        project = tmp_path / "project"
        project.mkdir()
        (project / "space.json").write_text(json.dumps(SPACE))
        config = {
            "outDS": "user.e2e.containers", "searchSpaceFile": "space.json", "steeringExec": STEERING,
            "evaluationContainer": "hposteer/evaluation-sklearn-digits",
            "evaluationExec": "python3 /opt/hposteer/train.py --epochs 3 --seed %RNDM:100",
            "maxPoints": 6, "nPointsPerIteration": 2, "nParallelEvaluation": 2,
            "checkPointToSave": "ckpt", "evaluationMeta": "out_metadata.json", "evaluationMetrics": "metrics.json",
        }  # fmt: skip
        (project / "cfg.json").write_text(json.dumps(config))
        submitted = subprocess.run(
            [sys.executable, "-m", "hposteer.client.phpo", "--loadJson", "cfg.json", "--server", service.url,
             "--token", user, "--dumpJson", "dump.json"],
            cwd=project, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        task_id = int(json.loads((project / "dump.json").read_text())["jediTaskID"])
        pilot = subprocess.Popen(
            command("pilot", "--server", service.url, "--token", pilot_token, "--runtime", "docker",
                    "--slots", "2", "--workdir", str(tmp_path / "work"), "--exit-when-idle", "5"),
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        task = wait_json(service.url, user, task_id, timeout_s=240)
        assert pilot.wait(timeout=60) == 0
    finally:
        service.stop()
    assert task["state"] == "finished" and task["optimizer"] == "container", task
    progress = task["progress"]
    assert isinstance(progress, dict) and progress["done"] == 6
    with sqlite3.connect(f"file:{data_dir / 'hposteer.db'}?mode=ro", uri=True) as db:
        runs = db.execute("SELECT runner, outcome FROM steering_runs WHERE task_id = ?", (task_id,)).fetchall()
        metas = db.execute("SELECT meta FROM attempts WHERE task_id = ? AND state = 'succeeded'", (task_id,)).fetchall()
        kinds = db.execute(
            "SELECT kind, COUNT(*) FROM artifacts WHERE task_id = ? GROUP BY kind", (task_id,)
        ).fetchall()
    assert len(runs) >= 3 and {r[0] for r in runs} == {"container"} and runs[0][1] == "ok", runs
    assert len(metas) == 6 and all(json.loads(m[0])["epochs"] == 3 for m in metas)
    assert dict(kinds) == {"checkpoint": 6, "metrics": 6}
    # The steering image is warm-capable: its segment's container served the runs and was removed.
    engine = docker_with_image("hposteer/steering-nevergrad")
    try:
        assert containers_under(engine, "steering-warm", data_dir) == []
    finally:
        engine.close()
    assert not list((data_dir / "steering").glob("warm-*"))
