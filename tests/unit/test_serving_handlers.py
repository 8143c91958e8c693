"""The serving decisions, pure: placements, observations, drift, endpoint revisions and rollback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from mlplane.errors import Conflict, NotFound
from mlplane.events import Envelope

from services.inference_deploy import commands as dc
from services.inference_deploy.handlers import ENDPOINTS
from services.inference_deploy.handlers import decide as decide_endpoint
from services.triton_manager import commands as c
from services.triton_manager import events as e
from services.triton_manager.handlers import SERVERS, decide, served_name


def envelopes(stream: str, events) -> list[Envelope]:
    return [
        Envelope(
            id=str(i),
            type=ev.type_name,
            stream_id=stream,
            data=ev,
            version=i,
            position=i,
            time=datetime.now(UTC),
        )
        for i, ev in enumerate(events, 1)
    ]


def run(aggregate, decider, commands, state=None):
    state = state if state is not None else aggregate.initial
    for command in commands:
        state = aggregate.fold(envelopes("s", decider(state, command)), state)
    return state


SERVER = c.RegisterServer(
    server_id="srv", name="local", host="127.0.0.1", port=8080, kind="mlserver"
)
NAME = served_name("m1", 1)
PLACE = c.RequestPlacement(
    server_id="srv", served_name=NAME, model_id="m1", version=1, space_id="s", holder="endpoint:a"
)


def test_a_version_loaded_once_and_gone_is_drift_and_a_stray_platform_model_too():
    state = run(SERVERS, decide, [SERVER, PLACE, c.RecordLoaded(server_id="srv", served_name=NAME)])
    events = decide(
        state, c.ObserveModels(server_id="srv", loaded=["mlp-stray-1", "someone-elses"])
    )
    drift = [ev for ev in events if isinstance(ev, e.ServerDriftDetected)]
    assert drift == [
        e.ServerDriftDetected(server_id="srv", missing=[NAME], unexpected=["mlp-stray-1"])
    ]


def test_a_placement_still_loading_is_not_drift():
    state = run(SERVERS, decide, [SERVER, PLACE])
    events = decide(state, c.ObserveModels(server_id="srv", loaded=[]))
    assert not [ev for ev in events if isinstance(ev, e.ServerDriftDetected)]


def test_a_new_holder_of_a_loaded_version_is_told_at_once():
    state = run(SERVERS, decide, [SERVER, PLACE, c.RecordLoaded(server_id="srv", served_name=NAME)])
    events = decide(state, PLACE.model_copy(update={"holder": "endpoint:b"}))
    assert [type(ev) for ev in events] == [e.PlacementRequested, e.ModelVersionLoaded]
    assert events[1].holders == ["endpoint:b"]


def test_health_is_recorded_only_when_it_changes():
    state = run(SERVERS, decide, [SERVER, c.RecordHealth(server_id="srv", live=True, ready=True)])
    assert decide(state, c.RecordHealth(server_id="srv", live=True, ready=True)) == []
    assert decide(state, c.RecordHealth(server_id="srv", live=False, ready=False, error="down"))


def test_placing_on_an_unknown_server_is_not_found():
    with pytest.raises(NotFound):
        decide(SERVERS.initial, PLACE)


SPEC = {"model_id": "m1", "version": 1, "served_name": NAME, "replicas": 1}


def test_every_change_is_a_revision_and_rollback_restores_an_earlier_one():
    deploy = dc.DeployEndpoint(
        endpoint_id="ep", space_id="s", name="iris", revision_id="r1", spec=SPEC
    )
    state = run(
        ENDPOINTS,
        decide_endpoint,
        [
            deploy,
            dc.ReconfigureEndpoint(endpoint_id="ep", revision_id="r2", changes={"replicas": 2}),
        ],
    )
    assert state.revision == 2 and state.spec["replicas"] == 2
    assert (
        decide_endpoint(
            state,
            dc.ReconfigureEndpoint(endpoint_id="ep", revision_id="rx", changes={"replicas": 2}),
        )
        == []
    )
    state = run(
        ENDPOINTS,
        decide_endpoint,
        [dc.RollBackEndpoint(endpoint_id="ep", revision_id="r3", to_revision="1")],
        state,
    )
    assert state.revision == 3 and state.spec == SPEC and state.revisions[-1]["rollback_of"] == "r1"
    with pytest.raises(Conflict):
        decide_endpoint(
            state, dc.RollBackEndpoint(endpoint_id="ep", revision_id="r4", to_revision="r1")
        )
    with pytest.raises(Conflict):
        decide_endpoint(state, deploy)


def test_a_rollout_of_an_older_revision_changes_nothing():
    state = run(
        ENDPOINTS,
        decide_endpoint,
        [
            dc.DeployEndpoint(
                endpoint_id="ep", space_id="s", name="iris", revision_id="r1", spec=SPEC
            )
        ],
    )
    assert (
        decide_endpoint(
            state, dc.RollOutEndpoint(endpoint_id="ep", served_name="mlp-old-1", targets=["srv"])
        )
        == []
    )
