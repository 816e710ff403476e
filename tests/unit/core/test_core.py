"""Core primitives: RFC 8785 canonical JSON, ids, Settings, the error base."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from bastion.core import BastionError, ErrorKind, InvalidInput, Settings, canonical_json, new_id
from bastion.core.errors import ConfigError, IntegrityError
from bastion.core.ids import is_id

# ------------------------------------------------------------------ canonical JSON (RFC 8785)


def test_rfc8785_section_3_2_2_example() -> None:
    # RFC 8785 §3.2.2: the input as written there, and its canonical form.
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert canonical_json(json.loads(source)) == expected


def test_rfc8785_section_3_2_3_sorts_keys_by_utf16_code_units() -> None:
    # RFC 8785 §3.2.3. The emoji (U+1F600, UTF-16 D83D DE00) sorts before U+FB33, which it
    # would not in code-point order.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert canonical_json(value).startswith(b'{"\\r":"Carriage Return","1":"One",')


@pytest.mark.parametrize(
    ("number", "text"),
    [
        # RFC 8785 Appendix B and §3.2.2.3 (ECMAScript Number.prototype.toString).
        (0.0, "0"),
        (-0.0, "0"),
        (5e-324, "5e-324"),
        (-5e-324, "-5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (-9007199254740992.0, "-9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e30, "1e+30"),
        (4.5, "4.5"),
        (0.002, "0.002"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1e-27, "1e-27"),
        (9.999999999999997e-7, "9.999999999999997e-7"),
        (333333333.33333329, "333333333.3333333"),
        (2**53 - 1, "9007199254740991"),
        (-(2**53) + 1, "-9007199254740991"),
        (10, "10"),
    ],
)
def test_numbers_serialise_as_ecmascript(number: float, text: str) -> None:
    assert canonical_json(number) == text.encode()
    assert canonical_json({"n": number}) == b'{"n":' + text.encode() + b"}"


def test_strings_escape_only_what_jcs_requires() -> None:
    assert canonical_json("é/€\u001f\t<>&'") == '"é/€\\u001f\\t<>&\'"'.encode()
    assert canonical_json({"b": [], "a": {}}) == b'{"a":{},"b":[]}'


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        {"x": [float("nan")]},
        {1: "non-str key"},
        {"nested": {None: 1}},
        2**60,
        2**53,
        -(2**53),
        b"bytes",
        {1, 2},
        object(),
    ],
    ids=[
        "nan",
        "inf",
        "-inf",
        "nested-nan",
        "int-key",
        "none-key",
        "2**60",
        "2**53",
        "-(2**53)",
        "bytes",
        "set",
        "object",
    ],
)
def test_values_jcs_cannot_represent_are_invalid_input(value: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        canonical_json(value)
    assert info.value.code == "core.not_canonicalizable"
    assert info.value.kind == ErrorKind.INVALID


# ------------------------------------------------------------------ ids


def test_new_id_format() -> None:
    value = new_id("prn")
    assert re.fullmatch(r"prn_[0-9A-HJKMNP-TV-Z]{26}", value), value
    assert is_id(value, "prn")
    assert not is_id(value, "tok")
    assert not is_id(value.lower(), "prn")


def test_new_id_is_unique() -> None:
    ids = {new_id("tok") for _ in range(5000)}
    assert len(ids) == 5000


def test_new_ids_sort_by_creation_time() -> None:
    made = []
    for _ in range(5):
        made.append(new_id("evt"))
        time.sleep(0.002)
    assert sorted(made) == made
    assert len(set(made)) == len(made)


def test_new_id_time_prefix_is_the_current_millisecond() -> None:
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    before = time.time_ns() // 1_000_000
    body = new_id("req").split("_", 1)[1]
    after = time.time_ns() // 1_000_000
    millis = 0
    for char in body[:10]:  # 130 bits encoded, top 2 zero: the first 50 are the 48-bit time
        millis = millis * 32 + crockford.index(char)
    assert before <= millis <= after


@pytest.mark.parametrize("prefix", ["", "p", "PRN", "prn_", "toolongprefix", "pr1"])
def test_new_id_refuses_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="bad id prefix"):
        new_id(prefix)


# ------------------------------------------------------------------ Settings


def test_settings_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    home = (tmp_path / ".bastion").resolve()
    assert settings.home == home
    assert settings.home.is_absolute()
    assert settings.resolved_database_url == f"sqlite:///{home / 'bastion.db'}"
    assert settings.resolved_blob_url == (home / "blobs").as_uri()
    assert settings.resolved_blob_url.startswith("file:///")
    assert settings.keys_dir == home / "keys"
    assert settings.listen == "127.0.0.1:8080"
    assert (settings.listen_host, settings.listen_port) == ("127.0.0.1", 8080)
    assert settings.master_key is None
    assert settings.max_request_bytes == 1024 * 1024


def test_settings_home_resolves_relative_and_user_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert Settings.from_env(home="rel/../state").home == (tmp_path / "state").resolve()
    assert Settings.from_env(home="~/b").home == (tmp_path / "user" / "b").resolve()


def test_settings_read_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("BASTION_DATABASE_URL", "postgresql://db.example/bastion")
    monkeypatch.setenv("BASTION_LISTEN", "[::1]:9443")
    settings = Settings.from_env()
    assert settings.home == (tmp_path / "h").resolve()
    assert settings.resolved_database_url == "postgresql://db.example/bastion"
    assert settings.resolved_blob_url == (tmp_path / "h" / "blobs").resolve().as_uri()
    assert (settings.listen_host, settings.listen_port) == ("::1", 9443)


def test_keyword_overrides_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_LISTEN", "0.0.0.0:1")
    assert Settings.from_env(listen="127.0.0.1:2").listen == "127.0.0.1:2"


@pytest.mark.parametrize("listen", ["nope", "host:0", "host:99999", ":8080", "host:", "h:8o"])
def test_bad_listen_is_a_config_error(listen: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(listen=listen)
    assert info.value.code == "config.invalid"
    assert "listen" in info.value.message
    monkeypatch.setenv("BASTION_LISTEN", listen)
    with pytest.raises(ConfigError):
        Settings.from_env()


@pytest.mark.parametrize(
    ("field", "bad", "edge"),
    [
        ("approval_ttl_days", [0, -1, 3651], [1, 3650]),
        ("policy_cache_seconds", [-0.1, 300.5], [0, 300]),
    ],
)
def test_policy_settings_are_bounded(field: str, bad: list[float], edge: list[float]) -> None:
    for value in bad:
        with pytest.raises(ConfigError) as info:
            Settings.from_env(**{field: value})
        assert field in info.value.message
    for value in edge:
        assert getattr(Settings.from_env(**{field: value}), field) == value


def test_unknown_keyword_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(listne="127.0.0.1:1")
    assert "listne" in info.value.message


def test_config_file_is_read_and_environment_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text(
        f'home = "{tmp_path / "from-file"}"\nlisten = "0.0.0.0:9000"\nmax_request_bytes = 4096\n'
    )
    monkeypatch.setenv("BASTION_CONFIG", str(config))
    settings = Settings.from_env()
    assert settings.home == (tmp_path / "from-file").resolve()
    assert settings.listen == "0.0.0.0:9000"
    assert settings.max_request_bytes == 4096

    monkeypatch.setenv("BASTION_LISTEN", "127.0.0.1:9001")
    settings = Settings.from_env()
    assert settings.listen == "127.0.0.1:9001"
    assert settings.max_request_bytes == 4096


def test_config_file_with_unknown_key_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "bastion.toml"
    config.write_text('lisen = "0.0.0.0:9000"\n')
    monkeypatch.setenv("BASTION_CONFIG", str(config))
    with pytest.raises(ConfigError):
        Settings.from_env()


def test_malformed_config_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TOML syntax error is a ConfigError naming the file (CLI exit 2), not a traceback."""
    config = tmp_path / "bastion.toml"
    config.write_text("listen = \n")
    monkeypatch.setenv("BASTION_CONFIG", str(config))
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.from_env()


def test_missing_config_file_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BASTION_CONFIG naming no file is an error, not silently ignored (a typo in the path
    must not quietly drop the configured database)."""
    monkeypatch.setenv("BASTION_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        Settings.from_env()


def test_settings_repr_hides_master_key() -> None:
    secret = "c2VjcmV0LW1hc3Rlci1rZXktdmFsdWUtMzItYnl0ZXM"
    settings = Settings.from_env(master_key=secret)
    assert settings.master_key is not None
    assert settings.master_key.get_secret_value() == secret
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert secret not in text


def test_settings_are_frozen() -> None:
    settings = Settings.from_env()
    with pytest.raises(Exception, match="frozen"):
        settings.listen = "0.0.0.0:1"  # type: ignore[misc]


# ------------------------------------------------------------------ errors


def test_error_to_dict_shape() -> None:
    plain = InvalidInput("bad thing")
    assert plain.to_dict() == {"code": "input.invalid", "message": "bad thing"}
    assert plain.kind == ErrorKind.INVALID

    detailed = IntegrityError(
        "root mismatch",
        code="ledger.root_mismatch",
        details={"expected": "sha256:aa", "computed": "sha256:bb"},
    )
    assert detailed.to_dict() == {
        "code": "ledger.root_mismatch",
        "message": "root mismatch",
        "details": {"expected": "sha256:aa", "computed": "sha256:bb"},
    }
    assert detailed.kind == ErrorKind.INTEGRITY
    assert json.loads(json.dumps(detailed.to_dict())) == detailed.to_dict()


def test_error_defaults_and_repr() -> None:
    error = BastionError("boom")
    assert (error.code, error.kind, str(error)) == ("bastion.internal", ErrorKind.INTERNAL, "boom")
    assert repr(ConfigError("x")) == "ConfigError(code='config.invalid', message='x')"
