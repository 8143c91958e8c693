"""Routes of seed 003's `inference-logs` tag, under /api/v1.

Every route reads one space's logs: the one an X-Space-ID header or a `space_id` parameter
names, or the caller's only space. A space the caller is not a member of answers 404, and so
does a log of another space. `…/{id}/explain` says which configuration answered a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query
from mlplane.deps import SPACE_HEADER, KernelDep, PrincipalDep, acting_space
from mlplane.errors import Invalid, NotFound
from mlplane.http import PROBLEM_RESPONSES, ListPage
from mlplane.kernel import Kernel
from pydantic import BeforeValidator

from .aggregate import Period, report
from .schemas import InferenceLogExplanation, InferenceLogPublic, InferenceLogSummary
from .services import explain_log
from .store import LogFilters, LogStore

STORE = "logs.store"

inference_logs = APIRouter(
    prefix="/api/v1/inference-logs", tags=["inference-logs"], responses=PROBLEM_RESPONSES
)


def log_store(kernel: Kernel) -> LogStore:
    return kernel.extensions[STORE]


def requested_space(
    principal: PrincipalDep,
    x_space_id: Annotated[str | None, Header(alias=SPACE_HEADER, description="The space")] = None,
    space_id: Annotated[
        str | None, Query(description="The space, when no X-Space-ID header")
    ] = None,
) -> str:
    """The space a call acts in (see `mlplane.deps.acting_space`)."""
    return acting_space(principal, x_space_id or space_id)


SpaceDep = Annotated[str, Depends(requested_space)]


RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # full-date
    r"[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"  # partial-time
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"  # time-offset
)
EARLIEST = datetime.min.replace(tzinfo=UTC)
LAST_MICROS = (datetime.max - datetime.min) // timedelta(microseconds=1)


def rfc3339(value: object) -> datetime:
    """A date-time as RFC 3339 writes it (`2026-03-01T12:00:00Z`, `…T14:00:00+02:00`), in UTC.

    Nothing else is a date: no Unix times, no bare dates, and no date-time without an offset
    (a guess at its zone would shift the answer silently). A moment beyond what a datetime holds
    in UTC (`0001-01-01T00:00:00+01:00`) is clamped to the first or the last one."""
    if not isinstance(value, str) or RFC3339.fullmatch(value) is None:
        raise ValueError(
            "expected an RFC 3339 date-time with an offset, such as 2026-03-01T12:00:00Z"
        )
    moment = datetime.fromisoformat(value.upper())  # raises for a 31st of February
    micros = (moment - EARLIEST) // timedelta(microseconds=1)
    return EARLIEST + timedelta(microseconds=min(max(micros, 0), LAST_MICROS))


DateParam = Annotated[datetime | None, BeforeValidator(rfc3339)]


@dataclass
class FilterParams:
    start_date: Annotated[DateParam, Query(description="Start date (RFC 3339), inclusive")] = None
    end_date: Annotated[DateParam, Query(description="End date (RFC 3339), exclusive")] = None
    user: Annotated[str | None, Query(description="User ID filter")] = None
    model: Annotated[str | None, Query(description="Model name filter")] = None
    status: Annotated[Literal["success", "error"] | None, Query(description="Status filter")] = None
    type: Annotated[str | None, Query(description="Request type filter")] = None
    tag: Annotated[str | None, Query(description="Tag filter")] = None
    correlation_id: Annotated[str | None, Query(description="Correlation ID filter")] = None

    def filters(self, space: str) -> LogFilters:
        start, end = self.start_date, self.end_date
        if start and end and start > end:
            raise Invalid("start_date is after end_date", field="start_date")
        return LogFilters(
            space=space,
            start=start,
            end=end,
            user=self.user,
            model=self.model,
            status=self.status,
            type=self.type,
            tag=self.tag,
            correlation_id=self.correlation_id,
        )


Filters = Annotated[FilterParams, Depends()]


@inference_logs.get("")
async def list_inference_logs(
    kernel: KernelDep,
    space: SpaceDep,
    params: Filters,
    page: Annotated[int, Query(ge=1, le=100_000, description="Page number")] = 1,
    page_size: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
) -> ListPage[InferenceLogPublic]:
    """Get inference logs, newest first, filtered and paged."""
    skip = (page - 1) * page_size
    count, found = await log_store(kernel).logs(params.filters(space), skip=skip, limit=page_size)
    data = [InferenceLogPublic.model_validate(r.public()) for r in found]
    return ListPage[InferenceLogPublic](count=count, data=data, has_more=skip + len(data) < count)


@inference_logs.get("/summary")
async def summarize_inference_logs(
    kernel: KernelDep, space: SpaceDep, params: Filters
) -> InferenceLogSummary:
    """Get aggregated statistics of the inference logs matching the filters."""
    filters = params.filters(space)
    period = Period.covering(filters.start, filters.end, datetime.now(UTC))
    by_model = await log_store(kernel).summary(filters, period)
    return InferenceLogSummary.model_validate(report(by_model, period))


async def space_log(kernel: Kernel, space: str, log_id: str):
    found = await log_store(kernel).log(space, log_id)
    if found is None:
        raise NotFound(f"inference log {log_id!r} not found")
    return found


@inference_logs.get("/{id}")
async def get_inference_log(id: str, kernel: KernelDep, space: SpaceDep) -> InferenceLogPublic:
    """Get one inference log (within the raw-log retention)."""
    return InferenceLogPublic.model_validate((await space_log(kernel, space, id)).public())


@inference_logs.get("/{id}/explain")
async def explain_inference_log(
    id: str, kernel: KernelDep, space: SpaceDep
) -> InferenceLogExplanation:
    """Which configuration answered one inference: endpoint revision, model version, servers,
    checkpoint, training and bundle hashes in force at the log's time."""
    found = await space_log(kernel, space, id)
    return InferenceLogExplanation.model_validate(await explain_log(kernel, found))
