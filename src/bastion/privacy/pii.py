"""PII detection and redaction for text fields and table columns, built on Presidio.

`PiiDetector` runs the recognizers of `bastion.privacy.recognizers` (Presidio recognizers, with
our own where Presidio is weak) fully offline: no spaCy model, no NER, no public-suffix fetch.

Two paths give the same findings:

- the fast path (`analyze`, `redact`, …) searches each recognizer's `TRIGGER` (a cheap
  standard-library regex that is a necessary condition for a match) and calls only the
  recognizers whose trigger fires, directly, then filters by score and removes duplicates
  exactly as `AnalyzerEngine.analyze` does, and splices replacements into the text;
- the reference path (`analyze_reference`, `redact_reference`) is plain Presidio:
  `AnalyzerEngine` with a `NoOpNlpEngine` over the same recognizers, and `AnonymizerEngine`
  for the replacement. Tests check that both agree on generated texts; the benchmark
  measures both.

Overlaps are resolved the same way on both paths: a phone number overlapping an IP address is
dropped (libphonenumber accepts some dotted quads), then the highest score wins, ties going to
the more specific entity (`recognizers.PRIORITY`), then to the longer span, then the earlier.
A finding never holds the matched text, so findings can be logged and returned.

Imports only `bastion.core`, `bastion.privacy.recognizers`, Presidio and the standard library.
"""

from __future__ import annotations

import random
import threading
from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from presidio_analyzer import EntityRecognizer, RecognizerResult

from bastion.core.errors import InvalidInput, TooLarge
from bastion.privacy.recognizers import (
    ENTITIES,
    IP_ADDRESS,
    LANGUAGE,
    NO_NLP,
    PHONE_NUMBER,
    PRIORITY,
    Recognizer,
    all_recognizers,
)

if TYPE_CHECKING:
    from bastion.core.settings import Settings

__all__ = [
    "ENTITIES",
    "MAX_TEXT_CHARS",
    "STYLES",
    "Finding",
    "PiiDetector",
    "default_detector",
]

STYLES = ("tag", "mask")
MAX_TEXT_CHARS = 16 * 1024 * 1024  # one text (a field, a log line); longer is refused
_MASK = "*"


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected entity: `text[start:end]` is PII of type `entity` (never the text)."""

    entity: str
    start: int
    end: int
    score: float
    recognizer: str

    def public(self) -> dict[str, Any]:
        """What `--json` and reports show: no recognizer internals, no text."""
        return {"entity": self.entity, "start": self.start, "end": self.end, "score": self.score}


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"expected text, got {type(text).__name__}", code="privacy.bad_text")
    if len(text) > MAX_TEXT_CHARS:
        raise TooLarge(
            f"text of {len(text)} characters is over the {MAX_TEXT_CHARS} limit",
            code="privacy.text_too_large",
        )
    return text


def _check_style(style: str) -> str:
    if style not in STYLES:
        raise InvalidInput(
            f"unknown redaction style {style!r}: use one of {', '.join(STYLES)}",
            code="privacy.bad_style",
        )
    return style


def _resolve(results: Iterable[RecognizerResult]) -> list[Finding]:
    """Non-overlapping findings in text order (see the module docstring for the rule)."""
    results = list(results)
    ips = [(r.start, r.end) for r in results if r.entity_type == IP_ADDRESS]
    if ips:
        results = [
            r
            for r in results
            if r.entity_type != PHONE_NUMBER or not any(s < r.end and r.start < e for s, e in ips)
        ]
    results.sort(
        key=lambda r: (-r.score, -PRIORITY.get(r.entity_type, 0), r.start - r.end, r.start)
    )
    starts: list[int] = []
    ends: list[int] = []
    kept: list[RecognizerResult] = []
    for r in results:
        at = bisect_left(starts, r.end)  # accepted spans starting before this one ends
        if at and ends[at - 1] > r.start:
            continue
        starts.insert(at, r.start)
        ends.insert(at, r.end)
        kept.append(r)
    kept.sort(key=lambda r: r.start)
    return [
        Finding(
            entity=r.entity_type,
            start=r.start,
            end=r.end,
            score=float(r.score),
            recognizer=str(r.recognition_metadata.get(RecognizerResult.RECOGNIZER_NAME_KEY, "")),
        )
        for r in kept
    ]


def _splice(text: str, findings: Sequence[Finding], style: str) -> str:
    if not findings:
        return text
    parts: list[str] = []
    at = 0
    for f in findings:
        parts.append(text[at : f.start])
        parts.append(f"<{f.entity}>" if style == "tag" else _MASK * (f.end - f.start))
        at = f.end
    parts.append(text[at:])
    return "".join(parts)


class PiiDetector:
    """Finds and redacts PII. Built once (≈ tens of ms); thread-safe to share.

    `min_score` is the lowest recognizer score that counts (see `recognizers` for what the
    scores mean); `entities` restricts detection to some of `ENTITIES`. Raises `InvalidInput`
    (`privacy.bad_min_score`, `privacy.unknown_entity`) for bad arguments.
    """

    def __init__(self, *, min_score: float = 0.5, entities: Collection[str] | None = None) -> None:
        if (
            isinstance(min_score, bool)
            or not isinstance(min_score, int | float)
            or not 0.0 <= min_score <= 1.0
        ):
            raise InvalidInput(
                f"min_score must be a number in [0, 1], got {min_score!r}",
                code="privacy.bad_min_score",
            )
        wanted = ENTITIES if entities is None else tuple(entities)
        unknown = sorted(set(wanted) - set(ENTITIES))
        if unknown or not wanted:
            raise InvalidInput(
                f"unknown entity type(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(ENTITIES)}",
                code="privacy.unknown_entity",
            )
        self.min_score = float(min_score)
        self.entities: tuple[str, ...] = tuple(e for e in ENTITIES if e in set(wanted))
        self._recognizers = [
            r for r in all_recognizers() if r.supported_entities[0] in self.entities
        ]
        self._gated = tuple(
            (r.TRIGGER.search, r) for r in cast(list[Recognizer], self._recognizers)
        )
        self._entity_list = list(self.entities)
        self._reference: tuple[Any, Any] | None = None
        self._lock = threading.Lock()
        # Presidio compiles its patterns and tldextract loads its snapshot on first use: do it
        # now, once, rather than racing on it in the first concurrent calls.
        for _, recognizer in self._gated:
            recognizer.analyze(_WARM_UP, self._entity_list, NO_NLP)

    # -- the fast path ------------------------------------------------------------------------

    def analyze(self, text: str) -> list[Finding]:
        """Non-overlapping findings in `text`, in text order; the highest score wins an
        overlap. Raises `InvalidInput` (`privacy.bad_text`) for a non-string and `TooLarge`
        (`privacy.text_too_large`) over `MAX_TEXT_CHARS`."""
        text = _check_text(text)
        raw: list[RecognizerResult] = []
        for search, recognizer in self._gated:
            if search(text) is not None:
                raw.extend(recognizer.analyze(text, self._entity_list, NO_NLP))
        if not raw:
            return []
        kept = [r for r in raw if r.score >= self.min_score]
        return _resolve(EntityRecognizer.remove_duplicates(kept))

    def contains_pii(self, text: str) -> bool:
        """Whether `text` holds any entity; False in microseconds when no trigger matches."""
        text = _check_text(text)
        if not any(search(text) is not None for search, _ in self._gated):
            return False
        return bool(self.analyze(text))

    def redact(self, text: str, *, style: str = "tag") -> str:
        """`text` with each finding replaced: "tag" gives `<EMAIL_ADDRESS>`, "mask" gives as
        many `*` as the finding had characters. `InvalidInput` (`privacy.bad_style`)."""
        return self.redact_with_findings(text, style=style)[0]

    def redact_with_findings(self, text: str, *, style: str = "tag") -> tuple[str, list[Finding]]:
        """The redacted text and the findings (offsets into the original `text`)."""
        _check_style(style)
        findings = self.analyze(text)
        return _splice(text, findings, style), findings

    def redact_column(
        self, values: Sequence[str | None], *, style: str = "tag"
    ) -> list[str | None]:
        """Each value redacted (None stays None); repeated values are analysed once."""
        _check_style(style)
        done: dict[str, str] = {}
        out: list[str | None] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            redacted = done.get(value)
            if redacted is None:
                redacted = done[value] = self.redact(value, style=style)
            out.append(redacted)
        return out

    def scan_values(
        self, values: Iterable[str | None], *, sample: int | None = None
    ) -> dict[str, int]:
        """For a column: entity → how many values contain it (None values are skipped; only
        entities found appear). With `sample`, a uniform sample of that many non-null values
        (reservoir sampling, fixed seed: the same input gives the same answer); repeated
        values are analysed once. `InvalidInput` (`privacy.bad_sample`, `privacy.bad_text`)."""
        if sample is not None and (isinstance(sample, bool) or sample < 1):
            raise InvalidInput(
                f"sample must be a positive number of values, got {sample!r}",
                code="privacy.bad_sample",
            )
        chosen: Iterable[str]
        present = (v for v in values if v is not None)
        if sample is None:
            chosen = present
        else:
            rng = random.Random(0)  # noqa: S311 - a reproducible sample, not a secret
            reservoir: list[str] = []
            for seen, value in enumerate(present):
                if seen < sample:
                    reservoir.append(value)
                else:
                    slot = rng.randrange(seen + 1)
                    if slot < sample:
                        reservoir[slot] = value
            chosen = reservoir
        multiplicity = Counter(chosen)
        counts: Counter[str] = Counter()
        for value, times in multiplicity.items():
            for entity in {f.entity for f in self.analyze(value)}:
                counts[entity] += times
        return {e: counts[e] for e in self.entities if counts[e]}

    # -- the reference path (plain Presidio) ---------------------------------------------------

    def _engines(self) -> tuple[Any, Any]:
        with self._lock:
            if self._reference is None:
                from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
                from presidio_analyzer.nlp_engine import NoOpNlpEngine
                from presidio_anonymizer import AnonymizerEngine

                nlp = NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "none"}])
                nlp.load()
                registry = RecognizerRegistry(
                    recognizers=list(self._recognizers), supported_languages=[LANGUAGE]
                )
                analyzer = AnalyzerEngine(
                    registry=registry, nlp_engine=nlp, supported_languages=[LANGUAGE]
                )
                self._reference = (analyzer, AnonymizerEngine())  # type: ignore[no-untyped-call]
            return self._reference

    def analyze_reference(self, text: str) -> list[Finding]:
        """The same findings through Presidio's `AnalyzerEngine` (slower; for tests, bench)."""
        analyzer, _ = self._engines()
        results = analyzer.analyze(
            text=_check_text(text),
            language=LANGUAGE,
            entities=self._entity_list,
            score_threshold=self.min_score,
        )
        return _resolve(results)

    def redact_reference(self, text: str, *, style: str = "tag") -> str:
        """The same redaction through `AnalyzerEngine` and Presidio's `AnonymizerEngine`."""
        from presidio_anonymizer.entities import OperatorConfig

        _check_style(style)
        findings = self.analyze_reference(text)
        _, anonymizer = self._engines()
        results = [RecognizerResult(f.entity, f.start, f.end, f.score) for f in findings]
        operators = {
            f.entity: (
                OperatorConfig("replace", {"new_value": f"<{f.entity}>"})
                if style == "tag"
                else OperatorConfig(
                    "mask",
                    # Every character of every finding (the config is per entity type).
                    {"masking_char": _MASK, "chars_to_mask": len(text), "from_end": False},
                )
            )
            for f in findings
        }
        done = anonymizer.anonymize(
            text=text,
            analyzer_results=results,
            operators=operators,
            merge_entities_with_spaces=False,  # ours keeps "<PHONE_NUMBER> <PHONE_NUMBER>"
        )
        return str(done.text)


# Exercises every recognizer once (so their lazy state is built before any concurrent use).
_WARM_UP = (
    "mail a.b@example.com tel +44 20 7946 0958 card 4111 1111 1111 1111 iban "
    "GB82 WEST 1234 5698 7654 32 ip 10.0.0.1 fe80::1 ssn 536-22-8726 nino AB 12 34 56 C "
    "nif 12345678Z nie X1234567L cf RSSMRA85T10A562S hetu 131052-308T key AKIA0123456789ABCDEF "
    "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln url https://u:p@h.example/ Bearer "
    "0123456789abcdef0123"
)


@lru_cache(maxsize=8)
def _shared(min_score: float) -> PiiDetector:
    return PiiDetector(min_score=min_score)


def default_detector(settings: Settings | None = None) -> PiiDetector:
    """The process's shared detector for `settings.pii_min_score` (defaults without settings)."""
    return _shared(settings.pii_min_score if settings is not None else 0.5)
