"""No PHI leaves in a span: every span is rewritten to an allow-list before it is exported.

The instrumentations record what they see: the request's raw path and query (FHIR searches
such as ``Patient?identifier=system|value`` carry identifiers), the URLs careloop calls, the
SQL it runs, exception messages, user agents and client addresses (an IP address is a HIPAA
identifier). Whatever is configured, an exported span keeps only:

* attributes named in ``_KEEP`` (methods, statuses, route templates, hosts, ports, the
  database system, Celery's task names and ids), with URLs reduced to route templates
  (inbound) or to ``scheme://host/path-template`` without ids (outbound), and SQL with its
  string literals blanked (statements carry placeholders; parameters are never recorded);
* exception events with the exception's class only; no other event;
* the status code, never its description (an exception's text);
* server span names rebuilt from method and route template, client span names the method.

Anything not on the list (a header an operator asks an instrumentation to capture, a new
attribute a library adds) is dropped, not exported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status

from careloop.services.logs.redaction import outbound_url

_KEEP = frozenset(
    {
        "http.method",
        "http.request.method",
        "http.status_code",
        "http.response.status_code",
        "http.route",
        "http.scheme",
        "url.scheme",
        "http.flavor",
        "network.protocol.version",
        "http.host",
        "http.server_name",
        "server.address",
        "server.port",
        "net.host.name",
        "net.host.port",
        "net.peer.name",
        "net.peer.port",
        "error.type",
        "db.system",
        "db.system.name",
        "db.name",
        "db.namespace",
        "db.operation",
        "db.operation.name",
        "messaging.message.id",
        "messaging.destination",
        "messaging.destination_kind",
        "messaging.conversation_id",
        "celery.action",
        "celery.task_name",
        "celery.state",
        "celery.hostname",
        "celery.queue",
        "celery.exchange",
        "celery.routing_key",
        "celery.retries",
        "celery.priority",
        "celery.eta",
        "celery.countdown",
        "celery.expires",
        "celery.timelimit",
    }
)
_KEEP_PREFIXES = ("careloop.",)
_URLS = frozenset({"url.full", "http.url"})
_PATHS = frozenset({"url.path", "http.target"})
_STATEMENTS = frozenset({"db.statement", "db.query.text"})
_METHODS = ("http.request.method", "http.method")
_SQL_LITERAL = re.compile(r"'(?:[^']|'')*'")
_EXCEPTION_EVENT = "exception"


def _inbound_url(attributes: Mapping[str, Any], route: str | None) -> str | None:
    if route is None:
        return None
    scheme = attributes.get("url.scheme") or attributes.get("http.scheme") or "http"
    host = attributes.get("http.host") or attributes.get("server.address")
    return f"{scheme}://{host}{route}" if host else route


def scrub_attributes(attributes: Mapping[str, Any] | None, kind: SpanKind) -> dict[str, Any]:
    """The attributes of a span (or event, or link) that may leave careloop."""
    if not attributes:
        return {}
    route = attributes.get("http.route")
    kept: dict[str, Any] = {}
    for key, value in attributes.items():
        if key in _KEEP or key.startswith(_KEEP_PREFIXES):
            kept[key] = value
        elif key in _URLS:
            client = kind == SpanKind.CLIENT
            url = outbound_url(value) if client else _inbound_url(attributes, route)
            if url is not None:
                kept[key] = url
        elif key in _PATHS and kind == SpanKind.SERVER and route is not None:
            kept[key] = route
        elif key in _STATEMENTS:
            kept[key] = _SQL_LITERAL.sub("'?'", str(value))
    return kept


def _method(attributes: Mapping[str, Any]) -> str | None:
    for key in _METHODS:
        if attributes.get(key):
            return str(attributes[key])
    return None


def scrub_name(span: ReadableSpan) -> str:
    """A span's name without paths: HTTP spans are named from method and route template."""
    attributes = span.attributes or {}
    method = _method(attributes)
    if method is None:
        return span.name
    if span.kind == SpanKind.SERVER:
        route = attributes.get("http.route")
        return f"{method} {route}" if route else method
    return method


def _events(events: Sequence[Event]) -> tuple[Event, ...]:
    return tuple(
        Event(
            _EXCEPTION_EVENT,
            {"exception.type": str((e.attributes or {}).get("exception.type", "Exception"))},
            e.timestamp,
        )
        for e in events
        if e.name == _EXCEPTION_EVENT
    )


def scrub(span: ReadableSpan) -> ReadableSpan:
    """``span`` as it may be exported."""
    return ReadableSpan(
        name=scrub_name(span),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=scrub_attributes(span.attributes, span.kind),
        events=_events(span.events),
        links=tuple(
            Link(link.context, scrub_attributes(link.attributes, span.kind)) for link in span.links
        ),
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingExporter(SpanExporter):
    """Exports through ``inner`` only what ``scrub`` leaves of each span."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Scrub, then export."""
        return self._inner.export([scrub(span) for span in spans])

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner exporter."""
        return self._inner.force_flush(timeout_millis)
