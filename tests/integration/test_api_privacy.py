"""The privacy services over HTTP, on SQLite and PostgreSQL: scans, re-identification risk and
release checks, budgets and DP statistics, retention (holds, enforcement, deletion evidence),
DP training and membership-inference audits. Every route has a happy path and its refusals
(wrong role 403 `auth.denied`, bad input 422, unknown dataset or record 404, an audit body
over the request limit 413), and no response carries a value from the data."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.datasets import load_breast_cancer
from starlette.testclient import TestClient

from bastion.api import create_app
from bastion.core import ManualClock, Settings
from bastion.identity import Caller, Role
from bastion.platform import Platform
from bastion.privacy.dp import holdout_split
from bastion.store.tables import DatasetRow
from support import Actor, MakeActor

EMAILS = [f"person{i}.{i * 7919 % 1000}@example.org" for i in range(40)]
CARD = "4111111111111111"
INCOMES = [50_000 + i * 1237 for i in range(40)]
SECRETS = (*EMAILS, CARD)  # incomes are numbers, which noise and scores may contain by chance
MIA = "https://bastion.dev/attestations/membership-inference/v1"


def _visits() -> str:
    lines = ["email,card,age_band,zip,sex,diagnosis,income"]
    for i in range(40):
        lines.append(
            f"{EMAILS[i]},{CARD if i == 3 else ''},{['20-29', '30-39'][i % 2]},"
            f"{['0150', '5003'][(i // 2) % 2]},{'F' if i % 4 < 2 else 'M'},"
            f"{['flu', 'asthma', 'none'][i % 3]},{INCOMES[i]}"
        )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class World:
    client: TestClient
    platform: Platform
    steward: Actor
    dev: Actor
    approver: Actor
    deployer: Actor
    auditor: Actor
    admin: Actor

    def call(self, actor: Actor | None, method: str, path: str, **kwargs: Any) -> Any:
        headers = actor.headers if actor is not None else {}
        response = self.client.request(method, path, headers=headers, **kwargs)
        for value in SECRETS:  # never a value from the data, whatever the outcome
            assert value not in response.text, (method, path, value)
        return response


def _register(
    platform: Platform, caller: Caller, tmp_path: Path, name: str, data: str | bytes, days: int
) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    platform.datasets.register(
        caller, name, classification_="confidential", purposes=["analytics"],
        retention_days=days, file=path,
    )  # fmt: skip


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """The server's own retention chore off: these tests enforce through the API, and a chore
    running at the same moment would take the deletion first (the API's run then reports it
    `skipped`, correctly, which is not what the test is about)."""
    return Settings.from_env(home=tmp_path / "home", database_url=db_url, retention_check_seconds=0)


@pytest.fixture
def world(
    platform: Platform, make_actor: MakeActor, admin: Actor, tmp_path: Path
) -> Iterator[World]:
    steward = make_actor("steward", Role.DATA_STEWARD)
    _register(
        platform, platform.tokens.authenticate(steward.token), tmp_path, "visits", _visits(), 365
    )
    with TestClient(create_app(platform)) as client:
        yield World(
            client=client,
            platform=platform,
            steward=steward,
            dev=make_actor("dev", Role.MODEL_DEVELOPER),
            approver=make_actor("ann", Role.APPROVER),
            deployer=make_actor("ops", Role.DEPLOYER),
            auditor=make_actor("audrey", Role.AUDITOR),
            admin=admin,
        )


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


# -- scans, risk and release checks ------------------------------------------------------------


def test_scan_risk_and_release_check(world: World) -> None:
    w, steward = world, world.steward
    _error(w.call(steward, "GET", "/v1/datasets/visits/privacy/scan"), 404, "privacy.not_scanned")
    scanned = _ok(w.call(steward, "POST", "/v1/datasets/visits/privacy/scan", json={"sample": 100}))
    assert (scanned["name"], scanned["version"]) == ("visits", 1)
    report = scanned["report"]
    assert report["sensitive_columns"] == ["email", "card"]
    assert report["columns"]["email"]["entities"] == {"EMAIL_ADDRESS": 1.0}
    assert (report["proposed_classification"], report["under_classified"]) == ("restricted", True)
    stored = _ok(w.call(w.approver, "GET", "/v1/datasets/visits/privacy/scan?version=1"))
    assert stored == scanned

    _error(w.call(steward, "GET", "/v1/datasets/visits/privacy/risk"), 404, "privacy.not_measured")
    denied = _error(
        w.call(
            steward, "POST", "/v1/datasets/visits/privacy/release-check",
            json={"to_classification": "internal", "reason": "analytics extract"},
        ),
        403, "policy.denied",
    )  # fmt: skip
    assert denied["details"]["gate"] == "data_release"
    assert "measure it first" in denied["details"]["reasons"][0]

    body = {"quasi_identifiers": ["age_band", "zip", "sex"], "sensitive": ["diagnosis"]}
    measured = _ok(w.call(steward, "POST", "/v1/datasets/visits/privacy/risk", json=body))
    assert (measured["report"]["k"], measured["report"]["l"]) == (10, 3)
    assert measured["report"]["rows"] == 40
    assert _ok(w.call(w.dev, "GET", "/v1/datasets/visits/privacy/risk")) == measured

    check = _ok(
        w.call(
            steward, "POST", "/v1/datasets/visits/privacy/release-check",
            json={"version": 1, "to_classification": "internal", "reason": "analytics extract"},
        )
    )  # fmt: skip
    assert check["allow"] is True
    assert (check["from_classification"], check["to_classification"], check["k"]) == (
        "confidential",
        "internal",
        10,
    )
    assert check["decision_id"]


# -- budgets and DP statistics -----------------------------------------------------------------


def test_budget_and_statistics(world: World) -> None:
    w = world
    _error(w.call(w.dev, "GET", "/v1/datasets/visits/privacy/budget"), 404, "privacy.no_budget")
    refused = w.call(
        w.dev, "POST", "/v1/datasets/visits/privacy/statistics",
        json={"column": "income", "statistic": "count", "epsilon": 0.5},
    )  # fmt: skip
    assert _error(refused, 403, "policy.denied")["details"]["gate"] == "privacy_budget"

    budget = _ok(
        w.call(w.steward, "PUT", "/v1/datasets/visits/privacy/budget", json={"epsilon": 2.0})
    )
    assert (budget["epsilon_total"], budget["delta_total"], budget["spends"]) == (2.0, 0.0, 0)

    count = _ok(
        w.call(
            w.dev, "POST", "/v1/datasets/visits/privacy/statistics",
            json={"column": "income", "statistic": "count", "epsilon": 0.5},
        )
    )  # fmt: skip
    assert (count["statistic"], count["epsilon"], count["delta"]) == ("count", 0.5, 0.0)
    assert isinstance(count["value"], int)
    assert "geometric" in count["mechanism"]
    mean = _ok(
        w.call(
            w.dev, "POST", "/v1/datasets/visits/privacy/statistics",
            json={
                "version": 1, "column": "income", "statistic": "mean", "epsilon": 1.0,
                "lower": 0, "upper": 200_000,
            },
        )
    )  # fmt: skip
    assert mean["bounds"] == [0.0, 200_000.0]
    assert isinstance(mean["value"], float)
    assert mean["value"] != sum(INCOMES) / len(INCOMES)

    shown = _ok(w.call(w.approver, "GET", "/v1/datasets/visits/privacy/budget"))
    assert shown["budget"]["epsilon_spent"] == 1.5
    assert shown["budget"]["epsilon_remaining"] == 0.5
    assert [s["id"] for s in shown["spends"]] == [count["spend_id"], mean["spend_id"]]
    assert [s["epsilon"] for s in shown["spends"]] == [0.5, 1.0]

    overdraw = w.call(
        w.dev, "POST", "/v1/datasets/visits/privacy/statistics",
        json={"column": "income", "statistic": "count", "epsilon": 1.0},
    )  # fmt: skip
    assert "would exceed" in _error(overdraw, 403, "policy.denied")["message"]
    below = w.call(w.steward, "PUT", "/v1/datasets/visits/privacy/budget", json={"epsilon": 1.0})
    _error(below, 409, "privacy.budget_below_spent")


# -- retention ---------------------------------------------------------------------------------


def test_holds_enforcement_and_deletion_evidence(
    world: World, clock: ManualClock, tmp_path: Path
) -> None:
    w, steward = world, world.steward
    caller = w.platform.tokens.authenticate(steward.token)
    _register(w.platform, caller, tmp_path, "loans", "name,email\nAda,ada@example.org\n", 30)
    _register(w.platform, caller, tmp_path, "kept", "name,email\nBo,bo@example.org\n", 30)

    held = _ok(
        w.call(steward, "POST", "/v1/datasets/kept/legal-hold", json={"reason": "litigation 7"})
    )
    assert [(h["name"], h["version"], h["legal_hold"]) for h in held] == [("kept", 1, True)]
    schedule = _ok(w.call(w.auditor, "GET", "/v1/retention/schedule?name=kept"))
    (entry,) = schedule["datasets"]
    assert entry["legal_hold"] is True
    assert entry["hold"]["reason"] == "litigation 7"
    assert schedule["predictions"]["retention_days"] is None

    # Past their retention (moving the clock a day would expire every token too).
    with w.platform.database.transaction() as session:
        session.execute(
            sa.update(DatasetRow)
            .where(DatasetRow.name.in_(["loans", "kept"]))
            .values(expires_at=clock.now() - timedelta(seconds=1))
        )
    dry = _ok(w.call(steward, "POST", "/v1/retention/enforce", json={"dry_run": True}))
    assert dry["dry_run"] is True
    outcomes = {(d["name"], d["outcome"]) for d in dry["datasets"]}
    assert outcomes == {("loans", "would_delete"), ("kept", "held")}
    report = _ok(w.call(steward, "POST", "/v1/retention/enforce", json={}))
    by_name = {d["name"]: d for d in report["datasets"]}
    assert (by_name["loans"]["outcome"], by_name["kept"]["outcome"]) == ("deleted", "held")
    deletion_id = by_name["loans"]["deletion_id"]

    listed = _ok(w.call(w.auditor, "GET", "/v1/retention/deletions?kind=dataset&limit=10"))
    assert [d["id"] for d in listed] == [deletion_id]
    one = _ok(w.call(w.dev, "GET", f"/v1/retention/deletions/{deletion_id}"))
    assert (one["subject_name"], one["subject_kind"]) == ("loans@1", "dataset")
    assert one["evidence"]["state"] == "complete"
    verified = _ok(w.call(w.auditor, "POST", f"/v1/retention/deletions/{deletion_id}/verify"))
    assert verified["ok"] is True
    assert {c["name"] for c in verified["checks"]} == {"state", "ciphertext_read", "data_key"}

    released = _ok(
        w.call(
            steward, "POST", "/v1/datasets/kept/legal-hold/release",
            json={"version": 1, "reason": "case closed"},
        )
    )  # fmt: skip
    assert released[0]["legal_hold"] is False
    for text in ("ada@example.org", "bo@example.org"):
        assert text not in str((schedule, dry, report, listed, one, verified))


# -- DP training and membership-inference audits -----------------------------------------------


def _csv(names: list[str], x: np.ndarray, y: np.ndarray) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*names, "label"])
    for row, label in zip(x, y, strict=True):
        writer.writerow([*(repr(float(v)) for v in row), int(label)])
    return buffer.getvalue()


def test_train_and_audit(world: World, tmp_path: Path) -> None:
    w = world
    data = load_breast_cancer()
    names = [str(n).replace(" ", "_") for n in data.feature_names]
    x, y = data.data, data.target
    caller = w.platform.tokens.authenticate(w.steward.token)
    _register(w.platform, caller, tmp_path, "cancer", _csv(names, x, y), 30)
    _ok(w.call(w.steward, "PUT", "/v1/datasets/cancer/privacy/budget", json={"epsilon": 5.0}))

    trained = _ok(
        w.call(
            w.dev, "POST", "/v1/privacy/train",
            json={
                "dataset": "cancer", "target": "label", "epsilon": 2.0, "name": "cancer-dp",
                "holdout": 0.3, "seed": 0, "purpose": "analytics",
            },
        ),
        201,
    )  # fmt: skip
    assert (trained["model"], trained["version"], trained["dataset"]) == (
        "cancer-dp",
        1,
        "cancer@1",
    )
    assert (trained["epsilon"], trained["train_rows"], trained["test_rows"]) == (2.0, 398, 171)
    assert trained["budget"]["epsilon_spent"] == 2.0
    assert 0.0 <= trained["accuracy"] <= 1.0

    members, non_members = holdout_split(y, 0.3, 0)  # the split the run made
    body = {
        "members_csv": _csv(names, x[members[:100]], y[members[:100]]),
        "non_members_csv": _csv(names, x[non_members[:100]], y[non_members[:100]]),
        "target": "label",
        "attacks": ["loss"],
        "bootstrap": 10,
    }
    audited = _ok(
        w.call(w.steward, "POST", "/v1/models/cancer-dp/versions/1/privacy-audit", json=body), 201
    )
    assert (audited["model"], audited["version"], audited["members"]) == ("cancer-dp", 1, 100)
    assert [a["attack"] for a in audited["attacks"]] == ["loss"]
    assert 0.0 <= audited["auc_upper"] <= 1.0
    assert audited["members_sha256"].startswith("sha256:")
    (attestation,) = [
        a for a in w.platform.attestations.list(caller, "cancer-dp", 1) if a.predicate_type == MIA
    ]
    assert attestation.id == audited["attestation_id"]
    assert attestation.predicate["tool"] == "bastion api"
    row = [*x[members[0]], *x[non_members[0]]]
    cells = {repr(float(v)) for v in row if v >= 100}  # e.g. areas: no score looks like them
    assert cells
    for cell in cells:  # no row reaches a response
        assert cell not in str(trained) + str(audited)


# -- refusals ----------------------------------------------------------------------------------


def test_every_route_refuses(world: World) -> None:
    """Per route: a role without its permission gets 403 `auth.denied`, and bad input or a
    missing dataset or record its coded error."""
    w = world
    scan, risk = "/v1/datasets/visits/privacy/scan", "/v1/datasets/visits/privacy/risk"
    release, budget = (
        "/v1/datasets/visits/privacy/release-check",
        "/v1/datasets/visits/privacy/budget",
    )
    stats, hold = "/v1/datasets/visits/privacy/statistics", "/v1/datasets/visits/legal-hold"
    audit = "/v1/models/cancer-dp/versions/1/privacy-audit"
    release_body = {"to_classification": "internal", "reason": "x"}
    count = {"column": "income", "statistic": "count", "epsilon": 0.1}
    train = {"dataset": "visits", "target": "diagnosis", "epsilon": 1.0, "name": "m"}
    audit_body = {"members_csv": "a,label\n", "non_members_csv": "a,label\n", "target": "label"}
    wrong_role: list[tuple[Actor, str, str, dict[str, Any] | None]] = [
        (w.approver, "POST", scan, {}),
        (w.deployer, "GET", scan, None),
        (w.dev, "POST", risk, {"quasi_identifiers": ["zip"]}),
        (w.deployer, "GET", risk, None),
        (w.dev, "POST", release, release_body),
        (w.deployer, "GET", budget, None),
        (w.dev, "PUT", budget, {"epsilon": 1.0}),
        (w.deployer, "POST", stats, count),
        (w.auditor, "POST", hold, {"reason": "x"}),
        (w.admin, "POST", f"{hold}/release", {"reason": "x"}),
        (w.deployer, "GET", "/v1/retention/schedule", None),
        (w.auditor, "POST", "/v1/retention/enforce", {}),
        (w.deployer, "GET", "/v1/retention/deletions", None),
        (w.deployer, "GET", "/v1/retention/deletions/del_x", None),
        (w.deployer, "POST", "/v1/retention/deletions/del_x/verify", None),
        (w.steward, "POST", "/v1/privacy/train", train),
        (w.approver, "POST", audit, audit_body),
    ]
    for actor, method, path, body in wrong_role:
        _error(w.call(actor, method, path, json=body), 403, "auth.denied")
    _error(w.call(None, "GET", scan), 401, "auth.token_missing")

    s = w.steward
    bad: list[tuple[Actor, str, str, dict[str, Any] | None, int, str]] = [
        (s, "POST", scan, {"sample": 0}, 422, "input.invalid"),
        (s, "POST", scan.replace("visits", "nope"), {}, 404, "registry.dataset_not_found"),
        (s, "GET", f"{scan}?version=0", None, 422, "input.invalid"),
        (s, "GET", scan.replace("visits", "nope"), None, 404, "registry.dataset_not_found"),
        (s, "POST", risk, {"quasi_identifiers": ["zip"], "extra": 1}, 422, "input.invalid"),
        (s, "POST", risk, {"quasi_identifiers": ["postcode"]}, 422, "privacy.unknown_column"),
        (s, "GET", risk.replace("visits", "nope"), None, 404, "registry.dataset_not_found"),
        (s, "POST", release, {**release_body, "to_classification": "secret"}, 422,
         "privacy.bad_classification"),
        (s, "POST", release.replace("visits", "nope"), release_body, 404,
         "registry.dataset_not_found"),
        (s, "GET", budget.replace("visits", "nope"), None, 404, "registry.dataset_not_found"),
        (s, "PUT", budget, {"epsilon": -1}, 422, "input.invalid"),
        (s, "PUT", budget.replace("visits", "nope"), {"epsilon": 1}, 404,
         "registry.dataset_not_found"),
        (s, "POST", stats, {**count, "statistic": "mean"}, 422, "privacy.bad_bounds"),
        (s, "POST", stats.replace("visits", "nope"), count, 404, "registry.dataset_not_found"),
        (s, "POST", hold, {"reason": " "}, 422, "retention.bad_reason"),
        (s, "POST", hold.replace("visits", "nope"), {"reason": "x"}, 404,
         "registry.dataset_not_found"),
        (s, "POST", f"{hold}/release", {"reason": "x"}, 409, "retention.not_held"),
        (s, "GET", "/v1/retention/schedule?include_deleted=maybe", None, 422, "input.invalid"),
        (s, "POST", "/v1/retention/enforce", {"dry_run": True, "force": True}, 422,
         "input.invalid"),
        (s, "GET", "/v1/retention/deletions?kind=models", None, 422, "retention.bad_kind"),
        (s, "GET", "/v1/retention/deletions?limit=0", None, 422, "input.invalid"),
        (s, "GET", "/v1/retention/deletions/del_x", None, 404, "retention.deletion_not_found"),
        (s, "POST", "/v1/retention/deletions/del_x/verify", None, 404,
         "retention.deletion_not_found"),
        (w.dev, "POST", "/v1/privacy/train", {**train, "model": "svm"}, 422,
         "privacy.unknown_model"),
        (w.dev, "POST", "/v1/privacy/train", {**train, "dataset": "nope"}, 404,
         "registry.dataset_not_found"),
        (w.dev, "POST", "/v1/privacy/train", {**train, "epsilon": "lots"}, 422, "input.invalid"),
        (s, "POST", audit, audit_body, 404, "registry.model_not_found"),
        (s, "POST", audit, {**audit_body, "attacks": []}, 422, "input.invalid"),
    ]  # fmt: skip
    for actor, method, path, body, status, code in bad:
        _error(w.call(actor, method, path, json=body), status, code)

    limit = w.platform.settings.max_request_bytes
    large = {**audit_body, "members_csv": "a,label\n" + "1,0\n" * (limit // 4)}
    _error(w.call(s, "POST", audit, json=large), 413, "input.too_large")


def test_training_and_audits_beyond_the_concurrency_limit_are_refused(world: World) -> None:
    """With MAX_CONCURRENT_JOBS jobs running, another training or audit gets 503
    `privacy.busy` at once (nothing read or spent); a freed slot serves again."""
    from bastion.api.routes import privacy as routes

    body = {"dataset": "visits", "target": "x", "epsilon": 1.0, "name": "busy"}
    for _ in range(routes.MAX_CONCURRENT_JOBS):
        assert routes._jobs.acquire(blocking=False)
    try:
        _error(world.call(world.dev, "POST", "/v1/privacy/train", json=body), 503, "privacy.busy")
        audit = {"members_csv": "a\n1\n", "non_members_csv": "a\n2\n", "target": "a"}
        path = "/v1/models/busy/versions/1/privacy-audit"
        _error(world.call(world.dev, "POST", path, json=audit), 503, "privacy.busy")
    finally:
        for _ in range(routes.MAX_CONCURRENT_JOBS):
            routes._jobs.release()
    # A slot is free again: the request gets as far as the service (no budget set: denied).
    refused = world.call(world.dev, "POST", "/v1/privacy/train", json=body)
    assert refused.status_code != 503, refused.text
