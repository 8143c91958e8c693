"""What the gateway runs beside its routes. It has no process manager of its own: no event of
another context makes it decide anything, so it holds no `policy(event, state) -> commands`.

Two background duties react to the log, and both live here or are started from here:

- the caller cache (`auth.TokenAuthenticator`) is dropped whenever this process folds an event
  into a table a caller is read from (`watch_callers`), so a revoked token, a deleted user or a
  new membership takes effect at once;
- the data plane's inference-log publisher (`dataplane.plane.DataPlane.run`) batches the
  `InferenceLogged` events of the hot path onto the bus; `bootstrap` starts it with the routes.
"""

from __future__ import annotations

from collections.abc import Callable

from mlplane.events import Envelope
from mlplane.kernel import Kernel
from mlplane.projections import Projection
from mlplane.readmodels import Doc

from .projections import MEMBERSHIPS, TOKENS
from .projections import USERS as USER_DOCS

CALLER_TABLES = (TOKENS, USER_DOCS, MEMBERSHIPS)
"""The tables a caller (`Principal`) is read from."""


def drops_callers(projection: str) -> bool:
    """The policy: a fold into one of these tables may change who a token names."""
    return projection in CALLER_TABLES


def watch_callers(kernel: Kernel, on_change: Callable[[], None]) -> None:
    """Call `on_change` before each event `kernel` folds into a caller's table.

    Call before `kernel.start()`: the projection runners are built from these objects.
    """
    for name, projection in list(kernel.projections.items()):
        if drops_callers(name):
            kernel.projections[name] = Folded(projection, on_change)


class Folded(Projection):
    """A projection that calls `on_fold` before each event it folds (the fold stays pure)."""

    def __init__(self, inner: Projection, on_fold: Callable[[], None]) -> None:
        self.inner, self.on_fold = inner, on_fold
        self.name, self.handles = inner.name, inner.handles  # type: ignore[misc]

    def key(self, event: Envelope) -> str | None:
        return self.inner.key(event)

    def evolve(self, doc: Doc | None, event: Envelope) -> Doc | None:
        self.on_fold()
        return self.inner.evolve(doc, event)
