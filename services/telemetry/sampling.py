"""Sampling: the configured sampler, except for roots that would only be noise."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes


class QuietRoots(Sampler):
    """``inner`` (from ``OTEL_TRACES_SAMPLER``), but no trace starts with a span named in
    ``names`` or with a client span.

    The outbox relay polls every 2 s and the escalation scan every 15 s: a trace each would
    bury the traces of real work. What they publish is traced all the same (in the trace the
    work was recorded in). A client span without a parent is a statement or call outside any
    request or task (the relay's bookkeeping, a pool's ping): a one-span trace of it says
    nothing.
    """

    def __init__(self, inner: Sampler, names: frozenset[str]) -> None:
        self._inner = inner
        self._names = names

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Drop a quiet root; otherwise ask the configured sampler."""
        is_root = not get_current_span(parent_context).get_span_context().is_valid
        if is_root and (kind == SpanKind.CLIENT or name in self._names):
            return SamplingResult(Decision.DROP)
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """What this sampler does, for diagnostics."""
        return f"QuietRoots({self._inner.get_description()})"
