"""`bastion privacy redact`: a stdin→stdout filter, line by line, no home and no token.

In-process runs (`main()` with a byte stdin) cover the output shapes; two real processes check
what only a pipe shows: each line comes out before the next is written (per-line flush), and
undecodable bytes, a missing home and an unset token change nothing.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from bastion.cli import main
from support import BIN

LINES = (
    "mail alice@example.com now\n"
    "from 192.168.10.34 card 4111 1111 1111 1111\r\n"
    "nothing here\n"
    "last line without newline +44 20 7946 0958"
)


@pytest.fixture
def redact(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> Any:
    """Run `bastion privacy redact ARGS` in-process on stdin bytes: (exit code, out, err)."""
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "never-created"))
    monkeypatch.delenv("BASTION_TOKEN", raising=False)

    def run(data: bytes, *args: str) -> tuple[int, bytes, bytes]:
        capsysbinary.readouterr()
        with monkeypatch.context() as patch:
            patch.setattr(sys, "argv", ["bastion", "privacy", "redact", *args])
            patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
            try:
                main()
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else 1
        captured = capsysbinary.readouterr()
        return code, captured.out, captured.err

    return run


def test_redacts_each_line_and_keeps_line_endings(redact: Any, tmp_path: Path) -> None:
    code, out, _ = redact(LINES.encode())
    assert code == 0
    assert out.decode() == (
        "mail <EMAIL_ADDRESS> now\n"
        "from <IP_ADDRESS> card <CREDIT_CARD>\r\n"
        "nothing here\n"
        "last line without newline <PHONE_NUMBER>"
    )
    assert not (tmp_path / "never-created").exists()  # a pure filter: no home was made


def test_json_gives_one_object_per_line_without_the_matched_text(redact: Any) -> None:
    code, out, _ = redact(LINES.encode(), "--json")
    assert code == 0
    documents = [json.loads(line) for line in out.decode().splitlines()]
    assert len(documents) == 4
    assert documents[0] == {
        "text": "mail <EMAIL_ADDRESS> now",
        "findings": [{"entity": "EMAIL_ADDRESS", "start": 5, "end": 22, "score": 1.0}],
    }
    assert [f["entity"] for f in documents[1]["findings"]] == ["IP_ADDRESS", "CREDIT_CARD"]
    assert documents[2] == {"text": "nothing here", "findings": []}
    assert "alice" not in out.decode()
    assert "4111" not in out.decode()


def test_mask_style_keeps_lengths(redact: Any) -> None:
    code, out, _ = redact(b"mail alice@example.com now\n", "--style", "mask")
    assert code == 0
    assert out == b"mail " + b"*" * len("alice@example.com") + b" now\n"


def test_entities_and_min_score_restrict(redact: Any) -> None:
    data = b"a@example.com 10.0.0.1 ssn 536-22-8726\n"
    assert (
        redact(data, "--entities", "IP_ADDRESS")[1]
        == b"a@example.com <IP_ADDRESS> ssn 536-22-8726\n"
    )
    assert redact(data, "--min-score", "0.9")[1] == b"<EMAIL_ADDRESS> 10.0.0.1 ssn 536-22-8726\n"


def test_bad_utf8_is_replaced_and_still_redacted(redact: Any) -> None:
    code, out, _ = redact(b"\xff\xfe mail alice@example.com \xc3\n")
    assert code == 0
    assert out.decode() == "\ufffd\ufffd mail <EMAIL_ADDRESS> \ufffd\n"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--entities", "EMAIL_ADDRESS,PERSON"], "privacy.unknown_entity"),
        (["--min-score", "1.5"], "privacy.bad_min_score"),
        (["--style", "hash"], "privacy.bad_style"),
    ],
)
def test_bad_options_exit_2_with_a_coded_message(redact: Any, args: list[str], code: str) -> None:
    exit_code, out, err = redact(b"a@example.com\n", *args)
    assert exit_code == 2
    assert out == b""
    assert f"[{code}]" in err.decode()


def test_empty_input_writes_nothing(redact: Any) -> None:
    assert redact(b"") == (0, b"", b"")


def test_a_pipe_gets_each_line_before_the_next_is_written(tmp_path: Path) -> None:
    env = {**os.environ, "BASTION_HOME": str(tmp_path / "none")}
    env.pop("BASTION_TOKEN", None)
    process = subprocess.Popen(
        [BIN, "privacy", "redact"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    got: list[bytes] = []

    def read_one() -> None:
        assert process.stdout is not None
        got.append(process.stdout.readline())

    try:
        for line, expected in [
            (b"first alice@example.com\n", b"first <EMAIL_ADDRESS>\n"),
            (b"second \xff 10.0.0.1\n", "second \ufffd <IP_ADDRESS>\n".encode()),
        ]:
            process.stdin.write(line)
            process.stdin.flush()  # stdin stays open: only a per-line flush lets this through
            reader = threading.Thread(target=read_one)
            reader.start()
            reader.join(timeout=120)
            assert not reader.is_alive(), "no output for a line while stdin is still open"
            assert got.pop() == expected
        process.stdin.close()
        assert process.wait(timeout=60) == 0
        assert process.stdout.read() == b""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_help_says_no_token_and_no_home_are_needed() -> None:
    done = subprocess.run(
        [BIN, "privacy", "redact", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert done.returncode == 0
    assert "needs no token and no Bastion home" in done.stdout


@pytest.mark.e2e
def test_the_server_redacts_what_uvicorn_logs(tmp_path: Path) -> None:
    """`bastion server` puts the filter on uvicorn's handlers after configuring them: the
    access line of a request whose URL holds an e-mail address shows the tag instead."""
    import httpx

    from bastion.core import Settings
    from bastion.platform import Platform
    from servers import running_server

    home = tmp_path / "home"
    with Platform.initialise(Settings.from_env(home=home)):
        pass
    env = {**os.environ, "BASTION_HOME": str(home), "BASTION_ACCESS_LOG": "true"}
    env.pop("BASTION_TOKEN", None)
    with running_server(env, tmp_path / "server.log") as server:
        response = httpx.get(f"{server.url}/healthz", params={"email": "alice@example.com"})
        assert response.status_code == 200
    log = (tmp_path / "server.log").read_text()
    assert "alice@example.com" not in log
    assert "alice%40example.com" not in log
    assert "/healthz?email=" in log
