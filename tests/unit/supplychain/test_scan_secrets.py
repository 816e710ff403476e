"""Embedded credentials: every kind, wherever it hides (text, the middle of a large binary
across chunk seams, a deflated zip member, a compressed pickle), found at the right offset,
never quoted in a finding, and no false positives on random data.

The secrets are synthetic values of the right shape, generated from a fixed seed.
"""

from __future__ import annotations

import gzip
import io
import pickle
import random
import zipfile
from pathlib import Path

import pytest

from bastion.supplychain.scan import FileReport, ScanLimits, Scanner
from bastion.supplychain.scan.credentials import OVERLAP, SecretScanner, _bastion_checksum

_RNG = random.Random(20260101)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _pick(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


def _mixed(n: int) -> str:
    """n characters with at least one digit, upper and lower case letter."""
    return "aZ7" + _pick(n - 3)


def _bastion_token() -> str:
    head = "bst_" + _pick(26, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") + _pick(40)
    return head + _bastion_checksum(head.encode()).decode()


BASTION_TOKEN = _bastion_token()

SECRETS: dict[str, str] = {
    "private_key": "-----BEGIN RSA PRIVATE KEY-----",
    "aws_access_key_id": "AKIA" + _pick(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
    "github_token": "ghp_" + _pick(36),
    "slack_token": "xoxb-" + _pick(12, "0123456789") + "-" + _pick(24),
    "stripe_live_key": "sk_live_" + _pick(24),
    "google_api_key": "AIza" + _pick(35),
    "huggingface_token": "hf_" + _pick(34, _ALNUM[:52]),
    "openai_api_key": "sk-proj-" + _mixed(48),
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0." + _pick(43),
    "bastion_token": BASTION_TOKEN,
    "gcp_service_account": (
        '"private_key_id": "' + _pick(40, "0123456789abcdef") + '", "private_key": "MII"'
    ),
}
# Values a finding must never quote (for a PEM key, its header is all there is to quote).
SENSITIVE = {kind: value for kind, value in SECRETS.items() if kind != "private_key"}


def secret_findings(report: FileReport) -> list[tuple[str, str, int | None]]:
    return [(f.path, f.code, f.offset) for f in report.findings if f.code.startswith("secret.")]


def _assert_not_quoted(report: FileReport) -> None:
    for finding in report.findings:
        for value in SENSITIVE.values():
            assert value not in finding.reason
            assert value[-12:] not in finding.reason


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


@pytest.mark.parametrize("kind", SECRETS)
def test_secret_in_a_text_file(scanner: Scanner, kind: str) -> None:
    prefix = b"# settings\nname = demo\ntoken = "
    data = prefix + SECRETS[kind].encode() + b"\nend = true\n"
    report = scanner.scan_bytes(data, "settings.ini")
    assert ("settings.ini", f"secret.{kind}", len(prefix)) in secret_findings(report)
    _assert_not_quoted(report)


def test_gcp_service_account_json(scanner: Scanner) -> None:
    document = (
        '{\n  "type": "service_account",\n  "project_id": "demo",\n'
        f"  {SECRETS['gcp_service_account']}\n}}\n"
    ).encode()
    report = scanner.scan_bytes(document, "sa.json")
    offset = document.index(b'"private_key_id"')
    assert ("sa.json", "secret.gcp_service_account", offset) in secret_findings(report)


def test_private_key_id_without_a_private_key_is_not_reported(scanner: Scanner) -> None:
    document = b'{"private_key_id": "' + b"ab" * 20 + b'"}'
    assert scanner.scan_bytes(document, "a.json").clean


@pytest.mark.parametrize(
    "text",
    [
        BASTION_TOKEN[:-1] + ("A" if BASTION_TOKEN[-1] != "A" else "B"),  # wrong checksum
        BASTION_TOKEN[:10] + "I" + BASTION_TOKEN[11:],  # not Crockford base32 (I)
        "sk-" + "a" * 40,  # no digit, no upper case: not an API key
        "AKIA" + "A" * 16 + "B",  # too long
        "xghp_" + "a" * 36,  # glued to a word
        "hf_" + "a" * 33,  # too short
    ],
    ids=["bastion-checksum", "bastion-alphabet", "openai-mix", "aws-long", "github-glued", "hf"],
)
def test_look_alikes_are_not_reported(scanner: Scanner, text: str) -> None:
    assert scanner.scan_bytes(f"value = {text}\n".encode(), "a.txt").clean


def test_valid_bastion_token_is_reported(scanner: Scanner) -> None:
    report = scanner.scan_bytes(f"key={BASTION_TOKEN}".encode(), "a.txt")
    assert secret_findings(report) == [("a.txt", "secret.bastion_token", 4)]


@pytest.fixture(scope="module")
def big_random() -> bytes:
    return random.Random(7).randbytes(20 << 20)


CHUNK = 1 << 20


def _plant(blob: bytes) -> tuple[bytes, dict[str, int]]:
    """Every kind planted across a different chunk seam (each straddles `k * CHUNK`)."""
    data = bytearray(blob)
    where: dict[str, int] = {}
    for i, (kind, value) in enumerate(SECRETS.items(), start=1):
        at = i * CHUNK - len(value) // 2
        data[at - 1 : at + len(value) + 1] = b"\0" + value.encode() + b"\0"
        where[kind] = at
    return bytes(data), where


def test_random_binary_has_no_false_positives(big_random: bytes) -> None:
    report = Scanner(limits=ScanLimits(chunk_size=CHUNK)).scan_bytes(big_random, "w.bin")
    assert report.findings == ()


def test_secrets_across_chunk_seams_of_a_large_binary(big_random: bytes) -> None:
    data, where = _plant(big_random)
    report = Scanner(limits=ScanLimits(chunk_size=CHUNK)).scan_bytes(data, "w.bin")
    found = {(code, offset) for _, code, offset in secret_findings(report)}
    expected = {(f"secret.{kind}", at) for kind, at in where.items()}
    assert expected <= found
    # The GCP sample holds nothing else; a PEM key id is all the other kinds are.
    assert found == expected
    _assert_not_quoted(report)


def test_seams_with_default_chunks(big_random: bytes) -> None:
    data, where = _plant(big_random)
    report = Scanner().scan_bytes(data, "w.bin")
    assert {(f"secret.{k}", at) for k, at in where.items()} == {
        (code, offset) for _, code, offset in secret_findings(report)
    }


def test_secret_straddling_tiny_chunks() -> None:
    """Chunks far smaller than a secret: the seam logic still sees it whole."""
    token = SECRETS["github_token"].encode()
    data = b"\xff" * 1000 + token + b"\xff" * 1000
    for chunk in (7, 16, 64, 1001, 1010):
        report = Scanner(limits=ScanLimits(chunk_size=chunk)).scan_bytes(data, "w.bin")
        assert secret_findings(report) == [("w.bin", "secret.github_token", 1000)], chunk


def test_secret_scanner_reports_each_secret_once_across_many_seams() -> None:
    token = SECRETS["aws_access_key_id"].encode()
    data = b"\x00" * (OVERLAP - 3) + token + b"\x00" * (3 * OVERLAP)
    found: list[tuple[str, str, int]] = []
    scanner = SecretScanner(lambda code, reason, offset: found.append((code, reason, offset)))
    for start in range(0, len(data), 4096):
        scanner.feed(data[start : start + 4096])
    assert [(code, offset) for code, _, offset in found] == [
        ("secret.aws_access_key_id", OVERLAP - 3)
    ]


@pytest.mark.parametrize("kind", SECRETS)
def test_secret_inside_a_deflated_zip_member(scanner: Scanner, kind: str) -> None:
    text = b"notes " * 100 + SECRETS[kind].encode() + b" more notes" * 100
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("docs/notes.txt", text)
    data = out.getvalue()
    assert SECRETS[kind].encode() not in data  # only visible once inflated
    report = scanner.scan_bytes(data, "bundle.zip")
    assert secret_findings(report) == [
        ("bundle.zip!docs/notes.txt", f"secret.{kind}", text.index(SECRETS[kind].encode()))
    ]
    _assert_not_quoted(report)


@pytest.mark.parametrize("kind", SECRETS)
def test_secret_inside_a_gzipped_pickle(scanner: Scanner, kind: str) -> None:
    payload = pickle.dumps({"config": {"api_key": SECRETS[kind]}, "w": [1.0] * 10}, protocol=4)
    data = gzip.compress(payload)
    assert SECRETS[kind].encode() not in data
    report = scanner.scan_bytes(data, "model.joblib")
    assert secret_findings(report) == [
        ("model.joblib!gzip", f"secret.{kind}", payload.index(SECRETS[kind].encode()))
    ]
    _assert_not_quoted(report)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("kind", SECRETS)
def test_secret_pickled_with_every_protocol(scanner: Scanner, kind: str, protocol: int) -> None:
    """Pickle framing sits right against a string (`V`, a length byte such as `L` for 76
    characters, a BINPUT `q`): Bastion tokens pickled by joblib and AWS keys pickled by
    torch.save used to be missed because of it."""
    value = SECRETS[kind]
    for obj in ({"key": value}, [value, 1], {"key": value.encode()}):
        payload = pickle.dumps(obj, protocol=protocol)
        report = scanner.scan_bytes(payload, "p.pkl")
        assert f"secret.{kind}" in {code for _, code, _ in secret_findings(report)}, obj


def test_secret_across_many_tiny_gzip_members(scanner: Scanner) -> None:
    """joblib reads concatenated gzip streams; a decompressed chunk per (3-byte) member
    used to hand the secret scanner pieces too small to ever hold a secret."""
    payload = pickle.dumps({"token": SECRETS["github_token"]}, protocol=4)
    data = b"".join(gzip.compress(payload[i : i + 3]) for i in range(0, len(payload), 3))
    report = scanner.scan_bytes(data, "m.joblib")
    offset = payload.index(SECRETS["github_token"].encode())
    assert ("m.joblib!gzip", "secret.github_token", offset) in secret_findings(report)


def test_secret_in_a_stored_member_is_found_in_the_member_too(scanner: Scanner) -> None:
    token = SECRETS["stripe_live_key"].encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.txt", b"key: " + token)
    data = out.getvalue()
    report = scanner.scan_bytes(data, "b.zip")
    assert set(secret_findings(report)) == {
        ("b.zip", "secret.stripe_live_key", data.index(token)),
        ("b.zip!a.txt", "secret.stripe_live_key", 5),
    }


def test_secrets_in_files_of_a_directory(scanner: Scanner, tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(random.Random(3).randbytes(100_000))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".env").write_text(f"HF_TOKEN={SECRETS['huggingface_token']}\n")
    report = scanner.scan_path(tmp_path)
    assert [(f.path, f.code, f.offset) for f in report.findings] == [
        ("sub/.env", "secret.huggingface_token", len("HF_TOKEN="))
    ]


def test_many_secrets_are_capped() -> None:
    token = SECRETS["aws_access_key_id"]
    data = "\n".join(f"{i} {token}" for i in range(50)).encode()
    report = Scanner(limits=ScanLimits(max_findings_per_file=10)).scan_bytes(data, "a.txt")
    assert len(report.findings) == 11
    assert report.findings[-1].code == "scan.too_many_findings"
