"""`bastion monitoring rules | dashboard | test-webhook` through the real CLI entry point."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.monitoring.alerts import SIGNATURE_HEADER, verify_signature
from bastion.monitoring.rules import prometheus_rules
from bastion.monitoring.slo import SloSpec

SECRET = "a-webhook-secret-of-32-characters"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    seen: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", seen
    server.shutdown()
    server.server_close()


def test_rules_need_no_home_and_match_the_generator(cli: Any, home: Path) -> None:
    done = cli("monitoring", "rules")
    assert done.code == 0, done.err
    assert done.out.startswith("# Bastion SLO")
    assert yaml.safe_load(done.out) == prometheus_rules()
    assert not home.exists()  # pure generation: nothing initialised, no token


def test_rules_options_and_environment_defaults(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    done = cli(
        "monitoring",
        "rules",
        "--availability",
        "0.995",
        "--latency-ms",
        "500",
        "--latency-objective",
        "0.99",
        "--min-requests",
        "20",
        "--job-selector",
        'job="bastion"',
    )
    assert done.code == 0, done.err
    spec = SloSpec(availability=0.995, latency_threshold=0.5, latency_objective=0.99)
    expected = prometheus_rules(spec, min_requests=20, job_selector='job="bastion"')
    assert yaml.safe_load(done.out) == expected
    monkeypatch.setenv("BASTION_SLO_AVAILABILITY", "0.99")
    monkeypatch.setenv("BASTION_SLO_LATENCY_MS", "1000")
    from_env = cli("monitoring", "rules")
    assert from_env.code == 0, from_env.err
    assert yaml.safe_load(from_env.out) == prometheus_rules(
        SloSpec(availability=0.99, latency_threshold=1.0)
    )


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--latency-ms", "150"], "rules.latency_not_a_bucket"),
        (["--availability", "1.5"], "slo.bad_spec"),
        (["--latency-objective", "0"], "slo.bad_spec"),
        (["--min-requests", "0"], "rules.bad_limit"),
        (["--job-selector", "job=bastion"], "rules.bad_selector"),
    ],
)
def test_rules_refuse_bad_options(cli: Any, args: list[str], code: str) -> None:
    done = cli("monitoring", "rules", *args)
    assert done.code == 2
    assert code in done.err
    assert done.out == ""


def test_rules_to_a_file_that_promtool_accepts(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "bastion.rules.yml"
    done = cli("monitoring", "rules", "--out", str(path))
    assert done.code == 0, done.err
    assert str(path) in done.out
    assert yaml.safe_load(path.read_text()) == prometheus_rules()
    promtool = shutil.which("promtool")
    if promtool is not None:
        checked = subprocess.run(
            [promtool, "check", "rules", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    unwritable = cli("monitoring", "rules", "--out", str(tmp_path / "missing" / "r.yml"))
    assert unwritable.code == 2
    assert "cannot write" in unwritable.err


def test_dashboard_prints_the_packaged_json(cli: Any, tmp_path: Path) -> None:
    done = cli("monitoring", "dashboard")
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    assert doc["uid"] == "bastion-oncall"
    path = tmp_path / "oncall.json"
    assert cli("monitoring", "dashboard", "--out", str(path)).code == 0
    assert json.loads(path.read_text()) == doc


def test_test_webhook_delivers_a_signed_alert(
    cli: Any, tmp_path: Path, receiver: tuple[str, list[Any]]
) -> None:
    url, seen = receiver
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    done = cli("monitoring", "test-webhook", url, "--secret-file", str(secret_file))
    assert done.code == 0, done.err
    ((headers, body),) = seen
    assert verify_signature(SECRET.encode(), body, headers[SIGNATURE_HEADER])
    doc = json.loads(body)
    assert (doc["state"], doc["alert"]["name"], doc["alert"]["severity"]) == (
        "firing",
        "BastionTestAlert",
        "info",
    )


def test_test_webhook_uses_the_configured_webhook(
    cli: Any, monkeypatch: pytest.MonkeyPatch, receiver: tuple[str, list[Any]]
) -> None:
    url, seen = receiver
    monkeypatch.setenv("BASTION_ALERT_WEBHOOK_URL", url)
    monkeypatch.setenv("BASTION_ALERT_WEBHOOK_SECRET", SECRET)
    done = cli("monitoring", "test-webhook")
    assert done.code == 0, done.err
    assert verify_signature(SECRET.encode(), seen[0][1], seen[0][0][SIGNATURE_HEADER])
    assert SECRET not in done.out + done.err


def test_test_webhook_reports_an_unreachable_receiver(cli: Any, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    done = cli(
        "monitoring",
        "test-webhook",
        f"http://127.0.0.1:{port}/x?key=QUERYSECRET",
        "--secret-file",
        str(secret_file),
    )
    assert done.code == 7
    assert "alerts.webhook_unreachable" in done.err
    assert "QUERYSECRET" not in done.err


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["http://127.0.0.1:9/x"], "input.invalid"),  # no secret anywhere
        ([], "input.invalid"),  # no URL anywhere
        (["ftp://example.org/x", "--secret-file", "{secret}"], "alerts.bad_webhook"),
    ],
)
def test_test_webhook_refuses_bad_input(
    cli: Any, tmp_path: Path, args: list[str], code: str
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    done = cli("monitoring", "test-webhook", *[a.format(secret=secret_file) for a in args])
    assert done.code == 2
    assert code in done.err


def test_rules_in_a_real_process(proc: Any) -> None:
    done = proc("monitoring", "rules", "--latency-ms", "250")
    assert done.code == 0, done.err
    assert 'le="0.25"' in done.out
    bad = proc("monitoring", "rules", "--latency-ms", "150")
    assert bad.code == 2
    assert "rules.latency_not_a_bucket" in bad.err
