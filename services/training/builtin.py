"""Built-in architectures, run as a job like any bundle: `python -m services.training.builtin`.

Architectures (scikit-learn, trained for real on the CPU):
- `linear`: logistic regression (classification) or ridge regression, on standardised inputs;
- `gradient_boosting`: gradient-boosted trees;
- `mlp`: a small multi-layer perceptron on standardised inputs.

Data: `configuration.dataset` names a data set that ships with scikit-learn (`iris`, `wine`,
`breast_cancer`, `digits`, `diabetes`) or a generated one (`classification`, `regression`);
or CSV files fetched from the training's connectors (`configuration.target` names the label
column, the last one by default). `configuration.params` overrides the estimator's parameters;
`configuration.grid` ({param: [values]}) trains one checkpoint per combination.
Each model is exported to ONNX (or joblib with `configuration.format: joblib`), and the ONNX
model's predictions are checked against the in-memory model's before it is handed over.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from pathlib import Path
from typing import Any

ARCHITECTURES = ("linear", "gradient_boosting", "mlp")
ALIASES = {
    "logistic_regression": "linear",
    "linear_regression": "linear",
    "ridge": "linear",
    "gbm": "gradient_boosting",
    "gradient-boosting": "gradient_boosting",
    "neural_network": "mlp",
}
DATASETS = ("iris", "wine", "breast_cancer", "digits", "diabetes", "classification", "regression")
REGRESSION = ("diabetes", "regression")


def canonical(architecture: str) -> str:
    name = ALIASES.get(architecture.lower(), architecture.lower())
    if name not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; built-in: {', '.join(ARCHITECTURES)}"
        )
    return name


def load_dataset(config: dict[str, Any], data_dir: Path):
    import numpy as np
    from sklearn import datasets

    files = sorted(data_dir.rglob("*.csv")) if data_dir.is_dir() else []
    name = config.get("dataset") or ("" if files else "iris")
    if name:
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r}; built-in: {', '.join(DATASETS)}")
        if name == "classification":
            return (
                *datasets.make_classification(n_samples=300, n_features=8, random_state=0),
                "classification",
            )
        if name == "regression":
            return (
                *datasets.make_regression(n_samples=300, n_features=8, noise=5, random_state=0),
                "regression",
            )
        bunch = getattr(datasets, f"load_{name}")()
        return bunch.data, bunch.target, "regression" if name in REGRESSION else "classification"
    rows, header = [], None
    for path in files:
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows += [r for r in reader if r]
    target = config.get("target") or header[-1]
    column = header.index(target)
    table = np.array([[float(v) for v in row] for row in rows])
    X, y = np.delete(table, column, axis=1), table[:, column]
    task = config.get("task") or ("classification" if len(np.unique(y)) <= 20 else "regression")
    return X, (y.astype(int) if task == "classification" else y), task


def estimator(architecture: str, task: str, params: dict[str, Any]):
    from sklearn import ensemble, linear_model, neural_network
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classify = task == "classification"
    if architecture == "linear":
        model = (
            linear_model.LogisticRegression(max_iter=500, **params)
            if classify
            else linear_model.Ridge(**params)
        )
        return make_pipeline(StandardScaler(), model)
    if architecture == "gradient_boosting":
        defaults = {"n_estimators": 30, "max_depth": 2, "random_state": 0, **params}
        return (
            ensemble.GradientBoostingClassifier(**defaults)
            if classify
            else ensemble.GradientBoostingRegressor(**defaults)
        )
    defaults = {"hidden_layer_sizes": (16,), "max_iter": 1000, "random_state": 0, **params}
    if "hidden_layer_sizes" in params:
        defaults["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    model = (
        neural_network.MLPClassifier(**defaults)
        if classify
        else neural_network.MLPRegressor(**defaults)
    )
    return make_pipeline(StandardScaler(), model)


def score(model, X, y, task: str) -> dict[str, float]:
    from sklearn import metrics

    predicted = model.predict(X)
    if task == "classification":
        return {
            "accuracy": float(metrics.accuracy_score(y, predicted)),
            "f1": float(metrics.f1_score(y, predicted, average="macro")),
        }
    rmse = float(metrics.mean_squared_error(y, predicted) ** 0.5)
    return {
        "r2": float(metrics.r2_score(y, predicted)),
        "rmse": rmse,
        "mae": float(metrics.mean_absolute_error(y, predicted)),
    }


def onnx_agreement(path: Path, model, X, task: str) -> float:
    """Share of test rows where the exported model predicts what the in-memory one does."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    exported = session.run(None, {name: X.astype(np.float32)})[0].ravel()
    expected = model.predict(X)
    if task == "classification":
        return float(np.mean(exported == expected))
    return float(np.mean(np.isclose(exported, expected, rtol=1e-3, atol=1e-3)))


def grid(config: dict[str, Any]) -> list[dict[str, Any]]:
    base = dict(config.get("params") or {})
    axes = config.get("grid") or {}
    if not axes:
        return [base]
    keys = sorted(axes)
    return [
        {**base, **dict(zip(keys, values))}
        for values in itertools.product(*(axes[k] for k in keys))
    ]


def main(config_path: str) -> int:
    import numpy as np
    from mlplane import train
    from sklearn.model_selection import train_test_split

    spec = json.loads(Path(config_path).read_text())
    config = spec.get("configuration") or {}
    architecture = canonical(spec["architecture"])
    X, y, task = load_dataset(config, train.data_dir())
    X = np.asarray(X, dtype=np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=float(config.get("test_size", 0.25)), random_state=0
    )
    print(
        f"{architecture} ({task}) on {len(X_train)} training rows, {len(X_test)} test rows, "
        f"{X.shape[1]} features",
        flush=True,
    )
    fmt = config.get("format", "onnx")
    combos = grid(config)
    for index, params in enumerate(combos, start=1):
        model = estimator(architecture, task, params).fit(X_train, y_train)
        measured = score(model, X_test, y_test, task)
        name = (
            spec.get("name", "model")
            if len(combos) == 1
            else f"{spec.get('name', 'model')}-{index}"
        )
        path = train.save_model(model, X_train[:1], name=name, format=fmt, metrics=measured)
        if fmt == "onnx":
            agreement = onnx_agreement(path, model, X_test, task)
            print(
                f"{name}: ONNX agrees with the fitted model on {agreement:.1%} of test rows",
                flush=True,
            )
            if agreement < 0.98:
                raise SystemExit(f"the ONNX export of {name} disagrees with the fitted model")
        for metric, value in measured.items():
            train.log_metric(metric, value, step=index)
        print(f"{name} {json.dumps(params)} -> {json.dumps(measured)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "config.json"))
