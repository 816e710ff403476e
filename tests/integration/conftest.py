"""Fixtures for driving the `bastion` CLI against a real temporary BASTION_HOME.

`proc()` runs the installed `bastion` executable in a child process (real exit codes, real
stdout/stderr); `cli()` calls the same entry point, `bastion.cli.main`, in-process (~20x
faster). Both go through the one wrapper that maps errors to exit codes, and both check that
nothing shaped like a token ever reaches stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bastion.cli import main
from support import _ANSI, BIN, Result, _check


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("BASTION_HOME", str(path))
    monkeypatch.delenv("BASTION_TOKEN", raising=False)
    return path


@pytest.fixture
def proc(home: Path) -> Any:
    def run(*args: str, token: str | None = None, **env: str) -> Result:
        full_env = {**os.environ, "NO_COLOR": "1", **env}
        full_env.pop("BASTION_TOKEN", None)
        if token is not None:
            full_env["BASTION_TOKEN"] = token
        done = subprocess.run(
            [BIN, *args], env=full_env, capture_output=True, text=True, timeout=60, check=False
        )
        return _check(Result(done.returncode, done.stdout, done.stderr))

    return run


@pytest.fixture
def cli(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*args: str, token: str | None = None) -> Result:
        capsys.readouterr()
        with monkeypatch.context() as patch:
            patch.setattr(sys, "argv", ["bastion", *args])
            if token is None:
                patch.delenv("BASTION_TOKEN", raising=False)
            else:
                patch.setenv("BASTION_TOKEN", token)
            try:
                main()
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        captured = capsys.readouterr()
        return _check(Result(code, _ANSI.sub("", captured.out), _ANSI.sub("", captured.err)))

    return run


@pytest.fixture
def admin_token(cli: Any) -> str:
    result = cli("init")
    assert result.code == 0, result.err
    return str(result.token())
