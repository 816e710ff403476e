"""The logging redaction filter (`bastion.privacy.logfilter`): PII logged through any Bastion
logger (a child of the logger whose handler carries the filter) never reaches the output —
in the message, its arguments, an exception's traceback or the stack; uvicorn's access lines
keep working; a detector failure replaces the message (fail closed); installing is lazy,
idempotent and reversible, and covers `logging.lastResort`."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bastion.privacy.logfilter import (
    FAILED,
    RedactingFilter,
    install_log_redaction,
    uninstall_log_redaction,
)
from bastion.privacy.pii import PiiDetector

DETECTOR = PiiDetector()
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlLWJ5dGVz"
SECRETS = ["alice@example.com", "4111 1111 1111 1111", "192.168.10.34", JWT, "+44 20 7946 0958"]


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A handler on the `bastion` logger (as the server's root handlers are for every
    `bastion.*` logger), removed afterwards."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    parent = logging.getLogger("bastion")
    parent.addHandler(handler)
    before = parent.level
    parent.setLevel(logging.DEBUG)
    redacting = install_log_redaction(DETECTOR, loggers=("bastion",))
    try:
        yield out
    finally:
        uninstall_log_redaction(redacting)
        parent.removeHandler(handler)
        parent.setLevel(before)


@pytest.mark.parametrize("secret", SECRETS)
def test_pii_in_arguments_of_a_child_logger_never_reaches_the_output(
    stream: io.StringIO, secret: str
) -> None:
    logging.getLogger("bastion.serving").warning("request from %s refused", secret)
    logging.getLogger("bastion.serving.router").info(f"inline {secret} too")
    written = stream.getvalue()
    assert secret not in written
    assert "bastion.serving WARNING request from <" in written
    assert "refused" in written
    assert "inline <" in written


def test_pii_split_between_message_and_arguments_is_redacted(stream: io.StringIO) -> None:
    logging.getLogger("bastion.api").error("user %s@%s", "alice", "example.com")
    assert "alice@example.com" not in stream.getvalue()
    assert "user <EMAIL_ADDRESS>" in stream.getvalue()


def test_exception_messages_and_tracebacks_are_redacted(stream: io.StringIO) -> None:
    log = logging.getLogger("bastion.deploy")
    try:
        raise ValueError("card 4111 1111 1111 1111 declined for alice@example.com")
    except ValueError:
        log.exception("payment failed")
    written = stream.getvalue()
    assert "Traceback" in written
    assert "ValueError: card <CREDIT_CARD> declined" in written
    assert "4111 1111 1111 1111" not in written
    assert "alice@example.com" not in written


def test_stack_info_is_redacted(stream: io.StringIO) -> None:
    def leaky(address: str = "alice@example.com") -> None:
        logging.getLogger("bastion.x").warning("here", stack_info=True)

    leaky()
    assert "Stack (most recent call last)" in stream.getvalue()
    # The stack shows source lines; the default argument above is in one of them.
    assert "alice@example.com" not in stream.getvalue()


def test_a_record_is_redacted_once_for_several_handlers(stream: io.StringIO) -> None:
    calls: list[str] = []

    class Counting(PiiDetector):
        def redact(self, text: str, *, style: str = "tag") -> str:
            calls.append(text)
            return super().redact(text, style=style)

    second = io.StringIO()
    handler = logging.StreamHandler(second)
    child = logging.getLogger("bastion.twice")
    child.addHandler(handler)
    extra = install_log_redaction(Counting(), loggers=("bastion.twice",))
    try:
        child.warning("to %s", "bob@example.com")
    finally:
        uninstall_log_redaction(extra)
        child.removeHandler(handler)
    assert "bob@example.com" not in second.getvalue() + stream.getvalue()
    assert calls == ["to bob@example.com"]


def test_detector_failure_fails_closed(stream: io.StringIO) -> None:
    class Broken(PiiDetector):
        def redact(self, text: str, *, style: str = "tag") -> str:
            raise RuntimeError("boom")

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    log = logging.getLogger("broken.component")
    log.addHandler(handler)
    log.propagate = False
    redacting = install_log_redaction(Broken(), loggers=("broken.component",))
    try:
        log.warning("mail %s", "alice@example.com")
        try:
            raise ValueError("alice@example.com")
        except ValueError:
            log.exception("oops")
    finally:
        uninstall_log_redaction(redacting)
        log.removeHandler(handler)
        log.propagate = True
    written = out.getvalue()
    assert "alice@example.com" not in written
    assert written.count(FAILED) == 3  # two messages and one traceback


def test_bad_format_arguments_fail_closed(stream: io.StringIO) -> None:
    logging.getLogger("bastion.y").warning("%s and %s", "alice@example.com")
    assert "alice@example.com" not in stream.getvalue()
    assert FAILED in stream.getvalue()


def test_uvicorn_access_lines_keep_their_arguments() -> None:
    from uvicorn.logging import AccessFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
    access = logging.getLogger("uvicorn.access")
    access.addHandler(handler)
    redacting = install_log_redaction(DETECTOR, loggers=("uvicorn.access",))
    before, access.propagate, level = access.level, False, access.level
    access.setLevel(logging.INFO)
    try:
        access.info(
            '%s - "%s %s HTTP/%s" %d',
            "203.0.113.9:51234",
            "GET",
            "/v1/users?email=alice@example.com",
            "1.1",
            200,
        )
    finally:
        uninstall_log_redaction(redacting)
        access.removeHandler(handler)
        access.propagate = True
        access.setLevel(level)
    written = out.getvalue()
    assert "alice@example.com" not in written
    assert "203.0.113.9" not in written
    assert '<IP_ADDRESS>:51234 - "GET /v1/users?email=<EMAIL_ADDRESS> HTTP/1.1" 200' in written
    assert before == level


def test_a_filter_on_a_logger_would_miss_children_which_is_why_handlers_get_it() -> None:
    # Python's rule the installer relies on: logger filters see only their own records.
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    parent = logging.getLogger("demo.parent")
    parent.addHandler(handler)
    parent.propagate = False
    parent.addFilter(RedactingFilter(DETECTOR))
    try:
        logging.getLogger("demo.parent.child").warning("alice@example.com")
        assert "alice@example.com" in out.getvalue()  # the logger's filter never ran
        redacting = install_log_redaction(DETECTOR, loggers=("demo.parent",))
        logging.getLogger("demo.parent.child").warning("bob@example.com")
        uninstall_log_redaction(redacting)
        assert "bob@example.com" not in out.getvalue()
    finally:
        parent.filters.clear()
        parent.removeHandler(handler)
        parent.propagate = True


def test_last_resort_is_covered(capsys: pytest.CaptureFixture[str]) -> None:
    lonely = logging.getLogger("no.handlers.anywhere")
    lonely.propagate = False  # so only logging.lastResort can write it
    redacting = install_log_redaction(DETECTOR, loggers=())
    try:
        lonely.warning("mail %s", "alice@example.com")
    finally:
        uninstall_log_redaction(redacting)
        lonely.propagate = True
    err = capsys.readouterr().err
    assert "mail <EMAIL_ADDRESS>" in err
    assert "alice@example.com" not in err


def test_lazy_factory_builds_the_detector_on_first_record_only() -> None:
    built: list[int] = []

    def factory() -> PiiDetector:
        built.append(1)
        return DETECTOR

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    log = logging.getLogger("lazy.component")
    log.addHandler(handler)
    log.propagate = False
    redacting = install_log_redaction(factory, loggers=("lazy.component",))
    try:
        assert built == []
        log.warning("a %s", "alice@example.com")
        log.warning("b %s", "bob@example.com")
    finally:
        uninstall_log_redaction(redacting)
        log.removeHandler(handler)
        log.propagate = True
    assert built == [1]
    assert out.getvalue() == "a <EMAIL_ADDRESS>\nb <EMAIL_ADDRESS>\n"


def test_install_is_idempotent_and_uninstall_removes_it() -> None:
    handler = logging.StreamHandler(io.StringIO())
    log = logging.getLogger("idem.component")
    log.addHandler(handler)
    try:
        first = install_log_redaction(DETECTOR, loggers=("idem.component",))
        second = install_log_redaction(DETECTOR, loggers=("idem.component",))
        assert [type(f) for f in handler.filters] == [RedactingFilter]
        assert handler.filters == [first]
        uninstall_log_redaction(second)
        uninstall_log_redaction(first)
        assert handler.filters == []
        assert logging.lastResort is None or first not in logging.lastResort.filters
    finally:
        log.removeHandler(handler)
