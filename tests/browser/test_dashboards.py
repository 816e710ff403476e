"""The dashboards in a real browser against the real server: headless Chromium (Debian's, via
Playwright) signs in with a token, opens every view, checks that the figures shown are the
API's, rolls a canary back from the on-call view, and is refused the governance view with an
inference client's token. A screenshot of each view is saved (see conftest.py for where).

One server and one browser for the whole walk, so the walk is one test: it takes ~30 s, and
splitting it would start a server per xdist worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.core import Settings
from bastion.identity import Role
from bastion.platform import Platform
from bastion.registry import DatasetRef, LineageRole, ModelSpec, VersionSpec
from bastion.ui import assets
from models import forest, logistic
from releases import VALIDATION
from servers import running_server
from support import server_env

pytestmark = pytest.mark.e2e

ROLES = {
    "dev": Role.MODEL_DEVELOPER,
    "bob": Role.APPROVER,
    "ops": Role.DEPLOYER,
    "audit": Role.AUDITOR,
    "steward": Role.DATA_STEWARD,
    "fraud-svc": Role.INFERENCE_CLIENT,
}
REQUESTS = 60
README_SHOTS = ("executive", "oncall", "debug", "governance")
DIGEST_FILE = "ui-assets.sha256"
ANOMALOUS = (5, 17, 33)  # these requests carry a value far outside the training range


def _prepare(home: Path, tmp: Path) -> dict[str, str]:
    """Principals, a training dataset and three signed, attested, approved versions trained on
    it (so each has a reference profile): v1 and v2 logistic regressions, v3 a forest."""
    with Platform.initialise(Settings.from_env(home=home)) as platform:
        _, issued = platform.bootstrap_admin("admin")
        admin = platform.tokens.authenticate(issued.secret)
        tokens = {"admin": issued.secret}
        for name, role in ROLES.items():
            principal = platform.principals.add(admin, name=name, roles=[role])
            tokens[name] = platform.tokens.create(admin, principal_id=principal.id).secret
        caller = {name: platform.tokens.authenticate(t) for name, t in tokens.items()}
        data = tmp / "training.csv"
        data.write_bytes(logistic().csv())
        platform.datasets.register(
            caller["steward"], "cancer", classification_="internal", purposes=["scoring"],
            retention_days=30, file=data,
        )  # fmt: skip
        for i, trained in enumerate((logistic(), logistic(c=0.5), forest())):
            root = tmp / f"model-{i}"
            root.mkdir()
            for path, blob in trained.files().items():
                (root / path).write_bytes(blob)
            upload = platform.staging.create(caller["dev"])
            platform.staging.add_tree(caller["dev"], upload.id, root)
            number = platform.models.register_version(
                caller["dev"],
                "scorer",
                upload.id,
                VersionSpec(
                    datasets=(DatasetRef("cancer", None, LineageRole.TRAINING),),
                    target="target",
                    metrics={"auc": 0.95 - i / 100},
                ),
                create=ModelSpec(purpose="scoring"),
            ).version
            platform.signatures.sign(caller["dev"], "scorer", number)
            platform.attestations.attest(
                caller["dev"], "scorer", number, VALIDATION, {"passed": True, "auc": 0.9}
            )
            platform.approvals.approve(caller["bob"], "scorer", number, comment="reviewed")
    return tokens


@dataclass
class Live:
    url: str
    tokens: dict[str, str]
    log: Path
    http: httpx.Client
    anomalies: int = 0
    console: list[str] = field(default_factory=list)

    def api(self, who: str, path: str, method: str = "GET", **kwargs: Any) -> Any:
        r = self.http.request(method, path, headers=self.auth(who), **kwargs)
        assert r.status_code < 300, (method, path, r.status_code, r.text)
        return r.json()

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture(scope="module")
def live(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("browser")
    home = root / "home"
    tokens = _prepare(home, root)
    env = server_env(
        home,
        BASTION_DEPLOY_POLL_SECONDS="0.2",
        BASTION_RECEIPT_FLUSH_MS="20",
        BASTION_CANARY_GUARD="false",  # the rollback under test is the one a person clicks
    )
    with (
        running_server(env, root / "server.log") as server,
        httpx.Client(base_url=server.url, timeout=30.0) as http,
    ):
        live = Live(server.url, tokens, server.log, http)
        live.api(
            "ops",
            "/v1/endpoints/fraud/deployments",
            "POST",
            json={"model": "scorer", "version": "1"},
        )
        live.api(
            "ops", "/v1/endpoints/fraud/deployments", "POST",
            json={"model": "scorer", "version": "2", "plan": {"kind": "canary", "weight": 50}},
        )  # fmt: skip
        live.api("ops", "/v1/endpoints/fraud/shadow", "PUT", json={"version": "3", "share": 100})
        trained = logistic()
        for i in range(REQUESTS):
            record = trained.records(slice(i, i + 1))[0]
            if i in ANOMALOUS:
                record[trained.names[0]] = 1e6
            r = http.post(
                "/v1/endpoints/fraud/predict",
                json={"records": [record]},
                headers={**live.auth("fraud-svc"), "X-Bastion-Route-Key": f"user-{i}"},
            )
            assert r.status_code == 200, r.text
        live.anomalies = len(ANOMALOUS)
        _wait_for_shadow(live)
        yield live
    text = live.log.read_text()
    assert "Traceback" not in text, text[-4000:]


def _wait_for_shadow(live: Live) -> None:
    """The shadow compares on a worker thread: wait until it has compared every request (or,
    should its bounded queue have dropped a copy, until its count stops moving)."""
    deadline = time.monotonic() + 20
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        debug = live.api("ops", "/v1/dashboards/debug/fraud", params={"features": 1})
        shadow = [v["shadow"] for v in debug["versions"] if v["version"] == "3"]
        compared = shadow[0]["same"] + shadow[0]["different"] if shadow else 0
        if compared >= REQUESTS or (compared and compared == seen and time.monotonic() - since > 2):
            return
        if compared != seen:
            seen, since = compared, time.monotonic()
        time.sleep(0.2)
    raise AssertionError("the shadow compared nothing")


# -- page helpers -----------------------------------------------------------------------------


def _value(page: Any, testid: str) -> str:
    return str(page.get_by_test_id(testid).first.get_attribute("data-value"))


def _text(page: Any, testid: str) -> str:
    return str(page.get_by_test_id(testid).first.inner_text()).strip()


def _open(page: Any, view: str) -> None:
    page.locator(f'#nav a[data-view="{view}"]').click()
    page.get_by_test_id(f"view-{view}").wait_for()
    page.locator('[data-testid="view-status"][data-loaded="true"]').wait_for()


def _sign_in(page: Any, token: str) -> None:
    page.get_by_test_id("signin").wait_for()
    page.fill("#token", token)
    page.get_by_test_id("signin-submit").click()
    page.locator("#who:not([hidden])").wait_for()


def _sign_out(page: Any) -> None:
    page.get_by_test_id("signout").click()
    page.get_by_test_id("signin").wait_for()
    stored = page.evaluate("() => [sessionStorage.length, localStorage.length]")
    assert stored == [0, 0]


def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1000:.1f} ms"


def _pct(share: float | None, digits: int = 2) -> str:
    return "—" if share is None else f"{share * 100:.{digits}f} %"


# -- the walk ---------------------------------------------------------------------------------


def test_the_dashboards_in_chromium(live: Live, chromium: Path, artifacts: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True)
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.on("console", lambda m: m.type == "error" and live.console.append(m.text))
            page.on("pageerror", lambda e: live.console.append(str(e)))
            shot = _screenshots(page, artifacts)

            page.goto(f"{live.url}/ui/")
            _refuses_a_bad_token(page)
            live.console.clear()  # the browser logs the 401 it was meant to get
            _sign_in(page, live.tokens["audit"])
            stored = page.evaluate(
                "() => [sessionStorage.getItem('bastion.token'), localStorage.length]"
            )
            assert stored == [live.tokens["audit"], 0]
            assert "bst_" not in page.url
            _executive(page, live)
            shot("executive")
            _oncall(page, live)
            shot("oncall")
            _debug(page, live)
            shot("debug")
            _governance(page, live)
            shot("governance")
            _sign_out(page)

            _sign_in(page, live.tokens["ops"])
            _rollback(page, live)
            shot("oncall-after-rollback")
            _open(page, "governance")
            ledger = page.get_by_test_id("gov-ledger")
            assert "your role cannot see this" in ledger.inner_text().lower()  # no audit.read
            _sign_out(page)

            _sign_in(page, live.tokens["fraud-svc"])
            page.goto(f"{live.url}/ui/#/governance")
            page.get_by_test_id("forbidden").wait_for()
            assert "your role cannot see this" in _text(page, "forbidden").lower()
            assert page.get_by_test_id("view-governance").count() == 0
            shot("governance-denied")
            denied = live.http.get("/v1/dashboards/governance", headers=live.auth("fraud-svc"))
            assert denied.status_code == 403
            _sign_out(page)
        finally:
            browser.close()
    # No script error and no Content-Security-Policy violation anywhere on the walk.
    assert live.console == [], live.console


def _screenshots(page: Any, folder: Path) -> Callable[[str], None]:
    """Each view, whole, into `folder`; with BASTION_TEST_SCREENSHOTS=DIR (`make screenshots`), the
    four dashboards also into DIR as the README shows them (the first screenful, JPEG), with
    the digest of the pages they picture (a unit test compares it with the package's)."""
    docs = os.environ.get("BASTION_TEST_SCREENSHOTS")

    def shot(name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
        if docs and name in README_SHOTS:
            target = Path(docs)
            target.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(target / f"{name}.jpeg"), quality=80)
            (target / DIGEST_FILE).write_text(assets.digest() + "\n")

    return shot


def _refuses_a_bad_token(page: Any) -> None:
    page.get_by_test_id("signin").wait_for()
    page.fill("#token", "bst_" + "A" * 72)  # the right shape, but no such token
    page.get_by_test_id("signin-submit").click()
    error = page.get_by_test_id("signin-error")
    error.wait_for()
    assert "auth.token_" in error.inner_text()
    assert page.evaluate("() => sessionStorage.length") == 0


def _executive(page: Any, live: Live) -> None:
    _open(page, "executive")
    doc = live.api("audit", "/v1/dashboards/executive", params={"minutes": 60})
    monitoring = live.api("audit", "/v1/endpoints/fraud/monitoring")
    served = sum(v["requests"] for v in monitoring["versions"])
    assert served == REQUESTS
    assert int(_value(page, "kpi-requests")) == doc["totals"]["requests"] == REQUESTS
    assert _text(page, "kpi-requests") == f"{REQUESTS:,}"
    assert int(_value(page, "exec-fraud-requests")) == REQUESTS
    assert int(_value(page, "exec-fraud-since-start")) == REQUESTS
    assert _text(page, "kpi-availability") == _pct(doc["totals"]["availability"], 3)
    assert float(_value(page, "kpi-compute")) == pytest.approx(
        doc["totals"]["compute_seconds"], rel=0.2
    )
    assert _text(page, "kpi-serving") == "1 of 1"
    incidents = live.api("audit", "/v1/incidents")
    assert int(_value(page, "kpi-incidents")) == len(incidents)
    quality = page.get_by_test_id("exec-quality").inner_text()
    assert "auc 0.950" in quality  # v1's registered metric
    assert page.get_by_test_id("chart-trends").locator("svg path.line").count() >= 1


def _oncall(page: Any, live: Live) -> None:
    _open(page, "oncall")
    api = live.api("audit", "/v1/endpoints/fraud/monitoring")
    for v in api["versions"]:
        row = f"oncall-fraud-v{v['version']}"
        assert int(_value(page, f"{row}-requests")) == v["requests"], row
        assert _text(page, f"{row}-p95") == _ms(v["latency_p95"]), row
        assert _text(page, f"{row}-p99") == _ms(v["latency_p99"]), row
        assert _text(page, f"{row}-error-rate") == _pct(v["error_rate"]), row
        shown = _value(page, f"{row}-drift")
        drift = v["drift"]["score"] if v["drift"] else None
        assert (float(shown) if shown else None) == drift, row
    assert _text(page, "oncall-fraud-v3-divergence") == _pct(
        next(v for v in api["versions"] if v["version"] == "3")["shadow_divergence"]
    )
    alerts = live.api("audit", "/v1/alerts")
    assert page.get_by_test_id("alert").count() == len(alerts)
    history = live.api("audit", "/v1/endpoints/fraud/history")
    assert len(history) >= 3  # deploy v1, canary v2, shadow v3
    assert page.get_by_test_id("deploy-event").count() == len(history)
    assert page.get_by_test_id("rollback-fraud").count() == 0  # an auditor cannot deploy


def _debug(page: Any, live: Live) -> None:
    _open(page, "debug")
    api = live.api("audit", "/v1/endpoints/fraud/monitoring")
    canary = next(v for v in api["versions"] if v["version"] == "2")
    assert int(_value(page, "debug-rows")) == canary["rows"]
    assert float(_value(page, "debug-drift")) == canary["drift"]["score"]
    assert page.get_by_test_id("feature").count() == len(logistic().names)
    first = page.get_by_test_id("feature").first
    assert first.locator("rect.bar").count() > 0
    assert (
        int(str(first.get_by_test_id("feature-live-rows").get_attribute("data-value")))
        == (canary["rows"])
    )
    debug = live.api("audit", "/v1/dashboards/debug/fraud")
    assert page.get_by_test_id("anomaly").count() == len(debug["anomalies"]) > 0
    assert sum(a["count"] for a in debug["anomalies"]) == live.anomalies
    assert "[redacted]" in page.get_by_test_id("debug-anomalies").inner_text()
    # A sampled row per anomalous request, opened: bins and the bound, as the API says.
    sampled = [a["sample"] for a in debug["anomalies"] if a["sample"]]
    details = page.get_by_test_id("anomaly-sample")
    assert details.count() == len(sampled) == len(ANOMALOUS)
    details.first.locator("summary").click()
    shown = details.first.locator("li")
    assert shown.count() == len(sampled[0])
    field, text = next(iter(sampled[0].items()))
    assert shown.first.inner_text() == f"{field}: {text}"
    assert text.startswith("above the maximum")
    v3 = next(v for v in debug["versions"] if v["version"] == "3")
    assert int(_value(page, "shadow-v3-same")) == v3["shadow"]["same"]
    assert int(_value(page, "shadow-v3-different")) == v3["shadow"]["different"]
    # Another version through the picker.
    page.get_by_test_id("debug-version").select_option("1")
    page.locator('[data-testid="view-status"][data-loaded="true"]').wait_for()
    stable = next(v for v in api["versions"] if v["version"] == "1")
    page.wait_for_function(
        "n => document.querySelector('[data-testid=debug-rows]')?.dataset.value === String(n)",
        arg=stable["rows"],
    )


def _governance(page: Any, live: Live) -> None:
    _open(page, "governance")
    versions = live.api("audit", "/v1/models/scorer/versions")
    assert int(str(page.get_by_test_id("gov-versions").get_attribute("data-count"))) == len(
        versions
    )
    for v in versions:
        row = f"gov-scorer-v{v['version']}"
        assert "signed" in _text(page, f"{row}-signed")
        assert "clean" in _text(page, f"{row}-scan")
        approvals = live.api("audit", f"/v1/models/scorer/versions/{v['version']}/approvals")
        assert int(_value(page, f"{row}-approvals")) == sum(
            a["state"] == "valid" for a in approvals
        )
        # Who registered it, by name (the id stays as the tooltip).
        author = page.get_by_test_id(f"{row}-author").locator("[data-principal]")
        assert author.get_attribute("data-principal") == v["created_by"]
        assert author.inner_text() == "dev"
    labels = {str(n.get_attribute("data-label")) for n in page.get_by_test_id("lineage-node").all()}
    assert labels == {"cancer@1", "scorer@1", "scorer@2", "scorer@3", "fraud"}
    decisions = live.api("audit", "/v1/policy/decisions", params={"limit": 30})
    assert page.get_by_test_id("decision").count() == len(decisions)
    # Subjects as a person names them: scorer@2, cancer@1 (the id stays as the tooltip).
    refs = {v["id"]: f"scorer@{v['version']}" for v in versions}
    shown = page.get_by_test_id("decision-subject").all()
    for decision, cell in zip(decisions, shown, strict=True):
        if decision["subject"] in refs:
            assert cell.inner_text() == refs[decision["subject"]]
    registered = [
        cell.inner_text() for d, cell in zip(decisions, shown, strict=True)
        if d["gate"] == "dataset_register"
    ]  # fmt: skip
    assert registered == ["cancer@1"]
    checkpoint = live.api("audit", "/v1/audit/checkpoint")
    assert int(_value(page, "checkpoint-size")) == checkpoint["size"]
    assert _text(page, "checkpoint-note") == checkpoint["note"].strip()
    # The signature of one version, re-hashed on the server.
    page.get_by_test_id("gov-scorer-v1-verify").click()
    page.wait_for_function(
        "() => /valid/.test(document.querySelector('[data-testid=gov-scorer-v1-verify-result]')"
        "?.textContent || '')"
    )
    # The ledger, replayed on the server against the checkpoint this tab saw first.
    page.get_by_test_id("verify-ledger").click()
    result = page.get_by_test_id("verify-result")
    result.wait_for()
    assert result.get_attribute("data-status") == "intact", result.inner_text()
    assert int(str(result.get_attribute("data-size"))) >= checkpoint["size"]
    assert "still extends the checkpoint" in result.inner_text()


def _rollback(page: Any, live: Live) -> None:
    _open(page, "oncall")
    assert _value(page, "serving-fraud") == "1/2"
    page.get_by_test_id("rollback-fraud").click()
    page.get_by_test_id("rollback-reason-fraud").fill("browser drill")
    page.get_by_test_id("rollback-confirm-fraud").click()
    page.get_by_test_id("action-result").wait_for()
    assert "Rolled back canary v2" in _text(page, "action-result")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=serving-fraud]')?.dataset.value === '1/'"
    )
    first = page.get_by_test_id("deploy-event").first
    assert first.get_attribute("data-action") == "rollback"
    assert "browser drill" in first.inner_text()
    endpoint = live.api("ops", "/v1/endpoints/fraud")
    assert endpoint["canary"] is None
    history = live.api("ops", "/v1/endpoints/fraud/history")
    ops = live.api("ops", "/v1/auth/whoami")["principal_id"]
    assert (history[0]["action"], history[0]["actor"], history[0]["reason"]) == (
        "rollback",
        ops,
        "browser drill",
    )
