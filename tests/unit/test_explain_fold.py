"""The explain projection, pure: the serving and training contexts' events fold into what a log
is explained with, and the revision in force at a log's time is found on the endpoint's
timeline (deploys, reconfigurations, rollbacks, rollouts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlplane.events import Envelope

from services.inference_deploy import events as deploy
from services.logs.explain import Explain, endpoint_at, explanation, revision_at
from services.training import events as training
from services.triton_manager import events as serving

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="microseconds")


def fold(timeline: list[tuple[float, object]]) -> dict[str, dict]:
    projection, docs = Explain(), {}
    for n, (seconds, event) in enumerate(timeline, 1):
        env = Envelope(
            f"ev-{n}", event.type_name, "s", event, n, n, T0 + timedelta(seconds=seconds)
        )
        key = projection.key(env)
        docs[key] = projection.evolve(docs.get(key), env)
    return docs


def spec(version: int, checkpoint: str, replicas: int = 1) -> dict:
    return {
        "model_id": "m1",
        "version": version,
        "served_name": f"m1-v{version}",
        "checkpoint_id": checkpoint,
        "replicas": replicas,
    }


def configured(seconds, revision, version, checkpoint, first=False, rollback_of=None, **kw):
    if first:
        event = deploy.EndpointDeployed(
            endpoint_id="ep",
            space_id="s1",
            name="iris",
            revision_id=f"r{revision}",
            revision=revision,
            spec=spec(version, checkpoint, **kw),
        )
    else:
        event = deploy.EndpointReconfigured(
            endpoint_id="ep",
            revision_id=f"r{revision}",
            revision=revision,
            spec=spec(version, checkpoint, **kw),
            rollback_of=rollback_of,
        )
    return (seconds, event)


def rolled(seconds, revision, version):
    return (
        seconds,
        deploy.EndpointRolledOut(
            endpoint_id="ep",
            revision_id=f"r{revision}",
            served_name=f"m1-v{version}",
            targets=["srv"],
        ),
    )


LINEAGE = [
    (0, training.TrainingCreated(training_id="t1", space_id="s1", name="iris", source="bundle",
                                 bundle_id="b1", code_hash="c", data_hash="d",
                                 parameters_hash="p", bundle_hash="h")),
    (1, training.BundleUploaded(bundle_id="b1", space_id="s1", code_hash="c", data_hash="d",
                                parameters_hash="p", bundle_hash="h", archive_sha256="a", manifest={}, files=1,
                                unpacked_bytes=1)),
    (2, training.CheckpointCreated(checkpoint_id="ck1", training_id="t1", space_id="s1",
                                   name="iris", version=1, format="joblib", uri="u1", key="k1",
                                   files={})),
    (3, training.CheckpointCreated(checkpoint_id="ck2", training_id="t1", space_id="s1",
                                   name="iris", version=2, format="joblib", uri="u2", key="k2",
                                   files={})),
    (4, serving.ModelCreated(model_id="m1", space_id="s1", name="iris")),
    (5, serving.ModelVersionAdded(model_id="m1", version=1, format="joblib", key="k", files={},
                                  size=1, config={}, checkpoint_id="ck1")),
    (6, serving.ModelVersionAdded(model_id="m1", version=2, format="joblib", key="k", files={},
                                  size=1, config={}, checkpoint_id="ck2")),
    (7, serving.ServerRegistered(server_id="srv", name="local", host="127.0.0.1", port=8080)),
]  # fmt: skip

TIMELINE = [
    *LINEAGE,
    configured(10, 1, 1, "ck1", first=True),
    rolled(12, 1, 1),
    configured(20, 2, 1, "ck1", replicas=2),  # same version: in force at once
    configured(30, 3, 2, "ck2"),  # a new version: in force once rolled out
    rolled(35, 3, 2),
    configured(40, 4, 1, "ck1", rollback_of="r1"),
    rolled(44, 4, 1),
]


def explained(seconds: float) -> dict:
    docs = fold(TIMELINE)
    log = {"id": "log", "time": at(seconds), "model": "m1", "version": "1"}
    endpoint = endpoint_at([docs["endpoint:ep"]], log["time"])
    return explanation(log, endpoint, docs)


def test_a_log_before_the_first_rollout_is_explained_by_the_revision_configured():
    revision, rollout = revision_at(fold(TIMELINE)["endpoint:ep"], at(11))
    assert (revision["revision"], rollout) == (1, None)


def test_a_change_that_keeps_the_version_is_in_force_at_once():
    assert explained(21)["endpoint"]["revision"] == 2


def test_a_new_version_is_in_force_only_once_rolled_out():
    assert explained(32)["endpoint"]["revision"] == 2
    assert explained(36)["endpoint"]["revision"] == 3
    assert explained(36)["checkpoint"]["id"] == "ck2"


def test_a_rollback_names_the_revision_it_rolled_back_to_and_its_checkpoint():
    found = explained(50)
    assert (found["endpoint"]["revision"], found["endpoint"]["rollback_of"]) == (4, "r1")
    assert found["checkpoint"]["id"] == "ck1" and found["model"]["version"] == "1"


def test_the_whole_lineage_is_named():
    found = explained(13)
    assert found["servers"] == [
        {"id": "srv", "name": "local", "host": "127.0.0.1", "port": 8080, "kind": "triton"}
    ]
    assert found["training"]["id"] == "t1"
    assert found["bundle"] == {
        "id": "b1",
        "code_hash": "c",
        "data_hash": "d",
        "parameters_hash": "p",
        "bundle_hash": "h",
    }
    assert found["matches_log"] is True


def test_a_log_whose_version_differs_from_the_revision_says_so():
    assert explained(36)["matches_log"] is False


def test_an_endpoint_name_unknown_at_the_time_explains_nothing_of_it():
    docs = fold(TIMELINE)
    assert endpoint_at([docs["endpoint:ep"]], at(5)) is None
    removed = fold([*TIMELINE, (60, deploy.EndpointRemoved(endpoint_id="ep"))])["endpoint:ep"]
    assert endpoint_at([removed], at(61)) is None and endpoint_at([removed], at(50)) is not None
