"""PII detection and redaction (`bastion.privacy.pii`, `bastion.privacy.recognizers`).

Planted PII never survives: generated e-mails, phone numbers, payment cards (valid Luhn),
IBANs (valid mod 97), IPv4/IPv6 addresses, API keys and tokens, JWTs, URL credentials and
national ids, inside random text, are redacted completely (every character of the planted
value is inside a finding). Near misses (cards with a wrong check digit, IBANs with a wrong
checksum, timestamps, dates, versions, order numbers, amounts, hashes, invalid SSNs and phone
numbers) are redacted at most `NEAR_MISS_MAX_RATE` = 2 % of the time. IP addresses are never
phone numbers. The fast path equals plain Presidio (`AnalyzerEngine` + `AnonymizerEngine` over
the same recognizers), every trigger is a necessary condition, and our `re`-based pattern
matching equals Presidio's `PatternRecognizer.analyze`. Nothing opens a socket.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import random
import socket
import string
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from presidio_analyzer import PatternRecognizer

from bastion.core.errors import InvalidInput, TooLarge
from bastion.core.settings import Settings
from bastion.privacy import recognizers as rec
from bastion.privacy.pii import (
    ENTITIES,
    MAX_TEXT_CHARS,
    Finding,
    PiiDetector,
    default_detector,
)

NEAR_MISS_MAX_RATE = 0.02

DETECTOR = PiiDetector()  # built once for the module (it is thread-safe and stateless)


# -- strategies: planted PII --------------------------------------------------------------------
# Each plant strategy gives (planted text, the part of it that must not survive).


def _whole(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str]]:
    return strategy.map(lambda s: (s, s))


def _luhn_digit(body: str) -> str:
    for d in "0123456789":
        if rec.luhn_valid(body + d):
            return d
    raise AssertionError("unreachable")


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix, length = draw(
        st.sampled_from(
            [
                ("4", 16),
                ("4", 13),
                ("51", 16),
                ("55", 16),
                ("2221", 16),
                ("2720", 16),
                ("34", 15),
                ("37", 15),
                ("6011", 16),
                ("65", 16),
                ("3530", 16),
                ("36", 14),
            ]
        )
    )
    body = prefix + "".join(
        draw(st.sampled_from(string.digits)) for _ in range(length - len(prefix) - 1)
    )
    number = body + _luhn_digit(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    if not sep:
        return number
    if length == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, length, 4))


_BBAN = {  # ISO 13616 registry: n digits, a upper-case letters, c alphanumerics
    "GB": "4a14n",
    "DE": "18n",
    "FR": "10n11c2n",
    "NL": "4a10n",
    "ES": "20n",
    "IT": "1a10n12c",
    "CH": "5n12c",
    "BE": "12n",
    "PL": "24n",
    "NO": "11n",
}


def _bban_part(draw: st.DrawFn, spec: str) -> str:
    out = []
    number = ""
    for char in spec:
        if char.isdigit():
            number += char
            continue
        alphabet = {
            "n": string.digits,
            "a": string.ascii_uppercase,
            "c": string.ascii_uppercase + string.digits,
        }[char]
        out.append("".join(draw(st.sampled_from(alphabet)) for _ in range(int(number))))
        number = ""
    return "".join(out)


def _iban_check(country: str, bban: str) -> str:
    digits = (bban + country + "00").translate(
        {ord(c): str(i) for i, c in enumerate(string.digits + string.ascii_uppercase)}
    )
    return f"{98 - int(digits) % 97:02d}"


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(_BBAN)))
    bban = _bban_part(draw, _BBAN[country])
    compact = country + _iban_check(country, bban) + bban
    assume(rec.iban_valid(compact))
    style = draw(st.sampled_from(["compact", "grouped", "lower"]))
    if style == "grouped":
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact.lower() if style == "lower" else compact


_PHONE_REGIONS = ["US", "GB", "DE", "FR", "IN", "BR", "IL", "CA"]
_PHONE_TYPES = [phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE]


@st.composite
def phones(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(_PHONE_REGIONS))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(_PHONE_TYPES)))
    assume(example is not None)
    assert example is not None
    nsn = str(example.national_number)
    tail = "".join(draw(st.sampled_from(string.digits)) for _ in range(3))
    number = phonenumbers.parse(f"+{example.country_code}{nsn[:-3]}{tail}")
    assume(phonenumbers.is_valid_number(number))
    fmt = draw(
        st.sampled_from(
            [
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.NATIONAL,
                phonenumbers.PhoneNumberFormat.E164,
            ]
        )
    )
    return phonenumbers.format_number(number, fmt)


_FIXED_PHONES = [
    "+1 (212) 555-0143",
    "(212) 555-0143",
    "212-555-0143",
    "212.555.0143",
    "2125550143",
    "+44 20 7946 0958",
    "020 7946 0958",
    "+44 (0)20 7946 0958",
    "+49 30 1234567",
    "+33 1 42 68 53 00",
    "06 12 34 56 78",
    "+91 98765 43210",
    "+972-3-1234567",
]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def jwts(draw: st.DrawFn) -> str:
    header = {"alg": draw(st.sampled_from(["HS256", "RS256", "ES256", "none"])), "typ": "JWT"}
    claims = {
        "sub": draw(st.text(string.ascii_letters, min_size=1, max_size=12)),
        "iat": draw(st.integers(0, 2**31)),
    }
    signature = draw(st.binary(min_size=0, max_size=64))
    return ".".join(
        [
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(claims).encode()),
            _b64url(signature),
        ]
    )


def _chars(alphabet: str, n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=n, max_size=n)


_ALNUM = string.ascii_letters + string.digits
api_keys = st.one_of(
    _chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16).map(lambda s: "AKIA" + s),
    st.tuples(st.sampled_from(["ghp_", "gho_", "ghs_"]), _chars(_ALNUM, 36)).map("".join),
    _chars(_ALNUM + "_", 82).map(lambda s: "github_pat_" + s),
    st.tuples(
        st.sampled_from(["xoxb-", "xoxp-"]), _chars(string.digits, 12), _chars(_ALNUM, 24)
    ).map(lambda t: f"{t[0]}{t[1]}-{t[2]}"),
    st.tuples(st.sampled_from(["sk_live_", "rk_live_", "sk_test_"]), _chars(_ALNUM, 24)).map(
        "".join
    ),
    _chars(_ALNUM + "_-", 35).map(lambda s: "AIza" + s),
    _chars(_ALNUM, 40).map(lambda s: "sk-proj-" + s),
)


@st.composite
def assignments(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(
        st.sampled_from(
            [
                "api_key",
                "apikey",
                "password",
                "client_secret",
                "token",
                "AWS_SECRET_ACCESS_KEY",
                "passwd",
                "access-token",
            ]
        )
    )
    value = draw(st.text(_ALNUM + "!$%*-_./+", min_size=8, max_size=40))
    assume(value[0] not in "-")
    sep = draw(st.sampled_from(["=", ": ", '="', " = '"]))
    quote = {'="': '"', " = '": "'"}.get(sep, "")
    return f"{name}{sep}{value}{quote}", value


@st.composite
def bearer(draw: st.DrawFn) -> tuple[str, str]:
    token = draw(st.text(_ALNUM + "-._~+/", min_size=20, max_size=60))
    assume(any(not c.isalpha() for c in token))
    return f"Authorization: Bearer {token}", token


@st.composite
def url_credentials(draw: st.DrawFn) -> tuple[str, str]:
    scheme = draw(st.sampled_from(["https", "postgresql", "redis", "amqp", "ftp"]))
    user = draw(st.text(_ALNUM, min_size=1, max_size=12))
    password = draw(st.text(_ALNUM + "!$*-_.~", min_size=1, max_size=20))
    return f"{scheme}://{user}:{password}@db.example.net:5432/x", f"{user}:{password}"


@st.composite
def ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    group, serial = draw(st.integers(1, 99)), draw(st.integers(1, 9999))
    number = f"{area:03d}-{group:02d}-{serial:04d}"
    assume(number.replace("-", "") not in ("123456789", "987654320", "078051120"))
    assume(len(set(number.replace("-", ""))) > 1)
    return number


@st.composite
def ninos(draw: st.DrawFn) -> str:
    first = draw(st.sampled_from("ABCEGHJKLMNOPRSTWXYZ"))
    second = draw(st.sampled_from("ABCEGHJKLMNPRSTWXYZ"))
    assume(first + second not in {"BG", "GB", "NK", "KN", "NT", "TN", "ZZ"})
    digits = draw(_chars(string.digits, 6))
    suffix = draw(st.sampled_from("ABCD"))
    if draw(st.booleans()):
        return f"{first}{second} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{first}{second}{digits}{suffix}"


_NIF_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


@st.composite
def spanish_ids(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        number = draw(st.integers(0, 99_999_999))
        return f"{number:08d}{_NIF_LETTERS[number % 23]}"
    lead = draw(st.sampled_from("XYZ"))
    number = draw(st.integers(0, 9_999_999))
    return f"{lead}{number:07d}{_NIF_LETTERS[int(str('XYZ'.index(lead)) + f'{number:07d}') % 23]}"


_CF_ODD = dict(
    zip(
        string.digits + string.ascii_uppercase,
        [
            1,
            0,
            5,
            7,
            9,
            13,
            15,
            17,
            19,
            21,
            1,
            0,
            5,
            7,
            9,
            13,
            15,
            17,
            19,
            21,
            2,
            4,
            18,
            20,
            11,
            3,
            6,
            8,
            12,
            14,
            16,
            10,
            22,
            25,
            24,
            23,
        ],
        strict=True,
    )
)


def _cf_even(c: str) -> int:
    return int(c) if c.isdigit() else ord(c) - 65


@st.composite
def fiscal_codes(draw: st.DrawFn) -> str:
    consonants = "BCDFGHJKLMNPQRSTVWXZ"
    name = "".join(draw(st.sampled_from(consonants)) for _ in range(6))
    year = f"{draw(st.integers(0, 99)):02d}"
    month = draw(st.sampled_from("ABCDEHLMPRST"))
    day = draw(st.integers(1, 28)) + draw(st.sampled_from([0, 40]))
    town = draw(st.sampled_from("ABCDEFGHILM")) + f"{draw(st.integers(100, 999))}"
    body = f"{name}{year}{month}{day:02d}{town}"
    total = sum(_CF_ODD[c] if i % 2 == 0 else _cf_even(c) for i, c in enumerate(body))
    return body + chr(65 + total % 26)


@st.composite
def finnish_ids(draw: st.DrawFn) -> str:
    day, month, year = draw(st.integers(1, 28)), draw(st.integers(1, 12)), draw(st.integers(0, 99))
    sign = draw(st.sampled_from("-A"))
    serial = draw(st.integers(2, 899))
    date = f"{day:02d}{month:02d}{year:02d}"
    check = "0123456789ABCDEFHJKLMNPRSTUVWXY"[int(f"{date}{serial:03d}") % 31]
    return f"{date}{sign}{serial:03d}{check}"


# Loopback and unspecified addresses (127.0.0.1, ::1, 0.0.0.0, ::) are no one's: not planted.
ipv4 = st.ip_addresses(v=4).filter(lambda a: not (a.is_loopback or a.is_unspecified)).map(str)
ipv6 = st.ip_addresses(v=6).filter(lambda a: not (a.is_loopback or a.is_unspecified)).map(str)

PLANTS: dict[str, st.SearchStrategy[tuple[str, str]]] = {
    # Local parts with URL delimiters (a/b=c@x.org) are valid but unused; see recognizers.
    "email": _whole(st.emails().filter(lambda e: not set(e.rsplit("@", 1)[0]) & set("/?=&"))),
    "phone": _whole(st.one_of(phones(), st.sampled_from(_FIXED_PHONES))),
    "card": _whole(cards()),
    "iban": _whole(ibans()),
    "ipv4": _whole(ipv4),
    "ipv6": _whole(ipv6),
    "api_key": _whole(api_keys),
    "assignment": assignments(),
    "bearer": bearer(),
    "jwt": _whole(jwts()),
    "url": url_credentials(),
    "ssn": _whole(ssns()),
    "nino": _whole(ninos()),
    "es_id": _whole(spanish_ids()),
    "it_cf": _whole(fiscal_codes()),
    "fi_id": _whole(finnish_ids()),
}

# Filler: lower-case words and light punctuation; no digits, '@', ':' or '=' so that filler
# cannot itself form PII (or an assignment) next to a planted value.
words = st.text(string.ascii_lowercase, min_size=1, max_size=9)
filler = st.lists(
    st.tuples(words, st.sampled_from(["", "", ",", ".", ";", "!", "?"])).map("".join),
    max_size=6,
).map(" ".join)
wrappers = st.tuples(
    st.sampled_from(["", "", "(", '"']), st.sampled_from(["", "", ".", ",", ";", ")", '"'])
)


@st.composite
def planted_texts(
    draw: st.DrawFn, kinds: list[str] | None = None
) -> tuple[str, list[tuple[int, int, str]]]:
    """A text with 1-3 planted values; returns it and the (start, end, kind) of each secret."""
    parts: list[str] = [draw(filler)]
    spans: list[tuple[int, int, str]] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(kinds or sorted(PLANTS)))
        planted, secret = draw(PLANTS[kind])
        before, after = draw(wrappers)
        prefix = " ".join(parts) + " " + before
        offset = len(prefix) + planted.index(secret)
        spans.append((offset, offset + len(secret), kind))
        parts = [prefix + planted + after, draw(filler)]
    return " ".join(parts), spans


def _uncovered(findings: list[Finding], start: int, end: int) -> list[int]:
    return [i for i in range(start, end) if not any(f.start <= i < f.end for f in findings)]


def _assert_gone(text: str, spans: list[tuple[int, int, str]], style: str = "tag") -> None:
    redacted, findings = DETECTOR.redact_with_findings(text, style=style)
    for start, end, kind in spans:
        secret = text[start:end]
        assert not _uncovered(findings, start, end), (kind, secret, text, findings)
        if style == "tag":
            # The secret may also occur in the filler by chance (a word such as "aaaaaaaa"):
            # only those occurrences may remain.
            elsewhere = sum(
                1
                for at in range(len(text))
                if text.startswith(secret, at) and not any(s <= at < e for s, e, _ in spans)
            )
            assert redacted.count(secret) <= elsewhere, (kind, secret, redacted)


# -- planted PII never survives -----------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(PLANTS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_planted_pii_of_each_kind_never_survives(kind: str, data: st.DataObject) -> None:
    text, spans = data.draw(planted_texts([kind]))
    _assert_gone(text, spans)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(planted=planted_texts(), style=st.sampled_from(["tag", "mask"]))
def test_mixed_planted_pii_never_survives(
    planted: tuple[str, list[tuple[int, int, str]]], style: str
) -> None:
    text, spans = planted
    _assert_gone(text, spans, style)


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.none(),
            PLANTS["email"].map(lambda p: p[0]),
            PLANTS["card"].map(lambda p: p[0]),
            words,
        ),
        max_size=30,
    )
)
def test_redact_column_never_leaks_and_keeps_nulls(values: list[str | None]) -> None:
    redacted = DETECTOR.redact_column(values)
    assert len(redacted) == len(values)
    for original, out in zip(values, redacted, strict=True):
        assert (out is None) == (original is None)
        if original is not None:
            assert out == DETECTOR.redact(original)


@pytest.mark.parametrize(
    ("text", "entity", "secret"),
    [
        ("mail alice@example.com now", "EMAIL_ADDRESS", "alice@example.com"),
        ("internal bob.smith@corp.internal", "EMAIL_ADDRESS", "bob.smith@corp.internal"),
        ("GET /u?email=alice%40example.com&x=1", "EMAIL_ADDRESS", "alice%40example.com"),
        ("call +1 (212) 555-0143 today", "PHONE_NUMBER", "+1 (212) 555-0143"),
        ("uk +44 20 7946 0958.", "PHONE_NUMBER", "+44 20 7946 0958"),
        ("card 4111 1111 1111 1111", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("mc 2221-0000-0000-0009", "CREDIT_CARD", "2221-0000-0000-0009"),
        ("amex 3782 822463 10005", "CREDIT_CARD", "3782 822463 10005"),
        ("iban GB82 WEST 1234 5698 7654 32", "IBAN_CODE", "GB82 WEST 1234 5698 7654 32"),
        ("pay de89370400440532013000 2 days", "IBAN_CODE", "de89370400440532013000"),
        ("from 192.168.10.34:8080", "IP_ADDRESS", "192.168.10.34"),
        ("via 2001:db8::8a2e:370:7334", "IP_ADDRESS", "2001:db8::8a2e:370:7334"),
        ("ssn 536-22-8726", "US_SSN", "536-22-8726"),
        ("nino AB 12 34 56 C", "UK_NINO", "AB 12 34 56 C"),
        ("dni 12345678Z", "ES_NIF", "12345678Z"),
        ("nie X1234567L", "ES_NIE", "X1234567L"),
        ("cf RSSMRA85T10A562S", "IT_FISCAL_CODE", "RSSMRA85T10A562S"),
        ("hetu 131052-308T", "FI_PERSONAL_IDENTITY_CODE", "131052-308T"),
        ("key AKIAIOSFODNN7EXAMPLE", "API_KEY", "AKIAIOSFODNN7EXAMPLE"),
        ("api_key=abcdef123456;", "API_KEY", "abcdef123456"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "API_KEY", "dXNlcjpwYXNzd29yZA=="),
        (
            "t eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
            "JWT",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        ),
        ("db postgresql://app:s3cr3t@db:5432/x", "URL_CREDENTIALS", "app:s3cr3t"),
    ],
)
def test_each_entity_type_is_detected_with_its_name(text: str, entity: str, secret: str) -> None:
    findings = DETECTOR.analyze(text)
    start = text.index(secret)
    assert [(f.entity, f.start, f.end) for f in findings] == [(entity, start, start + len(secret))]
    assert DETECTOR.redact(text) == text.replace(secret, f"<{entity}>")
    assert DETECTOR.redact(text, style="mask") == text.replace(secret, "*" * len(secret))


def test_every_entity_type_has_a_recognizer_and_a_priority() -> None:
    made = [r.supported_entities[0] for r in rec.all_recognizers()]
    assert tuple(made) == ENTITIES
    assert set(rec.PRIORITY) == set(ENTITIES)


def test_adjacent_values_are_each_redacted() -> None:
    text = (
        "call 212 555 0143 212 555 0199 or GB82 WEST 1234 5698 7654 32 DE89 3704 0044 0532 0130 00"
    )
    assert DETECTOR.redact(text) == "call <PHONE_NUMBER> <PHONE_NUMBER> or <IBAN_CODE> <IBAN_CODE>"


# -- IP addresses are not phone numbers --------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(address=ipv4, context=st.sampled_from(["ip {}", "from {}:8080", "{} - - [GET /]", "({})"]))
def test_ipv4_addresses_are_never_phone_numbers(address: str, context: str) -> None:
    text = context.format(address)
    findings = DETECTOR.analyze(text)
    start = text.index(address)
    assert [(f.entity, f.start, f.end) for f in findings] == [
        ("IP_ADDRESS", start, start + len(address))
    ]


def test_presidio_alone_takes_this_ip_for_a_phone_and_we_do_not() -> None:
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    text = "last login from 192.168.10.34."
    plain = PhoneRecognizer().analyze(text, ["PHONE_NUMBER"], rec.NO_NLP)
    assert [text[r.start : r.end] for r in plain] == ["192.168.10.34"]  # the known false positive
    assert [f.entity for f in DETECTOR.analyze(text)] == ["IP_ADDRESS"]
    assert rec.PhoneNumberRecognizer().analyze(text, ["PHONE_NUMBER"], rec.NO_NLP) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(number=phones())
def test_every_phone_presidio_finds_we_find(number: str) -> None:
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    text = f"please call {number} tomorrow"
    theirs = {
        (r.start, r.end) for r in PhoneRecognizer().analyze(text, ["PHONE_NUMBER"], rec.NO_NLP)
    }
    ours = {(f.start, f.end) for f in DETECTOR.analyze(text) if f.entity == "PHONE_NUMBER"}
    for start, end in theirs:
        assert any(s <= start and end <= e for s, e in ours), (text, theirs, ours)


# -- near misses --------------------------------------------------------------------------------


def _bad_luhn(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice(string.digits) for _ in range(14))
    good = _luhn_digit(body)
    wrong = rng.choice([d for d in string.digits if d != good])
    number = body + wrong
    return rng.choice([number, " ".join(number[i : i + 4] for i in range(0, 16, 4))])


def _bad_iban(rng: random.Random) -> str:
    country = rng.choice(sorted(_BBAN))
    spec = _BBAN[country]
    bban = ""
    number = ""
    for char in spec:
        if char.isdigit():
            number += char
            continue
        alphabet = {
            "n": string.digits,
            "a": string.ascii_uppercase,
            "c": string.ascii_uppercase + string.digits,
        }[char]
        bban += "".join(rng.choice(alphabet) for _ in range(int(number)))
        number = ""
    good = _iban_check(country, bban)
    check = f"{(int(good) + rng.randint(1, 96)) % 97 + 2:02d}"
    check = check if check != good else f"{(int(good) % 97) + 1:02d}"
    compact = country + check + bban
    assert not rec.iban_valid(compact)
    return rng.choice([compact, " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))])


NEAR_MISSES: dict[str, Callable[[random.Random], str]] = {
    "card_bad_luhn": _bad_luhn,
    "iban_bad_checksum": _bad_iban,
    "timestamp": lambda r: (
        f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T"
        f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z"
    ),
    "log_time": lambda r: (
        f"{r.randint(2000, 2030)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} "
        f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}"
        f".{r.randint(0, 999):03d}"
    ),
    "date": lambda r: f"{r.randint(1, 28):02d}/{r.randint(1, 12):02d}/{r.randint(1990, 2030)}",
    "version": lambda r: f"v{r.randint(0, 20)}.{r.randint(0, 40)}.{r.randint(0, 300)}",
    "dotted_five": lambda r: ".".join(str(r.randint(0, 255)) for _ in range(5)),
    "order": lambda r: f"order #{r.randint(10_000, 9_999_999)}",
    "invoice": lambda r: f"INV-{r.randint(2000, 2030)}-{r.randint(0, 999_999):06d}",
    "amount": lambda r: f"${r.randint(0, 99_999):,}.{r.randint(0, 99):02d}",
    "short_number": lambda r: str(r.randint(0, 999_999)),
    "decimal": lambda r: f"{r.randint(0, 9_999_999)}.{r.randint(0, 99):02d}",
    "percent": lambda r: f"{r.randint(0, 100)}.{r.randint(0, 9)}%",
    "latency": lambda r: f"p99 {r.randint(1, 5000)} ms, {r.randint(1, 100_000)} requests",
    "git_sha": lambda r: "".join(r.choice("0123456789abcdef") for _ in range(r.choice([7, 40]))),
    "uuid": lambda r: "-".join(
        "".join(r.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)
    ),
    "bad_ssn": lambda r: (
        r.choice(["000", "666", "9" + f"{r.randint(0, 99):02d}"])
        + f"-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"
    ),
    "sku": lambda r: f"SKU{r.randint(10**7, 10**10)}",
    "identifier": lambda r: f"{r.choice(['req', 'job', 'ID'])}-{r.randint(10**6, 10**10)}",
    "port": lambda r: f"localhost:{r.randint(1, 65535)}",
    "words": lambda r: " ".join(
        "".join(r.choice(string.ascii_lowercase) for _ in range(r.randint(2, 9))) for _ in range(4)
    ),
    "no_password": lambda r: r.choice(["password reset requested", "token expired", "the key"]),
}


def test_near_misses_are_rarely_redacted() -> None:
    """At most NEAR_MISS_MAX_RATE of near-miss values overlap a finding; none of the cards
    with a wrong check digit, IBANs with a wrong checksum or invalid SSNs do."""
    rng = random.Random(7)
    hit: dict[str, int] = dict.fromkeys(NEAR_MISSES, 0)
    total = 0
    for _ in range(150):
        for kind, make in NEAR_MISSES.items():
            value = make(rng)
            text = f"the {value} here"
            findings = DETECTOR.analyze(text)
            if any(f.start < 4 + len(value) and f.end > 4 for f in findings):
                hit[kind] += 1
            total += 1
    rate = sum(hit.values()) / total
    assert rate <= NEAR_MISS_MAX_RATE, hit
    assert hit["card_bad_luhn"] == 0
    assert hit["bad_ssn"] == 0
    assert hit["words"] == 0


def test_documented_decision_a_dotted_quad_version_is_an_ip_address() -> None:
    # Without context a four-part version cannot be told from an IPv4 address: it is redacted.
    assert DETECTOR.redact("version 1.2.3.4") == "version <IP_ADDRESS>"
    assert DETECTOR.redact("version 1.2.3.4.5") == "version 1.2.3.4.5"


def test_loopback_and_unspecified_addresses_are_left_alone() -> None:
    text = "listening on http://127.0.0.1:8000, [::1]:8000 and 0.0.0.0; peer 203.0.113.9"
    assert DETECTOR.redact(text) == (
        "listening on http://127.0.0.1:8000, [::1]:8000 and 0.0.0.0; peer <IP_ADDRESS>"
    )


# -- fast path == plain Presidio -----------------------------------------------------------------

near_miss_values = st.sampled_from(sorted(NEAR_MISSES)).flatmap(
    lambda kind: st.integers(0, 10_000).map(lambda seed: NEAR_MISSES[kind](random.Random(seed)))
)


@st.composite
def mixed_texts(draw: st.DrawFn) -> str:
    text, _ = draw(planted_texts())
    extra = draw(st.lists(near_miss_values, max_size=3))
    return " ".join([text, *extra])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(text=mixed_texts(), style=st.sampled_from(["tag", "mask"]))
def test_fast_path_equals_presidio_analyzer_and_anonymizer(text: str, style: str) -> None:
    assert DETECTOR.analyze(text) == DETECTOR.analyze_reference(text)
    assert DETECTOR.redact(text, style=style) == DETECTOR.redact_reference(text, style=style)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(text=st.one_of(mixed_texts(), st.text(max_size=80)))
def test_every_trigger_is_a_necessary_condition(text: str) -> None:
    for recognizer in rec.all_recognizers():
        if recognizer.analyze(text, list(ENTITIES), rec.NO_NLP):
            assert recognizer.TRIGGER.search(text) is not None, type(recognizer).__name__  # type: ignore[attr-defined]


_FAST_PATTERN_RECOGNIZERS = [r for r in rec.all_recognizers() if isinstance(r, rec.FastPatterns)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(text=mixed_texts())
def test_re_based_patterns_equal_presidios_pattern_recognizer(text: str) -> None:
    def key(results: list[Any]) -> list[tuple[str, int, int, float]]:
        return sorted((r.entity_type, r.start, r.end, r.score) for r in results)

    for recognizer in _FAST_PATTERN_RECOGNIZERS:
        ours = recognizer.analyze(text, list(ENTITIES), rec.NO_NLP)
        plain = cast(PatternRecognizer, recognizer)
        theirs = PatternRecognizer.analyze(plain, text, list(ENTITIES), rec.NO_NLP)
        assert key(ours) == key(theirs), type(recognizer).__name__


# -- the API: arguments, limits, columns ---------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", True])
def test_min_score_out_of_range_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        PiiDetector(min_score=bad)
    assert caught.value.code == "privacy.bad_min_score"


@pytest.mark.parametrize("bad", [["NOPE"], ["EMAIL_ADDRESS", "PERSON"], []])
def test_unknown_or_no_entities_are_refused(bad: list[str]) -> None:
    with pytest.raises(InvalidInput) as caught:
        PiiDetector(entities=bad)
    assert caught.value.code == "privacy.unknown_entity"


def test_entities_restrict_what_is_found() -> None:
    only_email = PiiDetector(entities=["EMAIL_ADDRESS"])
    text = "a@example.com 4111 1111 1111 1111 10.0.0.1"
    assert only_email.redact(text) == "<EMAIL_ADDRESS> 4111 1111 1111 1111 10.0.0.1"
    assert only_email.entities == ("EMAIL_ADDRESS",)


def test_min_score_drops_weaker_findings() -> None:
    text = "ssn 536-22-8726 and a@example.com"  # SSN scores 0.5 (structure only), e-mail 1.0
    assert [f.entity for f in PiiDetector(min_score=0.5).analyze(text)] == [
        "US_SSN",
        "EMAIL_ADDRESS",
    ]
    assert [f.entity for f in PiiDetector(min_score=0.9).analyze(text)] == ["EMAIL_ADDRESS"]


def test_bad_style_and_bad_text_are_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        DETECTOR.redact("x", style="hash")
    assert caught.value.code == "privacy.bad_style"
    with pytest.raises(InvalidInput) as caught:
        DETECTOR.analyze(b"a@example.com")  # type: ignore[arg-type]
    assert caught.value.code == "privacy.bad_text"


def test_text_over_the_limit_is_refused() -> None:
    DETECTOR.analyze("x" * MAX_TEXT_CHARS)  # at the limit: fine
    with pytest.raises(TooLarge) as caught:
        DETECTOR.analyze("x" * (MAX_TEXT_CHARS + 1))
    assert caught.value.code == "privacy.text_too_large"


def test_findings_hold_no_text() -> None:
    findings = DETECTOR.analyze("mail alice@example.com")
    assert [f.public() for f in findings] == [
        {"entity": "EMAIL_ADDRESS", "start": 5, "end": 22, "score": 1.0}
    ]
    assert "alice" not in repr(findings)


def test_contains_pii() -> None:
    assert DETECTOR.contains_pii("reach me at a@example.com")
    assert not DETECTOR.contains_pii("nothing to see here")
    assert not DETECTOR.contains_pii("card 4111 1111 1111 1112")  # triggered, then rejected


def test_scan_values_counts_values_per_entity() -> None:
    values = ["a@example.com", None, "a@example.com", "b@example.com and 10.0.0.1", "plain", ""]
    assert DETECTOR.scan_values(values) == {"EMAIL_ADDRESS": 3, "IP_ADDRESS": 1}
    assert DETECTOR.scan_values([None, "x"]) == {}


def test_scan_values_sample_is_bounded_and_reproducible() -> None:
    values = [f"user{i}@example.com" if i % 2 else f"row {i}" for i in range(1000)]
    first = DETECTOR.scan_values(values, sample=100)
    assert first == DETECTOR.scan_values(iter(values), sample=100)
    assert 0 < first["EMAIL_ADDRESS"] < 100
    assert DETECTOR.scan_values(values[:10], sample=100) == {"EMAIL_ADDRESS": 5}
    for bad in (0, -1, True):
        with pytest.raises(InvalidInput) as caught:
            DETECTOR.scan_values(values, sample=bad)
        assert caught.value.code == "privacy.bad_sample"


def test_redact_column_analyses_each_distinct_value_once(monkeypatch: pytest.MonkeyPatch) -> None:
    detector = PiiDetector()
    calls: list[str] = []
    original = detector.redact

    def counting(text: str, *, style: str = "tag") -> str:
        calls.append(text)
        return original(text, style=style)

    monkeypatch.setattr(detector, "redact", counting)
    column = ["a@example.com", None, "a@example.com", "b", "b", None]
    assert detector.redact_column(column) == [
        "<EMAIL_ADDRESS>",
        None,
        "<EMAIL_ADDRESS>",
        "b",
        "b",
        None,
    ]
    assert calls == ["a@example.com", "b"]


def test_default_detector_is_shared_per_min_score() -> None:
    assert default_detector() is default_detector(Settings())
    assert default_detector(Settings(pii_min_score=0.8)).min_score == 0.8
    assert default_detector(Settings(pii_min_score=0.8)) is not default_detector()


def test_detector_is_safe_to_share_between_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    texts = [
        f"user{i}@example.com from 10.0.{i % 256}.1 card 4111 1111 1111 1111" for i in range(200)
    ]
    expected = [DETECTOR.redact(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(DETECTOR.redact, texts)) == expected


def test_long_runs_of_numbers_and_separators_finish() -> None:
    # Pathological inputs for the candidate regexes: each must be linear (no timing asserted).
    for text in (
        " ".join(str(i) for i in range(5000)),
        "1-" * 20_000,
        "a@" * 20_000,
        "eyJ." * 20_000,
        "GB82 " * 10_000,
        ":" * 50_000 + "1",
    ):
        DETECTOR.analyze(text)


# -- offline ------------------------------------------------------------------------------------


def test_no_socket_is_opened_while_building_or_analysing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    detector = PiiDetector()
    text = "mail a@example.co.uk, x@new-domain.dev, tel +44 20 7946 0958, ip 10.0.0.1"
    assert detector.redact(text) == (
        "mail <EMAIL_ADDRESS>, <EMAIL_ADDRESS>, tel <PHONE_NUMBER>, ip <IP_ADDRESS>"
    )
    assert detector.redact_reference(text) == detector.redact(text)


def test_a_fresh_process_imports_and_builds_without_network(tmp_path: Path) -> None:
    # Presidio is imported first (as an unrelated module might), so tldextract's module-level
    # extractor exists before Bastion sets anything; Presidio's own EmailRecognizer, which
    # uses it, must not fetch the public suffix list either.
    script = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise SystemExit('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from presidio_analyzer.predefined_recognizers import EmailRecognizer\n"
        "from bastion.privacy.pii import PiiDetector\n"
        "print(PiiDetector().redact('a@example.com'))\n"
        "print(len(EmailRecognizer().analyze('mail b@example.org', ['EMAIL_ADDRESS'])))\n"
    )
    # An empty tldextract cache: a list cached by an earlier run cannot hide a fetch.
    env = {**os.environ, "TLDEXTRACT_CACHE": str(tmp_path / "tldextract")}
    env.pop("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["<EMAIL_ADDRESS>", "1"]
    assert not (tmp_path / "tldextract").exists()  # nothing cached either


def test_iban_and_card_helpers() -> None:
    assert rec.iban_valid("GB82WEST12345698765432")
    assert not rec.iban_valid("GB83WEST12345698765432")
    assert not rec.iban_valid("ZZ82WEST12345698765432")
    assert rec.card_valid("4111111111111111")
    assert not rec.card_valid("4111111111111112")
    assert not rec.card_valid("9111111111111111")  # no issuer starts with 9
    assert ipaddress.ip_address("10.0.0.1")  # (the IP recognizer validates with ipaddress)


def test_presidios_default_registry_still_loads_beside_ours() -> None:
    # Presidio finds predefined recognizers by class name among all subclasses: ours must not
    # shadow one (an `EmailRecognizer` of ours once replaced Presidio's in its registry).
    from presidio_analyzer import RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    modules = {type(r).__module__ for r in registry.recognizers}
    assert all(m.startswith("presidio_analyzer.") for m in modules), modules
    assert {"EmailRecognizer", "CreditCardRecognizer", "IbanRecognizer"} <= {
        type(r).__name__ for r in registry.recognizers
    }


@given(
    st.lists(
        st.integers(min_value=0, max_value=999).map(str) | st.sampled_from(["00", "01", "010"]),
        min_size=4,
        max_size=4,
    )
)
def test_the_dotted_quad_shortcut_decides_as_ipaddress_does(octets: list[str]) -> None:
    """IpAddressRecognizer decides plain dotted quads without `ipaddress`; the decision must be
    the one `ipaddress` gives (a valid address that is neither loopback nor unspecified)."""
    text = ".".join(octets)
    try:
        address = ipaddress.IPv4Address(text)
        expected = address.is_loopback or address.is_unspecified
    except ValueError:
        expected = True  # not an address: the finding is dropped
    assert rec.IpAddressRecognizer().invalidate_result(text) is expected
