"""The model-server port: health, what is loaded, load, unload, metadata — over tritonclient.

`TritonServer` talks to any server with Triton's HTTP API (health, repository index, load with a
config and the model's files, unload). `MLServerServer` is the one adapter that absorbs what
MLServer 1.7 lacks against tritonclient, so the rest of the platform sees one interface:

- its repository index wants a JSON body (tritonclient posts an empty one), so the index is
  posted with `{}`;
- it cannot take files in a load request, so the files are written into its model repository
  (a folder the platform manages) with an MLServer `model-settings.json`, then loaded by name;
- it has no model config or statistics routes, so `config()` is built from the metadata;
- it speaks JSON tensors only (no binary-tensor extension): `binary_tensors` is False and the
  data plane re-encodes binary requests as JSON for it.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import tritonclient.http.aio as triton
from mlplane.triton import config_json, config_pbtxt
from tritonclient.utils import InferenceServerException

from .repository import DEFAULT_FILES, model_settings


class ServerError(Exception):
    """A server refused or failed a request; the message says why, for an event."""


class TritonServer:
    binary_tensors = True

    def __init__(self, host: str, port: int, repository: str = "", timeout_s: float = 30.0) -> None:
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        self.repository = Path(repository) if repository else None
        self.client = triton.InferenceServerClient(f"{host}:{port}", conn_timeout=timeout_s)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def close(self) -> None:
        await self.client.close()

    async def health(self) -> tuple[bool, bool, str]:
        """(live, ready, error)."""
        try:
            live = await self.client.is_server_live()
            ready = live and await self.client.is_server_ready()
            return live, ready, "" if ready else "not ready"
        except (TimeoutError, InferenceServerException, aiohttp.ClientError, OSError) as exc:
            return False, False, f"unreachable: {type(exc).__name__}: {exc}"[:300]

    async def index(self) -> list[dict[str, Any]]:
        return await self._call(self.client.get_model_repository_index())

    async def loaded(self) -> list[str]:
        """Names of the models the server reports ready."""
        return sorted({m["name"] for m in await self.index() if m.get("state") == "READY"})

    async def load(
        self, served: str, version: int, fmt: str, config: dict[str, Any], files: Path
    ) -> None:
        """Load `files` (a version folder: `<version>/…` and `config.pbtxt`) as `served`."""
        if self.repository is not None:
            self._write(served, version, config, files)
            await self._call(self.client.load_model(served, config=config_json(served, config)))
            return
        body: dict[str, Any] = {"config": config_json(served, config)}
        for path in sorted((files / str(version)).rglob("*")):
            if path.is_file():
                relative = path.relative_to(files).as_posix()
                body[f"file:{relative}"] = base64.b64encode(path.read_bytes()).decode()
        # tritonclient.http.aio base64-encodes files to bytes, which json.dumps refuses; the same
        # request is sent here with the payload as text
        await self._post(f"/v2/repository/models/{served}/load", {"parameters": body})

    def _write(self, served: str, version: int, config: dict[str, Any], files: Path) -> None:
        target = self.repository / served
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(files / str(version), target / str(version))
        (target / "config.pbtxt").write_text(config_pbtxt(served, config))

    async def unload(self, served: str) -> None:
        await self._call(self.client.unload_model(served))
        if self.repository is not None:
            shutil.rmtree(self.repository / served, ignore_errors=True)

    async def metadata(self, served: str, version: str = "") -> dict[str, Any]:
        return await self._call(self.client.get_model_metadata(served, version))

    async def config(self, served: str, version: str = "") -> dict[str, Any]:
        return await self._call(self.client.get_model_config(served, version))

    async def _call(self, awaitable):
        try:
            return await awaitable
        except InferenceServerException as exc:
            raise ServerError(exc.message() or str(exc)) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ServerError(f"unreachable: {type(exc).__name__}: {exc}") from None

    async def _post(self, path: str, body: Any) -> Any:
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(self.url + path, json=body) as response,
            ):
                text = await response.text()
                if response.status >= 400:
                    raise ServerError(_error_of(text, response.status))
                return json.loads(text) if text.strip() else None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ServerError(f"unreachable: {type(exc).__name__}: {exc}") from None


class MLServerServer(TritonServer):
    binary_tensors = False
    FORMATS = ("onnx", "joblib")

    async def index(self) -> list[dict[str, Any]]:
        return await self._post("/v2/repository/index", {}) or []

    async def load(
        self, served: str, version: int, fmt: str, config: dict[str, Any], files: Path
    ) -> None:
        if self.repository is None:
            raise ServerError("this MLServer has no model repository the platform can write to")
        if fmt not in self.FORMATS:
            raise ServerError(
                f"MLServer serves {' and '.join(self.FORMATS)} models here; this one is "
                f"{fmt!r}: register a Triton server for it"
            )
        self._write(served, version, config, files)
        settings = model_settings(served, version, fmt, config, DEFAULT_FILES[fmt])
        (self.repository / served / "model-settings.json").write_text(
            json.dumps(settings, indent=2)
        )
        await self._call(self.client.load_model(served))

    async def config(self, served: str, version: str = "") -> dict[str, Any]:
        meta = await self.metadata(served, version)
        return {
            "name": meta.get("name", served),
            "platform": meta.get("platform", ""),
            "input": meta.get("inputs", []),
            "output": meta.get("outputs", []),
        }


def _error_of(text: str, status: int) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return f"{status}: {text[:300]}"
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body)[:300]
    return f"{status}: {text[:300]}"


def connect(kind: str, host: str, port: int, repository: str = "") -> TritonServer:
    """The adapter for a registered server, by its kind."""
    if kind == "mlserver":
        return MLServerServer(host, port, repository)
    return TritonServer(host, port, repository)
