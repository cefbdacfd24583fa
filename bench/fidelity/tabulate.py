"""The multi-fidelity benchmark problem: real training curves, tabulated once and committed.

Every configuration of a discrete grid (hidden units, ``learning_rate_init``, ``alpha``,
``batch_size``) trains a scikit-learn ``MLPClassifier`` epoch by epoch with ``partial_fit`` on a
bundled dataset (standard-scaled, one fixed stratified train/validation split, one fixed weight
seed), and its validation log-loss and accuracy are recorded after each of ``EPOCHS`` epochs. The
simulator (bench/fidelity/simulate.py) then replays these curves instead of training, so a side by
side run of schedulers costs seconds and every side sees the very same curves.

Regenerate (24 minutes of wall time, 6 of CPU, on the shared benchmark machine; the tables are deterministic up to the
scikit-learn and NumPy versions recorded in each file)::

    .venv/bin/python -m bench.fidelity.tabulate
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLES = Path(__file__).parent / "tables"
EPOCHS = 27  # eta = 3 ladders 1, 3, 9, 27 fit exactly
SPLIT_SEED = 0
WEIGHT_SEED = 0
VALIDATION_FRACTION = 0.3
GRID: dict[str, tuple[float | int, ...]] = {
    "hidden_units": (16, 32, 64, 128),
    "learning_rate_init": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
    "alpha": (1e-5, 1e-3, 1e-1),
    "batch_size": (16, 64, 256),
}
# load_wine was tabulated too and dropped: on its 54 validation rows most good configurations reach a log-loss of
# 0.00000, so sides differed only in the fifth decimal
DATASETS = ("digits", "breast_cancer")


@dataclass(frozen=True)
class Table:
    """One dataset's curves: ``loss[c][e]`` is configuration ``c``'s validation log-loss after epoch ``e + 1``."""

    dataset: str
    params: dict[str, tuple[Any, ...]]
    configs: tuple[tuple[Any, ...], ...]  # one value per parameter, in ``params`` order
    loss: tuple[tuple[float, ...], ...]
    accuracy: tuple[tuple[float, ...], ...]

    @property
    def epochs(self) -> int:
        return len(self.loss[0])

    def config(self, index: int) -> dict[str, Any]:
        return dict(zip(self.params, self.configs[index], strict=True))

    def index_of(self, values: dict[str, Any]) -> int:
        return self._index[tuple(values[name] for name in self.params)]

    @property
    def _index(self) -> dict[tuple[Any, ...], int]:
        cached: dict[tuple[Any, ...], int] | None = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {values: i for i, values in enumerate(self.configs)}
            object.__setattr__(self, "_index_cache", cached)
        return cached


def load(dataset: str, directory: Path = TABLES) -> Table:
    with gzip.open(directory / f"{dataset}.json.gz", "rt") as f:
        raw = json.load(f)
    params = {name: tuple(values) for name, values in raw["params"].items()}
    return Table(
        raw["dataset"],
        params,
        tuple(tuple(c) for c in raw["configs"]),
        tuple(tuple(row) for row in raw["val_loss"]),
        tuple(tuple(row) for row in raw["val_accuracy"]),
    )


def _loaders() -> dict[str, Callable[[], Any]]:
    from sklearn.datasets import load_breast_cancer, load_digits

    return {"digits": load_digits, "breast_cancer": load_breast_cancer}


def curves(dataset: str, config: dict[str, Any], epochs: int = EPOCHS) -> tuple[list[float], list[float]]:
    """Train one configuration for ``epochs`` epochs; its validation log-loss and accuracy after each."""
    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    x, y = _loaders()[dataset](return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=VALIDATION_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)
    classes = np.unique(y)
    model = MLPClassifier(
        hidden_layer_sizes=(int(config["hidden_units"]),),
        learning_rate_init=float(config["learning_rate_init"]),
        alpha=float(config["alpha"]),
        batch_size=min(int(config["batch_size"]), len(x_train)),  # a small set may have fewer rows than 256
        random_state=WEIGHT_SEED,
    )
    losses, accuracies = [], []
    for _ in range(epochs):
        with warnings.catch_warnings():
            # one partial_fit is one epoch: scikit-learn calls that not converged, as expected here
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.partial_fit(x_train, y_train, classes=classes)
        proba = model.predict_proba(x_val)
        loss = float(log_loss(y_val, proba, labels=classes))
        losses.append(round(loss, 5) if math.isfinite(loss) else 99.0)
        accuracies.append(round(float(accuracy_score(y_val, classes[np.argmax(proba, axis=1)])), 4))
    return losses, accuracies


def tabulate(dataset: str, grid: Mapping[str, Sequence[Any]] = GRID, epochs: int = EPOCHS) -> dict[str, Any]:
    import numpy
    import sklearn

    started = time.perf_counter()
    configs = list(itertools.product(*grid.values()))
    losses, accuracies = [], []
    for values in configs:
        loss, accuracy = curves(dataset, dict(zip(grid, values, strict=True)), epochs)
        losses.append(loss)
        accuracies.append(accuracy)
    return {
        "dataset": dataset,
        "params": {name: list(values) for name, values in grid.items()},
        "configs": [list(c) for c in configs],
        "val_loss": losses,
        "val_accuracy": accuracies,
        "epochs": epochs,
        "split": {"validation_fraction": VALIDATION_FRACTION, "stratified": True, "seed": SPLIT_SEED},
        "weight_seed": WEIGHT_SEED,
        "scaling": "StandardScaler fitted on the training part",
        "versions": {"scikit-learn": sklearn.__version__, "numpy": numpy.__version__},
        "seconds": round(time.perf_counter() - started, 1),
    }


def write(table: dict[str, Any], directory: Path = TABLES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{table['dataset']}.json.gz"
    with gzip.GzipFile(out, "wb", mtime=0) as f:  # mtime 0: the same curves give the same bytes
        f.write(json.dumps(table, separators=(",", ":")).encode())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fidelity.tabulate")
    parser.add_argument("datasets", nargs="*", help=f"default: {' '.join(DATASETS)}")
    args = parser.parse_args()
    unknown = set(args.datasets) - set(DATASETS)
    if unknown:
        parser.error(f"unknown datasets {sorted(unknown)}; one of {', '.join(DATASETS)}")
    from threadpoolctl import threadpool_limits

    for dataset in args.datasets or DATASETS:
        with threadpool_limits(1):  # small matrices: BLAS threads only contend, and one thread is reproducible
            table = tabulate(dataset)
        out = write(table)
        print(f"{dataset}: {len(table['configs'])} configurations x {table['epochs']} epochs in "
              f"{table['seconds']} s -> {out} ({out.stat().st_size / 1024:.0f} KiB)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
