"""Bastion's PII recognizers: Presidio recognizers, some of Presidio's own and some of ours.

Every recognizer here is a Presidio `LocalRecognizer`, so `AnalyzerEngine` can run the set
unchanged (that is the reference path `bastion.privacy.pii` checks its fast path against).
Each one also carries a `TRIGGER`: a cheap check (a standard-library regex or a substring
test) that fires on any text the recognizer could find something in (a necessary condition,
never a sufficient one). The detector's fast path skips a recognizer whose trigger does not match.

Where Presidio is weak we use our own recognizers:

- email: Presidio's regex can start a match in the middle of a local part and its check needs
  a public suffix (so `alice@corp.internal` was not PII). Ours matches a whole dot-atom local
  part (RFC 5322 atext except the URL delimiters / ? = &, so an address in a query string is
  the address, not the path), also URL-encoded (`alice%40example.com`), and scores 1.0 with a
  known public suffix (offline snapshot, never fetched), 0.5 with any other alphabetic or
  punycode top-level label.
- phone: libphonenumber (Leniency.VALID, Presidio's regions) on candidate runs of 7-15 digits,
  instead of Presidio's whole-text scan for every region (~0.8 ms per log line), and only in
  the regions where the digits can be a valid number. Never a phone number: a dotted quad (the
  IP-as-phone false positive), a date, an amount with decimals, a dotted run of short numbers,
  a card-shaped run (4-4-4-x), digits glued to an identifier (`INV-2023-842348`). Numbers
  side by side ("212 555 0143 212 555 0199") are split; a number that is only part of a run
  must also be grouped as libphonenumber formats it (Leniency.STRICT_GROUPING).
- credit card: Luhn plus the issuer's prefix and length (Presidio missed 2-series Mastercard).
- IBAN: mod 97-10 (ISO 7064) plus the country's BBAN format (Presidio's per-country table),
  lower case accepted, trailing digits after an IBAN trimmed by the country's length.
- IPv4: a dotted quad inside a longer dotted run ("1.2.3.4.5") is not an address; loopback
  and unspecified addresses (127.0.0.1, ::1, 0.0.0.0) are not redacted.
- API keys and tokens, JWTs (header must decode to JSON with "alg"), URLs with credentials.

National ids with real validation: ES_NIF and ES_NIE (mod-23 check letter), IT_FISCAL_CODE
(check character), FI_PERSONAL_IDENTITY_CODE (date and mod-31 check character), all Presidio's;
UK_NINO and US_SSN are validated by structure only (no check digit exists).

Scores: 1.0 when a checksum or a structure that random text does not produce confirms the
match; 0.7 for phone numbers libphonenumber calls valid and generic secret assignments; 0.6
for IP addresses; 0.5 for ids validated by structure only and emails with an unknown suffix.

Importing this module sets `TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS` to "" and replaces
tldextract's module-level extractor with an offline one, so nothing in the process (Presidio's
own EmailRecognizer included) ever fetches the public suffix list.

Imports only Presidio, phonenumbers, tldextract and the standard library; nothing from Bastion.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
import json
import os
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Protocol, cast

# Set before importing tldextract (as Presidio does): extractors read the variable when they
# are constructed, and an empty value means "never fetch the public suffix list".
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

import phonenumbers
import tldextract
from presidio_analyzer import (
    EntityRecognizer,
    LocalRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import (
    EsNieRecognizer,
    EsNifRecognizer,
    FiPersonalIdentityCodeRecognizer,
    IpRecognizer,
    ItFiscalCodeRecognizer,
    PhoneRecognizer,
    UkNinoRecognizer,
    UsSsnRecognizer,
)
from presidio_analyzer.predefined_recognizers.generic.iban_patterns import (
    regex_per_country,
)

LANGUAGE = "en"
# Our recognizers use no NLP artifacts; Presidio's signatures want the argument.
NO_NLP = cast(NlpArtifacts, None)

EMAIL_ADDRESS = "EMAIL_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"
CREDIT_CARD = "CREDIT_CARD"
IBAN_CODE = "IBAN_CODE"
IP_ADDRESS = "IP_ADDRESS"
US_SSN = "US_SSN"
UK_NINO = "UK_NINO"
ES_NIF = "ES_NIF"
ES_NIE = "ES_NIE"
IT_FISCAL_CODE = "IT_FISCAL_CODE"
FI_PERSONAL_IDENTITY_CODE = "FI_PERSONAL_IDENTITY_CODE"
API_KEY = "API_KEY"
JWT = "JWT"
URL_CREDENTIALS = "URL_CREDENTIALS"


def _result(recognizer: EntityRecognizer, start: int, end: int, score: float) -> RecognizerResult:
    return RecognizerResult(
        entity_type=recognizer.supported_entities[0],
        start=start,
        end=end,
        score=score,
        recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: getattr(recognizer, "name", ""),
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id,
        },
    )


class Trigger(Protocol):
    """A necessary condition for a recognizer to find anything: `search` returns None only
    for texts the recognizer finds nothing in."""

    def search(self, text: str, /) -> object | None: ...


@dataclass(frozen=True)
class Substrings:
    """Fires when the text contains one of `exact`, or one of `folded` ignoring case."""

    exact: tuple[str, ...] = ()
    folded: tuple[str, ...] = ()

    def search(self, text: str, /) -> object | None:
        for needle in self.exact:
            if needle in text:
                return needle
        if self.folded:
            lowered = text.lower()
            for needle in self.folded:
                if needle in lowered:
                    return needle
        return None


_RE_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL


class FastPatterns:
    """`PatternRecognizer.analyze` for a Presidio pattern recognizer, on the standard `re`
    module: the same patterns, flags, scores, `validate_result`/`invalidate_result` and
    duplicate removal, without Presidio's per-match explanation objects, timers and the
    `regex` module's timeout machinery (about ten times faster on short texts). A test checks
    it against Presidio's own `analyze` on generated texts.

    Mix in before the Presidio class: `class X(FastPatterns, SomePresidioRecognizer)`.
    """

    # Pattern name -> a string every match of that pattern contains: the pattern is skipped
    # for a text without it (IPv6 patterns need a colon; a log line of IPv4s has none).
    PATTERN_NEEDS: ClassVar[dict[str, str]] = {}
    _compiled: list[tuple[re.Pattern[str], float, str]]

    def _compile(self) -> None:
        me = cast(PatternRecognizer, self)
        flags = int(me.global_regex_flags or 0) & _RE_FLAGS
        patterns: list[Pattern] = getattr(me, "patterns", [])
        self._compiled = [
            (re.compile(p.regex, flags), float(p.score), self.PATTERN_NEEDS.get(p.name, ""))
            for p in patterns
        ]

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        me = cast(PatternRecognizer, self)
        results: list[RecognizerResult] = []
        for regex, pattern_score, needs in self._compiled:
            if needs not in text:
                continue
            for match in regex.finditer(text):
                start, end = match.span()
                if start == end:
                    continue
                matched = text[start:end]
                valid = me.validate_result(matched)
                score = pattern_score if valid is None else (1.0 if valid else 0.0)
                if me.invalidate_result(matched):
                    score = 0.0
                if score > 0:
                    results.append(_result(me, start, end, score))
        return list(EntityRecognizer.remove_duplicates(results)) if results else results


# -- our regex recognizers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One regex of a `RegexRecognizer`: the entity is `group` of each match; `check` turns
    the matched text into a score (0 rejects it), else every match scores `score`."""

    name: str
    regex: re.Pattern[str]
    score: float
    group: int | str = 0
    check: Callable[[str], float] | None = None


class RegexRecognizer(LocalRecognizer):
    """A Presidio recognizer over standard-library regexes with per-rule validation.

    Unlike Presidio's `PatternRecognizer` it can report a capture group (the secret after
    `api_key=`, not the key name) and runs the `re` module, which is several times faster
    than `regex` with Presidio's default IGNORECASE|DOTALL|MULTILINE flags.
    """

    ENTITY: ClassVar[str]
    RULES: ClassVar[Sequence[Rule]]
    TRIGGER: ClassVar[Trigger]

    def __init__(self) -> None:
        super().__init__(
            supported_entities=[self.ENTITY],
            supported_language=LANGUAGE,
            name=type(self).__name__,
        )

    def load(self) -> None:
        """Nothing to load: the regexes are compiled at import."""

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for rule in self.RULES:
            for match in rule.regex.finditer(text):
                start, end = match.span(rule.group)
                if start >= end:
                    continue
                score = rule.check(text[start:end]) if rule.check else rule.score
                if score > 0:
                    results.append(_result(self, start, end, score))
        return list(EntityRecognizer.remove_duplicates(results)) if len(results) > 1 else results


# Email ------------------------------------------------------------------------------------------

# RFC 5322 atext without the URL delimiters / ? = & (no real mailbox uses them, and with them
# "/users?email=alice@example.com" would be one address).
_ATEXT = r"[\w!#$%'*+^`{|}~-]"
_EMAIL = re.compile(
    rf"(?<![\w!#$%'*+^`{{|}}~.-]){_ATEXT}+(?:\.{_ATEXT}+)*"
    r"(?:@|%40)(?P<domain>(?:[^\W_][\w-]*\.)+[^\W_][\w-]*)"  # %40: URL-encoded, in a query
)
# Offline: no URL to fetch, no disk cache, the snapshot bundled with tldextract.
_SUFFIXES = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
# If tldextract was imported before the variable above was set (importing Presidio does it),
# its module-level extractor, behind `tldextract.extract` (which Presidio's own
# EmailRecognizer calls), would still fetch the list over HTTP: make it the offline one.
tldextract.tldextract.TLD_EXTRACTOR = _SUFFIXES


def _email_score(matched: str) -> float:
    at = max(matched.rfind("@") + 1, matched.rfind("%40") + 3)
    return _domain_score(matched[at:].rstrip("-"))


@lru_cache(maxsize=4096)
def _domain_score(domain: str) -> float:
    parts = _SUFFIXES(domain)
    if parts.suffix and parts.domain:
        return 1.0
    top = domain.rsplit(".", 1)[-1]
    punycode = top[:4].lower() == "xn--" and top[4:].replace("-", "").isalnum()
    return 0.5 if (top.isalpha() or punycode) and 2 <= len(top) <= 63 else 0.0


class EmailAddressRecognizer(RegexRecognizer):
    """RFC 5322 dot-atom addresses, also URL-encoded (`alice%40example.com`); 1.0 with a known
    public suffix, else 0.5."""

    ENTITY = EMAIL_ADDRESS
    RULES = (Rule("email", _EMAIL, 1.0, check=_email_score),)
    TRIGGER = Substrings(exact=("@", "%40"))


# Credit card ------------------------------------------------------------------------------------

# Digit groups joined by one space or dash; a card number is a window of whole groups.
_DIGIT_RUN = re.compile(r"(?<![\w.,+])(?<!\d[.,])\d+(?:[ -]\d+)*")  # not after "+": a phone
_GROUP = re.compile(r"\d+")


def luhn_valid(digits: str) -> bool:
    """The Luhn (ISO/IEC 7812-1 annex B) check over a string of ASCII digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


# (prefix range low, high, number of prefix digits) -> card lengths (ISO/IEC 7812 IIN ranges).
_ISSUERS: tuple[tuple[int, int, int, frozenset[int]], ...] = (
    (4, 4, 1, frozenset({13, 16, 19})),  # Visa
    (51, 55, 2, frozenset({16})),  # Mastercard
    (2221, 2720, 4, frozenset({16})),  # Mastercard 2-series
    (34, 34, 2, frozenset({15})),  # American Express
    (37, 37, 2, frozenset({15})),
    (6011, 6011, 4, frozenset(range(16, 20))),  # Discover
    (644, 649, 3, frozenset(range(16, 20))),
    (65, 65, 2, frozenset(range(16, 20))),
    (3528, 3589, 4, frozenset(range(16, 20))),  # JCB
    (300, 305, 3, frozenset(range(14, 20))),  # Diners Club
    (36, 36, 2, frozenset(range(14, 20))),
    (38, 39, 2, frozenset(range(16, 20))),
    (62, 62, 2, frozenset(range(16, 20))),  # UnionPay
    (2200, 2204, 4, frozenset(range(16, 20))),  # Mir
    (5018, 5018, 4, frozenset(range(12, 20))),  # Maestro
    (5020, 5020, 4, frozenset(range(12, 20))),
    (5038, 5038, 4, frozenset(range(12, 20))),
    (5893, 5893, 4, frozenset(range(12, 20))),
    (6304, 6304, 4, frozenset(range(12, 20))),
    (6759, 6759, 4, frozenset(range(12, 20))),
    (6761, 6763, 4, frozenset(range(12, 20))),
)


def card_valid(digits: str) -> bool:
    """An issuer's prefix and length, and the Luhn check digit."""
    if not 12 <= len(digits) <= 19 or not digits.isascii():
        return False
    for low, high, width, lengths in _ISSUERS:
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return luhn_valid(digits)
    return False


class PaymentCardRecognizer(RegexRecognizer):
    """Payment card numbers: whole digit groups, 12-19 digits, issuer prefix, Luhn."""

    ENTITY = CREDIT_CARD
    RULES = ()
    TRIGGER: ClassVar[Trigger] = re.compile(r"\d(?:[ -]?\d){11}")

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for run in _DIGIT_RUN.finditer(text):
            end = run.end()
            if end < len(text) and (text[end].isalnum() or text[end] == "_"):
                continue  # an identifier such as 4111111111111111abc
            groups = [(g.start(), g.end()) for g in _GROUP.finditer(text, run.start(), end)]
            results.extend(self._cards(text, groups))
        return results

    def _cards(self, text: str, groups: list[tuple[int, int]]) -> list[RecognizerResult]:
        found: list[RecognizerResult] = []
        i = 0
        while i < len(groups):
            hit = None
            digits = ""
            windows: list[tuple[int, str]] = []
            for j in range(i, len(groups)):
                digits += text[groups[j][0] : groups[j][1]]
                if len(digits) > 19:
                    break
                if len(digits) >= 12:
                    windows.append((j, digits))
            for j, candidate in reversed(windows):  # longest first
                if card_valid(candidate):
                    hit = j
                    found.append(_result(self, groups[i][0], groups[j][1], 1.0))
                    break
            i = hit + 1 if hit is not None else i + 1
        return found


# IBAN -------------------------------------------------------------------------------------------

_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){11,32}")
_IBAN_FORMATS = {
    country: re.compile(f"^{pattern}$") for country, pattern in regex_per_country.items()
}
_IBAN_DIGITS = {ord(c): str(i) for i, c in enumerate(string.digits + string.ascii_uppercase)}


def iban_valid(compact: str) -> bool:
    """ISO 13616: the country's BBAN format and the ISO 7064 mod 97-10 check digits."""
    country_format = _IBAN_FORMATS.get(compact[:2])
    if country_format is None or not country_format.match(compact):
        return False
    rearranged = (compact[4:] + compact[:4]).translate(_IBAN_DIGITS)
    return rearranged.isdigit() and int(rearranged) % 97 == 1


class IbanCodeRecognizer(RegexRecognizer):
    """IBANs, compact or grouped, any case; trailing text after the IBAN is trimmed."""

    ENTITY = IBAN_CODE
    RULES = ()
    TRIGGER: ClassVar[Trigger] = re.compile(r"[A-Za-z]{2}\d{2}")

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        at = 0
        while (match := _IBAN.search(text, at)) is not None:
            start, end = match.span()
            at = end
            if match.group()[:2].upper() not in _IBAN_FORMATS:
                at = start + 1
                continue
            # Candidate ends: after an alphanumeric that is followed by a separator or the end
            # of the match (never inside a run of alphanumerics), longest first.
            for cut in range(end, start + 14, -1):
                if cut < end and text[cut].isalnum():
                    continue
                piece = text[start:cut]
                if not piece[-1].isalnum():
                    continue
                compact = piece.replace(" ", "").replace("-", "").upper()
                if iban_valid(compact):
                    results.append(_result(self, start, cut, 1.0))
                    at = cut  # an IBAN right after this one is searched for again
                    break
            else:
                at = start + 1
        return results


# IP addresses -----------------------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"


_IP_PATTERNS = (
    *(p for p in IpRecognizer.PATTERNS if p.name != "IPv4"),
    Pattern(
        "IPv4",
        rf"(?<!\d\.)\b{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(?:[0-2]?\d|3[0-2]))?\b(?!\.\d)",
        0.6,
    ),
)


_IPV4_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"{_IPV4_OCTET}(?:\.{_IPV4_OCTET}){{3}}")


class IpAddressRecognizer(FastPatterns, IpRecognizer):
    """Presidio's IPv4/IPv6 patterns (validated by `ipaddress`); an IPv4 address must not be
    part of a longer dotted run of numbers (`1.2.3.4.5`); loopback and unspecified addresses
    are not personal data and are left alone."""

    # IPv4 has d.d.d; IPv6 has "::" or all eight groups (seven colons).
    TRIGGER: ClassVar[Trigger] = re.compile(
        r"\d\.\d{1,3}\.\d|::|(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]"
    )
    PATTERN_NEEDS: ClassVar[dict[str, str]] = {
        "IPv4_mapped": "::",
        "IPv4_embedded": ":",
        "IPv6": ":",
        "IPv6_unspecified": "::",
        "IPv4": ".",
    }

    def __init__(self) -> None:
        super().__init__(patterns=list(_IP_PATTERNS), supported_language=LANGUAGE)
        self._compile()

    def invalidate_result(self, pattern_text: str) -> bool:
        """Presidio's check (`ipaddress` must parse it), and loopback and unspecified addresses
        (127.0.0.1, ::1, 0.0.0.0) are no one's: a server's own bind address stays readable.

        A plain dotted quad (the common case, and most of a column of addresses) is decided
        without `ipaddress`, which parsed each one twice: `_IPV4` accepts exactly what
        `ipaddress` accepts (octets 0-255, no leading zeros)."""
        if _IPV4.fullmatch(pattern_text):
            return pattern_text.startswith("127.") or pattern_text == "0.0.0.0"  # noqa: S104 (compared, not bound)
        if super().invalidate_result(pattern_text):
            return True
        address = ipaddress.ip_interface(pattern_text).ip
        return address.is_loopback or address.is_unspecified


# Phone numbers ----------------------------------------------------------------------------------

_WS = "[ \u00a0]"
_PAREN = r"\(\d{1,5}\)"
# Not inside a word or an identifier ("INV-2023-842348", "id/2125550143").
_PHONE_RUN = re.compile(
    rf"(?<![\w+])(?<![A-Za-z0-9_][-/])"
    rf"\+?(?:{_PAREN}{_WS}?)?\d+(?:(?:{_WS}?{_PAREN}{_WS}?|{_WS}|[.\-/])\d+)*"
)
_PHONE_WORD = re.compile(r"[^ \u00a0]+")
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_DOTTED_RUN = re.compile(
    r"\d{1,3}(?:\.\d{1,3}){3,}"
)  # 1.2.3.4.5: unless all pairs (06.12.34.56.78)
_DECIMAL = re.compile(r"\d+\.\d{1,2}")  # an amount: 16844.37
_CARD_SHAPED = re.compile(r"\d{4}(?:([ -])\d{4}){2}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{4,5}")
_DOTTED_PAIRS = re.compile(r"\d\d(?:\.\d\d)+")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_PHONE_MIN_DIGITS = 7
_NOT_DIGITS = str.maketrans("", "", "+()./- \u00a0")  # everything a run holds but digits
_PHONE_MAX_DIGITS = 15  # E.164
_VALID: int = phonenumbers.Leniency.VALID
_STRICT: int = phonenumbers.Leniency.STRICT_GROUPING
_PHONE_MAX_WINDOWS = 12  # per run; beyond it the run goes to Presidio's whole-text matcher


def _not_phone(text: str, start: int, end: int) -> bool:
    """A word that is never part of a phone number: a dotted quad, a date, an amount with
    decimals, a dotted run of five or more short numbers (unless written in pairs, as French
    numbers are)."""
    return bool(
        _DOTTED_QUAD.fullmatch(text, start, end)
        or _DATE.fullmatch(text, start, end)
        or _DECIMAL.fullmatch(text, start, end)
        or (
            _DOTTED_RUN.fullmatch(text, start, end)
            and not _DOTTED_PAIRS.fullmatch(text, start, end)
        )
    )


def _digit_count(run: str) -> int:
    return len(run.translate(_NOT_DIGITS))


@dataclass(frozen=True)
class _Region:
    country_code: int
    national_number: re.Pattern[str]  # the region's general pattern for national numbers
    national_prefix: re.Pattern[str] | None  # what national-format parsing strips


def _region(code: str) -> _Region | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(code)
    if metadata is None or metadata.general_desc is None or metadata.country_code is None:
        return None
    pattern = metadata.general_desc.national_number_pattern or r"\d+"
    prefix = metadata.national_prefix_for_parsing or metadata.national_prefix
    return _Region(
        country_code=metadata.country_code,
        national_number=re.compile(pattern),
        national_prefix=re.compile(prefix) if prefix else None,
    )


_REGIONS = {code: _region(code) for code in PhoneRecognizer.DEFAULT_SUPPORTED_REGIONS}


def _may_be_valid(digits: str, code: str) -> bool:
    """Whether `digits`, read as a national-format number of region `code` (with or without
    its trunk prefix), is a valid number there: libphonenumber's own validity check, without
    its parsing and matching machinery. A number that fails this in every region is not one
    the matcher accepts, so the (slow) matcher is not run for it."""
    region = _REGIONS.get(code)
    if region is None:
        return True
    candidates = {digits}
    match = region.national_prefix.match(digits) if region.national_prefix else None
    if match and match.end():
        candidates.add(digits[match.end() :])
        candidates.update(g for g in match.groups() if g)
    for nsn in candidates:
        if nsn and region.national_number.fullmatch(nsn):
            number = phonenumbers.PhoneNumber(
                country_code=region.country_code, national_number=int(nsn)
            )
            if phonenumbers.is_valid_number(number):
                return True
    return False


@lru_cache(maxsize=16384)
def _phone_spans(
    window: str, regions: tuple[str, ...], leniency: int
) -> tuple[tuple[int, int], ...]:
    """Spans libphonenumber accepts (at `leniency`) in `window`, for the first region that
    finds any. An international number (leading +) is parsed once. A national number is tried
    only in regions where it can be valid (`_may_be_valid`), unless it starts with 0, which
    may be an international dialling prefix (00, 011)."""
    if window.startswith("+"):
        tried: tuple[str, ...] = ("ZZ",)
    elif window.lstrip("(").startswith("0"):
        tried = regions
    else:
        digits = phonenumbers.normalize_digits_only(window)
        tried = tuple(r for r in regions if _may_be_valid(digits, r))
    for region in tried:
        found = tuple(
            (m.start, m.end)
            for m in phonenumbers.PhoneNumberMatcher(window, region, leniency=leniency)
        )
        if found:
            return found
    return ()


class PhoneNumberRecognizer(PhoneRecognizer):
    """Phone numbers validated by libphonenumber (as Presidio's `PhoneRecognizer`: Leniency
    VALID, the same regions), but only on candidate runs of 7-15 digits made of whole
    whitespace-separated words, not glued to an identifier; a dotted quad, a date or a dotted
    run of short numbers is never part of a number; a number inside a longer run must also be
    grouped as libphonenumber formats it."""

    SCORE = 0.7
    TRIGGER: ClassVar[Trigger] = re.compile(rf"\d(?:[\s().\-/+]*\d){{{_PHONE_MIN_DIGITS - 1}}}")

    def __init__(self) -> None:
        super().__init__(supported_language=LANGUAGE, name="PhoneNumberRecognizer")
        # +1 numbers parsed as US are attributed to CA too: one pass covers both.
        self._regions = tuple(r for r in self.supported_regions if r != "CA")

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for run in _PHONE_RUN.finditer(text):
            if _digit_count(run.group()) < _PHONE_MIN_DIGITS:
                continue
            end = run.end()
            after = text[end : end + 2]
            if (
                after[:1].isalpha()
                or after[:1] == "_"
                or (after[:1] in ("-", ".", "/") and after[1:].isalpha())
            ):
                continue  # part of an identifier: 2125550143abc, 07954650-f3bb-...
            if _CARD_SHAPED.fullmatch(run.group()):
                continue  # 4111 1111 1111 1112: a card number (valid or not), never a phone
            words = [
                (w.start(), w.end(), _digit_count(w.group()))
                for w in _PHONE_WORD.finditer(text, run.start(), end)
            ]
            blocked = [_not_phone(text, s, e) for s, e, _ in words]
            spans = self._window_spans(text, words, blocked)
            if spans is None:
                spans = self._matcher_spans(text, run.start(), end, words, blocked)
            results.extend(_result(self, s, e, self.SCORE) for s, e in spans)
        return results

    def _window_spans(
        self, text: str, words: list[tuple[int, int, int]], blocked: list[bool]
    ) -> list[tuple[int, int]] | None:
        """Numbers made of whole words, longest window first from each word; None when the
        run needs more than `_PHONE_MAX_WINDOWS` windows."""
        spans: list[tuple[int, int]] = []
        windows = 0
        i = 0
        while i < len(words):
            candidates: list[tuple[int, int]] = []  # (last word, digits)
            digits = 0
            for j in range(i, len(words)):
                if blocked[j]:
                    break
                digits += words[j][2]
                if digits > _PHONE_MAX_DIGITS:
                    break
                if digits >= _PHONE_MIN_DIGITS:
                    candidates.append((j, digits))
            hit = None
            for j, _count in reversed(candidates):
                windows += 1
                if windows > _PHONE_MAX_WINDOWS:
                    return None
                start = words[i][0]
                # The whole run: Leniency.VALID, as Presidio. Part of a run (numbers side by
                # side, or digits after a card or IBAN prefix): its digit groups must also be
                # the number's own grouping (STRICT_GROUPING), or any ten digits would do.
                whole = i == 0 and j == len(words) - 1
                leniency = _VALID if whole else _STRICT
                found = _phone_spans(text[start : words[j][1]], self._regions, leniency)
                if found:
                    spans.extend((start + s, start + e) for s, e in found)
                    hit = j
                    break
            i = hit + 1 if hit is not None else i + 1
        return spans

    def _matcher_spans(
        self,
        text: str,
        start: int,
        end: int,
        words: list[tuple[int, int, int]],
        blocked: list[bool],
    ) -> list[tuple[int, int]]:
        """Presidio's own scan (every region over the whole run) for long runs of numbers."""
        bad = [(s, e) for (s, e, _), b in zip(words, blocked, strict=True) if b]
        spans = []
        for found in super().analyze(text[start:end], [PHONE_NUMBER], NO_NLP):
            s, e = start + found.start, start + found.end
            if not any(bs < e and s < be for bs, be in bad):
                spans.append((s, e))
        return spans


# Secrets: API keys and tokens, JWTs, URLs with credentials -------------------------------------


def _b64url_json(segment: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError):
        return None


def _jwt_score(token: str) -> float:
    header = _b64url_json(token.split(".", 1)[0])
    return 1.0 if isinstance(header, dict) and isinstance(header.get("alg"), str) else 0.0


class JwtRecognizer(RegexRecognizer):
    """JSON Web Tokens (RFC 7519, JWS compact form): the header must be JSON with "alg"."""

    ENTITY = JWT
    RULES = (
        Rule(
            "jws",
            re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?![\w-])"),
            1.0,
            check=_jwt_score,
        ),
    )
    TRIGGER = Substrings(exact=("eyJ",))


def _basic_score(value: str) -> float:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return 0.0
    return 1.0 if b":" in decoded else 0.0


def _bearer_score(value: str) -> float:
    return 1.0 if any(not c.isalpha() for c in value) else 0.0


# `name: value` / `name=value`, the name an identifier of up to 64 characters (a longer one is
# not matched: keeps the regex linear). Whether the name is a secret's is decided in Python.
_ASSIGNMENT = re.compile(
    r"(?<![\w.-])(?P<name>[A-Za-z_][\w.-]{0,63})[\"']?[ \t]*[:=][ \t]*[\"']?"
    r"(?P<v>[^\s\"',;&<>]{6,})"
)
_NAME_PARTS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "apikey",
        "credential",
        "credentials",
    }
)
_SECRET_PAIRS = frozenset(
    {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("auth", "key")}
)


def secret_name(name: str) -> bool:
    """Whether an identifier names a secret: one of its words (split on `_ . -` and camelCase)
    is password/secret/token/…, or two adjacent words are api+key, access+key, …
    (`AWS_SECRET_ACCESS_KEY`, `X-Api-Key`, `clientSecret`; not `max_tokens`, `tokenizer`)."""
    parts = [p.lower() for p in _NAME_PARTS.findall(name)]
    if any(p in _SECRET_WORDS for p in parts):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(parts))


_ASSIGNMENT_SCORE = 0.7


class ApiKeyRecognizer(RegexRecognizer):
    """Provider keys with a fixed shape (AWS access key ids, GitHub, Slack, Stripe, Google,
    OpenAI-style `sk-`), `Bearer`/`Basic` credentials and `name=value` secret assignments
    (the value is the entity, not the name)."""

    ENTITY = API_KEY
    RULES = (
        Rule(
            "aws_access_key_id",
            re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Za-z0-9])"),
            1.0,
        ),
        Rule(
            "github",
            re.compile(
                r"(?<![\w-])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{82})"
                r"(?![\w-])"
            ),
            1.0,
        ),
        Rule("slack", re.compile(r"(?<![\w-])xox[abposer]-[A-Za-z0-9-]{10,250}"), 1.0),
        Rule(
            "stripe",
            re.compile(r"(?<![\w-])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,247}(?![\w-])"),
            1.0,
        ),
        Rule("google", re.compile(r"(?<![\w-])AIza[0-9A-Za-z_-]{35}(?![\w-])"), 1.0),
        Rule(
            "sk_dash",
            re.compile(r"(?<![\w-])sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,250}(?![\w-])"),
            1.0,
        ),
        Rule(
            "bearer",
            re.compile(r"\b(?i:bearer)\s+(?P<v>[A-Za-z0-9\-._~+/]{16,}=*)"),
            1.0,
            group="v",
            check=_bearer_score,
        ),
        Rule(
            "basic",
            re.compile(r"\b(?i:basic)\s+(?P<v>[A-Za-z0-9+/]{6,}=*)"),
            1.0,
            group="v",
            check=_basic_score,
        ),
    )
    TRIGGER = Substrings(
        exact=(
            *("AKIA", "ASIA", "ABIA", "ACCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
            *("github_pat_", "xox", "sk_live_", "sk_test_", "rk_live_", "rk_test_"),
            *("AIza", "sk-"),
        ),
        folded=(
            "bearer",
            "basic",
            "key",
            "secret",
            "token",
            "passw",
            "passphrase",
            "pwd",
            "credential",
        ),
    )

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts)
        assigned = [
            _result(self, *m.span("v"), _ASSIGNMENT_SCORE)
            for m in _ASSIGNMENT.finditer(text)
            if secret_name(m.group("name"))
        ]
        if not assigned:
            return results
        return list(EntityRecognizer.remove_duplicates(results + assigned))


class UrlCredentialsRecognizer(RegexRecognizer):
    """`scheme://user:password@host`: the entity is `user:password` (the host stays)."""

    ENTITY = URL_CREDENTIALS
    RULES = (
        Rule(
            "userinfo",
            re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{0,30}://(?P<v>[^\s:/?#@]+:[^\s/?#]*)@[^\s/?#@:]"),
            1.0,
            group="v",
        ),
    )
    TRIGGER = Substrings(exact=("://",))


# Presidio recognizers we use as they are (a trigger, and the registry's language) -----------------


_SSN_PATTERN = Pattern("SSN (delimited)", r"\b([0-9]{3})([- .])([0-9]{2})\2([0-9]{4})\b", 0.5)


class UsSsnNumberRecognizer(FastPatterns, UsSsnRecognizer):
    """US social security numbers written AAA-GG-SSSS (same delimiter: '-', '.' or ' ').
    Presidio's unformatted nine-digit patterns (score 0.05) are left out; area 9xx (ITINs)
    is rejected as well as Presidio's never-issued and sample numbers."""

    TRIGGER: ClassVar[Trigger] = re.compile(r"\d{3}[- .]\d{2}[- .]\d{4}")

    def __init__(self) -> None:
        super().__init__(patterns=[_SSN_PATTERN], supported_language=LANGUAGE)
        self._compile()

    def invalidate_result(self, pattern_text: str) -> bool:
        return pattern_text[0] == "9" or bool(super().invalidate_result(pattern_text))


class UkNinoNumberRecognizer(FastPatterns, UkNinoRecognizer):
    """UK National Insurance numbers (Presidio's pattern: prefix rules, suffix A-D)."""

    TRIGGER: ClassVar[Trigger] = re.compile(r"[A-Za-z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-Da-d]")

    def __init__(self) -> None:
        super().__init__(supported_language=LANGUAGE)
        self._compile()


class EsNifNumberRecognizer(FastPatterns, EsNifRecognizer):
    """Spanish DNI/NIF: eight digits and the mod-23 check letter (Presidio)."""

    TRIGGER: ClassVar[Trigger] = re.compile(r"\d{7}-?[A-Za-z]")

    def __init__(self) -> None:
        super().__init__(supported_language=LANGUAGE)
        self._compile()


class EsNieNumberRecognizer(FastPatterns, EsNieRecognizer):
    """Spanish NIE: X/Y/Z, seven digits and the mod-23 check letter (Presidio)."""

    TRIGGER: ClassVar[Trigger] = re.compile(r"[X-Zx-z]\d{7}")

    def __init__(self) -> None:
        super().__init__(supported_language=LANGUAGE)
        self._compile()


class ItFiscalCodeNumberRecognizer(FastPatterns, ItFiscalCodeRecognizer):
    """Italian codice fiscale with its check character (Presidio)."""

    TRIGGER: ClassVar[Trigger] = re.compile(r"[A-Za-z]{6}[\dLMNP-Vlmnp-v]{2}[A-Za-z]")

    def __init__(self) -> None:
        super().__init__(supported_language=LANGUAGE)
        self._compile()


class FiIdentityCodeRecognizer(FastPatterns, FiPersonalIdentityCodeRecognizer):
    """Finnish henkilötunnus: a real date and the mod-31 check character (Presidio)."""

    TRIGGER: ClassVar[Trigger] = re.compile(r"\d{6}[-+A-FU-Ya-fu-y]\d{3}")

    def __init__(self) -> None:
        super().__init__(supported_language=LANGUAGE)
        self._compile()


class Recognizer(Protocol):
    """What the detector needs of a recognizer (all of ours are Presidio recognizers too)."""

    TRIGGER: ClassVar[Trigger]
    supported_entities: list[str]

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts
    ) -> list[RecognizerResult]: ...


def all_recognizers() -> list[LocalRecognizer]:
    """A fresh instance of every recognizer, one per entity in `ENTITIES` order (each is also
    a `Recognizer`)."""
    return [
        EmailAddressRecognizer(),
        PhoneNumberRecognizer(),
        PaymentCardRecognizer(),
        IbanCodeRecognizer(),
        IpAddressRecognizer(),
        UsSsnNumberRecognizer(),
        UkNinoNumberRecognizer(),
        EsNifNumberRecognizer(),
        EsNieNumberRecognizer(),
        ItFiscalCodeNumberRecognizer(),
        FiIdentityCodeRecognizer(),
        ApiKeyRecognizer(),
        JwtRecognizer(),
        UrlCredentialsRecognizer(),
    ]


ENTITIES: tuple[str, ...] = (
    EMAIL_ADDRESS,
    PHONE_NUMBER,
    CREDIT_CARD,
    IBAN_CODE,
    IP_ADDRESS,
    US_SSN,
    UK_NINO,
    ES_NIF,
    ES_NIE,
    IT_FISCAL_CODE,
    FI_PERSONAL_IDENTITY_CODE,
    API_KEY,
    JWT,
    URL_CREDENTIALS,
)

# On overlapping findings of equal score, the more specific entity wins.
PRIORITY: dict[str, int] = {
    URL_CREDENTIALS: 9,
    JWT: 8,
    API_KEY: 7,
    CREDIT_CARD: 6,
    IBAN_CODE: 6,
    EMAIL_ADDRESS: 5,
    IT_FISCAL_CODE: 4,
    FI_PERSONAL_IDENTITY_CODE: 4,
    ES_NIF: 4,
    ES_NIE: 4,
    UK_NINO: 4,
    US_SSN: 3,
    IP_ADDRESS: 2,
    PHONE_NUMBER: 1,
}
