"""A PyTorch evaluation: a small network on scikit-learn's bundled digits, on the slot's GPU if any.

The same contract as the scikit-learn reference (docs/evaluation-contract.md): ``input.json`` in
(a dict, or ``[model_id, dict]``), ``ckpt/state.pt`` saved atomically after every epoch and resumed
from, ``out_metadata.json``, ``metrics.json`` (the curve) and ``output.json`` (validation
cross-entropy) last. The pilot passes the slot's GPUs as device requests and
``CUDA_VISIBLE_DEVICES``; with none (a CPU slot, or this machine) it trains on the CPU.

    python3 /opt/hposteer/train.py [--seed N] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

CHECKPOINT = Path("ckpt/state.pt")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid, "identity": nn.Identity, "gelu": nn.GELU}


def _point() -> dict[str, Any]:
    with open("input.json") as f:
        point = json.load(f)
    return point[1] if isinstance(point, list) else point


def _write_json(path: str, value: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def _epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int
) -> None:
    model.train()
    order = torch.randperm(len(x), device=x.device)
    for i in range(0, len(x), batch):
        chosen = order[i : i + batch]
        optimizer.zero_grad()
        loss_fn(model(x[chosen]), y[chosen]).backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    point = _point()
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES") else "cpu")
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    xt = torch.tensor(scaler.transform(x_train), dtype=torch.float32, device=device)
    xv = torch.tensor(scaler.transform(x_val), dtype=torch.float32, device=device)
    yt = torch.tensor(y_train, device=device)
    yv = torch.tensor(y_val, device=device)

    hidden = int(point["hidden_units"])
    model = nn.Sequential(nn.Linear(64, hidden), ACTIVATIONS[point["activation"]](), nn.Linear(hidden, 10)).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=float(point["learning_rate_init"]), weight_decay=float(point["alpha"])
    )
    state: dict[str, Any] = {"epoch": 0, "curve": []}
    resumed = CHECKPOINT.exists()
    if resumed:
        saved = torch.load(CHECKPOINT, map_location=device)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = {"epoch": saved["epoch"], "curve": saved["curve"]}
        print(f"resumed from the checkpoint of epoch {state['epoch']}", flush=True)
    loss_fn = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for epoch in range(state["epoch"] + 1, args.epochs + 1):
        _epoch(model, optimizer, loss_fn, xt, yt, int(point["batch_size"]))
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(xv), yv))
        state = {"epoch": epoch, "curve": [*state["curve"], {"epoch": epoch, "val_loss": val_loss}]}
        CHECKPOINT.parent.mkdir(exist_ok=True)
        tmp = CHECKPOINT.with_suffix(".tmp")
        torch.save({**state, "model": model.state_dict(), "optimizer": optimizer.state_dict()}, tmp)
        os.replace(tmp, CHECKPOINT)
        print(f"epoch {epoch}: validation cross-entropy {val_loss:.4f} on {xt.device}", flush=True)
    with torch.no_grad():
        logits = model(xv)
        loss = float(loss_fn(logits, yv))
        accuracy = float((logits.argmax(dim=1) == yv).float().mean())
    _write_json("metrics.json", state["curve"])
    meta = {"epochs": args.epochs, "accuracy": accuracy, "device": str(device), "resumed": resumed,
            "seconds": time.perf_counter() - started}  # fmt: skip
    _write_json("out_metadata.json", meta)
    _write_json("output.json", {"status": 0, "loss": loss, "message": f"accuracy {accuracy:.4f} on {device}"})


if __name__ == "__main__":
    main()
