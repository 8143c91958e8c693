"""Typed errors of the kernel. The gateway maps each to one HTTP problem type."""

from __future__ import annotations

from pydantic import ValidationError


class MlplaneError(Exception):
    """Base of every error mlplane raises on purpose."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str = "", **extra: object) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class ConcurrencyError(MlplaneError):
    """Another writer appended to the stream since it was read."""

    status = 409
    title = "Concurrent modification"

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, expected {expected}",
            stream_id=stream_id,
            expected_version=expected,
            actual_version=actual,
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class NotFound(MlplaneError):
    status = 404
    title = "Not found"


class Conflict(MlplaneError):
    status = 409
    title = "Conflict"


class Invalid(MlplaneError):
    status = 422
    title = "Invalid request"


class Unauthorized(MlplaneError):
    status = 401
    title = "Unauthorized"


class Forbidden(MlplaneError):
    status = 403
    title = "Forbidden"


class TooManyRequests(MlplaneError):
    """Refused for now: the answer's Retry-After header says in how many seconds to try again."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class UnknownEventType(MlplaneError):
    title = "Unknown event type"


class UnreadableEvent(Invalid):
    """An event whose stored form its own type cannot read back; it is never appended."""

    title = "Invalid request"


def reason(exc: Exception) -> str:
    """One line saying why `exc` happened; for a validation error its first failure, without the
    input (it may be large or secret)."""
    if isinstance(exc, ValidationError):
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first['msg']}" if where else first["msg"]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]
