"""The logs service's decisions on status updates, pure: an update about an entity of the
sender's space is recorded once per delivery; any other is the same NotFound."""

from __future__ import annotations

import pytest
from mlplane.errors import NotFound

from services.logs import commands as c
from services.logs.handlers import (
    COMMAND_HANDLERS,
    STATUS_REPORTS,
    StatusReportState,
    report_status,
)


def update(**fields) -> c.ReportStatus:
    base = {"space_id": "s1", "delivery_id": "d1", "object": "endpoint", "id": "ep"}
    return c.ReportStatus(**{**base, "entity_space": "s1", "status": "ready", **fields})


def test_an_update_about_the_senders_entity_is_recorded_on_its_status_report_stream():
    (event,) = report_status(StatusReportState(), update())
    assert (event.object, event.id, event.status, event.delivery_id) == (
        "endpoint",
        "ep",
        "ready",
        "d1",
    )
    handler = COMMAND_HANDLERS[c.ReportStatus]
    assert handler.aggregate is STATUS_REPORTS
    assert handler.aggregate.stream(handler.entity(update())) == "status-report:endpoint:ep"


def test_a_delivery_taken_already_changes_nothing():
    assert report_status(StatusReportState(deliveries=frozenset({"d1"})), update()) == []


@pytest.mark.parametrize(
    "fields",
    [{"entity_space": None}, {"entity_space": "s2"}, {"object": "user"}],
    ids=["unknown entity", "another space's entity", "a kind that takes no updates"],
)
def test_every_other_update_is_the_same_not_found(fields):
    with pytest.raises(NotFound):
        report_status(StatusReportState(), update(**fields))
