"""Explain on the embedded platform with its managed model server: two iris trainings give two
checkpoints; an endpoint serves the first, is removed and deployed again from the second, then
rolled back to its first revision. Each inference log is explained by the revision and the
checkpoint that answered it, over the API and with `mlplane explain`."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

from launcher import new_space

IRIS = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "iris"
ROWS = [[5.1, 3.5, 1.4, 0.2], [5.7, 2.8, 4.1, 1.3], [7.7, 3.0, 6.1, 2.3]]
NAME = "iris-explained"


def until(predicate, timeout: float = 240.0, what: str = "condition"):
    """Poll with a deadline generous for a loaded two-core machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := predicate():
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} not met in time")


def bundle() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(IRIS, arcname=".")
    return buffer.getvalue()


def trained(client, space: str, job: str) -> str:
    def done():
        info = client.get(f"/train/{space}/{job}").json()
        return info["status"] in ("succeeded", "failed") and info

    info = until(done, what=f"training {job}")
    assert info["status"] == "succeeded", info
    return info["models"]["data"][0]["id"]


def serving(client, space: str, checkpoint: str) -> dict:
    """The endpoint, once running the checkpoint's model."""

    def running():
        for item in client.get(f"/inference/{space}").json()["data"]:
            if item["name"] == NAME and item["phase"] == "running" and item["targets"]:
                return item["checkpoint_id"] == checkpoint and item
        return None

    return until(running, what=f"{NAME} serving {checkpoint}")


def infer_through(client, space: str, model_id: str, tag: str) -> dict:
    """Infer until the data plane has routed to `model_id` (its route cache lags a rollout by a
    second), and return that inference's log."""
    body = {
        "inputs": [
            {
                "name": "X",
                "shape": [3, 4],
                "datatype": "FP32",
                "data": [x for row in ROWS for x in row],
            },
        ]
    }
    attempt = 0

    def logged():
        nonlocal attempt
        attempt += 1
        correlation = f"{tag}-{attempt}"
        answer = client.post(
            f"/v2/models/{NAME}/infer", json=body, headers={"X-Correlation-ID": correlation}
        )
        if answer.status_code != 200:
            return None
        params = {"correlation_id": correlation}
        found = until(
            lambda: client.get("/api/v1/inference-logs", params=params).json()["data"],
            timeout=60,
            what=f"the log of {correlation}",
        )
        return found[0]["model"] == model_id and found[0]

    return until(logged, what=f"an inference answered by {model_id}")


def test_each_log_is_explained_by_the_revision_and_checkpoint_that_answered_it(serving_platform):
    with serving_platform.admin() as admin:
        space = new_space(admin, "explained")
    client = serving_platform.client(serving_platform.admin_token, **{"X-Space-ID": space})
    jobs = [client.post(f"/train/{space}", content=bundle()).json()["id"] for _ in range(2)]
    first, second = (trained(client, space, job) for job in jobs)

    deployed = client.post(f"/inference/{space}/{first}", params={"name": NAME})
    assert deployed.status_code == 201, deployed.text
    one = serving(client, space, first)
    log_one = infer_through(client, space, one["model_id"], "one")

    assert client.delete(f"/endpoint/{NAME}").status_code == 200
    again = client.post(f"/inference/{space}/{second}", params={"name": NAME})
    assert again.status_code == 201, again.text
    two = serving(client, space, second)
    log_two = infer_through(client, space, two["model_id"], "two")

    back = client.post(f"/inference/{space}/{NAME}/rollback", json={"revision": "1"})
    assert back.status_code == 200, back.text
    three = serving(client, space, first)
    log_three = infer_through(client, space, three["model_id"], "three")

    def explained(log: dict) -> dict:
        answer = client.get(f"/api/v1/inference-logs/{log['id']}/explain")
        assert answer.status_code == 200, answer.text
        return answer.json()

    expected = [
        (log_one, 1, None, first),
        (log_two, 2, None, second),
        (log_three, 3, one["revision_id"], first),
    ]
    for log, revision, rollback_of, checkpoint in expected:
        found = explained(log)
        assert found["endpoint"]["name"] == NAME
        assert (found["endpoint"]["revision"], found["endpoint"]["rollback_of"]) == (
            revision,
            rollback_of,
        ), found
        assert found["checkpoint"]["id"] == checkpoint, found
        assert found["model"]["id"] == log["model"] and found["matches_log"] is True
        assert found["servers"] and found["servers"][0]["host"]
        assert found["training"]["id"] in jobs
        assert all(found["bundle"][h] for h in ("code_hash", "data_hash", "bundle_hash"))

    with serving_platform.admin() as admin:
        other = new_space(admin, "not-explained")
    foreign = client.get(
        f"/api/v1/inference-logs/{log_one['id']}/explain", headers={"X-Space-ID": other}
    )
    assert foreign.status_code == 404

    cli = serving_platform.cli("explain", log_three["id"], "--space", space)
    assert cli.returncode == 0, cli.stderr
    assert "revision 3" in cli.stdout and first in cli.stdout
    client.close()
