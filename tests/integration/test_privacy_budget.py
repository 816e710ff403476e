"""The privacy-budget ledger through its service, on SQLite and PostgreSQL: setting a budget,
exact sequential composition, the `privacy_budget` gate and its recorded denials, bad input
that changes nothing, and concurrent spenders that can never overdraw together."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.core.errors import BastionError, Conflict, InvalidInput, NotFound, PermissionDenied
from bastion.identity import Caller, Role
from bastion.platform import Platform
from bastion.policy import PolicyBundle, PolicyDenied
from bastion.store.tables import PolicyDecisionRow, PrivacyBudgetRow, PrivacySpendRow
from support import MakeActor

CSV = b"age,income,approved\n34,52000,1\n51,61000,0\n"
MECHANISM = "diffprivlib.LogisticRegression (objective perturbation, Vector mechanism)"


@pytest.fixture
def steward(platform: Platform, make_actor: MakeActor, tmp_path: Path) -> Caller:
    caller = platform.tokens.authenticate(make_actor("steward", Role.DATA_STEWARD).token)
    path = tmp_path / "loans.csv"
    path.write_bytes(CSV)
    platform.datasets.register(
        caller,
        "loans",
        classification_="confidential",
        purposes=["credit"],
        retention_days=30,
        file=path,
    )
    return caller


@pytest.fixture
def dev(platform: Platform, make_actor: MakeActor) -> Caller:
    return platform.tokens.authenticate(make_actor("dev", Role.MODEL_DEVELOPER).token)


def _spend(platform: Platform, caller: Caller, epsilon: float, delta: float = 0.0) -> object:
    return platform.privacy_budgets.spend(
        caller, "loans", epsilon, delta, mechanism=MECHANISM, purpose="dp training"
    )


def _rows(platform: Platform) -> tuple[list[PrivacySpendRow], PrivacyBudgetRow | None]:
    with platform.database.read() as session:
        spends = list(session.scalars(sa.select(PrivacySpendRow)).all())
        return spends, session.get(PrivacyBudgetRow, "loans")


def _ledger(platform: Platform, kind: str) -> list[dict[str, object]]:
    platform.ledger.sequence_all()
    bodies = [json.loads(e.body) for e in platform.ledger.entries(0, platform.ledger.size())]
    return [b for b in bodies if b["type"] == kind]


def test_set_spend_and_show(platform: Platform, steward: Caller, dev: Caller) -> None:
    budget = platform.privacy_budgets.set_budget(steward, "loans", 1.0, 1e-5)
    assert (budget.epsilon_total, budget.delta_total, budget.epsilon_spent) == (1.0, 1e-5, 0.0)
    spend = platform.privacy_budgets.spend(
        dev, "loans", 0.3, 1e-6, mechanism=MECHANISM, purpose="dp training", subject="model:x"
    )
    assert (spend.epsilon, spend.delta, spend.subject) == (0.3, 1e-6, "model:x")
    assert spend.decision_id is not None
    status = platform.privacy_budgets.status(dev, "loans")
    assert (status.epsilon_spent, status.epsilon_remaining) == (0.3, 0.7)
    assert (status.delta_spent, status.delta_remaining) == (1e-6, 9e-6)
    assert status.spends == 1
    assert [s.id for s in platform.privacy_budgets.spends(dev, "loans")] == [spend.id]
    (entry,) = _ledger(platform, "privacy.budget.spent")
    data = entry["data"]
    assert isinstance(data, dict)
    assert data["spend_id"] == spend.id
    assert data["epsilon_spent"] == 0.3
    assert data["composition"] == "sequential"
    assert data["decision_id"] == spend.decision_id
    assert len(_ledger(platform, "privacy.budget.set")) == 1


def test_ten_tenths_fit_exactly_and_the_eleventh_is_denied(
    platform: Platform, steward: Caller, dev: Caller
) -> None:
    """0.1 is not exact in binary; ten of them still make exactly 1.0 in the ledger."""
    platform.privacy_budgets.set_budget(steward, "loans", 1.0, 0.0)
    for _ in range(10):
        _spend(platform, dev, 0.1)
    assert platform.privacy_budgets.status(dev, "loans").epsilon_spent == 1.0
    with pytest.raises(PolicyDenied) as denied:
        _spend(platform, dev, 0.000001)
    assert denied.value.code == "policy.denied"
    assert "would exceed the privacy budget of dataset loans" in denied.value.message
    spends, row = _rows(platform)
    assert len(spends) == 10
    assert row is not None
    assert row.epsilon_spent == 1.0


def test_a_denial_changes_nothing_and_is_recorded(
    platform: Platform, steward: Caller, dev: Caller
) -> None:
    with pytest.raises(PolicyDenied, match="no privacy budget is set for dataset loans"):
        _spend(platform, dev, 0.5)
    platform.privacy_budgets.set_budget(steward, "loans", 1.0, 1e-6)
    _spend(platform, dev, 0.5)
    with pytest.raises(PolicyDenied, match="spending delta"):
        _spend(platform, dev, 0.1, 2e-6)
    spends, row = _rows(platform)
    assert len(spends) == 1
    assert row is not None
    assert (row.epsilon_spent, row.delta_spent) == (0.5, 0.0)
    with platform.database.read() as session:
        decisions = session.scalars(
            sa.select(PolicyDecisionRow)
            .where(PolicyDecisionRow.gate == "privacy_budget")
            .order_by(PolicyDecisionRow.at, PolicyDecisionRow.id)
        ).all()
        assert sorted(d.allow for d in decisions) == [False, False, True]
        denied = [d for d in decisions if not d.allow]
        assert all(d.input["spend"]["mechanism"] == MECHANISM for d in denied)
    assert len(_ledger(platform, "privacy.budget.spent")) == 1


@pytest.mark.parametrize(
    ("epsilon", "delta", "code"),
    [
        (0.0, 0.0, "privacy.bad_amount"),
        (-1.0, 0.0, "privacy.bad_amount"),
        (float("nan"), 0.0, "privacy.bad_amount"),
        (float("inf"), 0.0, "privacy.bad_amount"),
        (1000.5, 0.0, "privacy.bad_amount"),
        (0.1, -1e-9, "privacy.bad_amount"),
        (0.1, 0.2, "privacy.bad_amount"),
    ],
)
def test_bad_amounts_are_refused(
    platform: Platform, steward: Caller, dev: Caller, epsilon: float, delta: float, code: str
) -> None:
    platform.privacy_budgets.set_budget(steward, "loans", 10.0, 0.01)
    with pytest.raises(InvalidInput) as error:
        _spend(platform, dev, epsilon, delta)
    assert error.value.code == code
    spends, _ = _rows(platform)
    assert spends == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("mechanism", ""), ("purpose", "  "), ("purpose", "x" * 513), ("subject", "a\nb")],
)
def test_bad_texts_are_refused(
    platform: Platform, steward: Caller, dev: Caller, field: str, value: str
) -> None:
    platform.privacy_budgets.set_budget(steward, "loans", 10.0, 0.0)
    texts = {"mechanism": MECHANISM, "purpose": "dp", "subject": None} | {field: value}
    with pytest.raises(InvalidInput) as error:
        platform.privacy_budgets.spend(dev, "loans", 0.1, 0.0, **texts)  # type: ignore[arg-type]
    assert error.value.code == "privacy.bad_text"


def test_budget_rules(platform: Platform, steward: Caller, dev: Caller) -> None:
    with pytest.raises(PermissionDenied):
        platform.privacy_budgets.set_budget(dev, "loans", 1.0, 0.0)
    with pytest.raises(NotFound) as unknown:
        platform.privacy_budgets.set_budget(steward, "nope", 1.0, 0.0)
    assert unknown.value.code == "registry.dataset_not_found"
    with pytest.raises(NotFound) as none:
        platform.privacy_budgets.status(dev, "loans")
    assert none.value.code == "privacy.no_budget"
    with pytest.raises(NotFound) as missing:  # an unknown dataset is not one without a budget
        platform.privacy_budgets.status(dev, "nope")
    assert missing.value.code == "registry.dataset_not_found"
    with pytest.raises(InvalidInput):
        platform.privacy_budgets.set_budget(steward, "loans", 0.0, 0.0)
    with pytest.raises(InvalidInput, match="resolution"):  # a total rounds down, to nothing
        platform.privacy_budgets.set_budget(steward, "loans", 1e-9, 0.0)
    platform.privacy_budgets.set_budget(steward, "loans", 1.0, 1e-5)
    _spend(platform, dev, 0.6, 1e-6)
    with pytest.raises(Conflict) as below:
        platform.privacy_budgets.set_budget(steward, "loans", 0.5, 1e-5)
    assert below.value.code == "privacy.budget_below_spent"
    with pytest.raises(Conflict):
        platform.privacy_budgets.set_budget(steward, "loans", 1.0, 1e-7)
    raised = platform.privacy_budgets.set_budget(steward, "loans", 0.7, 1e-6)  # down to spent
    assert (raised.epsilon_remaining, raised.delta_remaining) == (0.1, 0.0)
    tiny = _spend(platform, dev, 1e-9)  # a request rounds up: never less than asked
    assert tiny.epsilon == 1e-6  # type: ignore[attr-defined]
    assert platform.privacy_budgets.status(dev, "loans").epsilon_spent == 0.600001
    with pytest.raises(NotFound):
        platform.privacy_budgets.spend(dev, "nope", 0.1, 0.0, mechanism="m", purpose="p")


def test_a_looser_bundle_cannot_overdraw(
    platform: Platform, steward: Caller, dev: Caller, admin: object
) -> None:
    """A bundle whose gate allows everything still meets the service's own sum check."""
    root = platform.tokens.authenticate(admin.token)  # type: ignore[attr-defined]
    files = PolicyBundle.default().files()
    files["gates/privacy_budget.rego"] = (
        "package bastion.gates.privacy_budget\n\nimport rego.v1\n\nallow := true\n\ndeny := set()\n"
    )
    files.pop("tests/privacy_budget_test.rego")
    platform.policy.apply(root, PolicyBundle.from_files(files))
    platform.policy._active = None  # skip the cache wait
    with pytest.raises(Conflict) as none:
        _spend(platform, dev, 0.1)
    assert none.value.code == "privacy.no_budget"
    platform.privacy_budgets.set_budget(steward, "loans", 0.2, 0.0)
    _spend(platform, dev, 0.2)
    with pytest.raises(Conflict) as over:
        _spend(platform, dev, 0.1)
    assert over.value.code == "privacy.budget_exceeded"
    spends, row = _rows(platform)
    assert len(spends) == 1
    assert row is not None
    assert row.epsilon_spent == 0.2


def test_concurrent_spenders_never_overdraw(
    platform: Platform, steward: Caller, dev: Caller
) -> None:
    """20 threads each spend 0.1 from 1.0: exactly 10 succeed, spent is exactly 1.0, the
    other 10 get the coded denial."""
    platform.privacy_budgets.set_budget(steward, "loans", 1.0, 0.0)
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def spend() -> None:
        barrier.wait()
        try:
            _spend(platform, dev, 0.1)
            result = "ok"
        except BastionError as error:
            result = error.code
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=spend) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(outcomes) == ["ok"] * 10 + ["policy.denied"] * 10
    spends, row = _rows(platform)
    assert len(spends) == 10
    assert row is not None
    assert row.epsilon_spent == 1.0
    assert sum(s.epsilon for s in spends) == pytest.approx(1.0)
    assert len(_ledger(platform, "privacy.budget.spent")) == 10


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # arithmetic, not the database
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    amounts=st.lists(
        st.decimals(min_value="0.000001", max_value="0.5", places=6).map(float),
        min_size=1,
        max_size=12,
    ),
)
def test_the_ledger_never_goes_negative_or_over(
    platform: Platform, steward: Caller, dev: Caller, amounts: list[float]
) -> None:
    """Whatever the sequence of requests, spent == the sum of the allowed ones (exactly, in
    micro-ε), never more than the total, and a request is allowed iff it fits."""
    platform.privacy_budgets.set_budget(steward, "loans", 1.0, 0.0)
    before = round(platform.privacy_budgets.status(dev, "loans").epsilon_spent * 10**6)
    spent = before
    for amount in amounts:
        units = round(amount * 10**6)
        fits = spent + units <= 10**6
        try:
            _spend(platform, dev, amount)
            assert fits
            spent += units
        except PolicyDenied:
            assert not fits
        status = platform.privacy_budgets.status(dev, "loans")
        assert round(status.epsilon_spent * 10**6) == spent <= 10**6
        assert round(status.epsilon_remaining * 10**6) == 10**6 - spent


def test_training_data_is_read_only_when_active(
    platform: Platform, steward: Caller, dev: Caller
) -> None:
    data = platform.privacy_budgets.training_data(dev, "loans")
    assert data.data == CSV
    assert (data.ref, data.classification) == ("loans@1", "confidential")
    assert len(_ledger(platform, "privacy.dataset.read")) == 1
    with pytest.raises(NotFound):
        platform.privacy_budgets.training_data(dev, "loans", 2)
    with platform.database.transaction() as session:
        session.execute(sa.text("UPDATE datasets SET status = 'deleted' WHERE name = 'loans'"))
    with pytest.raises(Conflict) as gone:
        platform.privacy_budgets.training_data(dev, "loans")
    assert gone.value.code == "privacy.data_deleted"
