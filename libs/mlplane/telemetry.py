"""OpenTelemetry: one tracer for mlplane, W3C `traceparent` carried across the bus.

Tracing is off (a no-op tracer) unless `configure` is called with an exporter:
`console`, `otlp` (OTLP over HTTP, endpoint from the standard OTEL_EXPORTER_OTLP_* variables),
or an exporter object (tests pass an in-memory one).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()


def configure(exporter: str | SpanExporter | None, service: str = "mlplane") -> None:
    """Install a tracer provider for this process. `None` or "none" changes nothing.

    A provider configured earlier (a test's in-memory exporter) is kept rather than replaced
    by "off": `reset` is the way back to no tracing.
    """
    global _provider
    if exporter in (None, "", "none"):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif isinstance(exporter, SpanExporter):
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        raise ValueError(f"unknown trace exporter {exporter!r}: use none, console or otlp")
    if _provider is not None:
        _provider.shutdown()
    _provider = provider


def reset() -> None:
    """Flush and remove the provider: tracing is off again (tests restore this state)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
    _provider = None


def tracer() -> trace.Tracer:
    if _provider is None:
        return trace.NoOpTracer()
    return _provider.get_tracer("mlplane")


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def span_from(
    traceparent: str | None,
    name: str,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    **attributes: Any,
) -> AbstractContextManager:
    """A span continuing the trace named by `traceparent` (publishing or handling an event).

    Without a traceparent the span continues the current context.
    """
    ctx = (
        _propagator.extract({"traceparent": traceparent})
        if traceparent
        else otel_context.get_current()
    )
    return tracer().start_as_current_span(name, context=ctx, kind=kind, attributes=attributes)
