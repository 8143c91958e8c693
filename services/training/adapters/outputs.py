"""A job's output folder becomes checkpoints laid out as a Triton model repository.

Each model file at the top of the output folder (`<name>.onnx`, `<name>.joblib`) becomes
`<name>/config.pbtxt` + `<name>/1/model.<ext>`; a folder that already is a model (a
`config.pbtxt` beside numbered version folders) is kept as it is. ONNX models get a
config.pbtxt derived from the graph's inputs and outputs (platform `onnxruntime_onnx`), so a
Triton server or any Open-Inference-Protocol server reading the layout serves it unchanged;
joblib models get a Python-backend config plus an MLServer `model-settings.json`.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..bundles import sha256_file

FORMATS = {".onnx": "onnx", ".joblib": "joblib"}
ONNX_TYPES = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
}
NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Model:
    name: str
    format: str
    root: Path  # the model's folder in the repository layout
    metrics: dict[str, float] = field(default_factory=dict)
    signature: dict[str, Any] = field(default_factory=dict)

    def files(self) -> dict[str, str]:
        return {
            p.relative_to(self.root).as_posix(): sha256_file(p)
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }


def model_name(raw: str) -> str:
    return NAME.sub("-", raw).strip("-.")[:100] or "model"


def onnx_signature(path: Path) -> dict[str, Any]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def tensors(values) -> list[dict[str, Any]]:
        out = []
        for value in values:
            tensor = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            out.append(
                {
                    "name": value.name,
                    "datatype": ONNX_TYPES.get(tensor.elem_type, "TYPE_FP32"),
                    "dims": dims or [-1],
                }
            )
        return out

    return {"inputs": tensors(graph.input), "outputs": tensors(graph.output)}


def config_pbtxt(name: str, fmt: str, signature: dict[str, Any]) -> str:
    if fmt != "onnx":
        return f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
    lines = [
        f'name: "{name}"',
        'platform: "onnxruntime_onnx"',
        'backend: "onnxruntime"',
        "max_batch_size: 0",
    ]
    for kind in ("input", "output"):
        specs = [
            f'  {{ name: "{t["name"]}" data_type: {t["datatype"]} dims: [ {", ".join(map(str, t["dims"]))} ] }}'
            for t in signature[f"{kind}s"]
        ]
        lines.append(f"{kind} [\n" + ",\n".join(specs) + "\n]")
    return "\n".join(lines) + "\n"


def lay_out(source: Path, name: str, fmt: str, repo: Path) -> Model:
    root = repo / name
    (root / "1").mkdir(parents=True, exist_ok=True)
    target = root / "1" / f"model.{'onnx' if fmt == 'onnx' else 'joblib'}"
    shutil.copyfile(source, target)
    signature = onnx_signature(target) if fmt == "onnx" else {}
    (root / "config.pbtxt").write_text(config_pbtxt(name, fmt, signature))
    if fmt == "joblib":
        settings = {
            "name": name,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./1/model.joblib", "version": "1"},
        }
        (root / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return Model(name, fmt, root, signature=signature)


def is_model_folder(path: Path) -> bool:
    return (path / "config.pbtxt").is_file() and any(
        p.is_dir() and p.name.isdigit() for p in path.iterdir()
    )


def collect(output: Path, repo: Path, default_metrics: dict[str, float]) -> list[Model]:
    """Lay out every model the job left in `output` under `repo`; metrics per model."""
    models: list[Model] = []
    if not output.is_dir():
        return models
    for path in sorted(output.iterdir()):
        if path.is_symlink():
            continue
        if path.is_file() and path.suffix in FORMATS:
            model = lay_out(path, model_name(path.stem), FORMATS[path.suffix], repo)
            model.metrics = read_metrics(output / f"{path.stem}.metrics.json") or dict(
                default_metrics
            )
            models.append(model)
        elif path.is_dir() and is_model_folder(path):
            shutil.copytree(path, repo / model_name(path.name), ignore=skip_links)
            fmt = "onnx" if any(path.rglob("*.onnx")) else "joblib"
            model = Model(model_name(path.name), fmt, repo / model_name(path.name))
            model.metrics = read_metrics(path / "metrics.json") or dict(default_metrics)
            models.append(model)
    return models


def skip_links(folder: str, names: list[str]) -> list[str]:
    """Links in a job's output are never followed: they could point at the platform's files."""
    return [n for n in names if (Path(folder) / n).is_symlink()]


def read_metrics(path: Path) -> dict[str, float]:
    try:
        raw = json.loads(path.read_text())
        return {str(k): float(v) for k, v in raw.items() if isinstance(v, (int, float))}
    except (OSError, ValueError, AttributeError):
        return {}
