"""The HTTP conventions every route shares: problems, pagination and filtering, in one place.

Errors: every 4xx and 5xx is an RFC 9457 `application/problem+json` document. Typed mlplane
errors map by their `status` and `title`; validation failures list the failing fields; anything
unexpected is a 500 that names the request id and never carries a stack trace.

Lists: `?limit=&after=` where `after` is the id of the last item of the previous page (the
cursor is derived from that item, so clients never handle opaque tokens), answered as
`{count, data, has_more}`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.status import HTTP_500_INTERNAL_SERVER_ERROR

from .errors import Invalid, MlplaneError, TooManyRequests
from .keystore import ForgottenSubject
from .readmodels import ReadModelStore
from .readmodels.base import encode_cursor, matches

log = logging.getLogger("mlplane.http")

PROBLEM = "application/problem+json"
T = TypeVar("T", bound=BaseModel)


# ---------------------------------------------------------------- problems


def problem(
    status: int, title: str, detail: str = "", *, request: Request | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:mlplane:problem:{status}",
        "title": title,
        "status": status,
        "detail": detail or title,
    }
    if request is not None:
        body["instance"] = request.url.path
        request_id = getattr(request.state, "request_id", None)
        if request_id:
            body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


async def _mlplane_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MlplaneError)
    if exc.status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.detail)
    extra = {k: v for k, v in exc.extra.items() if isinstance(v, (str, int, float, bool, list))}
    response = problem(exc.status, exc.title, exc.detail, request=request, **extra)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def field_errors(errors: list[Any]) -> list[dict[str, str]]:
    """Where and why each field failed; never the input itself (it may hold a secret)."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:]  # where it was sent; a field may be called `path` too
        out.append(
            {
                "field": ".".join(loc) or "body",
                "message": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    return out


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(list(exc.errors()))
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "Invalid request", detail, request=request, errors=errors)


async def _model_error(request: Request, exc: Exception) -> JSONResponse:
    """A command or value built from request input inside a route failed its own validation."""
    assert isinstance(exc, ValidationError)
    errors = field_errors(list(exc.errors()))
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(422, "Invalid request", detail, request=request, errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    title = {401: "Unauthorized", 404: "Not found", 405: "Method not allowed"}.get(
        exc.status_code, "Error"
    )
    response = problem(exc.status_code, title, str(exc.detail), request=request)
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document gives this path (FastAPI makes one route per
    operation, and the router's own answer names only the first route whose path matched)."""
    paths = getattr(request.app.state, "allowed_methods", None)
    if paths is None:
        paths = request.app.state.allowed_methods = _path_methods(request.app.openapi())
    path = request.url.path
    matching = [(literal, ms) for pattern, literal, ms in paths if pattern.fullmatch(path)]
    # `/train/{workspace}/inspect` is the resource at /train/x/inspect, not
    # `/train/{workspace}/{job_id}`: the templates naming the most segments literally win
    best = max((literal for literal, _ in matching), default=0)
    methods = {m for literal, ms in matching if literal == best for m in ms}
    return sorted(methods | ({"HEAD"} if "GET" in methods else set()))


def _path_methods(openapi: dict[str, Any]) -> list[tuple[re.Pattern[str], int, set[str]]]:
    out = []
    for template, operations in openapi.get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        literal = sum(1 for part in template.split("/") if part and "{" not in part)
        methods = {m.upper() for m in operations if m != "parameters"}
        out.append((re.compile(pattern), literal, methods))
    return out


async def _forgotten(request: Request, exc: Exception) -> JSONResponse:
    detail = "this data subject was erased; its personal data cannot be written again"
    return problem(409, "Subject erased", detail, request=request)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Internal error",
        "the server failed to handle this request; quote the request id when reporting it",
        request=request,
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MlplaneError, _mlplane_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ValidationError, _model_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ForgottenSubject, _forgotten)
    app.add_exception_handler(Exception, _unexpected)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": title, "content": {PROBLEM: {}}}
    for status, title in [
        (400, "Body not parseable as its content type says"),
        (401, "Unauthorized"),
        (403, "Forbidden"),
        (404, "Not found"),
        (409, "Conflict"),
        (413, "Request body too large"),
        (422, "Invalid request"),
    ]
}
"""Documents the problem answers in OpenAPI (pass as `responses=` to a router)."""


# ---------------------------------------------------------------- lists


class Pagination:
    """`?limit=&after=`: up to `limit` items after the item whose id is `after`."""

    def __init__(self, limit: int = 10, after: str | None = None) -> None:
        self.limit = limit
        self.after = after or None


PageLimit = Annotated[int, Query(ge=1, le=100, description="Items per page")]
PageAfter = Annotated[str | None, Query(description="Id of the last item already seen")]
"""`PageParams`' two parameters, for a hot route that declares them itself (one dependency
fewer for FastAPI to solve, the same OpenAPI document)."""


async def pagination(limit: PageLimit = 10, after: PageAfter = None) -> Pagination:
    """A coroutine, so FastAPI calls it on the event loop rather than in its thread pool."""
    return Pagination(limit, after)


PageParams = Annotated[Pagination, Depends(pagination)]


class ListPage(BaseModel, Generic[T]):
    count: int
    data: list[T]
    has_more: bool


async def list_page(
    docs: ReadModelStore,
    collection: str,
    model: type[T],
    page: Pagination,
    filters: Mapping[str, Any] | None = None,
    *,
    sort: str = "created_at",
    descending: bool = True,
) -> ListPage[T]:
    """One page of a read model, as `model`s; `None` filter values mean "not filtered"."""
    wanted = {k: v for k, v in (filters or {}).items() if v is not None}
    cursor = await _cursor(docs, collection, page.after, wanted, sort)
    found = await docs.query(
        collection, wanted, sort=sort, descending=descending, limit=page.limit, after=cursor
    )
    return page_of(model).model_validate(
        {"count": found.count, "data": found.data, "has_more": found.has_more}
    )


@functools.cache
def page_of(model: type[T]) -> type[ListPage[T]]:
    """`ListPage[model]`, made once: parametrising a generic model on every request costs more
    than validating the page, which is one call into pydantic's core for all its items."""
    return ListPage[model]  # type: ignore[valid-type]


def json_answer(value: BaseModel, status_code: int = 200) -> Response:
    """`value` as its JSON bytes, for a hot route declared with `response_model=` its type.

    FastAPI would dump a returned model to a dict, validate that against the response model
    and then serialise it; a model built from validated data needs the last step only."""
    return Response(value.model_dump_json(), status_code=status_code, media_type="application/json")


async def _cursor(
    docs: ReadModelStore, collection: str, after: str | None, filters: Mapping[str, Any], sort: str
) -> str | None:
    if after is None:
        return None
    doc = await docs.get(collection, after)
    if doc is None or not matches(doc, filters):
        raise Invalid(f"'after' names no item of this list: {after!r}", field="after")
    return encode_cursor(doc.get(sort) if sort != "_key" else after, after)


# ---------------------------------------------------------------- OpenAPI


def docstring_summaries(router: APIRouter) -> APIRouter:
    """Each route's one-line docstring becomes its OpenAPI summary; its name, the operation id."""
    for route in router.routes:
        if isinstance(route, APIRoute):
            doc = (route.endpoint.__doc__ or "").strip()
            route.summary = route.summary or doc.split("\n", 1)[0] or None
            route.operation_id = route.operation_id or route.name
    return router
