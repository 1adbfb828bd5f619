"""JSON log lines with the request id, and a scrubber that keeps secrets out of them.

One line per event on stdout: ``{"ts", "level", "logger", "message", "request_id", ...extra}``. Extra fields
passed with ``logger.info(..., extra={"command_id": ..., "tx_id": ...})`` are kept, so one write can be
followed from HTTP to chain to read model. Fields whose name looks like a secret are replaced by ``"[redacted]"``
and ``Bearer``/``password=`` fragments are masked in messages.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_STANDARD_ATTRS = set(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "request_id"}
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|authorization|api[_-]?key|private|credential|cookie", re.I)
_SECRET_TEXT = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[redacted]"),
    (re.compile(r"(?i)((?:password|passwd|secret|token|access|refresh)[\"']?\s*[:=]\s*[\"']?)[^\"'\s,&}]+"),
     r"\1[redacted]"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
     "[redacted private key]"),
]


def scrub_text(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def scrub_value(key: str, value: object) -> object:
    if _SECRET_KEY.search(key):
        return "[redacted]"
    if isinstance(value, dict):
        return {k: scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, str):
        return scrub_text(value)
    return value


class RequestIdFilter(logging.Filter):
    """Stamps every record with the request id of the HTTP request being served (if any)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": scrub_text(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key.startswith("_") or key == "request":
                continue
            entry[key] = scrub_value(key, value if _is_jsonable(value) else repr(value))
        if record.exc_info:
            entry["exception"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def _is_jsonable(value: object) -> bool:
    return isinstance(value, str | int | float | bool | type(None) | list | dict)
