"""Webhooks out, to a real HTTP server on this machine: every delivery arrives once, in stream
order and signed, across a receiver outage; what exhausts its retries is dead-lettered and can be
redelivered; a subscription can start in the past; private addresses need an administrator, at
registration and again when each delivery connects.

The receiver listens on 127.0.0.1, so the tests that deliver allow loopback (MLPLANE_EGRESS_ALLOW)
explicitly; by default it is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from logs_platform import Platform, Receiver, platform
from mlplane.eventlog import Context
from mlplane.events import Event, registry

from services.logs.events import WebhookSubscribed
from services.logs.projections import SUBSCRIPTIONS as SUBSCRIPTION_DOCS
from services.logs.signing import verify

LOOPBACK = "127.0.0.1/32"
FAST_RETRIES = {
    "webhook_attempts": "6",
    "webhook_backoff_s": "0.05",
    "webhook_backoff_max_s": "0.8",
}


@registry.register("ProbeRecorded", topic="probe")
class ProbeRecorded(Event):
    """An event of a test-only context, on streams of the test's choosing."""

    seq: int
    poison: bool = False


async def record(p: Platform, space: str, stream: str, seq: int, poison: bool = False) -> None:
    await p.kernel.log.append(
        stream, [ProbeRecorded(seq=seq, poison=poison)], None, Context(space=space)
    )


async def subscribe(p: Platform, space: str, url: str, **body) -> dict:
    response = await p.client.post(
        "/api/v1/webhooks/subscriptions",
        headers={"X-Space-ID": space},
        json={"url": url, "event_types": ["Probe*"], **body},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def until(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def running(tmp_path, monkeypatch) -> AsyncIterator[Platform]:
    monkeypatch.setenv("MLPLANE_EGRESS_ALLOW", LOOPBACK)
    async with platform(tmp_path, monkeypatch, **FAST_RETRIES) as p:
        yield p


@pytest.fixture
def receiver() -> Receiver:
    r = Receiver()
    yield r
    r.down()


async def test_deliveries_survive_an_outage_once_each_in_order_and_signed(
    running: Platform, receiver: Receiver
):
    space, elsewhere = await running.new_space("hooks"), await running.new_space("elsewhere")
    sub = await subscribe(running, space, receiver.url)
    streams = [f"probe:{i}" for i in range(3)]
    for seq in range(12):  # the receiver is down: deliveries are being retried meanwhile
        await record(running, space, streams[seq % 3], seq)
        await record(running, elsewhere, "probe:other", seq)
    await asyncio.sleep(0.6)
    receiver.up()

    async def all_arrived() -> bool:
        return len(receiver.received) >= 12

    await until(all_arrived)
    await asyncio.sleep(0.3)  # nothing more is on its way
    got = receiver.received
    assert sorted(r.data["seq"] for r in got) == list(range(12))
    assert len({r.headers["webhook-id"] for r in got}) == 12
    for stream in streams:
        versions = [
            int(r.headers["ce-streamversion"]) for r in got if r.headers["ce-subject"] == stream
        ]
        assert versions == sorted(versions) == list(range(1, 5))
    for r in got:
        verify(
            sub["secret"],
            r.headers["webhook-id"],
            r.headers["webhook-timestamp"],
            r.headers["webhook-signature"],
            r.body,
            now=time.time(),
            tolerance=60,
        )
        assert r.headers["ce-type"] == "ProbeRecorded" and r.headers["ce-space"] == space
        assert (
            r.headers["ce-specversion"] == "1.0" and r.headers["content-type"] == "application/json"
        )


async def test_what_exhausts_its_retries_is_dead_lettered_and_can_be_redelivered(
    running: Platform, receiver: Receiver
):
    space = await running.new_space("hooks")
    receiver.refuse = lambda data: data.get("poison", False)
    receiver.up()
    sub = await subscribe(running, space, receiver.url)
    for seq in range(6):
        await record(running, space, "probe:1", seq, poison=seq in (1, 4))
    url = f"/api/v1/webhooks/subscriptions/{sub['id']}/dead-letters"
    headers = {"X-Space-ID": space}

    async def two_dead() -> bool:
        found = await running.client.get(url, headers=headers)
        return found.json()["count"] == 2

    await until(two_dead)
    letters = (await running.client.get(url, headers=headers)).json()["data"]
    assert [r.data["seq"] for r in receiver.received] == [0, 2, 3, 5]
    assert {d["status"] for d in letters} == {"dead"} and {d["attempts"] for d in letters} == {6}
    assert all(d["error"].startswith("HTTP 500") for d in letters)

    receiver.refuse = lambda data: False
    first = min(letters, key=lambda d: d["position"])
    redeliver = await running.client.post(f"{url}/{first['event_id']}/redeliver", headers=headers)
    assert redeliver.status_code == 202, redeliver.text

    async def redelivered() -> bool:
        found = (await running.client.get(url, headers=headers)).json()["data"]
        return any(d["status"] == "redelivered" for d in found)

    await until(redelivered)
    assert [r.data["seq"] for r in receiver.received] == [0, 2, 3, 5, 1]
    again = await running.client.post(f"{url}/{first['event_id']}/redeliver", headers=headers)
    assert again.status_code == 409
    listed = (
        await running.client.get(f"/api/v1/webhooks/subscriptions/{sub['id']}", headers=headers)
    ).json()
    assert listed["dead_letters"] == 1 and listed["position"] >= first["position"]


async def test_a_subscription_can_start_in_the_past(running: Platform, receiver: Receiver):
    space = await running.new_space("hooks")
    await record(running, space, "probe:old", 0)
    cutoff_time = (await running.kernel.log.read_stream("probe:old"))[0].time
    await asyncio.sleep(0.01)
    await record(running, space, "probe:old", 1)
    receiver.up()
    await subscribe(running, space, receiver.url, start={"time": cutoff_time.isoformat()})
    await record(running, space, "probe:new", 2)

    async def three() -> bool:
        return len(receiver.received) >= 3

    await until(three)
    assert [r.data["seq"] for r in receiver.received] == [0, 1, 2]


REFUSED = (
    "http://127.0.0.1:9/hook",
    "http://10.1.2.3/hook",
    "http://169.254.169.254/latest",
    "http://100.100.100.200/latest/meta-data/",
    "http://100.64.0.1/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[2002:a00:1::]/",
    "http://[fec0::1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://localhost/hook",
    "ftp://example.com/x",
    "http://u:p@example.com/",
)


async def test_private_addresses_need_an_administrator(tmp_path, monkeypatch):
    monkeypatch.delenv("MLPLANE_EGRESS_ALLOW", raising=False)
    async with platform(tmp_path, monkeypatch) as p:
        space = await p.new_space()
        headers = {"X-Space-ID": space}
        for url in REFUSED:
            response = await p.client.post(
                "/api/v1/webhooks/subscriptions", headers=headers, json={"url": url}
            )
            assert response.status_code == 422, (url, response.text)

        monkeypatch.setattr(p.kernel.settings, "egress_allow", LOOPBACK)
        sub = await subscribe(p, space, "http://127.0.0.1:9/hook")
        monkeypatch.setattr(p.kernel.settings, "egress_allow", "")
        for url in REFUSED:
            response = await p.client.patch(
                f"/api/v1/webhooks/subscriptions/{sub['id']}", headers=headers, json={"url": url}
            )
            assert response.status_code == 422, (url, response.text)


async def test_a_delivery_to_a_name_re_pointed_at_a_private_address_is_refused(
    tmp_path, monkeypatch, receiver: Receiver
):
    """DNS rebinding: the name was public when the subscription was made, loopback since."""
    monkeypatch.delenv("MLPLANE_EGRESS_ALLOW", raising=False)
    receiver.up()
    answers = {"hooks.example": "93.184.215.14"}
    real = asyncio.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self, host, port, *args, **kwargs):
        return await real(self, answers.get(host, host), port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    async with platform(tmp_path, monkeypatch, webhook_attempts="1") as p:
        space = await p.new_space("hooks")
        sub = await subscribe(p, space, f"http://hooks.example:{receiver.port}/hooks")
        answers["hooks.example"] = "127.0.0.1"
        await record(p, space, "probe:1", 0)
        url = f"/api/v1/webhooks/subscriptions/{sub['id']}/dead-letters"

        async def dead() -> bool:
            found = await p.client.get(url, headers={"X-Space-ID": space})
            return found.json()["count"] == 1

        await until(dead)
        [letter] = (await p.client.get(url, headers={"X-Space-ID": space})).json()["data"]
    assert receiver.received == [] and "BlockedAddress" in letter["error"]


async def test_a_subscription_resumes_where_it_stopped_after_a_restart(
    tmp_path, monkeypatch, receiver: Receiver
):
    monkeypatch.setenv("MLPLANE_EGRESS_ALLOW", LOOPBACK)
    receiver.up()
    async with platform(tmp_path, monkeypatch, **FAST_RETRIES) as first:
        space = await first.new_space("hooks")
        await subscribe(first, space, receiver.url)
        for seq in range(3):
            await record(first, space, "probe:1", seq)

        async def three() -> bool:
            return len(receiver.received) >= 3

        await until(three)
    async with platform(tmp_path, monkeypatch, **FAST_RETRIES) as second:
        for seq in range(3, 6):
            await record(second, space, "probe:1", seq)

        async def six() -> bool:
            return len(receiver.received) >= 6

        await until(six)
        await asyncio.sleep(0.3)
    assert [r.data["seq"] for r in receiver.received] == list(range(6))


async def test_a_start_position_beyond_the_head_is_refused_naming_the_field(running: Platform):
    space = await running.new_space("hooks")
    head = await running.kernel.log.store.head_position()
    url, headers = "/api/v1/webhooks/subscriptions", {"X-Space-ID": space}
    for position in (head + 1, 2**63, 2**70):
        body = {"url": "http://127.0.0.1:9/hooks", "start": {"position": position}}
        response = await running.client.post(url, headers=headers, json=body)
        assert response.status_code == 422, (position, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        fields = [problem.get("field")] + [e["field"] for e in problem.get("errors", [])]
        assert "start.position" in fields, problem
    sub = await subscribe(running, space, "http://127.0.0.1:9/hooks", start={"position": head})
    assert sub["start_position"] == head
    patched = await running.client.patch(
        f"{url}/{sub['id']}", headers=headers, json={"start": {"position": 2**70}}
    )
    assert patched.status_code == 422 and patched.json()["errors"][0]["field"] == "start"


async def test_a_recorded_start_beyond_any_position_waits_without_failing(
    running: Platform, receiver: Receiver, caplog
):
    """A subscription recorded before starts were bounded (straight into the log here)."""
    space = await running.new_space("hooks")
    subscribed = WebhookSubscribed(
        subscription_id="huge-start",
        space_id=space,
        url=receiver.url,
        event_types=[],
        secret="s" * 32,
        start_position=2**70,
    )
    await running.kernel.log.append("webhook:huge-start", [subscribed], None, Context(space=space))
    await running.kernel.catch_up(SUBSCRIPTION_DOCS)
    await asyncio.sleep(1.5)  # the dispatcher starts its cursor within half a second
    failures = [r for r in caplog.records if r.name == "mlplane.logs.webhooks"]
    assert not failures, caplog.text


async def test_a_subscription_has_a_history_that_never_shows_its_secret(running: Platform):
    space, other = await running.new_space("mine"), await running.new_space("theirs")
    chosen = "whsec_" + "k" * 40
    sub = await subscribe(running, space, "http://127.0.0.1:9/hook", secret=chosen)
    generated = await subscribe(running, space, "http://127.0.0.1:9/other")
    path = f"/api/v1/webhooks/subscriptions/{sub['id']}"
    mine = {"X-Space-ID": space}
    changed = await running.client.patch(path, headers=mine, json={"description": "second"})
    assert changed.status_code == 200, changed.text
    first = await running.client.get(path, params={"version": 1}, headers=mine)
    now = await running.client.get(path, headers=mine)
    history = await running.client.get(f"{path}/history", headers=mine)
    other_history = await running.client.get(
        f"/api/v1/webhooks/subscriptions/{generated['id']}/history", headers=mine
    )
    assert (first.json()["description"], now.json()["description"]) == ("", "second")
    assert [c["type"] for c in history.json()["data"]] == [
        "WebhookSubscribed",
        "WebhookSubscriptionUpdated",
    ]
    for answer in (first, now, history, other_history):
        assert answer.status_code == 200, answer.text
        assert chosen not in answer.text and generated["secret"] not in answer.text
    for foreign in (path, f"{path}/history"):
        response = await running.client.get(foreign, headers={"X-Space-ID": other})
        assert response.status_code == 404, foreign
