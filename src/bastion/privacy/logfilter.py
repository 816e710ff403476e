"""A logging filter that redacts PII from every record before a handler writes it.

`RedactingFilter` renders the record's message (`msg % args`), redacts it and stores the result
as the message with no arguments; it redacts the formatted traceback (`exc_text`, then drops
`exc_info` so no handler formats the raw exception again) and `stack_info` too. It never
raises: if redaction fails the message becomes "[redaction failed]" (fail closed, the raw text
is not written). uvicorn's access formatter needs the record's five arguments, so records of
`uvicorn.access` keep their arguments, each redacted on its own.

Filters attached to a *logger* only see records logged on that logger, not on its children;
filters attached to a *handler* see every record the handler writes. So
`install_log_redaction` attaches the filter to the handlers of the given loggers (the root
logger's handlers cover every `bastion.*` logger that propagates) and to `logging.lastResort`,
which writes warnings when no handler is configured. Handlers added later are not covered:
install after logging is configured (the server does it after uvicorn configures its loggers).

Imports only the standard library at import time (`bastion.privacy.pii` when a detector is
built), so installing the filter costs nothing until something is logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily: building a detector loads Presidio (about 2 s)
    from bastion.privacy.pii import PiiDetector

__all__ = [
    "DEFAULT_LOGGERS",
    "FAILED",
    "RedactingFilter",
    "install_log_redaction",
    "uninstall_log_redaction",
]

FAILED = "[redaction failed]"
DEFAULT_LOGGERS = ("", "bastion", "uvicorn", "uvicorn.error", "uvicorn.access")
_ARGS_FORMATTED = frozenset({"uvicorn.access"})  # formatters that read record.args themselves
_DONE = "_bastion_redacted"
_traceback_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Redacts each record in place; always lets it through.

    `detector` may be a `PiiDetector` or a function returning one, called on the first record
    (so a command that never logs never builds a detector).
    """

    def __init__(self, detector: PiiDetector | Callable[[], PiiDetector]) -> None:
        super().__init__()
        self._detector: PiiDetector | None = None
        self._factory: Callable[[], PiiDetector] | None = None
        if callable(detector):
            self._factory = detector
        else:
            self._detector = detector
        self._lock = threading.Lock()

    def _get(self) -> PiiDetector:
        if self._detector is None:
            with self._lock:
                if self._detector is None:
                    assert self._factory is not None
                    self._detector = self._factory()
        return self._detector

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _DONE, False):
            return True  # another handler's filter did it already
        had_traceback = bool(record.exc_info or record.exc_text)
        try:
            self._redact(record)
        except Exception:  # noqa: BLE001 - fail closed: never let the raw text through
            record.msg = FAILED
            if record.name in _ARGS_FORMATTED and isinstance(record.args, tuple):
                record.args = tuple(FAILED if isinstance(a, str) else a for a in record.args)
            else:
                record.args = ()
            record.exc_info = None
            record.exc_text = FAILED if had_traceback else None
            record.stack_info = None
        setattr(record, _DONE, True)
        return True

    def _redact(self, record: logging.LogRecord) -> None:
        detector = self._get()
        if record.name in _ARGS_FORMATTED and isinstance(record.args, tuple):
            record.msg = detector.redact(str(record.msg))
            record.args = tuple(
                detector.redact(a) if isinstance(a, str) else a for a in record.args
            )
        else:
            record.msg = detector.redact(record.getMessage())
            record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _traceback_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = detector.redact(record.exc_text)
        record.exc_info = None
        if record.stack_info:
            record.stack_info = detector.redact(record.stack_info)


def _handlers(loggers: Iterable[str]) -> list[logging.Handler]:
    seen: dict[int, logging.Handler] = {}
    for name in loggers:
        for handler in logging.getLogger(name or None).handlers:
            seen.setdefault(id(handler), handler)
    if logging.lastResort is not None:
        seen.setdefault(id(logging.lastResort), logging.lastResort)
    return list(seen.values())


def install_log_redaction(
    detector: PiiDetector | Callable[[], PiiDetector],
    loggers: Iterable[str] = DEFAULT_LOGGERS,
) -> RedactingFilter:
    """Add one `RedactingFilter` to every handler of `loggers` ("" is the root logger) and to
    `logging.lastResort`; a handler that has one already is left alone. Returns the filter
    (for `uninstall_log_redaction`)."""
    redacting = RedactingFilter(detector)
    for handler in _handlers(loggers):
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redacting)
    return redacting


def uninstall_log_redaction(redacting: RedactingFilter) -> None:
    """Remove `redacting` from every handler it is on (of any logger, and lastResort)."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    handlers = {id(h): h for lg in loggers for h in lg.handlers}
    if logging.lastResort is not None:
        handlers[id(logging.lastResort)] = logging.lastResort
    for handler in handlers.values():
        handler.removeFilter(redacting)
