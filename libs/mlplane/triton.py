"""Triton's model configuration, as the registry keeps it and the data plane shows it.

A model's config is the registry's dict (platform, backend, max_batch_size, inputs and outputs
with Triton data types), the one `ModelVersionAdded.config` carries. The serving context turns
it into the files and calls model servers take, the gateway's data plane into
`GET /v2/models/{name}/config`; both use Triton's own `ModelConfig` message from the module
tritonclient ships (its grpc package imports grpcio at start, which the HTTP client does not
need, so the file is loaded alone).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any

OIP_TYPES = {"TYPE_STRING": "BYTES"}
"""Triton data types whose Open Inference Protocol name is not the type without `TYPE_`."""


@cache
def model_config_pb2():
    import tritonclient

    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("mlplane_triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def config_message(name: str, config: dict[str, Any]):
    message = model_config_pb2().ModelConfig(
        name=name, max_batch_size=config.get("max_batch_size", 0)
    )
    if config.get("platform"):
        message.platform = config["platform"]
    if config.get("backend"):
        message.backend = config["backend"]
    types = model_config_pb2().DataType
    for kind, target in (("inputs", message.input), ("outputs", message.output)):
        for tensor in config.get(kind, []):
            target.add(
                name=tensor["name"], data_type=types.Value(tensor["datatype"]), dims=tensor["dims"]
            )
    return message


def config_pbtxt(name: str, config: dict[str, Any]) -> str:
    """The config as a model repository's `config.pbtxt`."""
    from google.protobuf import text_format

    return text_format.MessageToString(config_message(name, config))


def config_json(name: str, config: dict[str, Any]) -> str:
    """The config as Triton's load API takes it (`parameters.config`) and its config route
    answers it."""
    from google.protobuf import json_format

    return json_format.MessageToJson(config_message(name, config), preserving_proto_field_name=True)


def oip_datatype(triton_type: str) -> str:
    """TYPE_FP32 -> FP32: the Open Inference Protocol's name of a config data type."""
    return OIP_TYPES.get(triton_type, triton_type.removeprefix("TYPE_"))
