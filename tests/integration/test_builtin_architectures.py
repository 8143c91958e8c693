"""Each built-in architecture trains for real on a data set that ships with scikit-learn, reaches
a measured metric, and leaves a checkpoint in the model-repository layout whose ONNX model loads
in onnxruntime and predicts what the fitted model predicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.model_selection import train_test_split

from services.training import builtin
from services.training.adapters.outputs import collect

CASES = [
    ("linear", "iris", "accuracy", 0.9),
    ("gradient_boosting", "wine", "accuracy", 0.85),
    ("mlp", "breast_cancer", "accuracy", 0.9),
    ("linear", "diabetes", "r2", 0.3),
]


@pytest.mark.parametrize(("architecture", "dataset", "metric", "floor"), CASES)
def test_a_builtin_architecture_trains_to_a_servable_onnx_checkpoint(
    architecture, dataset, metric, floor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    output = tmp_path / "output"
    monkeypatch.setenv("MLPLANE_OUTPUT_DIR", str(output))
    monkeypatch.setenv("MLPLANE_METRICS_FILE", str(tmp_path / "metrics.jsonl"))
    monkeypatch.setenv("MLPLANE_DATA_DIR", str(tmp_path / "no-data"))
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {"architecture": architecture, "name": "m", "configuration": {"dataset": dataset}}
        )
    )
    assert builtin.main(str(config)) == 0

    [model] = collect(output, tmp_path / "repository", {})
    assert model.metrics[metric] >= floor, model.metrics
    assert (
        (model.root / "config.pbtxt")
        .read_text()
        .startswith('name: "m"\nplatform: "onnxruntime_onnx"')
    )
    session = ort.InferenceSession(
        str(model.root / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )

    X, y, task = builtin.load_dataset({"dataset": dataset}, tmp_path)
    X = np.asarray(X, dtype=np.float32)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0)
    fitted = builtin.estimator(architecture, task, {}).fit(X_train, y_train)
    served = session.run(None, {session.get_inputs()[0].name: X_test})[0].ravel()
    if task == "classification":
        assert np.mean(served == fitted.predict(X_test)) >= 0.98
    else:
        np.testing.assert_allclose(served, fitted.predict(X_test), rtol=1e-3, atol=1e-2)


def test_a_grid_trains_one_checkpoint_per_combination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLPLANE_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("MLPLANE_METRICS_FILE", str(tmp_path / "metrics.jsonl"))
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "architecture": "linear",
                "name": "grid",
                "configuration": {"dataset": "iris", "grid": {"C": [0.01, 10.0]}},
            }
        )
    )
    builtin.main(str(config))
    models = collect(tmp_path / "output", tmp_path / "repository", {})
    assert [m.name for m in models] == ["grid-1", "grid-2"]
    assert models[0].metrics["accuracy"] < models[1].metrics["accuracy"]


def test_an_unknown_architecture_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown architecture 'transformer'"):
        builtin.canonical("transformer")
