"""The data plane's routing tables, pure: folded from the endpoint and model-serving contexts'
events, they say where an endpoint is served without reading another service's tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlplane.events import Envelope, Event
from mlplane.projections import Projection
from mlplane.triton import oip_datatype

from services.gateway.dataplane.projections import Endpoints, ModelConfigs, Servers
from services.gateway.dataplane.tensors import (
    binary_inputs_to_json,
    encode_outputs,
    encode_tensor,
)
from services.inference_deploy import events as d
from services.inference_deploy.events import endpoint_id
from services.triton_manager import events as s

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EID = endpoint_id("s1", "iris")
SPEC = {"model_id": "m1", "version": 2, "served_name": "m1-v2"}


def fold(projection: Projection, *events: Event):
    doc = None
    for i, event in enumerate(events, start=1):
        env = Envelope(
            id=str(i),
            type=event.type_name,
            stream_id="x",
            data=event,
            version=i,
            position=i,
            time=NOW + timedelta(seconds=i),
        )
        doc = projection.evolve(doc, env)
    return doc


DEPLOYED = d.EndpointDeployed(
    endpoint_id=EID, space_id="s1", name="iris", revision_id="r1", revision=1, spec=SPEC
)
ROLLED_OUT = d.EndpointRolledOut(
    endpoint_id=EID, revision_id="r1", served_name="m1-v2", targets=["srv1"]
)


def test_a_deployed_endpoint_is_pending_until_its_rollout_reaches_a_server():
    assert fold(Endpoints(), DEPLOYED)["phase"] == "pending"
    doc = fold(Endpoints(), DEPLOYED, ROLLED_OUT)
    assert (doc["phase"], doc["targets"], doc["serving"]) == ("running", ["srv1"], "m1-v2")
    assert (doc["model_id"], doc["version"]) == ("m1", "2")


def test_a_reconfiguration_to_another_version_waits_for_its_rollout_and_keeps_serving():
    spec = {**SPEC, "version": 3, "served_name": "m1-v3"}
    moved = d.EndpointReconfigured(endpoint_id=EID, revision_id="r2", revision=2, spec=spec)
    doc = fold(Endpoints(), DEPLOYED, ROLLED_OUT, moved)
    assert (doc["phase"], doc["serving"], doc["version"]) == ("pending", "m1-v2", "3")


def test_a_failed_or_removed_endpoint_is_not_routed():
    failed = d.EndpointFailed(endpoint_id=EID, revision_id="r1", reason="no server")
    assert fold(Endpoints(), DEPLOYED, failed)["phase"] == "failed"
    assert fold(Endpoints(), DEPLOYED, ROLLED_OUT, d.EndpointRemoved(endpoint_id=EID)) is None


def test_a_server_is_ready_only_once_its_health_says_so_and_gone_once_deleted():
    registered = s.ServerRegistered(server_id="srv1", name="a", host="h", port=8000)
    assert fold(Servers(), registered)["ready"] is False
    healthy = s.ServerHealthChanged(server_id="srv1", live=True, ready=True)
    moved = s.ServerUpdated(server_id="srv1", port=9000)
    doc = fold(Servers(), registered, healthy, moved)
    assert (doc["host"], doc["port"], doc["kind"], doc["ready"]) == ("h", 9000, "triton", True)
    assert fold(Servers(), registered, s.ServerDeleted(server_id="srv1")) is None


def test_model_configs_follow_versions_added_and_deleted():
    created = s.ModelCreated(model_id="m1", space_id="s1", name="iris")

    def added(version: int) -> s.ModelVersionAdded:
        return s.ModelVersionAdded(
            model_id="m1",
            version=version,
            format="onnx",
            key="k",
            files={},
            size=1,
            config={"platform": f"p{version}"},
        )

    doc = fold(ModelConfigs(), created, added(1), added(2))
    assert doc["versions"] == {"1": {"platform": "p1"}, "2": {"platform": "p2"}}
    gone = s.ModelVersionDeleted(model_id="m1", version=1)
    assert fold(ModelConfigs(), created, added(1), added(2), gone)["versions"] == {
        "2": {"platform": "p2"}
    }


def test_config_data_types_have_their_open_inference_protocol_names():
    assert oip_datatype("TYPE_FP32") == "FP32"
    assert oip_datatype("TYPE_STRING") == "BYTES"


def test_binary_inputs_become_json_data_and_json_outputs_become_binary():
    raw = encode_tensor("FP32", [1.0, 2.0])
    head = {"inputs": [{"name": "x", "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}
    assert binary_inputs_to_json(head, raw)["inputs"][0] == {
        "name": "x",
        "datatype": "FP32",
        "data": [1.0, 2.0],
    }
    out, length = encode_outputs(
        {"outputs": [{"name": "y", "datatype": "FP32", "data": [3.0]}]}, True, set()
    )
    assert out[length:] == encode_tensor("FP32", [3.0])
