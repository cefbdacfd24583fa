"""Evaluation payload of the demo: a small neural network on scikit-learn's bundled digits.

Reads the hyperparameter point from input.json (written by the pilot), trains on 75 % of
the 1,797 images, and writes the validation log-loss to output.json. Log-loss rather than
the error rate: the error rate on 450 images moves in steps of 1/450, too coarse to steer.
"""

import argparse
import json
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0, help="network initialisation seed (%RNDM:n)")
    args = parser.parse_args()
    with open("input.json") as f:
        point = json.load(f)

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(x_train)
    model = MLPClassifier(
        hidden_layer_sizes=(int(point["hidden_units"]),),
        alpha=float(point["alpha"]),
        learning_rate_init=float(point["learning_rate_init"]),
        activation=point["activation"],
        batch_size=int(point["batch_size"]),
        max_iter=60,
        random_state=args.seed,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(scaler.transform(x_train), y_train)
    probabilities = model.predict_proba(scaler.transform(x_val))
    loss = log_loss(y_val, probabilities, labels=model.classes_)
    accuracy = accuracy_score(y_val, probabilities.argmax(axis=1))
    message = f"accuracy {accuracy:.4f}, trained in {time.perf_counter() - started:.1f} s"
    with open("output.json", "w") as f:
        json.dump({"status": 0, "loss": loss, "message": message}, f)
    print(message)


if __name__ == "__main__":
    main()
