"""The dashboards in-process, on SQLite and PostgreSQL: `/ui/` is static, public and locked
down (CSP, nosniff, no-store, nothing outside the package); `/v1/dashboards/…` answer who may
see them and nobody else, refuse unknown or out-of-range parameters, and show the same
figures as the API routes they aggregate; the ledger verification reports an intact log, a
kept checkpoint it extends, and a forged one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bastion.api import create_app
from bastion.deploy import RolloutPlan
from bastion.identity import Role
from bastion.platform import Platform
from bastion.registry import DatasetRef, LineageRole, ModelSpec, VersionSpec
from bastion.ui.assets import assets
from models import logistic
from releases import Release, make_release
from support import Actor, MakeActor

DASHBOARDS = (
    "/v1/dashboards/executive",
    "/v1/dashboards/oncall",
    "/v1/dashboards/debug/fraud",
    "/v1/dashboards/governance",
)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    client: TestClient
    platform: Platform
    tokens: dict[str, str]
    versions: tuple[int, int]

    def get(self, who: str, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=_auth(self.tokens[who]))
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def world(
    platform: Platform, make_actor: MakeActor, admin: Actor, tmp_path: Path
) -> Iterator[World]:
    """`fraud` serves v1 with v2 as a 50 % canary, both profiled against their training data,
    after 40 predictions (two of them with an out-of-range value)."""
    rel: Release = make_release(platform, make_actor, admin.token, tmp_path)
    steward = platform.tokens.authenticate(make_actor("steward", Role.DATA_STEWARD).token)
    trained = logistic()
    data = tmp_path / "training.csv"
    data.write_bytes(trained.csv())
    platform.datasets.register(
        steward, "cancer", classification_="internal", purposes=["scoring"], retention_days=30,
        file=data,
    )  # fmt: skip
    numbers = []
    for i in range(2):
        root = tmp_path / f"model-{i}"
        root.mkdir()
        for path, blob in trained.files().items():
            (root / path).write_bytes(blob)
        upload = platform.staging.create(rel.dev)
        platform.staging.add_tree(rel.dev, upload.id, root)
        version = platform.models.register_version(
            rel.dev,
            "scorer",
            upload.id,
            VersionSpec(
                datasets=(DatasetRef("cancer", None, LineageRole.TRAINING),), target="target"
            ),
            create=ModelSpec(purpose="scoring"),
        )
        rel.approve(version.version)
        numbers.append(version.version)
    tokens = {
        "ops": make_actor("oncall", Role.DEPLOYER).token,
        "auditor": make_actor("auditor", Role.AUDITOR).token,
        "approver": make_actor("reviewer", Role.APPROVER).token,
        "client": make_actor("svc", Role.INFERENCE_CLIENT).token,
        "admin": admin.token,
    }
    platform.deployments.deploy(rel.deployer, "fraud", "scorer", str(numbers[0]))
    platform.deployments.deploy(
        rel.deployer, "fraud", "scorer", str(numbers[1]), plan=RolloutPlan(kind="canary", weight=50)
    )
    app = create_app(platform)
    with TestClient(app) as client:
        app.state.serving._stop.set()  # no background passes: nothing judges the canary
        records = trained.records(slice(0, 40))
        records[3][trained.names[0]] = 1e6
        records[7][trained.names[0]] = 1e6
        for i, record in enumerate(records):
            r = client.post(
                "/v1/endpoints/fraud/predict",
                json={"records": [record]},
                headers={**_auth(tokens["client"]), "X-Bastion-Route-Key": f"user-{i}"},
            )
            assert r.status_code == 200, r.text
        yield World(client, platform, tokens, (numbers[0], numbers[1]))


# -- the static files -------------------------------------------------------------------------


def test_the_ui_is_static_public_and_locked_down(platform: Platform) -> None:
    client = TestClient(create_app(platform, serving=False))
    moved = client.get("/ui", follow_redirects=False)
    assert moved.status_code == 308
    assert moved.headers["location"] == "/ui/"
    index = client.get("/ui/")  # no token
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    csp = index.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert index.headers["x-content-type-options"] == "nosniff"
    assert index.headers["cache-control"] == "no-store"
    # Everything the page loads is in the package and served from this origin.
    referenced = re.findall(r'(?:src|href)="([^"#]+)"', index.text)
    assert set(referenced) >= {"app.js", "app.css", "icon.svg"}
    for name in [*referenced, *assets()]:
        response = client.get(f"/ui/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-security-policy"] == csp
    assert client.get("/ui/app.js").headers["content-type"].startswith("text/javascript")
    for missing in ("nope.js", "../app.py", "..%2fviews.py", "views/../../assets.py", "assets.py"):
        assert client.get(f"/ui/{missing}").status_code == 404, missing
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui")]
    assert "/v1/dashboards/executive" in paths


def test_the_pages_never_turn_data_into_markup() -> None:
    """Rendered data goes in as text: no HTML sinks, no eval, no inline code, no other origin,
    and the token stays in sessionStorage."""
    scripts = {n: a.body.decode() for n, a in assets().items() if n.endswith(".js")}
    assert {"app.js", "api.js", "dom.js", "charts.js", "views/governance.js"} <= set(scripts)
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
        r"localStorage|setAttribute\(\s*[\"']style|\.cookie"
    )
    for name, text in scripts.items():
        code = re.sub(r"/\*.*?\*/", "", re.sub(r"(?m)(^|\s)//.*$", "", text), flags=re.S)
        assert not forbidden.search(code), (name, forbidden.search(code))
    for name, asset in assets().items():
        text = asset.body.decode()
        # The SVG namespace is a name, not a fetch; nothing else may point elsewhere.
        others = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not others, (name, others)
    index = assets()["index.html"].body.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", index)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", index)
    assert "sessionStorage" in scripts["api.js"]


# -- the data ---------------------------------------------------------------------------------


def test_each_dashboard_answers_its_roles_only(world: World) -> None:
    c = world.client

    def status(who: str, path: str, method: str = "GET") -> int:
        return c.request(method, path, headers=_auth(world.tokens[who])).status_code

    for path in DASHBOARDS:
        denied = c.get(path, headers=_auth(world.tokens["client"]))
        assert denied.status_code == 403, path
        assert denied.json()["error"]["code"] == "auth.denied"
        assert c.get(path).status_code == 401
    for path in DASHBOARDS[:3]:  # monitor.read
        assert status("ops", path) == 200, path
        assert status("auditor", path) == 200, path
        assert status("approver", path) == 403, path
    assert status("approver", "/v1/dashboards/governance") == 200  # model.read
    verify = "/v1/dashboards/ledger/verify"
    assert status("auditor", verify, "POST") == 200  # audit.read
    assert status("admin", verify, "POST") == 200
    assert status("ops", verify, "POST") == 403
    assert status("client", verify, "POST") == 403


def test_query_parameters_are_strict(world: World) -> None:
    headers = _auth(world.tokens["auditor"])
    for path, params in (
        ("/v1/dashboards/executive", {"minutes": 0}),
        ("/v1/dashboards/executive", {"minutes": 361}),
        ("/v1/dashboards/executive", {"minute": 5}),
        ("/v1/dashboards/oncall", {"events": 1000}),
        ("/v1/dashboards/debug/fraud", {"features": "many"}),
        ("/v1/dashboards/governance", {"limit": 0}),
        ("/v1/dashboards/governance", {"limit": 10, "model": "scorer"}),
    ):
        response = world.client.get(path, params=params, headers=headers)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["error"]["code"] == "input.invalid"
    missing = world.client.get("/v1/dashboards/debug/nope", headers=headers)
    assert missing.status_code == 404
    body = world.client.post("/v1/dashboards/ledger/verify", json={"trusted": "x"}, headers=headers)
    assert body.status_code == 422


def test_on_call_and_debug_show_the_monitoring_figures(world: World) -> None:
    api = world.get("ops", "/v1/endpoints/fraud/monitoring")
    by_version = {v["version"]: v for v in api["versions"]}
    assert sum(v["requests"] for v in by_version.values()) == 40
    oncall = world.get("ops", "/v1/dashboards/oncall")
    (fraud,) = oncall["endpoints"]
    assert (fraud["stable"], fraud["canary"], fraud["canary_weight"]) == (*world.versions, 50.0)
    assert oncall["can_roll_back"] is True
    shown = {v["version"]: v for v in fraud["versions"]}
    assert set(shown) == set(by_version)
    for number, version in shown.items():
        expected = by_version[number]
        for key in ("requests", "errors", "error_rate", "latency_p95", "latency_p99", "rows"):
            assert version[key] == expected[key], (number, key)
        assert version["anomaly_rate"] == expected["anomaly_rate"]
        assert version["drift_score"] == expected["drift"]["score"]
        assert version["role"] == ("stable" if number == str(world.versions[0]) else "canary")
    assert sum(v["anomaly_rate"] * v["rows"] for v in shown.values()) == pytest.approx(2, abs=1e-3)
    for slo in ("availability", "latency"):
        mine, theirs = fraud["slo"]["budget"][slo], api["slo"]["budget"][slo]
        assert (mine["requests"], mine["remaining"]) == (theirs["requests"], theirs["remaining"])
    history = world.get("ops", "/v1/endpoints/fraud/history")
    assert [e["id"] for e in oncall["events"]] == [e["id"] for e in history]
    assert [e["action"] for e in history] == ["canary_start", "deploy"]
    assert world.get("auditor", "/v1/dashboards/oncall")["can_roll_back"] is False

    debug = world.get("ops", "/v1/dashboards/debug/fraud", features=5)
    for version in debug["versions"]:
        expected = by_version[version["version"]]
        assert version["profile"] is True
        assert version["drift_score"] == expected["drift"]["score"]
        assert len(version["features"]) == 5
        assert version["features_total"] == len(logistic().names)
        path = f"/v1/models/scorer/versions/{version['version']}"
        profile = world.get("ops", path)["reference_profile"]
        for feature in version["features"]:
            # Every live row lands in one slot; the reference bins are the profile's own.
            assert sum(feature["live"]) == expected["rows"]
            assert feature["reference"] == profile["features"][feature["name"]]["counts"]
            assert len(feature["labels"]) == len(feature["reference"])
        assert version["prediction"]["labels"][-1] == "missing"
        assert sum(version["prediction"]["live"]) == expected["rows"]
    anomalies = debug["anomalies"]
    assert sum(a["count"] for a in anomalies) == 2
    assert {a["field"] for a in anomalies} == {logistic().names[0]}
    assert {a["value"] for a in anomalies} == {"[redacted]"}
    # Beside each, what the version's contract expected (the range training saw), never 1e6.
    first = logistic().names[0]
    for anomaly in anomalies:
        version = world.get("ops", f"/v1/models/scorer/versions/{anomaly['version']}")
        (spec,) = [f for f in version["input_contract"]["fields"] if f["name"] == first]
        assert anomaly["expected"] == f"within [{spec['min']:.6g}, {spec['max']:.6g}]"
    # Each anomalous request left a sampled row: the field as the bound it crossed, the rest
    # as their training bins.
    samples = [a["sample"] for a in anomalies if a["sample"] is not None]
    assert len(samples) == 2
    for sample in samples:
        assert next(iter(sample)) == first
        assert sample[first].startswith("above the maximum ")
        assert len(sample) == len(logistic().names)
    assert "1e+06" not in str(debug)
    assert "1000000" not in str(debug)


def test_executive_figures_add_up(world: World) -> None:
    doc = world.get("auditor", "/v1/dashboards/executive", minutes=15)
    (fraud,) = doc["endpoints"]
    assert len(fraud["series"]) == 15
    assert fraud["requests"] == sum(p["requests"] for p in fraud["series"]) == 40
    assert fraud["errors"] == 0
    assert fraud["availability"] == 1.0
    assert fraud["requests_since_start"] == 40
    assert fraud["compute_seconds"] > 0
    assert doc["totals"]["requests"] == 40
    assert doc["totals"]["compute_ms_per_request"] == pytest.approx(
        fraud["compute_seconds"] * 1000 / 40, rel=1e-3
    )
    assert fraud["budget"]["availability"] == 1.0
    assert [q["role"] for q in fraud["quality"]] == ["stable", "canary"]
    assert all(q["drift_score"] is not None for q in fraud["quality"])
    assert doc["series"] == fraud["series"]


def test_governance_lists_every_version_and_its_lineage(world: World) -> None:
    doc = world.get("approver", "/v1/dashboards/governance")
    assert doc["total"] == len(world.get("approver", "/v1/models/scorer/versions")) == 2
    for version in doc["versions"]:
        number = version["version"]
        approvals = world.get("approver", f"/v1/models/scorer/versions/{number}/approvals")
        attestations = world.get("approver", f"/v1/models/scorer/versions/{number}/attestations")
        assert version["approvals"]["valid"] == sum(a["state"] == "valid" for a in approvals)
        assert len(version["attestations"]) == len(attestations) == 1
        assert version["attestations"][0]["verified"] is True
        assert version["signed"] is True
        assert version["scan"]["clean"] is True
        assert version["deployed"] is None  # the approver cannot read deployments
    assert doc["endpoints_visible"] is False
    kinds = {n["kind"] for n in doc["lineage"]["nodes"]}
    assert kinds == {"dataset", "version"}

    full = world.get("auditor", "/v1/dashboards/governance")
    roles = {v["version"]: v["deployed"] for v in full["versions"]}
    stable, canary = world.versions
    assert roles[stable] == [{"endpoint": "fraud", "role": "stable"}]
    assert roles[canary] == [{"endpoint": "fraud", "role": "canary"}]
    edges = {
        (e["from"].split(":")[0], e["to"].split(":")[0], e["label"])
        for e in full["lineage"]["edges"]
    }
    assert edges == {
        ("dataset", "version", "training"),
        ("version", "endpoint", "stable"),
        ("version", "endpoint", "canary"),
    }


def test_views_name_who_acted(world: World) -> None:
    """Versions, events and decisions carry principal ids; `/names` turns the ids a view shows
    into names for who may read versions, and refuses everything else."""
    versions = world.get("approver", "/v1/dashboards/governance")["versions"]
    author = versions[0]["created_by"]
    deployer = world.get("ops", "/v1/dashboards/oncall")["events"][0]["actor"]
    assert author.startswith("prn_")
    assert deployer.startswith("prn_")
    asked = [author, deployer, "system:rollout-controller", "prn_" + "A" * 26, "not-an-id"]
    found = world.get("approver", "/v1/dashboards/names", id=asked)["names"]
    me = world.get("approver", "/v1/auth/whoami")
    assert set(found) == {author, deployer}  # unknown ids and non-principals left out
    assert (
        found[author]
        == world.platform.principals.get(
            world.platform.tokens.authenticate(world.tokens["admin"]), author
        ).name
    )
    assert world.get("approver", "/v1/dashboards/names", id=[me["principal_id"]])["names"] == {
        me["principal_id"]: me["name"]
    }
    c = world.client
    denied = c.get(
        "/v1/dashboards/names", params={"id": author}, headers=_auth(world.tokens["client"])
    )
    assert denied.status_code == 403  # an inference client holds no model.read
    assert c.get("/v1/dashboards/names", params={"id": author}).status_code == 401
    too_many = c.get(
        "/v1/dashboards/names",
        params={"id": [f"prn_{i:026d}" for i in range(101)]},
        headers=_auth(world.tokens["approver"]),
    )
    assert too_many.status_code == 422
    assert too_many.json()["error"]["code"] == "input.invalid"
    typo = c.get(
        "/v1/dashboards/names", params={"ids": author}, headers=_auth(world.tokens["approver"])
    )
    assert typo.status_code == 422


def test_a_rollback_shows_up_on_call(world: World) -> None:
    rolled = world.client.post(
        "/v1/endpoints/fraud/rollout/rollback",
        json={"reason": "drill"},
        headers=_auth(world.tokens["ops"]),
    )
    assert rolled.status_code == 200, rolled.text
    doc = world.get("ops", "/v1/dashboards/oncall")
    (fraud,) = doc["endpoints"]
    assert fraud["canary"] is None
    first = doc["events"][0]
    assert (first["action"], first["reason"], first["endpoint"]) == ("rollback", "drill", "fraud")


def test_the_ledger_verification_checks_a_kept_checkpoint(world: World) -> None:
    headers = _auth(world.tokens["auditor"])
    verify = "/v1/dashboards/ledger/verify"
    checkpoint = world.get("auditor", "/v1/audit/checkpoint")
    plain = world.client.post(verify, headers=headers).json()
    assert plain["status"] == "intact"
    assert plain["trusted_checked"] is False
    assert plain["size"] >= checkpoint["size"]
    assert plain["checkpoint"]["size"] == plain["size"]
    kept = world.client.post(
        verify, json={"trusted_checkpoint": checkpoint["note"]}, headers=headers
    ).json()
    assert kept["status"] == "intact"
    assert kept["trusted_checked"] is True
    # The same note with another root: its signature no longer verifies.
    lines = checkpoint["note"].split("\n")
    root_line = lines[2]
    lines[2] = ("A" if root_line[0] != "A" else "B") + root_line[1:]
    forged = world.client.post(
        verify, json={"trusted_checkpoint": "\n".join(lines)}, headers=headers
    ).json()
    assert forged["status"] == "failed"
    assert forged["code"].startswith("ledger.")
    garbage = world.client.post(verify, json={"trusted_checkpoint": "not a note"}, headers=headers)
    assert garbage.status_code == 422
