"""Connectors and clusters calling out, without servers: a cluster token's transport is a
decision; a status is a word of the platform's own whatever the remote answered; a probe that
finds nothing new records nothing; a connector without credentials signs nothing."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from kubernetes.client.rest import ApiException
from mlplane.egress import BlockedAddress, Egress, InsecureTransport
from mlplane.errors import Invalid
from test_training_handlers import envelopes

from services.training import commands as c
from services.training import events as e
from services.training.adapters.kube import failure
from services.training.adapters.sources import S3Source
from services.training.handlers import CLUSTERS, CONNECTORS, decide
from services.training.projections import Clusters

BANNER = "internal-admin-console-v7"


def cluster(manager_url: str = "http://k8s.lab", **fields):
    registered = e.ClusterRegistered(
        space_id="s1",
        cluster_id="k1",
        name="lab",
        manager_url=manager_url,
        ingress_url="https://in",
        **fields,
    )
    return CLUSTERS.fold(envelopes("cluster:s1", [registered]))


def register(**fields) -> list:
    command = {"space_id": "s1", "cluster_id": "k1", "name": "", "ingress_url": "https://in"}
    return decide(CLUSTERS.fold([]), c.RegisterCluster(**{**command, **fields}))


def test_a_token_is_registered_for_plain_http_only_with_the_administrators_flag():
    with pytest.raises(Invalid):
        register(manager_url="http://k8s.lab", token="t")
    assert register(manager_url="https://k8s.lab", token="t")
    assert register(manager_url="http://k8s.lab")  # no token, nothing to leak
    [registered] = register(manager_url="http://k8s.lab", token="t", allow_insecure_http=True)
    assert registered.allow_insecure_http is True


def test_an_update_cannot_send_a_token_over_plain_http_without_the_flag():
    with pytest.raises(Invalid):
        decide(cluster(), c.UpdateCluster(space_id="s1", token="t"))
    with pytest.raises(Invalid):
        decide(
            cluster("https://k8s.lab", token="t"),
            c.UpdateCluster(space_id="s1", manager_url="http://k8s.lab"),
        )
    state = cluster(token="t", allow_insecure_http=True)
    with pytest.raises(Invalid):
        decide(state, c.UpdateCluster(space_id="s1", allow_insecure_http=False))
    assert decide(state, c.UpdateCluster(space_id="s1", manager_url="http://k8s.lab/v2"))


def test_a_cluster_probe_records_a_change_only():
    state = cluster()
    found = {"status": "ready", "nodes": [{"name": "n1"}], "resources": {"gpu": 1}}
    [changed] = decide(state, c.RecordClusterStatus(space_id="s1", **found))
    later = CLUSTERS.fold(envelopes("cluster:s1", [e.ClusterRegistered(**_registered()), changed]))
    assert later.status == "ready" and later.nodes == [{"name": "n1"}]
    assert decide(later, c.RecordClusterStatus(space_id="s1", **found)) == []
    doc = Clusters().evolve(None, envelopes("cluster:s1", [changed])[0])
    assert doc is not None


def _registered() -> dict:
    return {
        "space_id": "s1",
        "cluster_id": "k1",
        "name": "lab",
        "manager_url": "http://k8s.lab",
        "ingress_url": "https://in",
    }


def test_a_connector_probe_records_a_change_only_and_not_for_a_deleted_one():
    created = e.ConnectorCreated(
        connector_id="c1", space_id="s1", name="lake", type="aws-s3", config={}, status="ready"
    )
    state = CONNECTORS.fold(envelopes("connector:c1", [created]))
    assert decide(state, c.RecordConnectorStatus(connector_id="c1", status="ready")) == []
    [changed] = decide(state, c.RecordConnectorStatus(connector_id="c1", status="unreachable"))
    assert changed.status == "unreachable"
    gone = CONNECTORS.fold(
        envelopes("connector:c1", [created, e.ConnectorDeleted(connector_id="c1")])
    )
    assert decide(gone, c.RecordConnectorStatus(connector_id="c1", status="unreachable")) == []


def s3_error(http: int, code: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": BANNER},
            "ResponseMetadata": {"HTTPStatusCode": http, "HTTPHeaders": {"server": BANNER}},
        },
        "ListObjectsV2",
    )


def s3_source(credentials=None) -> S3Source:
    config = {"bucket": "lake", "endpoint_url": "https://s3.example.com"}
    return S3Source(config, credentials, Egress())


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (s3_error(404, "404"), "refused by the endpoint"),
        (s3_error(404, "NoSuchBucket"), "refused by the endpoint"),
        (s3_error(500, "InternalError"), "refused by the endpoint"),
        (s3_error(403, "AccessDenied"), "credentials rejected"),
        (s3_error(400, "InvalidAccessKeyId"), "credentials rejected"),
        (EndpointConnectionError(endpoint_url=f"http://{BANNER}"), "unreachable"),
        (
            BlockedAddress(BANNER),
            "not allowed: its address is outside the networks the platform may call",
        ),
    ],
)
async def test_an_s3_failure_is_told_in_the_platforms_words(error, status):
    def fail(*args):
        raise error

    source = s3_source()
    with pytest.raises(Exception) as raised:
        await source._call(fail)
    assert raised.value.reason == status and raised.value.detail.endswith(status)
    assert BANNER not in raised.value.detail


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ApiException(status=401, reason=BANNER), "credentials rejected"),
        (ApiException(status=404, reason=BANNER), "refused by the endpoint"),
        (AttributeError(BANNER), "refused by the endpoint"),
        (ConnectionError(BANNER), "unreachable"),
        (InsecureTransport(BANNER), "not allowed: a token is sent only over https"),
    ],
)
def test_a_cluster_failure_is_told_in_the_platforms_words(error, status):
    assert failure(error) == status


class Sent(Exception):
    """Raised instead of sending, with the request the client would have sent."""


def authorization(source: S3Source) -> str | None:
    def capture(request, **kwargs):
        raise Sent(request.headers.get("Authorization"))

    source.client.meta.events.register("before-send.s3", capture)
    with pytest.raises(Sent) as sent:
        source.client.list_objects_v2(Bucket="lake")
    return sent.value.args[0]


def test_a_connector_without_credentials_reads_anonymously():
    """Never with the platform's own AWS identity (environment, profile, instance role)."""
    assert authorization(s3_source()) is None
    signed = authorization(s3_source({"access_key_id": "a", "secret_access_key": "b"}))
    assert signed is not None and signed.startswith(b"AWS4-HMAC-SHA256")
