"""The serving workers' policies, pure: which placements the fleet requests and releases, which
checkpoints the registry registers, and what a fleet outcome changes of an endpoint."""

from __future__ import annotations

from services.inference_deploy import commands as dc
from services.inference_deploy import events as d
from services.inference_deploy.handlers import EndpointState
from services.inference_deploy.workers import policy, serve_from
from services.triton_manager import commands as c
from services.triton_manager import events as m
from services.triton_manager.events import checkpoint_model_id, served_name
from services.triton_manager.workers import ImportCheckpoint, import_policy, placements

NAME = served_name("m1", 1)


def server(sid: str, *, ready: bool = True, placements: dict | None = None, **labels) -> dict:
    return {
        "id": sid,
        "name": sid,
        "kind": "mlserver",
        "labels": labels,
        "ready": ready,
        "managed": False,
        "placements": placements or {},
    }


def demand(**changes) -> dict:
    base = {
        "endpoint_id": "e1",
        "served_name": NAME,
        "model_id": "m1",
        "version": 1,
        "space_id": "s1",
        "replicas": 1,
        "selector": {},
        "runtime": "local://",
        "rolled_out": "",
    }
    return {**base, **changes}


def test_a_demand_is_placed_on_a_ready_server_matching_its_selector():
    servers = [server("a", ready=False), server("b", zone="x"), server("c", zone="y")]
    commands = placements([demand(selector={"zone": "y"})], servers, {NAME})
    assert commands == [
        c.RequestPlacement(
            server_id="c",
            served_name=NAME,
            model_id="m1",
            version=1,
            space_id="s1",
            holder="endpoint:e1",
        )
    ]


def test_a_demand_whose_version_is_not_registered_yet_waits():
    assert placements([demand()], [server("a")], registered=set()) == []


def test_placements_of_a_gone_endpoint_or_an_older_rolled_out_version_are_released():
    old = served_name("m1", 0)
    held = {old: {"holders": ["endpoint:e1"]}, NAME: {"holders": ["endpoint:e1"]}}
    gone = {NAME: {"holders": ["endpoint:e9", "admin"]}}
    servers = [server("a", placements=held), server("b", placements=gone)]
    commands = placements([demand(rolled_out=NAME)], servers, {NAME})
    assert commands == [
        c.ReleasePlacement(server_id="a", served_name=old, holder="endpoint:e1"),
        c.ReleasePlacement(server_id="b", served_name=NAME, holder="endpoint:e9"),
    ]


def deployed(spec: dict) -> d.EndpointDeployed:
    return d.EndpointDeployed(
        endpoint_id="e1", space_id="s1", name="n", revision_id="r1", revision=1, spec=spec
    )


def test_an_endpoint_naming_an_unregistered_checkpoint_has_it_registered_once():
    model = checkpoint_model_id("ck1")
    event = deployed({"checkpoint_id": "ck1", "model_id": model})
    assert import_policy(event, registered=False) == [ImportCheckpoint("ck1", model)]
    assert import_policy(event, registered=True) == []


def test_an_endpoint_of_a_registered_model_made_from_a_checkpoint_imports_nothing():
    assert import_policy(deployed({"checkpoint_id": "ck1", "model_id": "m1"}), False) == []


def endpoint(**changes) -> EndpointState:
    base = {
        "id": "e1",
        "space_id": "s1",
        "name": "n",
        "phase": "pending",
        "spec": {"served_name": NAME, "model_id": "m1"},
        "revision_id": "r1",
        "revision": 1,
    }
    return EndpointState(**{**base, **changes})


def loaded(sid: str, name: str = NAME) -> m.ModelVersionLoaded:
    return m.ModelVersionLoaded(server_id=sid, served_name=name, model_id="m1", version=1)


def test_a_loaded_version_adds_its_server_to_the_endpoint_serving_it():
    assert policy(loaded("a"), endpoint()) == [
        dc.RollOutEndpoint(endpoint_id="e1", served_name=NAME, targets=["a"])
    ]
    running = endpoint(phase="running", serving=NAME, targets=["a"])
    assert policy(loaded("a"), running) == []
    assert policy(loaded("a", served_name("m1", 2)), endpoint()) == []


def test_a_failed_load_fails_the_endpoint_only_when_nothing_else_serves_it():
    failed = m.ModelVersionLoadFailed(
        server_id="a", served_name=NAME, model_id="m1", version=1, error="bad model"
    )
    assert policy(failed, endpoint()) == [dc.FailEndpoint(endpoint_id="e1", reason="bad model")]
    assert policy(failed, endpoint(serving=NAME, targets=["b"])) == []


def test_an_unloaded_version_leaves_the_targets_that_held_it():
    gone = m.ModelVersionUnloaded(server_id="a", served_name=NAME)
    state = endpoint(phase="running", serving=NAME, targets=["a", "b"])
    assert policy(gone, state) == [
        dc.RollOutEndpoint(endpoint_id="e1", served_name=NAME, targets=["b"])
    ]


def test_a_checkpoint_the_registry_could_not_register_fails_its_endpoints():
    failed = m.ModelImportFailed(model_id="m1", checkpoint_id="ck1", space_id="s1", error="gone")
    (command,) = policy(failed, endpoint())
    assert isinstance(command, dc.FailEndpoint) and "gone" in command.reason


def test_a_version_already_loaded_somewhere_is_served_from_there_at_once():
    servers = [
        {"id": "b", "ready": True, "loaded": [NAME]},
        {"id": "a", "ready": False, "loaded": [NAME]},
    ]
    assert serve_from(endpoint(), servers) == [
        dc.RollOutEndpoint(endpoint_id="e1", served_name=NAME, targets=["b"])
    ]
    assert serve_from(endpoint(serving=NAME), servers) == []


def test_a_model_is_ready_where_the_servers_projection_says_its_version_is_loaded():
    from services.triton_manager.schemas import holding_of, model_public

    record = {"format": "onnx", "config": {}, "files": {}, "size": 1, "key": "k", "created_at": ""}
    doc = {
        "id": "m1",
        "name": "iris",
        "description": "",
        "space_id": "s1",
        "versions": {"1": record, "2": record},
        "created_at": "",
        "updated_at": "",
    }
    servers = [{"id": "a", "host": "h", "port": 1, "loaded": [NAME]}, {"id": "b", "loaded": []}]
    public = model_public(doc, holding_of(servers))
    assert [v.state for v in public.versions] == ["READY", "UNAVAILABLE"]
    assert [(p.id, p.version) for p in public.tritons] == [("a", 1)] and public.state == "READY"
