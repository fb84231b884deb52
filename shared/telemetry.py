"""OpenTelemetry for every process: one trace per run, exported over OTLP when the standard variables say where.

With no ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` and no ``TOLLGATE_TRACE_DIR`` nothing is set up: no provider,
no Temporal interceptor, no span objects beyond OpenTelemetry's no-op ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from shared.settings import Settings

log = logging.getLogger("tollgate.telemetry")
_provider: TracerProvider | None = None

TRACER = "tollgate"


class JsonLinesSpanExporter(SpanExporter):
    """Writes finished spans to a local JSON-lines file, for ``tollgate trace`` when no collector is at hand."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a") as out:
            for span in spans:
                context = span.get_span_context()
                if context is None:
                    continue
                out.write(json.dumps({
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                    "name": span.name,
                    "service": (span.resource.attributes.get("service.name") if span.resource else None),
                    "start": span.start_time,
                    "end": span.end_time,
                    "attributes": {k: _plain(v) for k, v in (span.attributes or {}).items()},
                    "failed": span.status.status_code == StatusCode.ERROR,
                }) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def setup_tracing(settings: Settings, service: str) -> bool:
    """Install the tracer provider for ``service`` if the settings ask for export; True when tracing is on."""
    global _provider
    if _provider is not None:
        return True
    exporters: list[SpanExporter] = []
    if settings.otel_traces_exporter != "none" and (
        settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())  # reads the OTEL_EXPORTER_OTLP_* variables itself
    if settings.trace_dir is not None:
        exporters.append(JsonLinesSpanExporter(Path(settings.trace_dir) / f"{service}.jsonl"))
    if not exporters:
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": f"tollgate-{service}"}))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def tracing_enabled() -> bool:
    return _provider is not None


def flush_tracing() -> None:
    if _provider is not None:
        _provider.force_flush(5000)


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER)


@contextmanager
def untraced() -> Iterator[None]:
    """Nothing started under it is recorded (a worker's warm-up call belongs to no run): its spans' parent is an
    unsampled one, which the default sampler follows."""
    unsampled = trace.NonRecordingSpan(trace.SpanContext(trace_id=1, span_id=1, is_remote=False,
                                                         trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT)))
    with trace.use_span(unsampled):
        yield


def current_trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None
