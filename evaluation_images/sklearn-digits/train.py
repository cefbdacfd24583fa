"""The reference evaluation: a small neural network on scikit-learn's bundled digits.

What it shows (docs/evaluation-contract.md), all relative to the working directory:
* reads the point from ``input.json`` (a dict, or ``[model_id, dict]`` for segmented tasks);
* trains epoch by epoch and saves ``ckpt/state.pkl`` after each one (atomically: write, then
  rename), and resumes from it when the pilot hands a checkpoint over (``--checkPointToSave ckpt``);
* writes ``out_metadata.json`` (``--evaluationMeta out_metadata.json``) and the per-epoch curve
  into ``metrics.json`` (``--evaluationMetrics metrics.json``);
* writes ``output.json`` last: ``{"status": 0, "loss": <validation log-loss>}``. Log-loss, not the
  error rate: on 450 images the error rate moves in steps of 1/450, too coarse to steer.

    python3 /opt/hposteer/train.py [--seed N] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import time
import warnings
from pathlib import Path
from typing import Any

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

CHECKPOINT = Path("ckpt/state.pkl")


def _point() -> dict[str, Any]:
    with open("input.json") as f:
        point = json.load(f)
    return point[1] if isinstance(point, list) else point  # segmented tasks: [model_id, point]


def _write_json(path: str, value: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def _save(state: dict[str, Any]) -> None:
    CHECKPOINT.parent.mkdir(exist_ok=True)
    tmp = CHECKPOINT.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(state, f)
    os.replace(tmp, CHECKPOINT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0, help="network initialisation seed (%%RNDM:n)")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    point = _point()
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)

    state: dict[str, Any] = {"epoch": 0, "model": None, "curve": []}
    resumed = CHECKPOINT.exists()
    if resumed:
        with CHECKPOINT.open("rb") as f:
            state = pickle.load(f)
        print(f"resumed from the checkpoint of epoch {state['epoch']}", flush=True)
    model = state["model"] or MLPClassifier(
        hidden_layer_sizes=(int(point["hidden_units"]),),
        alpha=float(point["alpha"]),
        learning_rate_init=float(point["learning_rate_init"]),
        activation=point["activation"],
        batch_size=int(point["batch_size"]),
        random_state=args.seed,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(state["epoch"] + 1, args.epochs + 1):
            model.partial_fit(x_train, y_train, classes=list(range(10)))
            loss = float(log_loss(y_val, model.predict_proba(x_val), labels=model.classes_))
            state = {"epoch": epoch, "model": model, "curve": [*state["curve"], {"epoch": epoch, "val_loss": loss}]}
            _save(state)
            print(f"epoch {epoch}: validation log-loss {loss:.4f}", flush=True)
    probabilities = model.predict_proba(x_val)
    loss = float(log_loss(y_val, probabilities, labels=model.classes_))
    accuracy = float(accuracy_score(y_val, probabilities.argmax(axis=1)))
    _write_json("metrics.json", state["curve"])
    meta = {"epochs": args.epochs, "accuracy": accuracy, "resumed": resumed, "seconds": time.perf_counter() - started}
    _write_json("out_metadata.json", meta)
    _write_json("output.json", {"status": 0, "loss": loss, "message": f"accuracy {accuracy:.4f}"})


if __name__ == "__main__":
    main()
