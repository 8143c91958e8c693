"""What a Kubernetes training pod runs: `python -m services.training.adapters.pod`.

It reads its training from MLPLANE_TRAINING_SPEC, lays the bundle out from the artifact store
(MLPLANE_ARTIFACTS_URL; an s3:// store the cluster reaches, credentials from the pod's usual
AWS sources), runs the entrypoint with its output going to the pod's log, then uploads the
output folder (models, their metrics, and a metrics.json summary) to `trainings/<id>/output/`.
Its exit code is the job's.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from mlplane.artifacts import open_store

from ..bundles import fetch_parts
from ..unpack import Limits


def argv_of(spec: dict) -> list[str]:
    if spec["source"] != "bundle":
        return [sys.executable, "-m", "services.training.builtin", "config.json"]
    entry = spec["entrypoint"]
    head = [sys.executable, entry] if entry.endswith(".py") else [sys.executable, "-m", entry]
    return [*head, *spec.get("args", [])]


def summarise(metrics_file: Path, output: Path) -> None:
    last: dict[str, float] = {}
    if metrics_file.is_file():
        for line in metrics_file.read_text().splitlines():
            try:
                item = json.loads(line)
                last[str(item["name"])] = float(item["value"])
            except (ValueError, KeyError, TypeError):
                continue
    (output / "metrics.json").write_text(json.dumps(last))


async def main() -> int:
    spec = json.loads(os.environ["MLPLANE_TRAINING_SPEC"])
    training_id = os.environ["MLPLANE_TRAINING_ID"]
    store = open_store(os.environ["MLPLANE_ARTIFACTS_URL"])
    work = Path(os.environ.get("MLPLANE_WORK_DIR", "/tmp/mlplane-job")).resolve()
    src, output = work / "src", work / "output"
    for folder in (src / "data", output):
        folder.mkdir(parents=True, exist_ok=True)
    if spec["source"] == "bundle":
        await fetch_parts(store, spec["code_hash"], spec["data_hash"], src, Limits())
    else:
        (src / "config.json").write_text(
            json.dumps({k: spec[k] for k in ("architecture", "configuration", "name")})
        )
    (work / "params.json").write_text(
        json.dumps({**spec.get("parameters", {}), **spec.get("configuration", {})})
    )
    env = {
        **os.environ,
        "MLPLANE_OUTPUT_DIR": str(output),
        "MLPLANE_METRICS_FILE": str(work / "metrics.jsonl"),
        "MLPLANE_PARAMS_FILE": str(work / "params.json"),
        "MLPLANE_DATA_DIR": str(src / "data"),
        "PYTHONPATH": str(src),
        "PYTHONUNBUFFERED": "1",
    }
    code = await asyncio.to_thread(lambda: subprocess.call(argv_of(spec), cwd=src, env=env))
    summarise(work / "metrics.jsonl", output)
    await store.put_tree(f"trainings/{training_id}/output", output)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
