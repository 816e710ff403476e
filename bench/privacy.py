"""Privacy benchmarks: PII redaction throughput (short texts, and a table of 1M rows x 10
columns, on one core), DP training time against non-private training, and membership-inference
audit time. `--only redact|dp` runs one half.

Redaction. Short texts (`--texts` of each kind, generated with a fixed seed, median of
`--repeats` runs):

* prose: 8-20 words, no digits (free-text fields, chat);
* logs: log lines with a timestamp, an order number, a latency, a status code (no PII);
* pii: 9 words around two planted values (e-mail, phone, card, IPv4, IPv6, IBAN, key, SSN);
* mixed: a third of each.

`PiiDetector.redact` (the fast path) on each kind, in texts/s. For comparison, on
`--compare` texts of the mixed kind: the reference path (Presidio's `AnalyzerEngine` and
`AnonymizerEngine` over the same recognizers), and Presidio's default set as the dependency
research ran it (`AnalyzerEngine` with every predefined recognizer and a `NoOpNlpEngine`, then
`AnonymizerEngine`). Target: >= 2,000 texts/s.

Table (`--rows`, default 1,000,000): id, name, email, phone, ip, amount, country, status,
created_at and a free-text note (one in ten holds an e-mail or a phone number), each column
through `PiiDetector.redact_column` (repeated values are analysed once). Reports rows/s,
cells/s and the time per column, and checks that no planted value survived.

DP training: for each model (logistic regression, Gaussian naive Bayes, random forest) on
scikit-learn's breast_cancer (569 x 30) and on a synthetic 100,000 x 20 table, the median of
`repeats` fits (after a warm-up) of `bastion.privacy.dp.train_dp` at ε = 1 — diffprivlib's
fit, its accountant, the export to plain scikit-learn and the export check — against
`train_baseline` (the same preprocessing and model, without privacy).

Audit: an overfit random forest (100 trees, full depth) on digits (half of the 1,797 rows as
members, the other half as non-members) attacked by each attack alone with 200 bootstrap
resamples, median of `repeats` runs: ART's black-box attack with a random-forest and a
gradient-boosting attack model, and the confidence-threshold ("loss") attack.
The time includes the bootstrap.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import time
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.ensemble import RandomForestClassifier

from bastion.privacy.audit import ATTACKS, audit_estimator
from bastion.privacy.dp import MODELS, holdout_split, train_baseline, train_dp
from bastion.privacy.pii import PiiDetector

WORDS = [
    "the",
    "model",
    "served",
    "request",
    "user",
    "account",
    "payment",
    "order",
    "status",
    "shipped",
    "delayed",
    "refund",
    "ticket",
    "support",
    "latency",
    "gateway",
    "deploy",
    "canary",
    "review",
    "approved",
    "rejected",
    "customer",
    "invoice",
    "address",
    "please",
    "contact",
    "team",
    "weekly",
    "report",
    "summary",
    "update",
]
FIRST = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
]
LAST = [
    "smith",
    "jones",
    "brown",
    "taylor",
    "wilson",
    "davies",
    "evans",
    "thomas",
    "roberts",
    "walker",
    "wright",
    "green",
]
DOMAINS = ["example.com", "mail.co.uk", "corp.internal", "example.org", "post.de"]
AREAS = ["212", "415", "617", "202", "312", "646", "718", "305"]


def _median(run: Callable[[], object], repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _luhn_card(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice(string.digits) for _ in range(14))
    total = 0
    for index, char in enumerate(reversed(body + "0")):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    number = body + str((10 - total % 10) % 10)
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


def _pii(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randrange(100)}@{rng.choice(DOMAINS)}"
    if kind == 1:
        return rng.choice(
            [
                f"+1 ({rng.choice(AREAS)}) 555-{rng.randrange(10000):04d}",
                f"+44 20 7946 {rng.randrange(1000):04d}",
                f"020 7946 {rng.randrange(1000):04d}",
            ]
        )
    if kind == 2:
        return _luhn_card(rng)
    if kind == 3:
        return ".".join(str(rng.randrange(1, 255)) for _ in range(4))
    if kind == 4:
        return f"2001:db8::{rng.randrange(65536):x}:{rng.randrange(65536):x}"
    if kind == 5:
        return "GB82 WEST 1234 5698 7654 32"
    if kind == 6:
        return "AKIA" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
    return f"{rng.randrange(100, 666):03d}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def short_texts(n: int, seed: int = 1) -> dict[str, list[str]]:
    rng = random.Random(seed)
    kinds = {
        "prose": [_sentence(rng, rng.randrange(8, 21)) for _ in range(n)],
        "logs": [
            f"2024-05-{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:"
            f"{rng.randrange(60):02d} INFO order {rng.randrange(10**6, 10**8)} handled in "
            f"{rng.randrange(900)} ms status {rng.choice([200, 201, 404, 500])}"
            for _ in range(n)
        ],
        "pii": [
            f"{_sentence(rng, 4)} {_pii(rng)} {_sentence(rng, 3)} {_pii(rng)} {_sentence(rng, 2)}"
            for _ in range(n)
        ],
    }
    third = n // 3
    kinds["mixed"] = kinds["prose"][:third] + kinds["logs"][:third] + kinds["pii"][: n - 2 * third]
    random.Random(seed).shuffle(kinds["mixed"])
    return kinds


def _presidio_default() -> Callable[[str], str]:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_anonymizer import AnonymizerEngine

    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    nlp.load()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])
    anonymizer = AnonymizerEngine()

    def redact(text: str) -> str:
        found = analyzer.analyze(text=text, language="en")
        return str(anonymizer.anonymize(text=text, analyzer_results=found).text)

    return redact


def bench_short(detector: PiiDetector, n: int, compare: int, repeats: int) -> None:
    kinds = short_texts(n)
    print(f"short texts: {n} per kind, median of {repeats}, one thread")
    for kind, texts in kinds.items():
        seconds = _median(lambda t=texts: [detector.redact(x) for x in t], repeats)
        print(f"  {kind:6s} fast path          {n / seconds:9.0f} texts/s")
    subset = kinds["mixed"][:compare]
    for label, redact in (
        ("reference (Presidio engines, our recognizers)", detector.redact_reference),
        ("Presidio default recognizers + anonymizer", _presidio_default()),
    ):
        seconds = _median(lambda r=redact: [r(x) for x in subset], 1)
        print(f"  mixed  {label}: {len(subset) / seconds:7.0f} texts/s")
    leaked = [x for x in kinds["pii"][:2000] if "@" in detector.redact(x)]
    assert not leaked, leaked[:3]


def table(rows: int, seed: int = 2) -> dict[str, list[str | None]]:
    rng = random.Random(seed)
    pick = rng.choice
    columns: dict[str, list[str | None]] = {
        "id": [str(i) for i in range(1, rows + 1)],
        "name": [f"{pick(FIRST).title()} {pick(LAST).title()}" for _ in range(rows)],
        "email": [
            f"{pick(FIRST)}.{pick(LAST)}{rng.randrange(10**5)}@{pick(DOMAINS)}" for _ in range(rows)
        ],
        "phone": [
            f"+1 {pick(AREAS)}-555-{rng.randrange(10**4):04d}"
            if rng.random() < 0.5
            else f"+44 20 7946 {rng.randrange(10**3):04d}"
            for _ in range(rows)
        ],
        "ip": [
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            for _ in range(rows)
        ],
        "amount": [f"{rng.randrange(10**5)}.{rng.randrange(100):02d}" for _ in range(rows)],
        "country": [pick(["GB", "DE", "FR", "US", "ES", "IT", "NL"]) for _ in range(rows)],
        "status": [pick(["new", "paid", "shipped", "refunded", None]) for _ in range(rows)],
        "created_at": [
            f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:"
            f"{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"
            for _ in range(rows)
        ],
        "note": [
            _sentence(rng, 6) + (f" call {_pii(rng)}" if rng.random() < 0.1 else "")
            for _ in range(rows)
        ],
    }
    return columns


def bench_table(detector: PiiDetector, rows: int) -> None:
    started = time.perf_counter()
    columns = table(rows)
    print(
        f"table: {rows} rows x {len(columns)} columns (generated in "
        f"{time.perf_counter() - started:.1f} s)"
    )
    total = 0.0
    out: dict[str, Sequence[str | None]] = {}
    for name, values in columns.items():
        start = time.perf_counter()
        out[name] = detector.redact_column(values)
        seconds = time.perf_counter() - start
        total += seconds
        distinct = len(set(values))
        print(f"  {name:10s} {seconds:7.2f} s  ({distinct} distinct values)")
    cells = rows * len(columns)
    print(f"  total     {total:7.2f} s: {rows / total:9.0f} rows/s, {cells / total:9.0f} cells/s")
    for name in ("email", "phone", "ip"):
        survivors = [v for v in out[name] if v is not None and not v.startswith("<")]
        assert not survivors, (name, survivors[:3])


def _training(name: str, x: np.ndarray, y: np.ndarray, repeats: int) -> None:
    bounds = (x.min(axis=0), x.max(axis=0))
    for model in MODELS:
        private = _median(
            lambda m=model: train_dp(x, y, epsilon=1.0, model=m, bounds=bounds), repeats
        )
        plain = _median(lambda m=model: train_baseline(x, y, model=m, bounds=bounds), repeats)
        print(
            f"train {name:28s} {model:20s} DP {private * 1000:9.1f} ms   non-DP "
            f"{plain * 1000:9.1f} ms   ratio {private / plain:6.2f}"
        )


def _audits(repeats: int) -> None:
    x, y = load_digits(return_X_y=True)
    members, others = holdout_split(y, 0.5, 0)
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(x[members], y[members])
    for attack in ATTACKS:
        seconds = _median(
            lambda a=attack: audit_estimator(
                forest, x[members], y[members], x[others], y[others], attacks=(a,), seed=0
            ),
            repeats,
        )
        print(
            f"audit digits RF ({len(members)} members, {len(others)} non-members) "
            f"{attack:4s} with 200 bootstrap resamples: {seconds * 1000:8.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("redact", "dp"))
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--compare", type=int, default=1_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    if args.only != "dp":
        started = time.perf_counter()
        detector = PiiDetector()
        print(f"detector built in {time.perf_counter() - started:.2f} s (Presidio imported)")
        bench_short(detector, args.texts, args.compare, args.repeats)
        bench_table(detector, args.rows)
    if args.only != "redact":
        x, y = load_breast_cancer(return_X_y=True)
        _training("breast_cancer (569 x 30)", x, y, args.repeats)
        big_x, big_y = make_classification(n_samples=100_000, n_features=20, random_state=0)
        _training("synthetic (100,000 x 20)", big_x, big_y, max(1, args.repeats // 2))
        _audits(max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
