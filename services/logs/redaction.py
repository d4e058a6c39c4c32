"""The one redaction layer every careloop log line passes through, whatever logger wrote it.

careloop's own messages carry ids only; libraries' messages are not trusted: exceptions become
their class names (never their text, arguments or traceback), SQLAlchemy never shows statement
parameters, celery's task arguments, results and tracebacks are dropped, URLs lose their query
string, fragment and credentials (outbound ones also their ids), and PHI-bearing keys are dropped.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

REDACTED = "[redacted]"

# Keys that name patient data; a structured log field (or a library's format key) by one of
# these names is dropped or blanked, never printed.
PHI_KEYS = frozenset(
    {
        "address",
        "answer",
        "answers",
        "args",
        "birthdate",
        "body",
        "content",
        "data",
        "device",
        "email",
        "family",
        "given",
        "identifier",
        "identifiers",
        "kwargs",
        "note",
        "notes",
        "params",
        "parameters",
        "patient",
        "payload",
        "phone",
        "query",
        "reason",
        "result",
        "return_value",
        "telecom",
        "text",
        "traceback",
        "value",
    }
)
# Loggers whose arguments are never printed at all (SQL statements' parameters).
_SILENT_ARGS = ("sqlalchemy",)
# Format keys holding an exception's text (celery's "exc"): reduced to the class name.
_EXCEPTION_KEYS = frozenset({"exc", "exception", "error"})

_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)"
    r"(?P<userinfo>[^\s/?#@\"'<>]*@)?"
    r"(?P<rest>[^\s?#\"'<>]*)"
    r"(?P<query>[?#][^\s\"'<>]*)?"
)
# A bare path with a query string (as an access log would print it): "/fhir/Patient?identifier=".
_PATH_QUERY = re.compile(r"(?P<path>(?<![\w:/])/[^\s?#\"'<>]*)[?#][^\s\"'<>]*")
_EXCEPTION_TEXT = re.compile(
    r"^(?P<retry>Retry (?:in [0-9.]+s|at [0-9T:.+\- ]+?))?(?:: )?"
    r"(?P<cls>[A-Za-z_][A-Za-z0-9_.]*)?(?P<after>\(|$)"
)
_SAFE_SEGMENT = re.compile(r"^[A-Za-z$_.][A-Za-z$_.-]*$")


def strip_urls(text: str) -> str:
    """``text`` with every URL's query string, fragment and credentials removed."""
    if "://" in text:
        text = _URL.sub(lambda m: m["scheme"] + m["rest"], text)
    if "?" in text or "#" in text:
        text = _PATH_QUERY.sub(lambda m: m["path"], text)
    return text


def outbound_url(url: object) -> str:
    """An outbound request URL as ``scheme://host/path-template``: ids become ``{id}``.

    A webhook or EHR URL may hold secrets or identifiers in its path as well as in its query.
    """
    match = _URL.match(strip_urls(str(url)))
    if match is None:
        return REDACTED
    host, _, path = match["rest"].partition("/")
    segments = [s if _SAFE_SEGMENT.match(s) else "{id}" for s in path.split("/") if s]
    return f"{match['scheme']}{host}/" + "/".join(segments)


def describe_exception(exc: BaseException | None) -> str:
    """An exception as its class name only (with the driver's class, or a Retry's delay)."""
    if exc is None:
        return "None"
    # celery wraps exceptions it cannot pickle; the wrapper knows the original class's name
    name = str(getattr(exc, "exc_cls_name", "") or type(exc).__name__)
    if name == "Retry" and callable(getattr(exc, "humanize", None)):
        inner = getattr(exc, "exc", None)
        retry = f"Retry {exc.humanize()}"  # type: ignore[attr-defined]
        if isinstance(inner, BaseException):
            return f"{retry}: {describe_exception(inner)}"
        return retry
    orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
    if isinstance(orig, BaseException):
        return f"{name}({type(orig).__name__})"
    return name


def summarize_exception_text(text: object) -> str:
    """An exception's repr as celery prints it (``Cls('...')``), reduced to the class name."""
    if isinstance(text, BaseException):
        return describe_exception(text)
    match = _EXCEPTION_TEXT.match(str(text))
    if match is None or not (match["retry"] or match["cls"]):
        return REDACTED
    return ": ".join(part for part in (match["retry"], match["cls"]) if part)


def exception_of(exc_info: object) -> BaseException | None:
    """The exception of a logging ``exc_info`` (True, an exception, or a sys.exc_info tuple)."""
    if exc_info is True:
        return sys.exc_info()[1]
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        value = exc_info[1]
        return value if isinstance(value, BaseException) else None
    return None


def _safe_value(logger: str, value: object) -> object:
    if isinstance(value, BaseException):
        return _Text(describe_exception(value))
    if value is None or isinstance(value, int | float):
        return value
    text = value.decode(errors="replace") if isinstance(value, bytes) else _str(value)
    if logger == "httpx" and "://" in text:
        return _Text(outbound_url(text))
    return _Text(strip_urls(text))


def _str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not break logging
        return REDACTED


class _Text(str):
    """A redacted argument: ``%s`` and ``%r`` both print it bare."""

    def __repr__(self) -> str:
        return str(self)


def _safe_mapping(
    logger: str, args: Mapping[str, Any], exc: BaseException | None
) -> dict[str, object]:
    safe: dict[str, object] = {}
    for key, value in args.items():
        if key in _EXCEPTION_KEYS:
            text = describe_exception(exc) if exc is not None else summarize_exception_text(value)
            safe[key] = _Text(text)
        elif str(key).lower() in PHI_KEYS:
            safe[key] = _Text(REDACTED)
        else:
            safe[key] = _safe_value(logger, value)
    return safe


def redact_message(logger: str, msg: object, args: object, exc: BaseException | None = None) -> str:
    """A log record's message, formatted from its template and redacted arguments.

    ``exc`` is the record's exception, if any: it names the class of an ``exc`` argument.
    """
    if isinstance(msg, BaseException):
        return describe_exception(msg)
    template = strip_urls(_str(msg))
    if not args:
        return template
    safe: object
    if logger.startswith(_SILENT_ARGS):
        safe = _blank(args)
    elif isinstance(args, Mapping):
        safe = _safe_mapping(logger, args, exc)
    elif isinstance(args, tuple):
        safe = tuple(_safe_value(logger, a) for a in args)
    else:
        safe = (_safe_value(logger, args),)
    try:
        return strip_urls(template % safe)
    except (TypeError, ValueError, KeyError):
        return template


def _blank(args: object) -> object:
    if isinstance(args, Mapping):
        return {k: _Text(REDACTED) for k in args}
    if isinstance(args, tuple):
        return tuple(_Text(REDACTED) for _ in args)
    return (_Text(REDACTED),)


def redact_event(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the redaction layer for stdlib records and structlog events alike."""
    record = event.get("_record")
    exc_info = event.pop("exc_info", None)
    if record is not None and not event.get("_from_structlog"):
        args = event.pop("positional_args", ())
        event["event"] = redact_message(record.name, record.msg, args, exception_of(exc_info))
    event.pop("positional_args", None)
    event.pop("stack_info", None)
    event.pop("exception", None)
    if exc_info:
        event["error_class"] = describe_exception(exception_of(exc_info))
    for key in list(event):
        if key.startswith("_"):
            continue
        if key.lower() in PHI_KEYS:
            del event[key]
            continue
        value = event[key]
        if isinstance(value, BaseException):
            event[key] = describe_exception(value)
        elif isinstance(value, str):
            event[key] = strip_urls(value)
        elif not isinstance(value, int | float | bool | None):
            event[key] = strip_urls(_str(value))
    return event
