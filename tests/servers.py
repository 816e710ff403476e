"""The real server process for end-to-end tests (importable as `servers`): start `bastion
server` on a free loopback port, wait until it answers, stop it whatever happened."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bastion.core import Settings
from bastion.identity import Role
from bastion.platform import Platform
from models import forest, logistic
from releases import Release
from support import BIN, free_port

STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Running:
    url: str
    log: Path
    process: subprocess.Popen[bytes]


@contextmanager
def running_server(env: dict[str, str], log: Path) -> Iterator[Running]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [BIN, "server", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not up after {STARTUP_TIMEOUT} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield Running(url=url, log=log, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def prepare_home(home: Path, tmp: Path, *, database_url: str | None = None) -> dict[str, str]:
    """Principals and four release-ready versions, made in-process on the server's home
    (the server process is what is under test; setting up through it would only be slower).
    Versions 1 and 4 are logistic regressions, 2 a random forest, 3 a weaker regression."""
    settings = Settings.from_env(home=home, database_url=database_url)
    with Platform.initialise(settings) as platform:
        _, issued = platform.bootstrap_admin("admin")
        admin = platform.tokens.authenticate(issued.secret)
        tokens = {"admin": issued.secret}
        for name, role in (
            ("dev", Role.MODEL_DEVELOPER),
            ("bob", Role.APPROVER),
            ("ops", Role.DEPLOYER),
            ("fraud-svc", Role.INFERENCE_CLIENT),
            ("other-svc", Role.INFERENCE_CLIENT),
        ):
            principal = platform.principals.add(admin, name=name, roles=[role])
            tokens[name] = platform.tokens.create(admin, principal_id=principal.id).secret
        release = Release(
            platform=platform,
            tmp=tmp,
            dev=platform.tokens.authenticate(tokens["dev"]),
            approvers=[platform.tokens.authenticate(tokens["bob"])],
            deployer=platform.tokens.authenticate(tokens["ops"]),
            client=platform.tokens.authenticate(tokens["fraud-svc"]),
            admin=admin,
        )
        contract = logistic().contract.to_json()
        for trained in (logistic(), forest(), logistic(c=0.01), logistic(c=0.1)):
            release.ready(files=trained.files(), contract=contract)
    return tokens
