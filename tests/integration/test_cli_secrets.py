"""`mlplane events tail` on an embedded SQLite home: webhook secrets, cluster tokens, connector
credentials and token hashes are masked in every output (lines, CloudEvents JSON, rows shown as
stored), while the rest of each event, identifiers of secrets included, reads as before."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mlplane.cli import app
from mlplane.eventlog import Context
from mlplane.events import StoredEvent, registry
from mlplane.kernel import Kernel
from mlplane.redact import MASK, is_secret, masked
from mlplane.service import register_all_events
from mlplane.settings import Settings
from typer.testing import CliRunner

from services.gateway import events as gateway
from services.logs import events as logs
from services.training import events as training

SECRETS = {
    "webhook": "whsec_webhook-secret-in-clear-0001",
    "inbound": "whsec_inbound-secret-in-clear-0002",
    "cluster": "cluster-token-in-clear-0003",
    "s3": "s3-secret-access-key-in-clear-0004",
    "token_hash": "token-hash-in-clear-0005",
    "password_hash": "password-hash-in-clear-0006",
    "payload": "api-key-in-a-status-payload-0007",
    "url": "password-in-a-url-0008",
    "unknown": "secret-of-an-unknown-type-0009",
}
SPACE = "space-1"


async def _record(home: Path) -> None:
    register_all_events()
    kernel = Kernel.open(Settings(home=home))
    ctx = Context(actor="test", space=SPACE)
    events = [
        (
            "webhook:w1",
            logs.WebhookSubscribed(
                subscription_id="w1",
                space_id=SPACE,
                url="https://hooks.example.com/in",
                event_types=[],
                secret=SECRETS["webhook"],
                start_position=0,
            ),
        ),
        (
            "webhook-in:space-1",
            logs.InboundSecretRotated(space_id=SPACE, secret_id="sec-1", secret=SECRETS["inbound"]),
        ),
        (
            "cluster:c1",
            training.ClusterRegistered(
                space_id=SPACE,
                cluster_id="c1",
                name="gpu",
                manager_url=f"https://ops:{SECRETS['url']}@manager.example.com",
                ingress_url="https://ingress.example.com",
                token=SECRETS["cluster"],
            ),
        ),
        (
            "connector:k1",
            training.ConnectorCreated(
                connector_id="k1",
                space_id=SPACE,
                name="bucket",
                type="aws-s3",
                config={"bucket": "data", "region": "eu-west-1"},
                credentials={
                    "aws_access_key_id": "AKIAEXAMPLE",
                    "aws_secret_access_key": SECRETS["s3"],
                },
            ),
        ),
        (
            "user:u1",
            gateway.UserRegistered(
                user_id="u1", name="ann", password_hash=SECRETS["password_hash"]
            ),
        ),
        (
            "user:u1",
            gateway.TokenIssued(user_id="u1", token_id="t1", token_hash=SECRETS["token_hash"]),
        ),
        (
            "space:space-1",
            logs.EntityStatusReported(
                delivery_id="d1",
                object="space",
                id=SPACE,
                payload={"detail": {"apiKey": SECRETS["payload"], "tokens_in": 12}},
            ),
        ),
    ]
    for stream, event in events:
        await kernel.log.append(stream, [event], None, ctx)
    unknown = StoredEvent(
        "u-1",
        "legacy:1",
        "LegacyThingHappened",
        {"name": "old", "client_secret": SECRETS["unknown"]},
        time=datetime.now(UTC),
        meta={"space": SPACE},
    )
    await kernel.log.store.append("legacy:1", [unknown], None)
    await kernel.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLPLANE_HOME", str(tmp_path))
    asyncio.run(_record(tmp_path))
    return tmp_path


@pytest.mark.parametrize("flags", [[], ["--json"], ["--space", SPACE, "--json"]])
def test_events_tail_masks_every_secret(home: Path, flags: list[str]):
    result = CliRunner().invoke(app, ["events", "tail", *flags])
    assert result.exit_code == 0, result.output
    out = result.output
    for name, secret in SECRETS.items():
        assert secret not in out, name
    assert out.count(MASK) >= len(SECRETS) - 1  # a line of an unknown type shows no data
    for shown in ("sec-1", "t1", "manager.example.com", "tokens_in"):
        assert shown in out, shown


def test_the_json_lines_keep_their_shape_with_secrets_masked(home: Path):
    result = CliRunner().invoke(app, ["events", "tail", "--json"])
    lines = [json.loads(line) for line in result.output.splitlines()]
    by_type = {line["type"]: line["data"] for line in lines}
    assert by_type["WebhookSubscribed"]["secret"] == MASK
    assert by_type["ClusterRegistered"]["token"] == MASK
    assert by_type["ConnectorCreated"]["credentials"] == MASK
    assert by_type["ConnectorCreated"]["config"] == {"bucket": "data", "region": "eu-west-1"}
    assert by_type["LegacyThingHappened"] == {"name": "old", "client_secret": MASK}


def test_every_personal_field_of_every_event_is_a_secret_or_a_name():
    """Secrets are stored as personal fields: a new one the name rule misses fails here."""
    register_all_events()
    shown = {"name", "email", "first_name", "last_name"}
    for type_name in registry.types():
        for field in registry.model(type_name).personal:
            assert is_secret(field) or field in shown, (type_name, field)


def test_what_counts_as_a_secret():
    secret = ["secret", "token", "token_hash", "password_hash", "AWS_SECRET_ACCESS_KEY"]
    secret += ["apiKey", "x-api-key", "private_key", "credentials", "Authorization"]
    plain = ["secret_id", "token_id", "tokens_in", "aws_access_key_id", "key", "name", "url"]
    assert [s for s in secret if not is_secret(s)] == []
    assert [p for p in plain if is_secret(p)] == []
    assert masked({"token": None, "n": ["https://u:p@h/x", 1]}) == {
        "token": None,
        "n": [f"https://u:{MASK}@h/x", 1],
    }
