"""The permission table's least-privilege promises, token format, scopes, and the auth cache."""

from __future__ import annotations

import string
import threading
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.core.errors import AuthenticationError, InvalidInput, PermissionDenied
from bastion.identity import PERMISSIONS, Permission, Role
from bastion.identity.access import AccessCounters, Authorizer, Caller, scope_allows
from bastion.identity.roles import SELF_SERVICE, permissions_of, roles_with
from bastion.identity.tokens import TOKEN_LENGTH, format_token, parse_token
from bastion.platform import Platform
from support import Actor, MakeActor

WRITES = {p for p in Permission if p.value.endswith((".manage", ".write"))} | {
    Permission.APPROVAL_GRANT,
    Permission.PREDICT,
}


def test_every_permission_is_granted_somewhere() -> None:
    assert all(roles_with(p) for p in Permission)


def test_auditor_reads_everything_and_changes_nothing() -> None:
    auditor = PERMISSIONS[Role.AUDITOR]
    assert Permission.AUDIT_READ in auditor
    # Every kind of record, but not model bytes: artifact downloads are the model-theft
    # signal, kept to the roles that deploy or build models.
    reads = {p for p in Permission if p.value.endswith(".read")} - {Permission.ARTIFACT_READ}
    assert reads <= auditor
    assert Permission.ARTIFACT_READ not in auditor
    assert not auditor & WRITES


def test_inference_client_may_only_predict_and_read_its_receipts() -> None:
    assert PERMISSIONS[Role.INFERENCE_CLIENT] == SELF_SERVICE | {
        Permission.PREDICT,
        Permission.RECEIPT_READ,
    }


def test_duties_are_separated() -> None:
    admin = PERMISSIONS[Role.ADMIN]
    assert not admin & {Permission.APPROVAL_GRANT, Permission.DEPLOY_MANAGE, Permission.PREDICT}
    assert Permission.MODEL_WRITE not in PERMISSIONS[Role.APPROVER]
    assert Permission.DEPLOY_MANAGE not in PERMISSIONS[Role.APPROVER]
    assert Permission.APPROVAL_GRANT not in PERMISSIONS[Role.MODEL_DEVELOPER]
    assert Permission.APPROVAL_GRANT not in PERMISSIONS[Role.DEPLOYER]
    assert Permission.APPROVAL_GRANT in PERMISSIONS[Role.DATA_STEWARD]
    assert roles_with(Permission.PRINCIPAL_MANAGE) == {Role.ADMIN}


@given(st.text(alphabet=string.digits + string.ascii_letters, min_size=40, max_size=40))
def test_token_format_round_trip(secret: str) -> None:
    token = format_token("tok_01M80WJ28HHX8X317N443JEJ86", secret)  # type: ignore[arg-type]
    assert len(token) == TOKEN_LENGTH
    assert token.startswith("bst_")
    parsed = parse_token(token)
    assert parsed.token_id == "tok_01M80WJ28HHX8X317N443JEJ86"
    assert parsed.secret == secret


@settings(max_examples=300)
@given(st.integers(min_value=4, max_value=TOKEN_LENGTH - 1), st.sampled_from("aZ09xQ"))
def test_any_single_character_change_is_caught(position: int, char: str) -> None:
    token = format_token("tok_01M80WJ28HHX8X317N443JEJ86", "s" * 40)  # type: ignore[arg-type]
    if token[position] == char:
        return
    mutated = token[:position] + char + token[position + 1 :]
    with pytest.raises(AuthenticationError) as info:
        parse_token(mutated)
    assert info.value.code == "auth.token_malformed"


@pytest.mark.parametrize(
    "raw", ["", "bst_", "bst_" + "a" * 71, "bst_" + "a" * 73, "BST_" + "a" * 72, "bst_" + "-" * 72]
)
def test_malformed_tokens(raw: str) -> None:
    with pytest.raises(AuthenticationError, match="malformed"):
        parse_token(raw)


@pytest.mark.parametrize(
    ("scopes", "resource", "allowed"),
    [
        (["endpoint:fraud"], "endpoint:fraud", True),
        (["endpoint:fraud"], "endpoint:fraud-v2", False),
        (["endpoint:fraud-*"], "endpoint:fraud-v2", True),
        (["endpoint:*"], "endpoint:anything", True),
        (["endpoint:*"], "model:x", False),
        ([], "endpoint:x", False),
    ],
)
def test_scope_matching(scopes: list[str], resource: str, allowed: bool) -> None:
    assert scope_allows(scopes, resource) is allowed


def _caller(*roles: Role, resources: tuple[str, ...] = ()) -> Caller:
    c = Caller.system("t", roles)
    return Caller(
        principal_id=c.principal_id,
        name="tester",
        kind=c.kind,
        roles=c.roles,
        permissions=permissions_of(roles),
        resources=resources,
    )


def test_authorizer_scopes_and_sod() -> None:
    counters = AccessCounters()
    authz = Authorizer(counters=counters)
    scoped = _caller(Role.INFERENCE_CLIENT, resources=("endpoint:fraud",))
    authz.authorize(scoped, Permission.PREDICT, "endpoint:fraud")
    authz.authorize(scoped, Permission.SELF_READ)
    with pytest.raises(PermissionDenied) as denied:
        authz.authorize(scoped, Permission.PREDICT, "endpoint:other")
    assert denied.value.code == "auth.scope_denied"
    with pytest.raises(PermissionDenied):
        authz.authorize(scoped, Permission.PREDICT)  # unscoped call with a scoped token
    approver = _caller(Role.APPROVER)
    authz.require_distinct(approver, "approve", {"author": "prn_someone", "deployer": None})
    with pytest.raises(PermissionDenied) as sod:
        authz.require_distinct(approver, "approve", {"author": approver.principal_id})
    assert sod.value.code == "auth.sod_violation"
    assert "author" in sod.value.message
    assert counters.total("denied") == 3


def test_issued_token_repr_hides_secret(admin: Actor) -> None:
    assert admin.token not in repr(admin.issued)
    assert "redacted" in repr(admin.issued)


def test_bootstrap_is_break_glass_only_for_admins(
    platform: Platform, admin: Actor, make_actor: MakeActor
) -> None:
    _, again = platform.bootstrap_admin("root-admin")
    assert platform.tokens.authenticate(again.secret).name == "root-admin"
    make_actor("plain", Role.AUDITOR)
    with pytest.raises(Exception, match="not an enabled admin"):
        platform.bootstrap_admin("plain")


def test_concurrent_authentication_and_issuing(platform: Platform, admin: Actor) -> None:
    caller = platform.tokens.authenticate(admin.token)
    issued: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                token = platform.tokens.create(caller, ttl=timedelta(minutes=5)).secret
                issued.append(token)
                assert platform.tokens.authenticate(token).name == "root-admin"
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(issued)) == 30


def test_ttl_bounds(platform: Platform, admin: Actor) -> None:
    caller = platform.tokens.authenticate(admin.token)
    for ttl in (timedelta(0), timedelta(seconds=-5), timedelta(days=91)):
        with pytest.raises(InvalidInput) as info:
            platform.tokens.create(caller, ttl=ttl)
        assert info.value.code == "auth.bad_ttl"


def test_two_admins_cannot_disable_each_other_at_once(
    platform: Platform, admin: Actor, make_actor: MakeActor
) -> None:
    """Row locks (PostgreSQL) / BEGIN IMMEDIATE (SQLite) keep one admin standing in a race."""
    a = make_actor("race-a", Role.ADMIN)
    b = make_actor("race-b", Role.ADMIN)
    caller_a = platform.tokens.authenticate(a.token)
    caller_b = platform.tokens.authenticate(b.token)
    platform.principals.set_roles(caller_a, "root-admin", ["auditor"])  # only a and b remain
    barrier = threading.Barrier(2)

    # Hold each transaction open right after its admin check, so without row locks both
    # checks would see the other admin standing and both disables would commit.
    @sa.event.listens_for(platform.database.engine, "after_cursor_execute")
    def _pause(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "principal_roles.role" in statement and "principals.disabled" in statement:
            time.sleep(0.3)

    outcomes: list[str] = []

    def disable(caller: Caller, target: str) -> None:
        barrier.wait()
        try:
            platform.principals.set_disabled(caller, target, disabled=True)
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - the code is what we check
            outcomes.append(getattr(exc, "code", repr(exc)))

    threads = [
        threading.Thread(target=disable, args=(caller_a, "race-b")),
        threading.Thread(target=disable, args=(caller_b, "race-a")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["identity.last_admin", "ok"]
    enabled_admins = [
        p.name
        for p in platform.principals.list(Caller.system("test", [Role.AUDITOR]))
        if Role.ADMIN in p.roles and not p.disabled
    ]
    assert len(enabled_admins) == 1
