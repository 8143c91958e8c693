"""The training SDK: what a job's code calls to report metrics and hand over trained models.

A job runs with a few variables set by its runtime; outside a job (a local dry run) everything
lands under ./mlplane-output instead, so the same script runs anywhere.

    from mlplane import train
    params = train.params()
    ...
    train.log_metric("accuracy", 0.97)
    train.save_model(model, X_train[:1], name="iris")       # ONNX, through skl2onnx

Every model file left in the output folder (`*.onnx`, `*.joblib`) becomes a checkpoint; a
`<name>.metrics.json` beside it gives that checkpoint its own metrics, otherwise the job's last
logged value of each metric is used.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

FALLBACK = Path("mlplane-output")


def output_dir() -> Path:
    path = Path(os.environ.get("MLPLANE_OUTPUT_DIR", FALLBACK))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Where the job's data is: the bundle's data folder, plus files fetched from connectors."""
    return Path(os.environ.get("MLPLANE_DATA_DIR", "data"))


def params() -> dict[str, Any]:
    """The training's parameters (the manifest's, overridden by the training's configuration)."""
    path = os.environ.get("MLPLANE_PARAMS_FILE")
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record a metric; the platform shows it live and keeps the last value per name."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"metric {name!r} must be a finite number, got {value}")
    path = Path(os.environ.get("MLPLANE_METRICS_FILE", output_dir() / "metrics.jsonl"))
    line = json.dumps({"name": name, "value": value, "step": step, "time": time.time()})
    with open(path, "a") as fh:
        fh.write(line + "\n")


def save_model(
    model: Any,
    sample: Any = None,
    *,
    name: str = "model",
    format: str = "onnx",
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write a fitted scikit-learn model as a checkpoint file (ONNX by default, or joblib).

    `sample` is a few rows of input; ONNX export needs it to fix input names and types.
    Classifiers are exported with plain probability tensors (no ZipMap), which every
    Open-Inference-Protocol server can return.
    """
    out = output_dir()
    if format == "onnx":
        path = out / f"{name}.onnx"
        path.write_bytes(to_onnx(model, sample).SerializeToString())
    elif format == "joblib":
        import joblib

        path = out / f"{name}.joblib"
        joblib.dump(model, path)
    else:
        raise ValueError("format must be 'onnx' or 'joblib'")
    if metrics:
        (out / f"{name}.metrics.json").write_text(
            json.dumps({k: float(v) for k, v in metrics.items()})
        )
    return path


def to_onnx(model: Any, sample: Any) -> Any:
    import numpy as np
    from skl2onnx import to_onnx as convert

    if sample is None:
        raise ValueError("ONNX export needs a sample of the input (a row or more)")
    sample = np.asarray(sample, dtype=np.float32)
    options = {"zipmap": False} if hasattr(model, "predict_proba") else None
    return convert(model, sample[:1], options=options, target_opset=17)
