"""Tokenization on a whole Platform (SQLite and PostgreSQL): determinism across processes,
rotation, crypto-shredding, permissions by role, the ledger, and concurrent first use."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from starlette.testclient import TestClient

from bastion.api import create_app
from bastion.core import ManualClock, Settings
from bastion.core.errors import BastionError, Conflict, NotFound, PermissionDenied
from bastion.identity import Caller, Role
from bastion.platform import Platform
from support import Actor, MakeActor

T = TypeVar("T")


def _caller(platform: Platform, actor: Actor) -> Caller:
    return platform.tokens.authenticate(actor.token)


def _events(platform: Platform, prefix: str = "privacy.") -> list[dict[str, Any]]:
    platform.ledger.sequence_all()
    bodies = [json.loads(e.body) for e in platform.ledger.entries(0, platform.ledger.size())]
    return [b for b in bodies if b["type"].startswith(prefix)]


def _together(count: int, work: Callable[[int], T]) -> list[T]:
    """Run `work(i)` in `count` threads released at the same moment; re-raise any failure."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as error:  # noqa: BLE001 - collected, re-raised below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_tokens_are_the_same_in_another_process(
    platform: Platform, settings: Settings, clock: ManualClock, make_actor: MakeActor
) -> None:
    steward = make_actor("steward", Role.DATA_STEWARD)
    caller = _caller(platform, steward)
    values = ["alice@example.com", "bob@example.com", None]
    dtk = platform.tokenizer.tokenize(caller, values, context="email")
    rtk = platform.tokenizer.tokenize(caller, values, context="email", reversible=True)
    with Platform.from_settings(settings, clock=clock) as second:
        other = second.tokens.authenticate(steward.token)
        assert second.tokenizer.tokenize(other, values, context="email") == dtk
        assert second.tokenizer.tokenize(other, values, context="email", reversible=True) == rtk
        assert second.tokenizer.detokenize(other, rtk, context="email") == values
        assert second.tokenizer.tokenize(other, values, context="mail") != dtk


def test_rotation_then_destruction(
    platform: Platform, settings: Settings, clock: ManualClock, make_actor: MakeActor
) -> None:
    caller = _caller(platform, make_actor("steward", Role.DATA_STEWARD))
    tk = platform.tokenizer
    v1 = tk.tokenize(caller, ["4111111111111111"], context="card", reversible=True)
    v1_dtk = tk.tokenize(caller, ["4111111111111111"], context="card")
    assert tk.rotate(caller).version == 2
    v2 = tk.tokenize(caller, ["4111111111111111"], context="card", reversible=True)
    assert v1[0] is not None
    assert v2[0] is not None
    assert v1[0].startswith("rtk_v1_")
    assert v2[0].startswith("rtk_v2_")
    assert tk.detokenize(caller, [v1[0], v2[0]], context="card") == ["4111111111111111"] * 2
    assert tk.tokenize(caller, ["4111111111111111"], context="card", version=1) == v1_dtk

    # A second process caches v1's subkeys before the destruction.
    with Platform.from_settings(settings, clock=clock) as second:
        assert second.tokenizer.detokenize(caller, v1, context="card") == ["4111111111111111"]
        evidence = tk.destroy(caller, 1)
        key_id = tk.keys(caller)[0].key_id
        assert evidence.key_id == key_id
        # The evidence: the key store refuses the shredded data key, here and there.
        for store in (platform.keystore, second.keystore):
            with pytest.raises(BastionError) as refused:
                store.data_key(key_id)
            assert refused.value.code == "crypto.key_shredded"
        for tokenizer in (tk, second.tokenizer):
            with pytest.raises(NotFound) as caught:
                tokenizer.detokenize(caller, v1, context="card")
            assert caught.value.code == "privacy.token_key_destroyed"
            assert "destroyed on" in caught.value.message
        assert second.tokenizer.evidence(caller, 1) == evidence
    assert tk.detokenize(caller, v2, context="card") == ["4111111111111111"]
    assert [k.state.value for k in tk.keys(caller)] == ["destroyed", "active"]


@pytest.mark.parametrize("role", list(Role))
def test_permissions_by_role(platform: Platform, make_actor: MakeActor, role: Role) -> None:
    steward = _caller(platform, make_actor("steward", Role.DATA_STEWARD))
    tk = platform.tokenizer
    rtk = tk.tokenize(steward, ["v"], context="c", reversible=True)
    tk.rotate(steward)
    caller = _caller(platform, make_actor(f"as-{role.value}", role))
    calls: dict[str, Callable[[], object]] = {
        "tokenize": lambda: tk.tokenize(caller, ["v"], context="c"),
        "detokenize": lambda: tk.detokenize(caller, rtk, context="c"),
        "retokenize": lambda: tk.retokenize(caller, rtk, context="c"),
        "keys": lambda: tk.keys(caller),
        "rotate": lambda: tk.rotate(caller),
        "evidence": lambda: tk.evidence(caller, 1),  # before destroy: v1 is only retired
        "destroy": lambda: tk.destroy(caller, 1),
    }
    steward_only = {"tokenize", "detokenize", "retokenize", "rotate", "destroy"}
    readers = {Role.ADMIN, Role.AUDITOR, Role.APPROVER, Role.MODEL_DEVELOPER, Role.DATA_STEWARD}
    for name, call in calls.items():
        allowed = role is Role.DATA_STEWARD if name in steward_only else role in readers
        if allowed and name == "evidence":
            with pytest.raises(Conflict, match="not destroyed"):  # past authorization
                call()
        elif allowed:
            call()
        else:
            with pytest.raises(PermissionDenied) as denied:
                call()
            assert denied.value.code == "auth.denied", name


def test_ledger_entries_hold_no_values_or_tokens(platform: Platform, make_actor: MakeActor) -> None:
    steward = make_actor("steward", Role.DATA_STEWARD)
    caller = _caller(platform, steward)
    values = ["alice@example.com", "+44 20 7946 0958"]
    rtk = platform.tokenizer.tokenize(caller, values, context="contact", reversible=True)
    dtk = platform.tokenizer.tokenize(caller, values, context="contact")
    platform.tokenizer.detokenize(caller, rtk, context="contact")
    platform.tokenizer.rotate(caller)
    platform.tokenizer.destroy(caller, 1)
    events = _events(platform)
    assert [e["type"] for e in events] == [
        "privacy.token_key.created",
        "privacy.detokenized",
        "privacy.token_key.rotated",
        "privacy.token_key.destroyed",
    ]
    assert {e["actor"] for e in events} == {steward.principal.id}
    assert events[1]["data"] == {"count": 2, "context": "contact", "key_versions": [1]}
    assert events[1]["subject"] == "tokens:contact"
    text = json.dumps(events)
    for leaked in [*values, *rtk, *dtk, "7946", "alice"]:
        assert leaked is not None
        assert leaked not in text


def test_concurrent_first_use_creates_one_version(
    platform: Platform, make_actor: MakeActor
) -> None:
    caller = _caller(platform, make_actor("steward", Role.DATA_STEWARD))
    keys_before = set(platform.keystore.list_data_keys())
    results = _together(
        8, lambda i: platform.tokenizer.tokenize(caller, ["same value"], context="c")
    )
    assert len({r[0] for r in results}) == 1
    [key] = platform.tokenizer.keys(caller)
    assert key.version == 1
    # Losers of the race shredded the data keys they made: only v1's key is new and live.
    assert set(platform.keystore.list_data_keys()) - keys_before == {key.key_id}
    assert [e["type"] for e in _events(platform)] == ["privacy.token_key.created"]


def test_concurrent_rotations_keep_exactly_one_active(
    platform: Platform, make_actor: MakeActor
) -> None:
    caller = _caller(platform, make_actor("steward", Role.DATA_STEWARD))
    platform.tokenizer.tokenize(caller, ["v"], context="c")
    rotated = _together(4, lambda i: platform.tokenizer.rotate(caller))
    assert sorted(k.version for k in rotated) == [2, 3, 4, 5]
    keys = platform.tokenizer.keys(caller)
    assert [k.state.value for k in keys] == ["retired"] * 4 + ["active"]
    assert keys[-1].version == 5
    live = set(platform.keystore.list_data_keys())
    assert {k.key_id for k in keys} <= live


def test_api_round_trip(platform: Platform, make_actor: MakeActor) -> None:
    steward = make_actor("steward", Role.DATA_STEWARD)
    auditor = make_actor("auditor", Role.AUDITOR)
    with TestClient(create_app(platform, serving=False)) as client:
        made = client.post(
            "/v1/privacy/tokens/tokenize",
            json={"values": ["alice", None], "context": "name", "reversible": True},
            headers=steward.headers,
        )
        assert made.status_code == 200, made.text
        tokens = made.json()["tokens"]
        assert tokens[1] is None
        back = client.post(
            "/v1/privacy/tokens/detokenize",
            json={"tokens": tokens, "context": "name"},
            headers=steward.headers,
        )
        assert back.json() == {"values": ["alice", None]}
        denied = client.post(
            "/v1/privacy/tokens/detokenize",
            json={"tokens": tokens, "context": "name"},
            headers=auditor.headers,
        )
        assert denied.status_code == 403
        bad = client.post(
            "/v1/privacy/tokens/detokenize",
            json={"tokens": [tokens[0][:-2]], "context": "name"},
            headers=steward.headers,
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "privacy.bad_token"
        assert tokens[0] not in bad.text
        assert (
            client.post("/v1/privacy/token-keys/rotate", headers=steward.headers).json()["version"]
            == 2
        )
        active = client.post("/v1/privacy/token-keys/2/destroy", headers=steward.headers)
        assert active.status_code == 409
        assert active.json()["error"]["code"] == "privacy.token_key_active"
        gone = client.post("/v1/privacy/token-keys/1/destroy", headers=steward.headers)
        assert gone.json()["keystore_answer"] == "crypto.key_shredded"
        listed = client.get("/v1/privacy/token-keys", headers=auditor.headers).json()
        assert [k["state"] for k in listed] == ["destroyed", "active"]
        after = client.post(
            "/v1/privacy/tokens/detokenize",
            json={"tokens": tokens, "context": "name"},
            headers=steward.headers,
        )
        assert after.status_code == 404
        assert after.json()["error"]["code"] == "privacy.token_key_destroyed"
