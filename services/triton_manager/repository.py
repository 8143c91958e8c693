"""Model files in Triton's model-repository layout, and the configuration each one needs.

A version is laid out as `<name>/config.pbtxt` + `<name>/<version>/<model file>` — the layout a
Triton server loads unchanged — and stored under `models/<model id>/v<version>/` in the
artifact store. Its config.pbtxt is parsed and written with Triton's own `ModelConfig` protobuf
(the message tritonclient ships), so a field Triton does not know is refused by name.

Configuration is inferred where the format allows: ONNX from the graph's inputs and outputs,
scikit-learn joblib from the estimator (read in a sandboxed child, since loading a pickle runs
its code). Anything else needs a config.pbtxt naming its platform or backend, inputs and outputs;
the answer names the field that is missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mlplane.errors import Invalid, MlplaneError
from mlplane.triton import config_pbtxt, model_config_pb2, oip_datatype

MODEL_SUFFIXES = {".onnx": "onnx", ".joblib": "joblib", ".pkl": "joblib", ".pickle": "joblib"}
DEFAULT_FILES = {"onnx": "model.onnx", "joblib": "model.joblib"}
ONNX_TYPES = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    4: "TYPE_UINT16",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    8: "TYPE_STRING",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    12: "TYPE_UINT32",
    13: "TYPE_UINT64",
}
CHUNK = 1 << 20


class ModelTooLarge(MlplaneError):
    status = 413
    title = "Model too large"


def invalid(detail: str, field_name: str) -> Invalid:
    return Invalid(
        detail,
        field=field_name,
        errors=[{"field": field_name, "message": detail, "type": "value_error"}],
    )


# ---------------------------------------------------------------- config


def parse_config(text: str) -> dict[str, Any]:
    """A config.pbtxt as the registry's config dict; 422 naming what Triton would refuse."""
    from google.protobuf import json_format, text_format

    try:
        message = text_format.Parse(text, model_config_pb2().ModelConfig())
    except text_format.ParseError as exc:
        raise invalid(f"config.pbtxt does not parse: {exc}", "config.pbtxt") from None
    raw = json_format.MessageToDict(message, preserving_proto_field_name=True)

    def tensors(kind: str) -> list[dict[str, Any]]:
        return [
            {
                "name": t.get("name", ""),
                "datatype": t.get("data_type", "TYPE_FP32"),
                "dims": [int(d) for d in t.get("dims", [])],
            }
            for t in raw.get(kind, [])
        ]

    return {
        "platform": raw.get("platform", ""),
        "backend": raw.get("backend", ""),
        "max_batch_size": int(raw.get("max_batch_size", 0)),
        "inputs": tensors("input"),
        "outputs": tensors("output"),
    }


def onnx_config(path: Path) -> dict[str, Any]:
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad upload
        raise invalid(
            f"{path.name} is not a readable ONNX model ({type(exc).__name__})", "files"
        ) from None
    if not graph.output:
        raise invalid(
            f"{path.name} is not a readable ONNX model (its graph has no outputs)", "files"
        )
    initialisers = {i.name for i in graph.initializer}

    def tensors(values) -> list[dict[str, Any]]:
        out = []
        for value in values:
            if value.name in initialisers:
                continue
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

    return {
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": 0,
        "inputs": tensors(graph.input),
        "outputs": tensors(graph.output),
    }


async def joblib_config(path: Path, timeout_s: float = 60, memory_mb: int = 2048) -> dict[str, Any]:
    """The signature of a scikit-learn model, read by a sandboxed child process."""
    limits = json.dumps(
        {"memory_bytes": memory_mb << 20, "cpu_seconds": int(timeout_s), "open_files": 256}
    )
    argv = [
        sys.executable,
        "-m",
        "services.training.sandbox",
        limits,
        "--",
        sys.executable,
        "-m",
        "services.triton_manager.inspect_joblib",
        str(path),
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(Path(__file__).parents[2]),
        "OMP_NUM_THREADS": "1",
        "HOME": str(path.parent),
    }
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(path.parent),
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise invalid(f"{path.name} took over {timeout_s:g}s to load", "files") from None
    try:
        found = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        found = {"error": f"the loader exited with {process.returncode}"}
    if "error" in found:
        raise invalid(f"{path.name} is not a loadable joblib model: {found['error']}", "files")
    if not found.get("predict"):
        raise invalid(
            f"{path.name} holds a {found.get('estimator')}, which has no predict()", "files"
        )
    features = found.get("n_features") or -1
    label = {"int": "TYPE_INT64", "float": "TYPE_FP64", "bool": "TYPE_BOOL"}.get(
        found.get("label_kind"), "TYPE_STRING"
    )
    outputs = [
        {
            "name": "predict",
            "datatype": label if found.get("classes") else "TYPE_FP64",
            "dims": [-1],
        }
    ]
    if found.get("proba"):
        outputs.append(
            {"name": "predict_proba", "datatype": "TYPE_FP64", "dims": [-1, found["classes"]]}
        )
    return {
        "platform": "",
        "backend": "python",
        "max_batch_size": 0,
        "inputs": [{"name": "input-0", "datatype": "TYPE_FP64", "dims": [-1, features]}],
        "outputs": outputs,
        "estimator": found.get("estimator", ""),
    }


def check_complete(config: dict[str, Any], where: str = "config.pbtxt") -> None:
    if not (config.get("platform") or config.get("backend")):
        raise invalid(
            f"{where} is missing field 'platform' (or 'backend'): the format of this model "
            "cannot be inferred",
            f"{where}.platform",
        )
    for kind, field_name in (("inputs", "input"), ("outputs", "output")):
        if not config.get(kind):
            raise invalid(
                f"{where} is missing field '{field_name}': the {kind} of this model cannot "
                "be inferred",
                f"{where}.{field_name}",
            )
        for i, tensor in enumerate(config[kind]):
            if not tensor.get("name"):
                raise invalid(
                    f"{where} {field_name}[{i}] is missing field 'name'",
                    f"{where}.{field_name}.name",
                )
            if not tensor.get("dims"):
                raise invalid(
                    f"{where} {field_name}[{i}] is missing field 'dims'",
                    f"{where}.{field_name}.dims",
                )


# ---------------------------------------------------------------- uploads


@dataclass
class Upload:
    """One uploaded file, already on disk."""

    filename: str
    path: Path


@dataclass
class Prepared:
    """A version laid out on disk, ready to be stored and recorded."""

    format: str
    config: dict[str, Any]
    root: Path
    """The model's folder: `config.pbtxt` and `<version>/…`."""
    files: dict[str, str] = field(default_factory=dict)
    size: int = 0


def clean_name(filename: str) -> PurePosixPath:
    path = PurePosixPath(filename.replace("\\", "/"))
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or path.is_absolute() or ".." in parts or any("\0" in p for p in parts):
        raise invalid(f"refused file name {filename!r}", "files")
    return PurePosixPath(*parts)


def _arrange(
    uploads: list[Upload],
) -> tuple[Upload | None, Upload | None, list[tuple[PurePosixPath, Upload]]]:
    """(config.pbtxt, the model file, the other files with their path inside the version)."""
    config, model, others = None, None, []
    for upload in uploads:
        name = clean_name(upload.filename)
        if name.name == "config.pbtxt":
            config = upload
            continue
        if name.parts[0].isdigit() and len(name.parts) > 1:  # a Triton layout: 1/model.onnx
            name = PurePosixPath(*name.parts[1:])
        if model is None and name.suffix.lower() in MODEL_SUFFIXES:
            model = upload
            continue
        others.append((name, upload))
    return config, model, others


async def prepare(uploads: list[Upload], name: str, version: int, workdir: Path) -> Prepared:
    """Lay out the uploaded files as version `version` of model `name` under `workdir`."""
    if not uploads:
        raise invalid("send the model's files as multipart form field 'files'", "files")
    config_upload, model_upload, others = _arrange(uploads)
    if model_upload is None and not others:
        raise invalid("the upload holds a config.pbtxt but no model file", "files")
    given = parse_config(config_upload.path.read_text(errors="replace")) if config_upload else None
    fmt = (
        MODEL_SUFFIXES[clean_name(model_upload.filename).suffix.lower()]
        if model_upload
        else "custom"
    )
    if fmt == "onnx":
        inferred = onnx_config(model_upload.path)
    elif fmt == "joblib":
        inferred = await joblib_config(model_upload.path)
    else:
        inferred = None
    if given is None and inferred is None:
        first = others[0][0].name
        raise invalid(
            f"the configuration of {first!r} cannot be inferred: upload a config.pbtxt with "
            "its 'platform' (or 'backend'), 'input' and 'output'",
            "config.pbtxt",
        )
    config = merge(given, inferred)
    check_complete(config, "config.pbtxt" if given else "the inferred configuration")
    root = workdir / name
    (root / str(version)).mkdir(parents=True, exist_ok=True)
    placed = [(PurePosixPath(DEFAULT_FILES[fmt]), model_upload)] if model_upload else []
    for relative, upload in [*placed, *others]:
        target = root / str(version) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(upload.path, target)
    (root / "config.pbtxt").write_text(config_pbtxt(name, config))
    prepared = Prepared(format=fmt, config=config, root=root)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        prepared.files[path.relative_to(root).as_posix()] = sha256_file(path)
        prepared.size += path.stat().st_size
    return prepared


def merge(given: dict[str, Any] | None, inferred: dict[str, Any] | None) -> dict[str, Any]:
    """The uploaded config wins field by field; what it leaves out comes from the model file."""
    if given is None:
        return dict(inferred or {})
    if inferred is None:
        return given
    merged = dict(inferred)
    for key, value in given.items():
        if value not in ("", [], None) and not (key == "max_batch_size" and value == 0):
            merged[key] = value
    return merged


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def version_key(model_id: str, version: int, name: str) -> str:
    return f"models/{model_id}/v{version}/{name}"


# ---------------------------------------------------------------- serving layout


MLSERVER_RUNTIMES = {"onnx": "mlplane_onnx.OnnxModel", "joblib": "mlserver_sklearn.SKLearnModel"}


def model_settings(
    served: str, version: int, fmt: str, config: dict[str, Any], filename: str
) -> dict[str, Any]:
    """MLServer's model-settings.json for one served version."""

    def tensors(kind: str) -> list[dict[str, Any]]:
        return [
            {"name": t["name"], "datatype": oip_datatype(t["datatype"]), "shape": t["dims"]}
            for t in config.get(kind, [])
        ]

    return {
        "name": served,
        "implementation": MLSERVER_RUNTIMES[fmt],
        "platform": config.get("platform") or fmt,
        "versions": [str(version)],
        "inputs": tensors("inputs"),
        "outputs": tensors("outputs"),
        "parameters": {"uri": f"./{version}/{filename}", "version": str(version)},
    }
