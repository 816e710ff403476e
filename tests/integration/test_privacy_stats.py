"""DP statistics on SQLite and PostgreSQL: noisy answers near the truth at a generous ε, the
budget spent by each answer (and by nothing else), every refusal before the spend, and the
CLI command."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bastion.core.errors import BastionError, InvalidInput
from bastion.identity import Caller, Role
from bastion.platform import Platform
from bastion.policy import PolicyDenied
from bastion.store.tables import PrivacySpendRow
from support import MakeActor, cli_token_for

ROWS = 2000


def _table(rows: int = ROWS) -> tuple[bytes, list[float]]:
    rng = random.Random(7)
    incomes = [round(rng.uniform(20_000, 120_000), 2) for _ in range(rows)]
    lines = ["id,income,city,note"]
    for i, income in enumerate(incomes):
        note = "" if i % 4 == 0 else "x"
        lines.append(f"{i},{income},{rng.choice(['leeds', 'york'])},{note}")
    return ("\n".join(lines) + "\n").encode(), incomes


@pytest.fixture
def steward(platform: Platform, make_actor: MakeActor, tmp_path: Path) -> Caller:
    caller = platform.tokens.authenticate(make_actor("steward", Role.DATA_STEWARD).token)
    path = tmp_path / "people.csv"
    path.write_bytes(_table()[0])
    platform.datasets.register(
        caller, "people", classification_="confidential", purposes=["research"],
        retention_days=30, file=path,
    )  # fmt: skip
    platform.privacy_budgets.set_budget(caller, "people", 50.0, 0.0)
    return caller


@pytest.fixture
def analyst(platform: Platform, make_actor: MakeActor) -> Caller:
    return platform.tokens.authenticate(make_actor("analyst", Role.MODEL_DEVELOPER).token)


def _spent(platform: Platform) -> list[float]:
    with platform.database.read() as session:
        return [r.epsilon for r in session.scalars(sa.select(PrivacySpendRow)).all()]


def test_answers_are_near_the_truth_and_each_spends_its_epsilon(
    platform: Platform, steward: Caller, analyst: Caller
) -> None:
    _, incomes = _table()
    stats = platform.privacy_stats
    count = stats.compute(analyst, "people", "note", "count", epsilon=5.0)
    assert count.value == pytest.approx(ROWS * 3 / 4, abs=10)
    assert count.bounds is None
    assert count.spend_id
    mean = stats.compute(analyst, "people", "income", "mean", epsilon=5.0, lower=0, upper=200_000)
    assert mean.value == pytest.approx(sum(incomes) / ROWS, rel=0.02)
    total = stats.compute(analyst, "people", "income", "sum", epsilon=5.0, lower=0, upper=200_000)
    assert total.value == pytest.approx(sum(incomes), rel=0.02)
    median = stats.compute(
        analyst, "people", "income", "median", epsilon=5.0, lower=0, upper=200_000
    )
    assert median.value == pytest.approx(sorted(incomes)[ROWS // 2], rel=0.05)
    assert median.quantile == 0.5
    q90 = stats.compute(
        analyst, "people", "income", "quantile", epsilon=5.0, lower=0, upper=200_000,
        quantile=0.9,
    )  # fmt: skip
    assert q90.value == pytest.approx(sorted(incomes)[int(ROWS * 0.9)], rel=0.05)
    histogram = stats.compute(
        analyst, "people", "income", "histogram", epsilon=5.0, lower=0, upper=200_000, bins=4
    )
    assert isinstance(histogram.value, list)
    assert len(histogram.value) == 4
    assert histogram.edges == [0.0, 50_000.0, 100_000.0, 150_000.0, 200_000.0]
    truth = [sum(lo <= v < lo + 50_000 for v in incomes) for lo in (0, 50_000, 100_000, 150_000)]
    assert all(abs(a - b) <= 10 for a, b in zip(histogram.value, truth, strict=True))
    assert _spent(platform) == [5.0] * 6
    budget = platform.privacy_budgets.status(steward, "people")
    assert budget.epsilon_spent == 30.0
    document = histogram.to_json()
    assert document["delta"] == 0.0
    assert "diffprivlib.tools.histogram" in document["mechanism"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({"column": "income", "statistic": "mode", "epsilon": 1.0}, "privacy.bad_statistic"),
        ({"column": "income", "statistic": "mean", "epsilon": 1.0}, "privacy.bad_bounds"),
        (
            {"column": "income", "statistic": "mean", "epsilon": 1.0, "lower": 5, "upper": 5},
            "privacy.bad_bounds",
        ),
        (
            {
                "column": "income",
                "statistic": "sum",
                "epsilon": 1.0,
                "lower": 0,
                "upper": float("inf"),
            },
            "privacy.bad_bounds",
        ),
        (
            {"column": "note", "statistic": "count", "epsilon": 1.0, "lower": 0, "upper": 1},
            "privacy.bad_bounds",
        ),
        ({"column": "income", "statistic": "count", "epsilon": 0.0}, "privacy.bad_amount"),
        ({"column": "income", "statistic": "count", "epsilon": float("nan")}, "privacy.bad_amount"),
        ({"column": "income", "statistic": "count", "epsilon": 1e9}, "privacy.bad_amount"),
        (
            {"column": "income", "statistic": "quantile", "epsilon": 1.0, "lower": 0, "upper": 1},
            "privacy.bad_statistic",
        ),
        (
            {
                "column": "income",
                "statistic": "quantile",
                "epsilon": 1.0,
                "lower": 0,
                "upper": 1,
                "quantile": 1.5,
            },
            "privacy.bad_statistic",
        ),
        (
            {
                "column": "income",
                "statistic": "histogram",
                "epsilon": 1.0,
                "lower": 0,
                "upper": 1,
                "bins": 0,
            },
            "privacy.bad_statistic",
        ),
        (
            {
                "column": "income",
                "statistic": "histogram",
                "epsilon": 1.0,
                "lower": 0,
                "upper": 1,
                "bins": 1001,
            },
            "privacy.bad_statistic",
        ),
        ({"column": "salary", "statistic": "count", "epsilon": 1.0}, "privacy.unknown_column"),
        (
            {"column": "city", "statistic": "mean", "epsilon": 1.0, "lower": 0, "upper": 1},
            "privacy.bad_data",
        ),
    ],
)
def test_refusals_spend_nothing(
    platform: Platform, steward: Caller, analyst: Caller, args: dict[str, Any], code: str
) -> None:
    args = dict(args)
    column, statistic = args.pop("column"), args.pop("statistic")
    with pytest.raises(InvalidInput) as refused:
        platform.privacy_stats.compute(analyst, "people", column, statistic, **args)
    assert refused.value.code == code
    assert "leeds" not in refused.value.message
    assert "york" not in refused.value.message
    assert _spent(platform) == []


def test_an_overdraw_is_denied_and_spends_nothing(
    platform: Platform, steward: Caller, analyst: Caller
) -> None:
    platform.privacy_stats.compute(analyst, "people", "note", "count", epsilon=49.0)
    with pytest.raises(PolicyDenied):
        platform.privacy_stats.compute(analyst, "people", "note", "count", epsilon=1.5)
    assert _spent(platform) == [49.0]


def test_without_a_budget_or_the_right_role_nothing_is_answered(
    platform: Platform, make_actor: MakeActor, analyst: Caller, tmp_path: Path
) -> None:
    owner = platform.tokens.authenticate(make_actor("owner", Role.DATA_STEWARD).token)
    path = tmp_path / "other.csv"
    path.write_bytes(b"a\n1\n2\n")
    platform.datasets.register(
        owner, "other", classification_="internal", purposes=["x"], file=path
    )
    with pytest.raises(PolicyDenied):  # no budget set: the gate refuses
        platform.privacy_stats.compute(analyst, "other", "a", "count", epsilon=1.0)
    client = platform.tokens.authenticate(make_actor("client", Role.INFERENCE_CLIENT).token)
    with pytest.raises(BastionError) as denied:
        platform.privacy_stats.compute(client, "other", "a", "count", epsilon=1.0)
    assert denied.value.code.startswith("auth.")
    assert _spent(platform) == []


def test_cli_stat(cli: Any, admin_token: str, tmp_path: Path) -> None:
    steward = cli_token_for(cli, admin_token, "sam", "data-steward")
    path = tmp_path / "people.csv"
    path.write_bytes(_table(200)[0])
    done = cli(
        "dataset", "register", "people", "--classification", "confidential", "--purpose", "r",
        "--retention", "30d", "--file", str(path), token=steward,
    )  # fmt: skip
    assert done.code == 0, done.err
    assert cli("privacy", "budget", "set", "people", "--epsilon", "2", token=steward).code == 0
    shown = cli(
        "privacy", "stat", "people", "--column", "income", "--stat", "mean", "--epsilon", "1",
        "--lower", "0", "--upper", "200000", "--json", token=steward,
    )  # fmt: skip
    assert shown.code == 0, shown.err
    answer = json.loads(shown.out)
    assert answer["statistic"] == "mean"
    assert answer["epsilon"] == 1.0
    assert 20_000 <= answer["value"] <= 120_000
    text = cli(
        "privacy", "stat", "people", "--column", "income", "--stat", "histogram", "--epsilon",
        "0.5", "--lower", "0", "--upper", "200000", "--bins", "2", token=steward,
    )  # fmt: skip
    assert text.code == 0, text.err
    assert "[0, 100000)" in text.out
    assert "ε 0.5 spent" in text.out
    over = cli(
        "privacy", "stat", "people", "--column", "note", "--stat", "count", "--epsilon", "1",
        token=steward,
    )  # fmt: skip
    assert over.code != 0
    assert "policy" in (over.err + over.out).lower()
    bad = cli(
        "privacy", "stat", "people", "--column", "income", "--stat", "mean", "--epsilon", "0.1",
        token=steward,
    )  # fmt: skip
    assert bad.code == 2
    assert "privacy.bad_bounds" in bad.err
