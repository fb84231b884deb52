"""``tollgate trace RUN_ID``: a run's span tree as a terminal waterfall, from the spans the services wrote locally
(``TOLLGATE_TRACE_DIR``), for when no collector is at hand."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SpanRecord:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start: int
    end: int
    attributes: dict[str, Any]
    failed: bool = False
    children: list[SpanRecord] = field(default_factory=list)


def load_spans(directory: Path) -> list[SpanRecord]:
    spans = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                spans.append(SpanRecord(row["trace_id"], row["span_id"], row["parent_id"], row["name"],
                                        row["service"] or path.stem, row["start"], row["end"], row["attributes"],
                                        bool(row.get("failed"))))
    return spans


def _belongs(span: SpanRecord, run_id: str) -> bool:
    workflow_id = str(span.attributes.get("temporalWorkflowID", ""))
    return span.attributes.get("tollgate.run_id") == run_id or workflow_id == run_id or workflow_id.startswith(
        f"{run_id}.")


LABEL_LIMIT = 110  # a longer label is cut; the columns after it (tokens, time, bar) never are


def waterfall(spans: list[SpanRecord], run_id: str, width: int = 40) -> list[str]:
    """One line per span of the run's trace(s), children under parents: the span, its attempt, the tokens of an LLM
    call, a failure mark, the duration and a bar placing it in time. Ends with the run's outcome."""
    traces = {s.trace_id for s in spans if _belongs(s, run_id)}
    mine = {s.span_id: s for s in spans if s.trace_id in traces}
    roots: list[SpanRecord] = []
    for span in sorted(mine.values(), key=lambda s: (s.start, s.end)):
        parent = mine.get(span.parent_id) if span.parent_id else None
        (parent.children if parent else roots).append(span)
    if not mine:
        return []
    origin = min(s.start for s in mine.values())
    total = max(max(s.end for s in mine.values()) - origin, 1)
    rows: list[tuple[str, str, str, str]] = []

    def collect(span: SpanRecord, depth: int) -> None:
        left = int((span.start - origin) / total * width)
        length = max(1, int((span.end - span.start) / total * width))
        bar = " " * left + "█" * min(length, width - left) + " " * max(0, width - left - length)
        label = f"{'  ' * depth}{'✗ ' if span.failed else ''}{span.name} [{span.service}]"
        attempt = span.attributes.get("tollgate.attempt")
        if attempt is not None:
            label += f" attempt {attempt}"
        tokens = span.attributes.get("gen_ai.usage.output_tokens")
        usage = f"{span.attributes.get('gen_ai.usage.input_tokens')}+{tokens} tok" if tokens is not None else ""
        rows.append((label[:LABEL_LIMIT], usage, f"{(span.end - span.start) / 1e6:9.1f} ms", bar))
        for child in span.children:
            collect(child, depth + 1)

    for root in roots:
        collect(root, 0)
    name_width = max(len(row[0]) for row in rows)
    usage_width = max(len(row[1]) for row in rows)
    lines = [f"{label:<{name_width}}  {usage:>{usage_width}} {duration} |{bar}|"
             for label, usage, duration, bar in rows]
    failed = [s for s in mine.values() if s.failed]
    lines.append(f"run {run_id}: {len(failed)} failed span(s), the run failed" if any(
        s.failed and s.name.startswith("RunWorkflow:") and s.attributes.get("temporalWorkflowID") == run_id
        for s in failed) else f"run {run_id}: {len(failed)} failed span(s)")
    return lines
