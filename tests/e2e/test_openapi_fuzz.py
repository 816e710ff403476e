"""Schemathesis against the real server's OpenAPI document: generated requests (valid and
invalid) to every operation, as an inference client and (reads only) as an admin, must never
produce a server error — every rejection is a coded 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from servers import prepare_home, running_server
from support import server_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("fuzz")
    home = root / "home"
    env = server_env(home, BASTION_DEPLOY_POLL_SECONDS="0.5")
    tokens = prepare_home(home, root)
    with running_server(env, root / "server.log") as server:
        deployed = httpx.post(
            f"{server.url}/v1/endpoints/fraud/deployments",
            json={"model": "scorer", "version": "1"},
            headers={"Authorization": f"Bearer {tokens['ops']}"},
            timeout=60,
        )
        assert deployed.status_code == 201, deployed.text
        yield {"url": server.url, "log": str(server.log), **tokens}
        log = Path(server.log).read_text()
        assert "Traceback" not in log, log[-4000:]


def _fuzz(live: dict[str, str], token: str, *, methods: set[str], examples: int) -> int:
    """Run generated cases (schema-valid and schema-invalid) against every operation with
    one of `methods`; fail on any server error. Drives Hypothesis directly: schemathesis's
    pytest plugin does not run under pytest 9."""
    schema = schemathesis.openapi.from_url(f"{live['url']}/openapi.json")
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() not in methods:
            continue
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=strategy)
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            response = case.call(
                base_url=live["url"], headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            case.validate_response(response, checks=[not_a_server_error])

        run()
    return calls


def test_no_request_gets_a_server_error(live: dict[str, str]) -> None:
    # The inference client exercises the gateway deeply; the other routes answer it 403,
    # which still runs authentication and authorization on generated input.
    calls = _fuzz(live, live["fraud-svc"], methods={"GET", "POST", "PUT", "DELETE"}, examples=12)
    assert calls > 200


def test_reads_as_an_admin_get_no_server_error(live: dict[str, str]) -> None:
    assert _fuzz(live, live["admin"], methods={"GET"}, examples=8) > 100
