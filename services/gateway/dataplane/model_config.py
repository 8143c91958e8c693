"""Triton's model configuration of an endpoint's model, as `GET /v2/models/{name}/config`
answers it: the registry's config (platform, backend, max_batch_size, inputs and outputs as
`ModelVersionAdded.config` carries them) as Triton's `ModelConfig` message in JSON.

The message class is the one tritonclient ships (its grpc package imports grpcio at start,
which the HTTP client does not need, so the generated file is loaded alone)."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from typing import Any


@cache
def model_config_pb2():
    import tritonclient

    path = Path(tritonclient.__file__).parent / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location("mlplane_gateway_model_config_pb2", path)
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


def config_json(name: str, config: dict[str, Any]) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(config_message(name, config), preserving_proto_field_name=True)
