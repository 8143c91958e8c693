"""The tensor codec of the Open Inference Protocol: the binary-tensor extension to and from
JSON `data` lists, for model servers that speak JSON only (MLServer), and the OIP names of
Triton's config data types. Pure functions of bytes and dicts."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from mlplane.errors import MlplaneError

NUMPY_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def split_binary(body: bytes, header_length: int) -> tuple[dict[str, Any], bytes]:
    try:
        head = json.loads(body[:header_length])
    except ValueError:
        raise InvalidTensor("the inference header is not JSON") from None
    return head, body[header_length:]


class InvalidTensor(MlplaneError):
    status = 400
    title = "Invalid inference request"


def binary_inputs_to_json(head: dict[str, Any], blob: bytes) -> dict[str, Any]:
    """Inputs sent as binary become JSON `data` lists (for servers without the extension)."""
    offset = 0
    for tensor in head.get("inputs", []):
        params = tensor.get("parameters") or {}
        size = params.pop("binary_data_size", None)
        if size is None:
            continue
        chunk = blob[offset : offset + size]
        if len(chunk) != size:
            raise InvalidTensor(
                f"input {tensor.get('name')!r} announces {size} bytes; fewer were sent"
            )
        offset += size
        tensor["data"] = decode_tensor(tensor.get("datatype", ""), chunk)
        if not params:
            tensor.pop("parameters", None)
    return head


def decode_tensor(datatype: str, raw: bytes) -> list[Any]:
    if datatype == "BYTES":
        out, offset = [], 0
        while offset < len(raw):
            (length,) = struct.unpack_from("<I", raw, offset)
            out.append(raw[offset + 4 : offset + 4 + length].decode("utf-8", errors="replace"))
            offset += 4 + length
        return out
    dtype = NUMPY_TYPES.get(datatype)
    if dtype is None:
        raise InvalidTensor(f"unknown datatype {datatype!r}")
    return np.frombuffer(raw, dtype=dtype).tolist()


def encode_tensor(datatype: str, data: list[Any]) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in np.asarray(data, dtype=object).ravel():
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(raw)) + raw)
        return b"".join(parts)
    return np.asarray(data, dtype=NUMPY_TYPES[datatype]).tobytes()


def wanted_binary(request_head: dict[str, Any]) -> tuple[bool, set[str]]:
    """(every output binary, the outputs asked for as binary by name)."""
    every = bool((request_head.get("parameters") or {}).get("binary_data_output"))
    named = {
        o["name"]
        for o in request_head.get("outputs", [])
        if (o.get("parameters") or {}).get("binary_data")
    }
    return every, named


def strip_binary_requests(head: dict[str, Any]) -> None:
    params = head.get("parameters")
    if params:
        params.pop("binary_data_output", None)
        if not params:
            head.pop("parameters")
    for output in head.get("outputs", []):
        if output.get("parameters"):
            output["parameters"].pop("binary_data", None)
            if not output["parameters"]:
                output.pop("parameters")


def encode_outputs(response: dict[str, Any], every: bool, named: set[str]) -> tuple[bytes, int]:
    """The response with the wanted outputs as binary: (body, JSON header length)."""
    blobs = []
    for output in response.get("outputs", []):
        if (every or output["name"] in named) and "data" in output:
            raw = encode_tensor(output["datatype"], output.pop("data"))
            output.setdefault("parameters", {})
            output["parameters"].pop("content_type", None)
            output["parameters"]["binary_data_size"] = len(raw)
            blobs.append(raw)
    head = json.dumps(response, separators=(",", ":")).encode()
    return head + b"".join(blobs), len(head)
