"""Incident snapshots: a signed bundle of the evidence about an endpoint, for forensics and the
post-incident review.

A snapshot is taken by the serving runtime when it rolls a canary back (trigger `rollback`,
with the verdict's evidence) or on demand (`bastion incident snapshot ENDPOINT`, trigger
`manual`). The bundle holds:

* the endpoint's state and its versions (stable, canary, shadow, previous) with their artifact
  digests, and its latest deployment events;
* each version's rolling window — the live one of the process taking the snapshot where given,
  else what the gateway replicas published to `monitor_windows`, summed — with its headline
  figures and its drift report against the version's reference profile;
* the latest anomalies (field, kind, count: never values), the trigger's evidence, the
  monitoring configuration in force (no secrets);
* the audit ledger's latest signed checkpoint, so the review can prove which ledger state the
  snapshot saw.

The bundle's SHA-256 over canonical JSON is signed as a C2SP signed note by the incident key
(`incident-signing` in the key store) and the creation is appended to the ledger
(`monitoring.incident.created`, with the digest). `verify_bundle` checks a bundle offline
against the verifier key; `render_markdown` turns one into the review's starting document.

May import `bastion.ledger`, `bastion.store`, `bastion.identity` and below; not serving/deploy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa

from bastion.core.canonical import canonical_json, sha256_digest
from bastion.core.clock import Clock
from bastion.core.errors import BastionError, IntegrityError, InvalidInput, NotFound
from bastion.core.ids import new_id
from bastion.identity import Authorizer, Caller, Permission
from bastion.ledger import AuditLog
from bastion.ledger.note import NoteSigner, NoteVerifier
from bastion.monitoring.drift import DriftThresholds
from bastion.monitoring.monitor import merge_rows
from bastion.monitoring.windows import WindowSummary
from bastion.registry.profile import ReferenceProfile
from bastion.store.db import Database
from bastion.store.tables import (
    EndpointEventRow,
    EndpointRow,
    IncidentRow,
    ModelRow,
    ModelVersionRow,
    MonitorWindowRow,
)

INCIDENT_KEY: Final = "incident-signing"
FORMAT: Final = 1
TRIGGERS: Final = frozenset({"rollback", "manual", "alert"})
MAX_EVENTS: Final = 20
_NOTE_HEADER: Final = "bastion incident snapshot v1"


@dataclass(frozen=True)
class Incident:
    id: str
    endpoint: str
    trigger: str
    digest: str
    bundle: Mapping[str, Any]
    signature: str
    created_at: datetime
    created_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "trigger": self.trigger,
            "digest": self.digest,
            "signature": self.signature,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "bundle": dict(self.bundle),
        }


class IncidentService:
    def __init__(
        self,
        *,
        database: Database,
        audit: AuditLog,
        authorizer: Authorizer,
        signer: NoteSigner,
        checkpoint: Any,  # callable returning the ledger's latest signed checkpoint note, or None
        clock: Clock,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self._db = database
        self._audit = audit
        self._authz = authorizer
        self._signer = signer
        self._checkpoint = checkpoint
        self._clock = clock
        self._config = dict(config or {})

    def verifier_key(self) -> str:
        return self._signer.verifier_key()

    def snapshot(
        self,
        caller: Caller,
        endpoint: str,
        *,
        trigger: str = "manual",
        live: Mapping[str, WindowSummary] | None = None,
        anomalies: Sequence[Mapping[str, Any]] = (),
        evidence: Mapping[str, Any] | None = None,
        note: str = "",
    ) -> Incident:
        """Collect, sign, store and ledger a snapshot of `endpoint` (see the module docstring).
        `live`: this process's window summaries by version id (they replace its published
        row; other replicas' published rows are added)."""
        self._authz.authorize(caller, Permission.DEPLOY_MANAGE, f"endpoint:{endpoint}")
        if trigger not in TRIGGERS:
            raise InvalidInput(
                f"trigger must be one of {', '.join(sorted(TRIGGERS))}",
                code="incident.bad_trigger",
            )
        if len(note) > 2000:
            raise InvalidInput("the note is longer than 2000 characters", code="input.invalid")
        now = self._clock.now()
        incident_id = new_id("inc")
        with self._db.read() as session:
            row = session.scalar(sa.select(EndpointRow).where(EndpointRow.name == endpoint))
            if row is None:
                raise NotFound(f"no endpoint {endpoint}", code="deploy.endpoint_not_found")
            model = session.get(ModelRow, row.model_id)
            roles = {
                "stable": row.stable_version_id,
                "canary": row.canary_version_id,
                "shadow": row.shadow_version_id,
                "previous": row.previous_version_id,
            }
            evidence_ids = {
                str(v) for v in (evidence or {}).get("version_ids", []) if isinstance(v, str)
            }
            ids = {v for v in roles.values() if v} | set(live or {}) | evidence_ids
            versions = {
                v.id: v
                for v in session.scalars(
                    sa.select(ModelVersionRow).where(ModelVersionRow.id.in_(ids))
                )
            }
            published = merge_rows(
                [
                    r.summary
                    for r in session.scalars(
                        sa.select(MonitorWindowRow).where(MonitorWindowRow.endpoint == endpoint)
                    )
                ]
            )
            events = session.scalars(
                sa.select(EndpointEventRow)
                .where(EndpointEventRow.endpoint_id == row.id)
                .order_by(EndpointEventRow.at.desc())
                .limit(MAX_EVENTS)
            ).all()
            numbers = {v.id: v.version for v in versions.values()}
            state = {
                "name": row.name,
                "model": model.name if model is not None else None,
                "state": row.state,
                "canary_weight": row.canary_weight,
                "shadow_share": row.shadow_share,
                "generation": row.generation,
            }
            event_docs = [
                {
                    "action": e.action,
                    "version": numbers.get(e.version_id or ""),
                    "weight": e.weight,
                    "actor": e.actor,
                    "reason": e.reason[:500],
                    "at": e.at.isoformat(),
                }
                for e in events
            ]
        windows = dict(published)
        for version_id, summary in (live or {}).items():
            windows[version_id] = summary  # this process's own, fresher than its published row
        version_docs: list[dict[str, Any]] = []
        placed: list[tuple[str, str]] = [(r, v) for r, v in roles.items() if v is not None]
        placed_ids = {v for _, v in placed}
        # Versions the evidence is about that no longer have a role (a rolled-back canary).
        extra = "rolled-back" if trigger == "rollback" else "evidence"
        placed += [(extra, v) for v in sorted(evidence_ids - placed_ids)]
        for role, version_id in placed:
            placed_row = versions.get(version_id)
            if placed_row is not None:
                version_docs.append(_version_doc(role, placed_row))
        window_docs = []
        thresholds = DriftThresholds()
        for version_id, summary in sorted(windows.items(), key=lambda kv: kv[1].version):
            drift: dict[str, Any] | None = None
            known = versions.get(version_id)
            if known is not None and known.reference_profile is not None:
                try:
                    profile = ReferenceProfile.from_json(known.reference_profile)
                    drift = summary.drift(profile, thresholds).to_json()
                except BastionError as exc:  # recorded, not fatal: the rest is still evidence
                    drift = {"error": exc.message[:200]}
            window_docs.append(
                {"overview": summary.overview(), "summary": summary.to_json(), "drift": drift}
            )
        checkpoint = None
        try:
            checkpoint = self._checkpoint() if self._checkpoint is not None else None
        except NotFound:
            checkpoint = None
        bundle: dict[str, Any] = {
            "format": FORMAT,
            "id": incident_id,
            "endpoint": state,
            "trigger": trigger,
            "note": note,
            "created_at": now.isoformat(),
            "created_by": caller.principal_id,
            "versions": version_docs,
            "events": event_docs,
            "windows": window_docs,
            "anomalies": [dict(a) for a in anomalies][-50:],
            "evidence": _jsonable(evidence or {}),
            "config": self._config,
            "ledger_checkpoint": checkpoint,
        }
        bundle = _jsonable(bundle)
        digest = str(sha256_digest(canonical_json(bundle)))
        signature = self._signer.sign_text(_note_text(incident_id, endpoint, digest))
        with self._db.transaction() as session:
            session.add(
                IncidentRow(
                    id=incident_id,
                    endpoint=endpoint,
                    trigger=trigger,
                    digest=digest,
                    bundle=bundle,
                    signature=signature,
                    created_at=now,
                    created_by=caller.principal_id,
                )
            )
            self._audit.append(
                session,
                caller.event(
                    "monitoring.incident.created",
                    incident_id,
                    {"endpoint": endpoint, "trigger": trigger, "digest": digest},
                ),
            )
        return Incident(
            incident_id, endpoint, trigger, digest, bundle, signature, now, caller.principal_id
        )

    def get(self, caller: Caller, incident_id: str) -> Incident:
        """One incident; `monitor.read` on its endpoint (a caller without it anywhere is
        refused before the lookup, so ids do not leak)."""
        if Permission.MONITOR_READ not in caller.permissions:
            self._authz.authorize(caller, Permission.MONITOR_READ)  # raises, counted
        with self._db.read() as session:
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise NotFound(f"no incident {incident_id}", code="incident.not_found")
            self._authz.authorize(caller, Permission.MONITOR_READ, f"endpoint:{row.endpoint}")
            return _incident(row)

    def list(self, caller: Caller, endpoint: str | None = None, limit: int = 100) -> list[Incident]:
        self._authz.authorize(caller, Permission.MONITOR_READ)
        query = sa.select(IncidentRow).order_by(IncidentRow.created_at.desc()).limit(limit)
        if endpoint is not None:
            query = query.where(IncidentRow.endpoint == endpoint)
        with self._db.read() as session:
            return [_incident(r) for r in session.scalars(query)]


def _version_doc(role: str, row: ModelVersionRow) -> dict[str, Any]:
    return {
        "role": role,
        "version": row.version,
        "version_id": row.id,
        "artifact_digest": row.artifact_digest,
        "format": row.format,
        "status": row.status,
        "has_profile": row.reference_profile is not None,
    }


def _incident(row: IncidentRow) -> Incident:
    return Incident(
        row.id,
        row.endpoint,
        row.trigger,
        row.digest,
        row.bundle,
        row.signature,
        row.created_at,
        row.created_by,
    )


def _note_text(incident_id: str, endpoint: str, digest: str) -> str:
    return f"{_NOTE_HEADER}\n{incident_id}\n{endpoint}\n{digest}\n"


def verify_bundle(bundle: Mapping[str, Any], signature: str, verifier_key: str) -> str:
    """Check a snapshot offline: the signed note is by `verifier_key` and names this bundle's
    digest. Returns the digest; raises `IntegrityError` (`incident.tampered`) otherwise."""
    digest = str(sha256_digest(canonical_json(_jsonable(dict(bundle)))))
    try:
        text = NoteVerifier.from_vkey(verifier_key).verify_text(signature).decode()
    except BastionError as exc:
        raise IntegrityError(
            f"the incident signature does not verify: {exc.message}", code="incident.tampered"
        ) from None
    endpoint = dict(bundle.get("endpoint") or {}).get("name")
    expected = _note_text(str(bundle.get("id")), str(endpoint), digest)
    if text != expected:
        raise IntegrityError(
            "the incident bundle does not match its signed digest",
            code="incident.tampered",
            details={"computed": digest, "signed": text.splitlines()[-1] if text else ""},
        )
    return digest


def _jsonable(value: Any) -> Any:
    """Canonical-JSON-safe: floats kept finite (inf/NaN become None), keys strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def render_markdown(incident: Incident) -> str:
    """The snapshot as a Markdown document for the post-incident review."""
    b = incident.bundle
    endpoint = b.get("endpoint", {})
    lines = [
        f"# Incident {incident.id}: {incident.endpoint}",
        "",
        f"- **Trigger:** {incident.trigger}",
        f"- **Taken:** {incident.created_at.isoformat()} by {incident.created_by}",
        f"- **Endpoint state:** {endpoint.get('state')} (model {endpoint.get('model')}, "
        f"canary weight {endpoint.get('canary_weight')}, generation {endpoint.get('generation')})",
        f"- **Bundle digest:** `{incident.digest}` (signed by the incident key)",
    ]
    if b.get("note"):
        lines.append(f"- **Note:** {b['note']}")
    lines += [
        "",
        "## Versions",
        "",
        "| role | version | artifact digest | status |",
        "|---|---|---|---|",
    ]
    for v in b.get("versions", []):
        lines.append(
            f"| {v['role']} | v{v['version']} | `{v['artifact_digest']}` | {v['status']} |"
        )
    breaches = dict(b.get("evidence") or {}).get("breaches") or []
    if breaches:
        lines += ["", "## What breached", ""]
        lines += [f"- {x.get('detail')}" for x in breaches]
    lines += [
        "",
        "## Windows",
        "",
        "| version | requests | error rate | p95 (s) | p99 (s) | anomaly rate | drift score "
        "| drifted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in b.get("windows", []):
        o = w["overview"]
        d = w.get("drift") or {}
        lines.append(
            f"| v{o['version']} | {o['requests']} | {o['error_rate']:.2%} | "
            f"{_num(o.get('latency_p95'))} | {_num(o.get('latency_p99'))} | "
            f"{o['anomaly_rate']:.2%} | {_num(d.get('score'))} | "
            f"{', '.join(d.get('drifted', [])[:5]) or '-'} |"
        )
    anomalies = b.get("anomalies") or []
    if anomalies:
        lines += ["", "## Recent anomalies (counts only)", "", "| field | kind | count | version |",
                  "|---|---|---|---|"]  # fmt: skip
        for a in anomalies[-20:]:
            lines.append(f"| {a['field']} | {a['kind']} | {a['count']} | v{a['version']} |")
    lines += ["", "## Deployment events (newest first)", ""]
    for e in b.get("events", []):
        version = f"v{e['version']}" if e.get("version") is not None else "-"
        lines.append(f"- {e['at']} **{e['action']}** {version} by {e['actor']}: {e['reason']}")
    checkpoint = b.get("ledger_checkpoint")
    lines += ["", "## Ledger checkpoint", "", "```", (checkpoint or "(none)").rstrip(), "```", ""]
    return "\n".join(lines)


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, int | float) else "-"
