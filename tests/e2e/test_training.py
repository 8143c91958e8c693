"""Training end to end on the embedded platform (`mlplane up` as a subprocess): a source bundle
trains a real scikit-learn model into a checkpoint that onnxruntime serves; built-in
architectures; kill; restart reconciliation; malicious uploads; space isolation."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from launcher import Platform, join, new_space

IRIS = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "iris"
SLEEPER = "import os, time\nprint('pid', os.getpid(), flush=True)\ntime.sleep(300)\n"


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def folder(path: Path) -> dict[str, bytes]:
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def upload(client: httpx.Client, space: str, archive: bytes, **params) -> httpx.Response:
    return client.post(
        f"/train/{space}",
        params=params,
        content=archive,
        headers={"content-type": "application/gzip"},
    )


def wait_for(
    client: httpx.Client, space: str, job: str, statuses: tuple[str, ...], timeout: float = 60
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.get(f"/train/{space}/{job}").json()
        if info["status"] in statuses:
            return info
        time.sleep(0.2)
    raise AssertionError(f"job {job} still {info['status']} after {timeout}s: {info}")


def followed(client: httpx.Client, space: str, job: str) -> list[dict]:
    with client.stream(
        "GET", f"/train/{space}/{job}/logs", params={"follow": True}, timeout=120
    ) as stream:
        assert stream.headers["content-type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in stream.iter_lines() if line]


def pid_in(lines: list[dict]) -> int:
    return next(
        int(line["text"].split()[1]) for line in lines if line.get("text", "").startswith("pid ")
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.fixture(scope="module")
def admin(training_platform: Platform):
    with training_platform.admin() as client:
        yield client


@pytest.fixture(scope="module")
def space(admin: httpx.Client) -> str:
    return new_space(admin, "training")


def test_a_bundle_trains_a_real_model_to_a_checkpoint_onnxruntime_serves(admin, space, tmp_path):
    archive = tar_gz(folder(IRIS))
    created = admin.post(
        f"/train/{space}", files={"data": ("iris.tar.gz", archive, "application/gzip")}
    )
    assert created.status_code == 202, created.text
    job = created.json()
    assert created.headers["location"] == f"/train/{space}/{job['id']}" and job["status"] in (
        "queued",
        "building",
    )

    lines = followed(admin, space, job["id"])
    texts = [line.get("text", "") for line in lines]
    assert any(t.startswith("test accuracy") for t in texts) and texts[-1] == "succeeded", texts
    assert any(line["stream"] == "metric" and line["name"] == "accuracy" for line in lines)

    info = admin.post(f"/train/{space}/{job['id']}", params={"sort_by": "accuracy"}).json()
    assert info["status"] == "succeeded" and info["started_at"] and info["finished_at"]
    [model] = info["models"]["data"]
    assert model["metrics"]["accuracy"] >= 0.9 and model["format"] == "onnx"
    assert set(model["files"]) == {"config.pbtxt", "1/model.onnx"}

    download = admin.get(f"/train/{space}/{job['id']}/bundle", params={"include-model": True})
    assert download.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        names = tar.getnames()
        assert {"train.py", "mlplane.yaml", "data/iris.csv", "model/iris/1/model.onnx"} <= set(
            names
        )
        onnx_bytes = tar.extractfile("model/iris/1/model.onnx").read()
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    labels, probabilities = session.run(None, {session.get_inputs()[0].name: rows})
    assert labels.tolist() == [0, 2] and probabilities.shape == (2, 3)

    provenance = admin.get(f"/train/{space}/{model['id']}/provenance").json()
    assert provenance["bundle"] == {k: job["bundle"][k] for k in provenance["bundle"]}
    assert (
        len(provenance["bundle"]["code_hash"]) == 64 and provenance["training"]["id"] == job["id"]
    )
    assert (
        provenance["environment"]["packages"]["scikit-learn"]
        and provenance["checkpoint"]["id"] == model["id"]
    )
    assert {e["kind"] for e in provenance["graph"]["edges"]} >= {"trained", "produced"}


def test_the_same_sources_in_another_archive_format_have_the_same_hashes(admin, space):
    first = upload(admin, space, tar_gz(folder(IRIS)), name="hash-a").json()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in reversed(folder(IRIS).items()):
            archive.writestr(f"iris/{name}", data)
    second = admin.post(
        f"/train/{space}", params={"name": "hash-b"}, content=buffer.getvalue()
    ).json()
    for job in (first, second):
        admin.delete(f"/train/{space}/{job['id']}/")
    keys = ("code_hash", "data_hash", "parameters_hash", "bundle_hash")
    assert {k: first["bundle"][k] for k in keys} == {k: second["bundle"][k] for k in keys}
    assert first["bundle"]["bundle_id"] != second["bundle"]["bundle_id"]


def test_builtin_architectures_train_through_the_api_and_list_models_by_metric(admin, space):
    body = {
        "name": "iris grid",
        "architecture": "linear",
        "configuration": {"dataset": "iris", "grid": {"C": [0.01, 10]}},
        "connectors": [],
        "data_model_id": "",
        "gpu_count": 0,
    }
    created = admin.post("/api/v1/trainings", json=body, headers={"X-Space-ID": space})
    assert created.status_code == 201, created.text
    training = wait_for(admin, space, created.json()["id"], ("succeeded", "failed"))
    assert training["status"] == "succeeded", training

    best = admin.post(
        f"/train/{space}/{training['id']}", params={"sort_by": "accuracy", "page_size": 1}
    ).json()
    second = admin.post(
        f"/train/{space}/{training['id']}",
        params={"sort_by": "accuracy", "page_size": 1, "page_id": 2},
    ).json()
    assert (
        best["models"]["count"] == 2
        and best["models"]["has_more"]
        and not second["models"]["has_more"]
    )
    assert (
        best["models"]["data"][0]["metrics"]["accuracy"]
        > second["models"]["data"][0]["metrics"]["accuracy"]
    )

    listed = admin.get(
        "/api/v1/checkpoints", params={"space_id": space, "training_id": training["id"], "limit": 1}
    )
    page = listed.json()
    after = admin.get(
        "/api/v1/checkpoints",
        params={
            "space_id": space,
            "training_id": training["id"],
            "limit": 1,
            "after": page["data"][0]["id"],
        },
    ).json()
    assert page["count"] == 2 and page["has_more"] and len(after["data"]) == 1
    assert after["data"][0]["id"] != page["data"][0]["id"]
    fetched = admin.get(f"/api/v1/trainings/{training['id']}", params={"space_id": space}).json()
    assert {m["name"] for m in fetched["metrics"]} == {"accuracy", "f1"} and len(
        fetched["checkpoints"]
    ) == 2


def test_an_unknown_architecture_or_a_gpu_on_the_local_runtime_is_refused(admin, space):
    headers = {"X-Space-ID": space}
    unknown = admin.post(
        "/api/v1/trainings",
        headers=headers,
        json={"name": "x", "architecture": "transformer", "configuration": {}},
    )
    gpu = admin.post(
        "/api/v1/trainings",
        headers=headers,
        json={"name": "x", "architecture": "mlp", "configuration": {}, "gpu_count": 1},
    )
    assert unknown.status_code == 422 and "transformer" in unknown.json()["detail"]
    assert gpu.status_code == 422 and gpu.json()["field"] == "gpu_count"


def test_killing_a_running_job_stops_its_process_and_records_it(admin, space):
    job = upload(admin, space, tar_gz({"train.py": SLEEPER.encode()}), name="sleeper").json()
    wait_for(admin, space, job["id"], ("running",))
    inspect = admin.get(f"/train/{space}/inspect").json()
    assert (
        job["id"] in [j["id"] for j in inspect["running"]]
        and inspect["resources"]["resources"]["local://"]
    )
    deadline = time.monotonic() + 20
    while not any(
        line.get("text", "").startswith("pid ")
        for line in admin.get(f"/train/{space}/{job['id']}/logs").json()["lines"]
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    pid = pid_in(admin.get(f"/train/{space}/{job['id']}/logs").json()["lines"])

    killed = admin.delete(f"/train/{space}/{job['id']}/")
    assert killed.status_code == 200 and killed.json()["status"] == "killed"
    assert not alive(pid)
    info = admin.get(f"/train/{space}/{job['id']}").json()
    assert info["status"] == "killed" and info["reason"].startswith("killed by")
    again = admin.delete(f"/train/{space}/{job['id']}/")
    assert again.status_code == 400 and again.json()["error_code"] == "JOB_NOT_RUNNING"
    missing = admin.delete(f"/train/{space}/nosuchjob/")
    assert missing.status_code == 404 and missing.json()["error_code"] == "JOB_NOT_FOUND"


@pytest.mark.parametrize(
    ("name", "archive", "status", "named"),
    [
        ("zip slip", "zipslip", 400, "../../evil.py"),
        ("symlink out", "symlink", 400, "escape"),
        ("not an archive", "text", 415, ""),
        ("oversized", "big", 413, ""),
    ],
)
def test_a_malicious_upload_is_refused_with_a_problem(admin, space, name, archive, status, named):
    body = {
        "zipslip": zip_slip,
        "symlink": symlink_out,
        "text": lambda: b"just text",
        "big": lambda: os.urandom(3 << 20),
    }[archive]()
    refused = admin.post(f"/train/{space}", content=body)
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert named in refused.json()["detail"]
    if named:
        assert refused.json()["entry"] == named


def zip_slip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.py", "print(1)")
        archive.writestr("../../evil.py", "print('pwned')")
    return buffer.getvalue()


def symlink_out() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("escape")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(info)
    return buffer.getvalue()


def test_jobs_of_another_space_answer_404(training_platform, admin, space):
    job = upload(admin, space, tar_gz({"train.py": b"print('hello')\n"}), name="private").json()
    other = new_space(admin, "elsewhere")
    with join(
        training_platform,
        admin,
        other,
        "eve@example.com",
        roles=("trainings:get", "trainings:delete"),
    ) as eve:
        attempts = [
            eve.get(f"/train/{space}/{job['id']}"),
            eve.get(f"/train/{space}/{job['id']}/logs"),
            eve.delete(f"/train/{space}/{job['id']}/"),
            eve.get(f"/train/{other}/{job['id']}"),
            eve.get(f"/api/v1/trainings/{job['id']}", params={"space_id": other}),
        ]
    assert [r.status_code for r in attempts] == [404] * 5


def test_after_a_crash_no_job_stays_running(tmp_path):
    platform = Platform(tmp_path / "home")
    platform.start()
    try:
        with platform.admin() as admin:
            space = new_space(admin, "crash")
            job = upload(admin, space, tar_gz({"train.py": SLEEPER.encode()}), name="doomed").json()
            wait_for(admin, space, job["id"], ("running",))
            deadline = time.monotonic() + 20
            while not any(
                l.get("text", "").startswith("pid ")
                for l in admin.get(f"/train/{space}/{job['id']}/logs").json()["lines"]
            ):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            pid = pid_in(admin.get(f"/train/{space}/{job['id']}/logs").json()["lines"])
        platform.process.send_signal(signal.SIGKILL)
        platform.process.wait()
        platform.process = None
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid), "the job outlived its platform"
        platform.start()
        with platform.admin() as admin:
            info = admin.get(f"/train/{space}/{job['id']}").json()
        assert info["status"] == "failed" and info["reason"].startswith("interrupted"), info
    finally:
        platform.stop()


def test_the_cli_deploys_a_bundle_follows_it_and_fetches_what_it_made(
    training_platform, admin, space, tmp_path
):
    deployed = training_platform.cli("train", "deploy", "-d", str(IRIS), "--space", space)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    out = deployed.stdout
    assert "uploading bundle" in out and "test accuracy" in out and "metric accuracy = " in out
    assert "succeeded" in out and "checkpoint " in out
    job = out.split("job ", 1)[1].split()[0]

    listed = training_platform.cli("train", "list", "--space", space, "--json")
    assert job in [j["id"] for j in json.loads(listed.stdout)["data"]]
    info = json.loads(
        training_platform.cli(
            "train", "info", job, "--space", space, "--sort-by", "accuracy", "--json"
        ).stdout
    )
    checkpoint = info["models"]["data"][0]["id"]
    logs = training_platform.cli("train", "logs", job, "--space", space)
    assert "test accuracy" in logs.stdout
    provenance = json.loads(
        training_platform.cli("train", "provenance", checkpoint, "--space", space).stdout
    )
    assert provenance["training"]["id"] == job
    target = tmp_path / "bundle.tar.gz"
    got = training_platform.cli(
        "bundle", "get", job, "--space", space, "--model", "--no-data", "-o", str(target)
    )
    assert got.returncode == 0, got.stdout + got.stderr
    with tarfile.open(target) as tar:
        names = set(tar.getnames())
    assert (
        "train.py" in names and "model/iris/1/model.onnx" in names and "data/iris.csv" not in names
    )
    killed = training_platform.cli("train", "kill", job, "--space", space)
    assert killed.returncode == 1 and "Job is not running" in killed.stdout


@pytest.mark.parametrize(
    "projection",
    [
        "training_trainings",
        "training_checkpoints",
        "training_bundles",
        "training_provenance",
        "training_data_models",
        "training_connectors",
        "training_clusters",
    ],
)
def test_each_training_read_model_equals_its_rebuild_from_the_log(training_platform, projection):
    verified = training_platform.cli("projections", "verify", projection)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_graceful_stop_records_why_its_jobs_ended(tmp_path):
    platform = Platform(tmp_path / "home")
    platform.start()
    try:
        with platform.admin() as admin:
            space = new_space(admin, "graceful")
            job = upload(
                admin, space, tar_gz({"train.py": SLEEPER.encode()}), name="stopped"
            ).json()
            wait_for(admin, space, job["id"], ("running",))
        assert platform.stop() in (0, -signal.SIGTERM)
        platform.start()
        with platform.admin() as admin:
            info = admin.get(f"/train/{space}/{job['id']}").json()
        assert (
            info["status"] == "failed"
            and info["reason"] == "interrupted: the platform stopped while the training ran"
        )
    finally:
        platform.stop()
