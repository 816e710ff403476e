"""`bastion demo` (what `make run` runs), in its own process: its printed claims checked against
the API of the server it leaves running, the bad inputs it must explain rather than crash on
(a second demo on the same home, a port in use, a corrupted home, an expired token), Ctrl-C,
and a second run (the drift scenario) that duplicates nothing and rolls the canary back.

The served run and the re-run share one home, so they are one test (xdist would otherwise
split them across workers)."""

from __future__ import annotations

import json
import os
import queue
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.core import Settings
from bastion.core.errors import NotFound
from bastion.platform import Platform
from bastion.workflows import demo as demo_flow
from support import BIN, free_port, new_master_key, server_env

pytestmark = pytest.mark.e2e

MODEL = "tumour-classifier"
RUN_TIMEOUT = 240.0
VALIDATION = "https://bastion.dev/attestations/validation/v1"
MIA = "https://bastion.dev/attestations/membership-inference/v1"


def _demo(
    env: dict[str, str], *args: str, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN, "demo", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _clean(result: subprocess.CompletedProcess[str]) -> None:
    """No traceback, and no token ever on the terminal."""
    assert "Traceback" not in result.stderr, result.stderr
    assert "bst_" not in result.stdout + result.stderr


@contextmanager
def _served_demo(
    env: dict[str, str], port: int, log: Path
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """`bastion demo --json` left serving: its one-line JSON summary, then the process."""
    with log.open("w") as errors:
        process = subprocess.Popen(
            [BIN, "demo", "--json", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        try:
            line = lines.get(timeout=RUN_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"no summary after {RUN_TIMEOUT} s:\n{log.read_text()}")
        if not line:
            process.wait(timeout=30)
            pytest.fail(f"the demo exited {process.returncode}:\n{log.read_text()}")
        yield process, json.loads(line)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _check_claims(url: str, summary: dict[str, Any], tokens: dict[str, Any]) -> None:
    t = {name: entry["token"] for name, entry in tokens.items()}
    with httpx.Client(base_url=url, timeout=30.0) as http:
        # Every token authenticates with the roles the summary states, and scopes.
        for person in summary["principals"]:
            who = http.get("/v1/auth/whoami", headers=_h(t[person["name"]]))
            assert who.status_code == 200, who.text
            assert sorted(who.json()["roles"]) == sorted(person["roles"])
            assert (
                who.json()["token_id"] == person["token_id"] == tokens[person["name"]]["token_id"]
            )
            assert who.json()["resources"] == person["resources"]
        roles = {p["name"]: set(p["roles"]) for p in summary["principals"]}
        assert roles["dana"] == {"model-developer", "approver"}
        assert roles["omar"] == {"deployer"}
        assert roles["clinic-app"] == {"inference-client"}
        assert summary["principals"][-1]["resources"] == ["endpoint:cancer"]

        data = summary["dataset"]
        dataset = http.get(
            f"/v1/datasets/{data['name']}/versions/{data['version']}", headers=_h(t["sam"])
        )
        assert dataset.status_code == 200, dataset.text
        assert dataset.json()["classification"] == "confidential" == data["classification"]
        assert dataset.json()["retention_days"] == 365
        assert dataset.json()["digest"] == data["digest"]
        scan = http.get(f"/v1/datasets/{data['name']}/privacy/scan", headers=_h(t["sam"]))
        assert scan.status_code == 200, scan.text

        # Both versions: as stated, signed, validated, audited, approved by both approvers.
        versions = summary["versions"]
        assert next(v["kind"] for v in versions) == "baseline"
        for v in versions:
            got = http.get(
                f"/v1/models/{MODEL}/versions/{v['number']}", headers=_h(t["dana"])
            ).json()
            assert got["id"] == v["id"]
            assert got["artifact_digest"] == v["artifact_digest"]
            assert got["lineage"][0]["dataset"] == data["name"]
            verified = http.post(
                f"/v1/models/{MODEL}/versions/{v['number']}/verify", headers=_h(t["dana"])
            )
            assert verified.json()["valid"] is True
            attestations = http.get(
                f"/v1/models/{MODEL}/versions/{v['number']}/attestations", headers=_h(t["dana"])
            ).json()
            by_type = {a["predicate_type"]: a for a in attestations}
            assert by_type[VALIDATION]["predicate"]["passed"] is True
            assert by_type[VALIDATION]["id"] == v["validation"]["attestation_id"]
            assert by_type[MIA]["predicate"]["auc_upper"] <= 0.6
            assert by_type[MIA]["id"] == v["privacy_audit"]["attestation_id"]
            approvals = http.get(
                f"/v1/models/{MODEL}/versions/{v['number']}/approvals", headers=_h(t["dana"])
            ).json()
            assert {a["approver_name"] for a in approvals if a["state"] == "valid"} == {
                "alice",
                "bob",
            }
            assert {a["id"] for a in approvals} == {a["id"] for a in v["approvals"]}
        if summary["dp_available"]:
            assert versions[1]["kind"] == "dp"
            assert versions[1]["dp"]["epsilon"] > 0

        # The refused self-approval is a recorded policy decision with the stated reason.
        (refusal,) = summary["refusals"]
        decisions = http.get(
            "/v1/policy/decisions",
            params={"subject": versions[0]["id"], "gate": "approval_grant"},
            headers=_h(t["dana"]),
        ).json()
        denied = [d for d in decisions if d["id"] == refusal["decision_id"]]
        assert denied
        assert denied[0]["allow"] is False
        assert any("segregation of duties" in r for r in denied[0]["reasons"])
        assert denied[0]["reasons"] == refusal["reasons"]

        # The endpoint serves v1 with a canary of v2 at the stated weight.
        endpoint = http.get("/v1/endpoints/cancer", headers=_h(t["omar"])).json()
        assert (
            endpoint["stable"]["number"] == versions[0]["number"] == summary["endpoint"]["stable"]
        )
        assert (
            endpoint["canary"]["number"] == versions[1]["number"] == summary["endpoint"]["canary"]
        )
        assert endpoint["canary_weight"] == summary["endpoint"]["canary_weight"] == 20.0

        # The traffic: as counted, through the gateway, with receipts.
        traffic = summary["traffic"]
        assert traffic["statuses"] == {"200": traffic["requests"]}
        assert sum(traffic["by_version"].values()) == traffic["requests"]
        assert set(traffic["by_version"]) == {
            str(versions[0]["number"]),
            str(versions[1]["number"]),
        }
        monitoring = http.get("/v1/endpoints/cancer/monitoring", headers=_h(t["omar"])).json()
        assert sum(v["requests"] for v in monitoring["versions"]) >= traffic["requests"]
        receipt = http.get(
            f"/v1/receipts/{traffic['example_receipt']['request_id']}", headers=_h(t["clinic-app"])
        )
        assert receipt.status_code == 200, receipt.text

        # The URLs it printed answer.
        assert http.get(summary["urls"]["api_docs"]).status_code == 200
        assert http.get(summary["urls"]["metrics"], headers=_h(t["omar"])).status_code == 200


def _counts(home: Path) -> dict[str, Any]:
    with Platform.from_settings(Settings.from_env(home=home)) as platform:
        _, issued = platform.bootstrap_admin("admin")
        admin = platform.tokens.authenticate(issued.secret)
        omar = platform.tokens.authenticate(
            platform.tokens.create(
                admin, principal_id=platform.principals.get(admin, "omar").id
            ).secret
        )
        dana = platform.tokens.authenticate(
            platform.tokens.create(
                admin, principal_id=platform.principals.get(admin, "dana").id
            ).secret
        )
        versions = platform.models.versions(dana, MODEL)
        return {
            "principals": sorted(p.name for p in platform.principals.list(admin)),
            "datasets": len(platform.datasets.list(dana, name="breast-cancer")),
            "versions": {v.version: v.id for v in versions},
            "approvals": {
                v.version: len(platform.approvals.list(dana, MODEL, v.version)) for v in versions
            },
            "attestations": {
                v.version: len(platform.attestations.list(dana, MODEL, v.version)) for v in versions
            },
            "endpoints": [e.name for e in platform.deployments.endpoints(omar)],
            "history": [
                (e.action, e.actor, e.reason) for e in platform.deployments.history(omar, "cancer")
            ],
            "incidents": {i.id: i.trigger for i in platform.incidents.list(omar, "cancer")},
        }


def _tokens_work(home: Path, tokens: dict[str, Any]) -> dict[str, bool]:
    from bastion.core.errors import AuthenticationError

    out = {}
    with Platform.from_settings(Settings.from_env(home=home)) as platform:
        for name, entry in tokens.items():
            try:
                platform.tokens.authenticate(entry["token"])
                out[name] = True
            except AuthenticationError:
                out[name] = False
    return out


def test_demo_serves_what_it_claims_reruns_idempotently_and_rolls_back_on_drift(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = server_env(home)
    port = free_port()
    with _served_demo(env, port, tmp_path / "demo.err") as (process, summary):
        token_file = Path(summary["token_file"])
        assert token_file == home / "demo-tokens.json"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        tokens = json.loads(token_file.read_text())["tokens"]
        assert summary["url"] == f"http://127.0.0.1:{port}"
        _check_claims(summary["url"], summary, tokens)
        assert all(p["created"] for p in summary["principals"])

        # A second demo on the same home while this one runs: told, not crashed.
        second = _demo(env, "--no-serve", "--listen", "127.0.0.1:0", timeout=60)
        _clean(second)
        assert second.returncode == 5, second.stderr
        assert "already running" in second.stderr
        assert "demo.already_running" in second.stderr
        # A port in use, on another home: told before anything is set up there.
        other = tmp_path / "other"
        busy = _demo(server_env(other), "--no-serve", "--listen", f"127.0.0.1:{port}", timeout=60)
        _clean(busy)
        assert busy.returncode == 5, busy.stderr
        assert "already in use" in busy.stderr
        assert "--listen" in busy.stderr
        assert not (other / "bastion.db").exists()

        # Ctrl-C: a clean stop, no traceback.
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    errors = (tmp_path / "demo.err").read_text()
    assert "Traceback" not in errors
    assert "bst_" not in errors
    assert "Stopped the demo server" in errors
    before = _counts(home)

    # The old tokens are dead (as if expired); the re-run does not need them and replaces them.
    with Platform.from_settings(Settings.from_env(home=home)) as platform:
        admin = platform.tokens.authenticate(tokens["admin"]["token"])
        for entry in tokens.values():
            if entry["principal"] != "admin":
                platform.tokens.revoke(admin, entry["token_id"])
    rerun = _demo(env, "--no-serve", "--json", "--scenario", "drift", "--listen", "127.0.0.1:0")
    _clean(rerun)
    assert rerun.returncode == 0, rerun.stderr
    again = json.loads(rerun.stdout)
    assert again["serving"] is False
    # Nothing duplicated: the same principals, dataset, versions, approvals, attestations.
    assert not any(p["created"] for p in again["principals"])
    assert again["dataset"]["created"] is False
    assert again["dataset"]["id"] == summary["dataset"]["id"]
    assert [(v["number"], v["id"], v["created"]) for v in again["versions"]] == [
        (v["number"], v["id"], False) for v in summary["versions"]
    ]
    assert again["refusals"][0]["decision_id"] == summary["refusals"][0]["decision_id"]
    assert again["endpoint"]["actions"] == ["reused as it was"]
    after = _counts(home)
    for key in ("principals", "datasets", "versions", "approvals", "attestations", "endpoints"):
        assert after[key] == before[key], key
    # Fresh tokens: written 0600, working; every previous one revoked.
    new_tokens = json.loads((home / "demo-tokens.json").read_text())["tokens"]
    assert stat.S_IMODE((home / "demo-tokens.json").stat().st_mode) == 0o600
    assert set(_tokens_work(home, new_tokens).values()) == {True}
    assert set(_tokens_work(home, tokens).values()) == {False}
    # Drift: the shifted traffic drifted, the server rolled the canary back by itself and
    # snapshotted an incident; the API agrees.
    drift = again["drift"]
    assert drift["rolled_back"] is True, drift
    assert drift["rollback"]["actor"] == "system:rollout-controller"
    assert "drift" in drift["rollback"]["reason"]
    assert drift["endpoint_after"] == {"stable": summary["endpoint"]["stable"], "canary": None}
    assert any(a["name"] in ("DriftDetected", "CanaryRolledBack") for a in drift["alerts"])
    automatic = [h for h in after["history"] if h[0] == "rollback"]
    assert automatic
    assert automatic[0][1] == "system:rollout-controller"
    assert after["incidents"][drift["incident"]["id"]] in ("rollback", "manual")
    assert again["timings"]["drift_seconds"] < 60


@pytest.mark.parametrize("damage", ["master.key", "bastion.db"])
def test_a_corrupted_home_is_explained(tmp_path: Path, damage: str) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    env = server_env(home)
    if damage == "bastion.db":
        env["BASTION_MASTER_KEY"] = new_master_key()
    (home / damage).write_bytes(os.urandom(64))
    os.chmod(home / damage, 0o600)
    result = _demo(env, "--no-serve", "--listen", "127.0.0.1:0", timeout=60)
    _clean(result)
    assert result.returncode == 2, result.stderr
    assert "demo.home_unusable" in result.stderr
    assert "move it away" in result.stderr
    assert "BASTION_HOME" in result.stderr


def test_an_expired_or_missing_demo_token_says_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    path = home / "demo-tokens.json"
    now = datetime.now(UTC)
    with pytest.raises(NotFound, match="make run") as missing:
        demo_flow.token_from_file(path, "omar", now)
    assert missing.value.code == "demo.no_token_file"
    secret = "bst_" + "0" * 72

    def write(expires: datetime) -> None:
        entry = {"part": "deployer", "token": secret, "expires_at": expires.isoformat()}
        path.write_text(json.dumps({"tokens": {"omar": entry}}))

    write(now + timedelta(hours=1))
    assert demo_flow.token_from_file(path, "omar", now) == secret
    assert demo_flow.token_from_file(path, "deployer", now) == secret  # by part, too
    with pytest.raises(NotFound, match="omar"):
        demo_flow.token_from_file(path, "mallory", now)
    # Expired: through the CLI, a message saying what to do and nothing on stdout.
    write(now - timedelta(minutes=1))
    result = _demo(server_env(home), "--token", "omar", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "demo.token_expired" in result.stderr
    assert "make run" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_without_the_privacy_extra_v2_is_a_second_plain_model(tmp_path: Path) -> None:
    """The flow in-process (no server: setup only) as it runs where diffprivlib is missing."""
    with Platform.initialise(Settings.from_env(home=tmp_path / "home")) as platform:
        result = demo_flow.DemoWorkflow(platform, dp_available=False).setup()
        doc = result.to_json()
        assert doc["dp"]["available"] is False
        assert "privacy extra" in doc["dp"]["note"]
        assert [v["kind"] for v in doc["versions"]] == ["baseline", "plain"]
        for version in doc["versions"]:
            assert version["signature"]["verified"] is True
            assert version["validation"]["passed"] is True
            assert version["privacy_audit"]["passed"] is True
            assert [a["approver"] for a in version["approvals"]] == ["alice", "bob"]
        assert doc["endpoint"]["stable"] == 1
        assert doc["endpoint"]["canary"] == 2
        assert "bst_" not in json.dumps(doc)  # secrets stay in `issued`, for the token file
        assert set(result.issued) == {"admin", *(m.name for m in demo_flow.CAST)}
