"""`bastion data tokenize|detokenize|keys …` end to end against a temporary home."""

from __future__ import annotations

import csv
import io
import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import BIN, cli_token_for, server_env


@pytest.fixture
def steward(cli: Any, admin_token: str) -> str:
    return cli_token_for(cli, admin_token, "steward", "data-steward")


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def test_lines_round_trip_keeping_empty_lines(
    cli: Any, steward: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = ["alice@example.com", "", "Zoë Ω", "alice@example.com"]
    _stdin(monkeypatch, "\n".join(values) + "\n")
    made = cli("data", "tokenize", "--context", "email", "--reversible", token=steward)
    assert made.code == 0, made.err
    tokens = made.out.splitlines()
    assert len(tokens) == 4
    assert tokens[1] == ""
    assert tokens[0] == tokens[3]
    assert tokens[0].startswith("rtk_v1_")
    assert "alice" not in made.out

    _stdin(monkeypatch, made.out)
    back = cli("data", "detokenize", "--context", "email", token=steward)
    assert back.code == 0, back.err
    assert back.out.splitlines() == values

    _stdin(monkeypatch, "alice@example.com\r\nbob")  # CRLF and no final newline
    plain = cli("data", "tokenize", "--context", "email", token=steward)
    lines = plain.out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("dtk_v1_")
    _stdin(monkeypatch, "alice@example.com\n")
    assert cli("data", "tokenize", "--context", "email", token=steward).out.splitlines() == [
        lines[0]
    ]


def test_csv_round_trip_and_unknown_column(cli: Any, steward: str, tmp_path: Path) -> None:
    source = tmp_path / "people.csv"
    rows = [
        ["id", "email", "name", "city"],
        ["1", "ann@example.com", "Ann, Jr.", "Oslo"],
        ["2", "", "Bob", "Lima"],
        ["3", "ann@example.com", 'Quote "Q"', "Rome"],
    ]
    with source.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)

    out = tmp_path / "tokenized.csv"
    unknown = cli(
        "data", "tokenize", "--csv", str(source), "--columns", "email,phone,zip",
        "--out", str(out), token=steward,
    )  # fmt: skip
    assert unknown.code == 2
    assert "privacy.unknown_column" in unknown.err
    assert "phone, zip" in unknown.err
    assert "id, email, name, city" in unknown.err
    assert not out.exists()
    assert list(tmp_path.glob(".*.tmp")) == []

    made = cli(
        "data", "tokenize", "--csv", str(source), "--columns", "email,name", "--reversible",
        "--out", str(out), token=steward,
    )  # fmt: skip
    assert made.code == 0, made.err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with out.open(newline="") as handle:
        tokenized = list(csv.reader(handle))
    assert tokenized[0] == rows[0]
    assert [r[0] for r in tokenized] == [r[0] for r in rows]
    assert [r[3] for r in tokenized] == [r[3] for r in rows]
    assert tokenized[2][1] == ""  # an empty cell stays empty
    assert tokenized[1][1] == tokenized[3][1]  # same value, same column: same token
    assert tokenized[1][1].startswith("rtk_v1_")
    assert "ann@example.com" not in out.read_text()

    # Each column is its own context: the name column's tokens do not open as emails.
    wrong = cli(
        "data", "detokenize", "--csv", str(out), "--columns", "name", "--context", "email",
        token=steward,
    )  # fmt: skip
    assert wrong.code == 2
    assert "privacy.bad_token" in wrong.err

    back = cli("data", "detokenize", "--csv", str(out), "--columns", "email,name", token=steward)
    assert back.code == 0, back.err
    assert list(csv.reader(io.StringIO(back.out))) == rows


def test_bad_csv_and_options(cli: Any, steward: str, tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    result = cli("data", "tokenize", "--csv", str(ragged), "--columns", "a", token=steward)
    assert result.code == 2
    assert "privacy.bad_csv" in result.err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = cli("data", "tokenize", "--csv", str(empty), "--columns", "a", token=steward)
    assert result.code == 2
    assert "privacy.bad_csv" in result.err
    missing = cli(
        "data", "tokenize", "--csv", str(tmp_path / "nope.csv"), "--columns", "a", token=steward
    )
    assert missing.code == 2
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("first name\nAnn\n")
    result = cli("data", "tokenize", "--csv", str(spaced), "--columns", "first name", token=steward)
    assert result.code == 2
    assert "privacy.bad_context" in result.err
    assert "--context" in result.err
    assert cli("data", "tokenize", token=steward).code == 2  # no --context
    assert cli("data", "tokenize", "--context", "c", "--columns", "a", token=steward).code == 2
    assert cli("data", "tokenize", "--csv", str(ragged), token=steward).code == 2


def test_keys_rotate_destroy_and_denials(
    cli: Any, admin_token: str, steward: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    auditor = cli_token_for(cli, admin_token, "auditor", "auditor")
    assert cli("data", "keys", "list", "--json", token=steward).json() == []
    _stdin(monkeypatch, "4111111111111111\n")
    old = cli("data", "tokenize", "--context", "card", "--reversible", token=steward).out

    _stdin(monkeypatch, "4111111111111111\n")
    denied = cli("data", "tokenize", "--context", "card", token=auditor)
    assert denied.code == 3
    assert "auth.denied" in denied.err
    _stdin(monkeypatch, old)
    denied = cli("data", "detokenize", "--context", "card", token=auditor)
    assert denied.code == 3
    assert "4111" not in denied.out + denied.err
    assert cli("data", "keys", "rotate", token=auditor).code == 3

    rotated = cli("data", "keys", "rotate", "--json", token=steward)
    assert rotated.code == 0, rotated.err
    assert rotated.json()["version"] == 2
    listed = cli("data", "keys", "list", "--json", token=auditor).json()
    assert [(k["version"], k["state"]) for k in listed] == [(1, "retired"), (2, "active")]

    unconfirmed = cli("data", "keys", "destroy", "1", token=steward)
    assert unconfirmed.code == 2
    assert "--yes" in unconfirmed.err
    active = cli("data", "keys", "destroy", "2", "--yes", token=steward)
    assert active.code == 5
    assert "privacy.token_key_active" in active.err
    destroyed = cli("data", "keys", "destroy", "1", "--yes", "--json", token=steward)
    assert destroyed.code == 0, destroyed.err
    assert destroyed.json()["keystore_answer"] == "crypto.key_shredded"
    evidence = cli("data", "keys", "evidence", "1", "--json", token=auditor)
    assert evidence.json() == destroyed.json()

    _stdin(monkeypatch, old)
    gone = cli("data", "detokenize", "--context", "card", token=steward)
    assert gone.code == 4
    assert "privacy.token_key_destroyed" in gone.err
    assert "destroyed on" in gone.err
    assert gone.out == ""


def test_real_pipes(cli: Any, steward: str, home: Path) -> None:
    """The installed executable on real stdin/stdout, UTF-8 included."""
    env = {**server_env(home), "BASTION_TOKEN": steward, "PYTHONIOENCODING": "utf-8"}

    def run(*args: str, data: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BIN, "data", *args], input=data, env=env, capture_output=True, text=True,
            encoding="utf-8", timeout=60, check=False,
        )  # fmt: skip

    made = run("tokenize", "--context", "name", "--reversible", data="Zoë\n\nΩmega\n")
    assert made.returncode == 0, made.stderr
    back = run("detokenize", "--context", "name", data=made.stdout)
    assert back.returncode == 0, back.stderr
    assert back.stdout == "Zoë\n\nΩmega\n"
    listed = json.loads(run("keys", "list", "--json", data="").stdout)
    assert [k["version"] for k in listed] == [1]
