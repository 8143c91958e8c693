"""dataplane: infer through the gateway (`mlplane up`, embedded, its managed MLServer) minus
direct tritonclient to that MLServer — same model, same run, same client.

One ONNX model (iris logistic regression) is uploaded and deployed as an endpoint; then
tritonclient.http.aio sends JSON-tensor requests (MLServer's only encoding) at concurrency 1 and
16, alternating rounds between the gateway and the server. Reported: added latency p50 and p99
per concurrency (gateway percentile minus direct percentile, ms) and the gateway's throughput at
concurrency 16 as a fraction of direct. 127.0.0.1 only, bounded request counts.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from bench_gateway import Server, _free_port
from common import Result

ROUNDS = 2
WARMUP = 100


def _model() -> bytes:
    from mlplane.train import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    return to_onnx(
        LogisticRegression(max_iter=300).fit(X, y), X[:1].astype(np.float32)
    ).SerializeToString()


async def _deploy(base: str, token: str) -> tuple[str, int]:
    """A space, the model, an endpoint; returns the space and the model server's port."""
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as c:
        space = (
            await c.post(
                "/api/v1/spaces", json={"name": "bench", "description": "data-plane benchmark"}
            )
        ).json()["id"]
        c.headers["X-Space-ID"] = space
        model = await c.post(
            "/api/models", data={"name": "iris"}, files=[("files[]", ("m.onnx", _model()))]
        )
        model.raise_for_status()
        (
            await c.post(f"/inference/{space}/{model.json()['id']}", json={"name": "iris"})
        ).raise_for_status()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            endpoints = (await c.get(f"/inference/{space}")).json()["data"]
            if endpoints and endpoints[0]["phase"] == "running":
                break
            await asyncio.sleep(0.2)
        else:
            raise RuntimeError("the endpoint did not become ready")
        local = next(s for s in (await c.get("/api/tritons")).json()["tritons"] if s["managed"])
        return space, int(local["port"])


async def _drive(
    url: str, model: str, headers: dict[str, str], count: int, concurrency: int
) -> tuple[list[float], float]:
    import tritonclient.http.aio as triton

    client = triton.InferenceServerClient(url, conn_limit=concurrency)
    sample = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    latencies: list[float] = []

    async def one() -> None:
        tensor = triton.InferInput("X", [1, 4], "FP32")
        tensor.set_data_from_numpy(sample, binary_data=False)
        outputs = [triton.InferRequestedOutput("label", binary_data=False)]
        start = time.perf_counter()
        await client.infer(model, [tensor], outputs=outputs, headers=headers)
        latencies.append(time.perf_counter() - start)

    async def worker(n: int) -> None:
        for _ in range(n):
            await one()

    try:
        await asyncio.gather(*(worker(WARMUP // concurrency + 1) for _ in range(concurrency)))
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    return latencies, len(latencies) / elapsed


def _pct(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000
        if len(values) > 1
        else 0.0
    )


async def dataplane(count: int = 2000) -> list[Result]:
    home = Path(tempfile.mkdtemp(prefix="mlplane-bench-dataplane-"))
    port = _free_port()
    env = {
        "MLPLANE_HOME": str(home),
        "MLPLANE_SERVING_LOCAL_SERVER": "on",
        "MLPLANE_SERVING_POLL_S": "0.5",
        "PATH": "/usr/bin:/bin",
    }
    import os

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLPLANE_")}, **env}
    server = Server(
        [sys.executable, "-m", "mlplane.cli", "up", "--port", str(port)], port, home / "up.log", env
    )
    try:
        await server.ready("/readyz", timeout=120)
        token = re.search(
            r"Admin token \(shown once, keep it\): (\S+)", server.log.read_text()
        ).group(1)
        space, model_port = await _deploy(f"http://127.0.0.1:{port}", token)
        gateway = (
            f"127.0.0.1:{port}",
            "iris",
            {"Authorization": f"Bearer {token}", "X-Space-ID": space},
        )
        # MLServer needs the JSON content type, which tritonclient does not send by itself
        direct = (
            f"127.0.0.1:{model_port}",
            await _served_name(port, token, space),
            {"Content-Type": "application/json"},
        )
        results: list[Result] = []
        throughput: dict[str, list[float]] = {"gateway": [], "direct": []}
        for concurrency in (1, 16):
            samples: dict[str, list[float]] = {"gateway": [], "direct": []}
            for _ in range(ROUNDS):
                for label, (url, model, headers) in (("direct", direct), ("gateway", gateway)):
                    latencies, rate = await _drive(
                        url, model, headers, count // ROUNDS, concurrency
                    )
                    samples[label] += latencies
                    if concurrency == 16:
                        throughput[label].append(rate)
            for q, target in ((50, 1.0), (99, 3.0)):
                added = _pct(samples["gateway"], q) - _pct(samples["direct"], q)
                detail = {
                    "gateway_ms": round(_pct(samples["gateway"], q), 3),
                    "direct_ms": round(_pct(samples["direct"], q), 3),
                    "requests": len(samples["gateway"]),
                }
                results.append(
                    Result(
                        f"dataplane added p{q} c{concurrency} ms",
                        added,
                        target,
                        False,
                        detail,
                        ours=detail["gateway_ms"],
                        raw=detail["direct_ms"],
                        unit="ms",
                    )
                )
        ratio = statistics.mean(throughput["gateway"]) / statistics.mean(throughput["direct"])
        results.append(
            Result(
                "dataplane throughput c16",
                ratio,
                0.8,
                True,
                {
                    "gateway_rps": round(statistics.mean(throughput["gateway"]), 1),
                    "direct_rps": round(statistics.mean(throughput["direct"]), 1),
                },
                ours=statistics.mean(throughput["gateway"]),
                raw=statistics.mean(throughput["direct"]),
                unit="req/s",
            )
        )
        return results
    finally:
        server.stop()


async def _served_name(port: int, token: str, space: str) -> str:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        timeout=30,
        headers={"Authorization": f"Bearer {token}", "X-Space-ID": space},
    ) as c:
        endpoint = (await c.get(f"/inference/{space}")).json()["data"][0]
        return f"mlp-{endpoint['model_id']}-{endpoint['version']}"


if __name__ == "__main__":
    for result in asyncio.run(dataplane(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)):
        print(result.record())
