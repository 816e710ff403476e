"""The `bastion` CLI against a real temporary BASTION_HOME (SQLite, and PostgreSQL for init).

Two ways in: `proc()` runs the installed `bastion` executable in a child process (real exit
codes, real stdout/stderr, nothing shared with the test); `cli()` calls the same entry
point, `bastion.cli.main`, in-process, which is ~20x faster for the many management calls.
Both go through the one wrapper that maps errors to exit codes.
"""

from __future__ import annotations

import secrets
import stat
from pathlib import Path
from typing import Any

import pytest

from support import TOKEN_LINE, cli_token_for, new_master_key


def _names(cli: Any, token: str) -> dict[str, dict[str, Any]]:
    result = cli("principal", "list", "--json", token=token)
    assert result.code == 0, result.err
    return {p["name"]: p for p in result.json()}


# ------------------------------------------------------------------ init


def test_init_creates_a_private_home_and_prints_one_token(proc: Any, home: Path) -> None:
    first = proc("init")
    assert first.code == 0, first.err
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    master = home / "master.key"
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    assert (home / "keys").is_dir()
    assert stat.S_IMODE((home / "keys").stat().st_mode) == 0o700
    token = first.token()
    assert sum(TOKEN_LINE.match(line) is not None for line in first.out.splitlines()) == 1
    assert "export BASTION_TOKEN" in first.out
    key = master.read_text().strip()
    assert key not in first.out
    assert key not in first.err

    # The printed token works.
    listed = proc("principal", "list", "--json", token=token)
    assert listed.code == 0, listed.err
    assert [(p["name"], p["roles"]) for p in listed.json()] == [("admin", ["admin"])]

    again = proc("init")
    assert again.code == 0, again.err
    assert "bst_" not in again.out
    assert "initialised" in again.out
    assert master.read_text().strip() == key  # the master key is never replaced


def test_init_new_admin_token_issues_a_fresh_working_token(cli: Any, admin_token: str) -> None:
    result = cli("init", "--new-admin-token")
    assert result.code == 0, result.err
    fresh = result.token()
    assert fresh != admin_token
    for token in (fresh, admin_token):
        listed = cli("token", "list", "--json", token=token)
        assert listed.code == 0, listed.err
    assert len(cli("token", "list", "--json", token=fresh).json()) == 2


def test_commands_before_init_say_to_run_init(proc: Any, home: Path) -> None:
    result = proc("principal", "list", token="bst_whatever")
    assert result.code == 7  # unavailable: nothing initialised here
    assert "bastion init" in result.err
    assert result.out == ""
    assert not home.exists()  # a mistyped BASTION_HOME is not silently created

    with_key = proc("token", "list", token="x", BASTION_MASTER_KEY=new_master_key())
    assert with_key.code == 7
    assert "bastion init" in with_key.err


def test_wrong_master_key_is_an_integrity_failure(proc: Any, home: Path) -> None:
    token = proc("init").token()
    other = new_master_key()
    result = proc("principal", "list", token=token, BASTION_MASTER_KEY=other)
    assert result.code == 6
    assert "crypto.wrong_master_key" in result.err
    assert other not in result.err
    assert other not in result.out
    assert result.out == ""


def test_malformed_master_key_is_a_config_error(
    cli: Any, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_MASTER_KEY", "not-a-key")
    result = cli("principal", "list", token=admin_token)
    assert result.code == 2
    assert "crypto.bad_master_key" in result.err
    assert "not-a-key" not in result.err


def test_init_and_management_on_postgresql(proc: Any, home: Path, pg_schema_url: str) -> None:
    env = {"BASTION_DATABASE_URL": pg_schema_url}
    init = proc("init", **env)
    assert init.code == 0, init.err
    token = init.token()
    assert not (home / "bastion.db").exists()  # the database is PostgreSQL, not SQLite

    added = proc("principal", "add", "bob", "--role", "deployer", "--json", token=token, **env)
    assert added.code == 0, added.err
    assert added.json()["roles"] == ["deployer"]

    issued = proc("token", "create", "--for", "bob", "--ttl", "1h", "--json", token=token, **env)
    assert issued.code == 0, issued.err
    assert issued.json()["info"]["roles"] == ["deployer"]
    bob = issued.json()["token"]
    mine = proc("token", "list", "--json", token=bob, **env)
    assert mine.code == 0, mine.err
    assert [t["id"] for t in mine.json()] == [issued.json()["info"]["id"]]


# ------------------------------------------------------------------ principals


def test_principal_lifecycle(cli: Any, admin_token: str) -> None:
    added = cli(
        "principal",
        "add",
        "alice",
        "--role",
        "approver",
        "--role",
        "auditor",
        "--description",
        "risk team",
        "--json",
        token=admin_token,
    )
    assert added.code == 0, added.err
    alice = added.json()
    assert alice["name"] == "alice"
    assert alice["id"].startswith("prn_")
    assert alice["roles"] == ["approver", "auditor"]
    assert (alice["kind"], alice["disabled"], alice["description"]) == ("user", False, "risk team")

    svc = cli("principal", "add", "ci-bot", "--kind", "service", "--json", token=admin_token)
    assert svc.json()["kind"] == "service"

    listed = _names(cli, admin_token)
    assert set(listed) == {"admin", "alice", "ci-bot"}
    assert listed["alice"] == alice

    alice_token = cli("token", "create", "--for", "alice", "--json", token=admin_token)
    alice_secret = alice_token.json()["token"]

    disabled = cli("principal", "disable", "alice", token=admin_token)
    assert (disabled.code, disabled.out.strip()) == (0, "Disabled alice.")
    assert _names(cli, admin_token)["alice"]["disabled"] is True
    refused = cli("token", "list", token=alice_secret)
    assert refused.code == 3
    assert "auth.principal_disabled" in refused.err

    enabled = cli("principal", "enable", alice["id"], token=admin_token)
    assert (enabled.code, enabled.out.strip()) == (0, "Enabled alice.")
    assert _names(cli, admin_token)["alice"]["disabled"] is False
    assert cli("token", "list", token=alice_secret).code == 0

    roles = cli("principal", "roles", "alice", "--role", "deployer", token=admin_token)
    assert roles.code == 0, roles.err
    assert "deployer" in roles.out
    assert _names(cli, admin_token)["alice"]["roles"] == ["deployer"]


def test_principal_list_table_output(cli: Any, admin_token: str) -> None:
    result = cli("principal", "list", token=admin_token)
    assert result.code == 0
    assert "admin" in result.out
    assert "prn_" in result.out


def test_duplicate_principal_is_a_conflict(cli: Any, admin_token: str) -> None:
    assert cli("principal", "add", "dup", token=admin_token).code == 0
    again = cli("principal", "add", "dup", "--role", "auditor", token=admin_token)
    assert again.code == 5
    assert "identity.principal_exists" in again.err
    assert _names(cli, admin_token)["dup"]["roles"] == []


def test_unknown_role_is_invalid_input(cli: Any, admin_token: str) -> None:
    result = cli("principal", "add", "eve", "--role", "wizard", token=admin_token)
    assert result.code == 2
    assert "identity.unknown_role" in result.err
    assert "eve" not in _names(cli, admin_token)


def test_approver_cannot_add_principals(cli: Any, admin_token: str) -> None:
    approver = cli_token_for(cli, admin_token, "ann", "approver")
    result = cli("principal", "add", "mallory", "--role", "admin", token=approver)
    assert result.code == 3
    assert "auth.denied" in result.err
    assert result.out == ""
    assert "mallory" not in _names(cli, admin_token)


def test_admin_cannot_disable_themselves(cli: Any, admin_token: str) -> None:
    result = cli("principal", "disable", "admin", token=admin_token)
    assert result.code == 3
    assert "auth.sod_violation" in result.err
    assert _names(cli, admin_token)["admin"]["disabled"] is False


# ------------------------------------------------------------------ tokens


def test_token_create_list_rotate_revoke(cli: Any, admin_token: str) -> None:
    created = cli("token", "create", "--name", "ci", "--ttl", "15m", "--json", token=admin_token)
    assert created.code == 0, created.err
    body = created.json()  # stdout is exactly one JSON document
    assert set(body) == {"token", "info"}
    assert TOKEN_LINE.match(body["token"])
    info = body["info"]
    assert info["id"].startswith("tok_")
    assert (info["name"], info["roles"], info["state"]) == ("ci", ["admin"], "active")

    listed = cli("token", "list", "--json", token=body["token"])
    assert listed.code == 0, listed.err
    assert info["id"] in {t["id"] for t in listed.json()}
    assert "bst_" not in listed.out  # listing shows metadata, never secrets

    rotated = cli("token", "rotate", info["id"], "--grace", "10m", "--json", token=admin_token)
    assert rotated.code == 0, rotated.err
    successor = rotated.json()
    assert successor["info"]["id"] != info["id"]
    assert successor["info"]["name"] == "ci"
    assert cli("token", "list", token=successor["token"]).code == 0
    assert cli("token", "list", token=body["token"]).code == 0  # still inside the grace period
    everyone = {
        t["id"]: t for t in cli("token", "list", "--all", "--json", token=admin_token).json()
    }
    assert everyone[info["id"]]["replaced_by"] == successor["info"]["id"]

    revoked = cli("token", "revoke", successor["info"]["id"], token=admin_token)
    assert revoked.code == 0, revoked.err
    assert revoked.out.strip() == f"Revoked {successor['info']['id']}."
    failed = cli("token", "list", token=successor["token"])
    assert failed.code == 3
    assert "auth.token_revoked" in failed.err
    assert failed.out == ""
    inactive = cli("token", "list", "--all", "--include-inactive", "--json", token=admin_token)
    assert successor["info"]["id"] in {t["id"] for t in inactive.json()}
    assert successor["info"]["id"] not in {
        t["id"] for t in cli("token", "list", "--all", "--json", token=admin_token).json()
    }


def test_token_create_prints_only_the_token_on_stdout(cli: Any, admin_token: str) -> None:
    result = cli("token", "create", "--ttl", "1h", token=admin_token)
    assert result.code == 0, result.err
    assert TOKEN_LINE.match(result.out.strip())
    assert result.out == result.out.strip() + "\n"
    assert "Shown once" in result.err
    assert "tok_" in result.err


def test_revoked_token_fails_in_a_real_process(proc: Any, cli: Any, admin_token: str) -> None:
    issued = cli("token", "create", "--json", token=admin_token).json()
    assert cli("token", "revoke", issued["info"]["id"], token=admin_token).code == 0
    result = proc("token", "list", token=issued["token"])
    assert result.code == 3
    assert "auth.token_revoked" in result.err
    assert result.out == ""


def test_token_file_is_read(cli: Any, admin_token: str, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(admin_token + "\n")
    assert cli("token", "list", "--token-file", str(path)).code == 0
    missing = cli("token", "list", "--token-file", str(tmp_path / "nope"))
    assert missing.code == 2
    assert "config.invalid" in missing.err


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "auth.token_missing"),
        ("", "auth.token_missing"),
        ("garbage", "auth.token_malformed"),
        ("bst_" + "A" * 72, "auth.token_malformed"),
    ],
)
def test_bad_credentials_exit_3(cli: Any, admin_token: str, token: str | None, code: str) -> None:
    result = cli("principal", "list", token=token)
    assert result.code == 3
    assert code in result.err
    assert result.out == ""


def test_tampered_token_is_refused(cli: Any, admin_token: str) -> None:
    # Flip one character of the secret part: the checksum no longer matches.
    flipped = admin_token[:40] + ("a" if admin_token[40] != "a" else "b") + admin_token[41:]
    result = cli("token", "list", token=flipped)
    assert result.code == 3
    assert "auth.token_" in result.err


def test_missing_token_in_a_real_process(proc: Any, cli: Any, admin_token: str) -> None:
    result = proc("principal", "list")
    assert result.code == 3
    assert "auth.token_missing" in result.err


@pytest.mark.parametrize("ttl", ["5x", "-1h", "1.5h", "h"])
def test_bad_ttl_is_invalid_input(cli: Any, admin_token: str, ttl: str) -> None:
    before = len(cli("token", "list", "--json", token=admin_token).json())
    result = cli("token", "create", "--ttl", ttl, token=admin_token)
    assert result.code == 2
    assert "input.invalid" in result.err
    assert result.out == ""
    assert len(cli("token", "list", "--json", token=admin_token).json()) == before


def test_ttl_beyond_the_maximum_is_refused(cli: Any, admin_token: str) -> None:
    result = cli("token", "create", "--ttl", "400d", token=admin_token)
    assert result.code == 2
    assert "auth.bad_ttl" in result.err


def test_unknown_token_id_is_not_found(cli: Any, admin_token: str) -> None:
    result = cli("token", "revoke", "tok_" + secrets.token_hex(4), token=admin_token)
    assert result.code == 4
    assert "identity.token_not_found" in result.err
