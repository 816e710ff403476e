"""Scanning paths: directory walks (sorted relative posix names, digests of the bytes read,
symlinks and special files never followed), the errors that mean "could not scan", and the
`bastion scan` command line (exit codes, text and JSON output, no Bastion home needed)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import zipfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from bastion.cli import scan as scan_cli
from bastion.cli.main import app
from bastion.supplychain.scan import ArtifactFormat, ScanError, ScanLimits, Scanner


class _Hostile:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("echo pwned",))


HOSTILE = pickle.dumps(_Hostile(), protocol=4)
BENIGN = pickle.dumps({"a": 1}, protocol=4)
runner = CliRunner()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _tree(root: Path) -> Path:
    _write(root / "config.json", b'{"layers": 2}')
    _write(root / "weights" / "model.pkl", BENIGN)
    _write(root / "weights" / "a" / "b" / "deep.bin", bytes(range(256)) * 10)
    _write(root / "Z-upper.txt", b"upper")
    _write(root / "a.txt", b"")
    _write(root / "a-b" / "c.txt", b"c")
    return root


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


# -- 10. directories ---------------------------------------------------------------------------


def test_directory_lists_every_file_sorted_with_digests(scanner: Scanner, tmp_path: Path) -> None:
    root = _tree(tmp_path / "model")
    report = scanner.scan_path(root)
    expected = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert [f.path for f in report.files] == expected
    assert expected == sorted(expected)
    assert "weights/a/b/deep.bin" in expected
    for file in report.files:
        data = (root / file.path).read_bytes()
        assert file.digest == "sha256:" + hashlib.sha256(data).hexdigest()
        assert file.size == len(data)
    assert report.clean
    assert report.allowlist_version == scanner.allowlist.version


def test_findings_in_one_file_do_not_stop_the_others(scanner: Scanner, tmp_path: Path) -> None:
    root = _tree(tmp_path)
    _write(root / "weights" / "evil.pkl", HOSTILE)
    report = scanner.scan_path(root)
    assert {f.path for f in report.findings} == {"weights/evil.pkl"}
    assert len(report.files) == 7
    assert not report.clean
    assert [f.path for f in report.files if not f.clean] == ["weights/evil.pkl"]


def test_single_file(scanner: Scanner, tmp_path: Path) -> None:
    path = _write(tmp_path / "sub" / "model.pkl", HOSTILE)
    report = scanner.scan_path(path)
    assert [(f.path, f.format) for f in report.files] == [("model.pkl", ArtifactFormat.PICKLE)]
    assert {f.path for f in report.findings} == {"model.pkl"}


def test_empty_directory(scanner: Scanner, tmp_path: Path) -> None:
    report = scanner.scan_path(tmp_path)
    assert report.files == ()
    assert report.clean


def test_symlinks_and_fifos_are_findings_never_followed(scanner: Scanner, tmp_path: Path) -> None:
    root = _tree(tmp_path / "model")
    outside = _write(tmp_path / "outside" / "evil.pkl", HOSTILE)
    (root / "link-inside").symlink_to(root / "config.json")
    (root / "link-outside").symlink_to(outside)
    (root / "link-dir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(root / "weights" / "pipe")
    report = scanner.scan_path(root)
    special = {f.path: f for f in report.files if f.findings}
    assert {path: [x.code for x in f.findings] for path, f in special.items()} == {
        "dangling": ["path.symlink"],
        "link-dir": ["path.symlink"],
        "link-inside": ["path.symlink"],
        "link-outside": ["path.symlink"],
        "weights/pipe": ["path.special_file"],
    }
    for file in special.values():
        assert (file.format, file.size, file.digest) == (ArtifactFormat.UNKNOWN, 0, "")
    # the hostile pickle behind the links was never read
    assert not any(f.code.startswith("pickle.") for f in report.findings)
    assert [f.path for f in report.files] == sorted(f.path for f in report.files)


def test_missing_path(scanner: Scanner, tmp_path: Path) -> None:
    with pytest.raises(ScanError) as caught:
        scanner.scan_path(tmp_path / "missing")
    assert caught.value.code == "scan.not_found"


def test_too_many_files(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    with pytest.raises(ScanError) as caught:
        Scanner(limits=ScanLimits(max_files=3)).scan_path(root)
    assert caught.value.code == "scan.too_many_files"
    assert len(Scanner(limits=ScanLimits(max_files=6)).scan_path(root).files) == 6


def test_symlinks_count_towards_max_files(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"l{i}").symlink_to("/etc/hostname")
    with pytest.raises(ScanError) as caught:
        Scanner(limits=ScanLimits(max_files=3)).scan_path(tmp_path)
    assert caught.value.code == "scan.too_many_files"


@pytest.mark.parametrize("target", ["file", "dir"])
def test_top_level_symlink(scanner: Scanner, tmp_path: Path, target: str) -> None:
    real = _write(tmp_path / "real.pkl", BENIGN) if target == "file" else _tree(tmp_path / "d")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(ScanError) as caught:
        scanner.scan_path(tmp_path / "link")
    assert caught.value.code == "scan.unsupported_path"


def test_top_level_fifo(scanner: Scanner, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ScanError) as caught:
        scanner.scan_path(tmp_path / "pipe")
    assert caught.value.code == "scan.unsupported_path"


def test_scan_file_never_opens_a_symlink_or_blocks_on_a_fifo(
    scanner: Scanner, tmp_path: Path
) -> None:
    """What the walk saw as a file may be swapped before it is opened."""
    (tmp_path / "link").symlink_to(_write(tmp_path / "real.pkl", BENIGN))
    with pytest.raises(ScanError) as caught:
        scanner.scan_file(tmp_path / "link", "link")
    assert caught.value.code == "scan.unreadable"
    os.mkfifo(tmp_path / "pipe")  # opening it without O_NONBLOCK would hang here

    def hung(signum: int, frame: object) -> None:
        raise TimeoutError("opening a FIFO blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 5)
    try:
        with pytest.raises(ScanError) as caught:
            scanner.scan_file(tmp_path / "pipe", "pipe")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert caught.value.code == "scan.unsupported_path"


def test_report_to_dict_round_trips_through_json(scanner: Scanner, tmp_path: Path) -> None:
    _write(tmp_path / "evil.pkl", HOSTILE)
    _write(tmp_path / "ok.txt", b"ok")
    document = scanner.scan_path(tmp_path).to_dict()
    assert json.loads(json.dumps(document)) == document
    assert document["clean"] is False
    assert [f["path"] for f in document["files"]] == ["evil.pkl", "ok.txt"]
    finding = document["files"][0]["findings"][0]
    assert set(finding) == {"path", "code", "reason", "offset"}


# -- 11. the CLI -------------------------------------------------------------------------------


def _run(*args: str | Path) -> Result:
    return runner.invoke(app, ["scan", *map(str, args)])


def test_cli_clean_directory(tmp_path: Path) -> None:
    root = _tree(tmp_path / "model")
    result = _run(root)
    assert result.exit_code == 0, result.output
    for name in ("config.json", "weights/model.pkl", "weights/a/b/deep.bin"):
        assert name in result.output
    assert "[pickle]  ok" in result.output
    assert result.output.rstrip().endswith("clean")
    assert "6 file(s) scanned" in result.output


def test_cli_findings(tmp_path: Path) -> None:
    root = _tree(tmp_path / "model")
    _write(root / "weights" / "evil.pkl", HOSTILE)
    out = tmp_path / "bundle.zip"
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("inner.pkl", HOSTILE)
    os.replace(out, root / "bundle.zip")
    result = _run(root)
    assert result.exit_code == 1, result.output
    report = Scanner().scan_path(root)
    assert len(report.findings) >= 2
    for finding in report.findings:
        assert finding.code in result.output
        assert f"@ {finding.offset}" in result.output
        assert finding.reason in result.output
    assert "(bundle.zip!inner.pkl)" in result.output
    assert "REJECTED" in result.output


def test_cli_single_file_with_findings(tmp_path: Path) -> None:
    result = _run(_write(tmp_path / "evil.pkl", HOSTILE))
    assert result.exit_code == 1
    assert "evil.pkl  [pickle]  1 finding(s)" in result.output


def test_cli_missing_path(tmp_path: Path) -> None:
    result = _run(tmp_path / "missing")
    assert result.exit_code == 2
    assert "scan.not_found" in result.output


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"globals": {"os": ["system"]}}', b'{"unknown": 1}', b"\xff\xfe"],
    ids=["syntax", "forbidden", "unknown-key", "not-utf8"],
)
def test_cli_bad_allowlist(tmp_path: Path, content: bytes) -> None:
    _write(tmp_path / "m" / "a.txt", b"x")
    allow = _write(tmp_path / "allow.json", content)
    result = _run(tmp_path / "m", "--allowlist", allow)
    assert result.exit_code == 2, result.output
    assert "scan.allowlist_invalid" in result.output


def test_cli_missing_allowlist(tmp_path: Path) -> None:
    _write(tmp_path / "m" / "a.txt", b"x")
    result = _run(tmp_path / "m", "--allowlist", tmp_path / "nope.json")
    assert result.exit_code == 2
    assert "scan.allowlist_invalid" in result.output


def test_cli_operator_allowlist_extends_the_packaged_one(tmp_path: Path) -> None:
    model = _write(tmp_path / "m" / "g.pkl", b"\x80\x02cmymodule\nThing\n.")
    assert _run(model).exit_code == 1
    allow = _write(tmp_path / "allow.toml", b'[globals]\nmymodule = ["Thing"]\n')
    result = _run(model, "--allowlist", allow, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["clean"] is True
    assert "+operator-sha256:" in document["allowlist_version"]


@pytest.mark.parametrize("hostile", [False, True])
def test_cli_json(tmp_path: Path, hostile: bool) -> None:
    root = _tree(tmp_path / "model")
    if hostile:
        _write(root / "evil.pkl", HOSTILE)
    result = _run(root, "--json")
    assert result.exit_code == (1 if hostile else 0)
    document = json.loads(result.output)
    assert document == Scanner().scan_path(root).to_dict()
    assert set(document) == {"allowlist_version", "clean", "files"}
    assert document["clean"] is not hostile


def test_cli_needs_no_bastion_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local"))
    monkeypatch.chdir(tmp_path)
    # conftest removes every BASTION_* setting but the test-harness switches
    harness = ("BASTION_TEST_", "BASTION_REQUIRE_")
    assert not [k for k in os.environ if k.startswith("BASTION_") and not k.startswith(harness)]
    root = _tree(tmp_path / "model")
    result = _run(root)
    assert result.exit_code == 0, result.output
    assert list(home.iterdir()) == []  # nothing created, nothing needed
    assert not (tmp_path / ".bastion").exists()  # nor a default home in the working directory


def test_cli_escapes_names_and_reasons_from_the_content(tmp_path: Path) -> None:
    """Names come from the artifact: printed raw, escapes could erase the verdict."""
    evil_name = "ok.txt\r\x1b[2K\x1b[1Aall clean"
    _write(tmp_path / "m" / evil_name, HOSTILE)
    _write(tmp_path / "m" / "bad-\udcff.bin", b"x")  # the file name is the bytes bad-\xff.bin
    result = _run(tmp_path / "m")
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.output
    assert "\r" not in result.output
    assert "\\x1b[2K" in result.output
    assert "\\udcff" in result.output


def test_cli_internal_error_is_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Scanner, path: Path) -> None:
        raise RecursionError("boom")

    monkeypatch.setattr(scan_cli.Scanner, "scan_path", broken)
    result = _run(_write(tmp_path / "a.txt", b"x"))
    assert result.exit_code == 2
    assert "scan.internal" in result.output
