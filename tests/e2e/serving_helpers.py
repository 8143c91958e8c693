"""What the serving scenarios share: the iris models, uploads, bounded polling and an endpoint's
running state as the gateway lists it."""

from __future__ import annotations

import io
import time

import joblib
import numpy as np
from mlplane.train import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

X, Y = load_iris(return_X_y=True)
SAMPLE = X[[0, 60, 120]]
EXPECTED = np.array([0, 1, 2])


def iris_models() -> dict[str, bytes]:
    """An ONNX logistic regression and a joblib decision tree, both trained on iris."""
    logistic = LogisticRegression(max_iter=500).fit(X, Y)
    tree = DecisionTreeClassifier(random_state=0).fit(X, Y)
    buffer = io.BytesIO()
    joblib.dump(tree, buffer)
    return {
        "onnx": to_onnx(logistic, X[:1].astype(np.float32)).SerializeToString(),
        "joblib": buffer.getvalue(),
    }


def upload(client, name: str, filename: str, data: bytes, **extra):
    return client.post(
        "/api/models", data={"name": name, **extra}, files=[("files[]", (filename, data))]
    )


def wait_for(predicate, timeout: float = 180.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(every)
    raise AssertionError("condition not met in time")


def running(client, space: str, name: str):
    listed = client.get(f"/inference/{space}").json()["data"]
    found = next((e for e in listed if e["name"] == name), None)
    return found if found and found["phase"] == "running" else None
