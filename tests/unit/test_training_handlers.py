"""The training context's decisions, pure: a state folded from past events, a command, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from mlplane.errors import Conflict, NotFound
from mlplane.events import Envelope, Event

from services.training import commands as c
from services.training import events as e
from services.training.handlers import (
    CLUSTERS,
    CONNECTORS,
    TRAININGS,
    JobNotRunning,
    decide,
)
from services.training.projections import Clusters, Connectors, Provenance

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RUNNER = "host:/home"


def envelopes(stream: str, events: list[Event]) -> list[Envelope]:
    return [
        Envelope(
            id=f"{stream}-{i}",
            type=ev.type_name,
            stream_id=stream,
            data=ev,
            version=i,
            position=i,
            time=NOW + timedelta(seconds=i),
            actor="u1",
            space="s1",
        )
        for i, ev in enumerate(events, start=1)
    ]


def training(*events: Event):
    return TRAININGS.fold(envelopes("training:t1", list(events)))


CREATED = e.TrainingCreated(
    training_id="t1",
    space_id="s1",
    name="iris",
    source="bundle",
    code_hash="c" * 64,
    data_hash="d" * 64,
    parameters_hash="p" * 64,
    bundle_hash="b" * 64,
    bundle_id="b1",
    entrypoint="train.py",
)
CLAIMED = e.TrainingBuildStarted(training_id="t1", runner=RUNNER)
STARTED = e.TrainingStarted(training_id="t1", runner=RUNNER, pid=42, environment={"python": "3.11"})
CHECKPOINT = c.RecordCheckpoint(
    training_id="t1",
    checkpoint_id="k1",
    name="iris",
    version=1,
    format="onnx",
    uri="file:///a/k1/iris",
    key="checkpoints/k1/iris",
    files={"1/model.onnx": "h"},
    metrics={"accuracy": 0.97},
)


def test_a_new_training_is_queued():
    state = training(*decide(training(), c.CreateTraining(**CREATED.model_dump())))
    assert (state.status, state.code_hash, state.created_by) == ("queued", "c" * 64, "u1")


def test_only_one_runner_claims_a_queued_training():
    assert decide(training(CREATED), c.ClaimTraining(training_id="t1", runner=RUNNER)) == [CLAIMED]
    assert (
        decide(training(CREATED, CLAIMED), c.ClaimTraining(training_id="t1", runner="other")) == []
    )


def test_a_training_starts_only_on_the_runner_that_built_it():
    command = c.StartTraining(training_id="t1", runner="other", pid=1)
    assert decide(training(CREATED, CLAIMED), command) == []
    state = training(
        CREATED,
        CLAIMED,
        *decide(training(CREATED, CLAIMED), command.model_copy(update={"runner": RUNNER})),
    )
    assert state.status == "running" and state.pid == 1


def test_a_checkpoint_carries_the_provenance_of_its_training():
    [event] = decide(training(CREATED, CLAIMED, STARTED), CHECKPOINT)
    assert event.provenance["code_hash"] == "c" * 64 and event.provenance["environment"] == {
        "python": "3.11"
    }
    assert event.space_id == "s1"


@pytest.mark.parametrize("status_events", [[], [CLAIMED], [CLAIMED, STARTED]])
def test_queued_building_and_running_trainings_can_be_killed(status_events):
    [killed] = decide(training(CREATED, *status_events), c.KillTraining(training_id="t1"))
    assert training(CREATED, *status_events, killed).status == "killed"


def test_killing_a_finished_training_says_it_is_not_running():
    done = e.TrainingSucceeded(training_id="t1")
    with pytest.raises(JobNotRunning) as caught:
        decide(training(CREATED, CLAIMED, STARTED, done), c.KillTraining(training_id="t1"))
    assert caught.value.status == 400 and caught.value.extra["error_code"] == "JOB_NOT_RUNNING"


def test_killing_an_unknown_training_says_job_not_found():
    with pytest.raises(NotFound) as caught:
        decide(training(), c.KillTraining(training_id="t9"))
    assert caught.value.extra["error_code"] == "JOB_NOT_FOUND"


def test_an_end_reported_after_a_kill_decides_nothing():
    killed = training(CREATED, CLAIMED, STARTED, e.TrainingKilled(training_id="t1"))
    assert decide(killed, c.FinishTraining(training_id="t1")) == []
    assert decide(killed, c.FailTraining(training_id="t1", reason="exit 1")) == []
    assert decide(killed, CHECKPOINT) == []


def test_restart_reconciliation_fails_only_what_this_runner_held():
    running = training(CREATED, CLAIMED, STARTED)
    assert (
        decide(running, c.FailTraining(training_id="t1", reason="interrupted", runner="other"))
        == []
    )
    [failed] = decide(
        running, c.FailTraining(training_id="t1", reason="interrupted", runner=RUNNER)
    )
    assert training(CREATED, CLAIMED, STARTED, failed).status == "failed"
    assert (
        decide(training(CREATED), c.FailTraining(training_id="t1", reason="x", runner=RUNNER)) == []
    )


def test_the_recipe_of_a_started_training_cannot_change_but_its_name_can():
    building = training(CREATED, CLAIMED)
    with pytest.raises(Conflict):
        decide(building, c.UpdateTraining(training_id="t1", configuration={"C": 2}))
    [renamed] = decide(building, c.UpdateTraining(training_id="t1", name="iris v2"))
    assert renamed.name == "iris v2" and renamed.configuration is None


def test_deleting_an_active_training_kills_it_first():
    events = decide(training(CREATED, CLAIMED, STARTED), c.DeleteTraining(training_id="t1"))
    assert [type(ev) for ev in events] == [e.TrainingKilled, e.TrainingDeleted]


def test_connector_credentials_never_reach_the_read_model():
    created = e.ConnectorCreated(
        connector_id="c1",
        space_id="s1",
        name="lake",
        type="aws-s3",
        config={"bucket": "b"},
        credentials={"secret_access_key": "s3cr3t"},
    )
    scanned = e.ConnectorScanned(connector_id="c1", files=[{"key": "a.csv"}])
    projection, doc = Connectors(), None
    for env in envelopes("connector:c1", [created, scanned]):
        doc = projection.evolve(doc, env)
    assert (
        "s3cr3t" not in str(doc)
        and doc["has_credentials"] is True
        and doc["files"] == [{"key": "a.csv"}]
    )
    state = CONNECTORS.fold(envelopes("connector:c1", [created]))
    assert state.credentials == {"secret_access_key": "s3cr3t"}


def test_a_cluster_token_is_write_only_and_one_cluster_per_space():
    registered = e.ClusterRegistered(
        space_id="s1",
        cluster_id="k1",
        name="prod",
        manager_url="https://k8s",
        ingress_url="https://in",
        token="k8s-s3cr3t",
    )
    doc = Clusters().evolve(None, envelopes("cluster:s1", [registered])[0])
    assert "k8s-s3cr3t" not in str(doc) and doc["has_token"] is True
    with pytest.raises(Conflict):
        decide(
            CLUSTERS.fold(envelopes("cluster:s1", [registered])),
            c.RegisterCluster(
                space_id="s1", cluster_id="k2", name="", manager_url="x", ingress_url="y"
            ),
        )


def test_provenance_gathers_later_users_of_a_checkpoint():
    [created] = decide(training(CREATED, CLAIMED, STARTED), CHECKPOINT)
    projection = Provenance()
    doc = projection.evolve(None, envelopes("training:t1", [created])[0])
    assert doc["bundle"]["code_hash"] == "c" * 64 and doc["checkpoint"]["metrics"] == {
        "accuracy": 0.97
    }
    assert "CheckpointCreated" in projection.handles


def test_provenance_counts_an_endpoint_whose_spec_names_the_checkpoint():
    from services.inference_deploy.events import EndpointDeployed as endpoint

    [created] = decide(training(CREATED, CLAIMED, STARTED), CHECKPOINT)
    deployed = endpoint.model_validate(
        {
            "endpoint_id": "e1",
            "space_id": "s1",
            "name": "iris",
            "revision_id": "r1",
            "revision": 1,
            "spec": {"checkpoint_id": "k1", "model_id": "m1", "version": 1},
        }
    )
    projection, doc = Provenance(), None
    for env in envelopes("x", [created, deployed]):
        assert projection.key(env) == "k1" and env.type in projection.handles
        doc = projection.evolve(doc, env)
    assert [use["type"] for use in doc["used_by"]] == ["EndpointDeployed"]
