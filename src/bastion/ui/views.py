"""The dashboards' aggregated, read-only documents (`/v1/dashboards/…`).

Each builder answers one view in one call where the existing API would need dozens (one per
endpoint, version or model), or exposes figures the API does not have on its own: the
per-minute SLO counts behind the burn rates, a window's per-feature bins beside the reference
profile's, the gateway's latency sums. Every figure comes from the same objects the other
routes read — the monitor's windows merged with what other replicas published, exactly as
`GET /v1/endpoints/{name}/monitoring` merges them — so a dashboard and the API agree.

Builders call the services with the caller, so the services' own authorization applies; a
part that needs a permission beyond the route's (a version's registered metrics, the
endpoints a version serves) is included only when the caller holds it, and says so.

May import `bastion.platform` and below.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Final

from bastion.core.errors import ErrorKind, InvalidInput, NotFound, Unavailable
from bastion.deploy import Endpoint, EndpointEvent
from bastion.identity import Caller, Permission
from bastion.ledger.errors import LedgerError
from bastion.monitoring.drift import DriftReport, FeatureDrift
from bastion.monitoring.metrics import GatewayMetrics
from bastion.monitoring.monitor import Monitor, endpoint_windows, reference_profiles
from bastion.monitoring.windows import WindowSummary
from bastion.platform import Platform
from bastion.registry import ModelVersion
from bastion.registry.profile import FeatureProfile

MAX_MINUTES: Final = 360
MAX_EVENTS: Final = 200
MAX_FEATURES: Final = 200
MAX_VERSIONS: Final = 500
MAX_NOTE_CHARS: Final = 8192
MAX_NAMES: Final = 100
REDACTED: Final = "[redacted]"

_verifying = threading.Lock()


# -- shared ---------------------------------------------------------------------------------


def roles(endpoint: Endpoint) -> dict[str, str]:
    """version id → what it does on the endpoint now (stable, canary, shadow, previous)."""
    out: dict[str, str] = {}
    for role, ref in (
        ("previous", endpoint.previous),
        ("shadow", endpoint.shadow),
        ("canary", endpoint.canary),
        ("stable", endpoint.stable),
    ):
        if ref is not None:
            out[ref.id] = role
    return out


def _number(ref: Any) -> int | None:
    return None if ref is None else int(ref.number)


def _endpoint_head(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "endpoint": endpoint.name,
        "model": endpoint.model,
        "state": endpoint.state,
        "stable": _number(endpoint.stable),
        "canary": _number(endpoint.canary),
        "canary_weight": endpoint.canary_weight,
        "shadow": _number(endpoint.shadow),
        "shadow_share": endpoint.shadow_share,
        "previous": _number(endpoint.previous),
        "rollout": (
            {
                "kind": endpoint.rollout.kind,
                "state": endpoint.rollout.state,
                "from_version": endpoint.rollout.from_version,
                "to_version": endpoint.rollout.to_version,
                "started_at": endpoint.rollout.started_at.isoformat(),
            }
            if endpoint.rollout is not None
            else None
        ),
        "changed_at": endpoint.changed_at.isoformat(),
    }


def _measured(report: DriftReport | None) -> bool:
    """Whether any feature had enough live rows to be judged (else the score is just 0.0)."""
    return report is not None and any(f.status != "insufficient" for f in report.features)


def _share(good: int, total: int) -> float | None:
    return round(good / total, 6) if total else None


def _slis(requests: int, errors: int, slow: int) -> dict[str, Any]:
    """The counts and the two SLIs: availability (non-5xx share) and latency (share of the
    non-5xx answered under the threshold); None without requests."""
    return {
        "requests": requests,
        "errors": errors,
        "slow": slow,
        "availability": _share(requests - errors, requests),
        "latency_sli": _share(requests - errors - slow, requests - errors),
    }


def _source(monitor: Monitor | None) -> str:
    """Whether figures come from this server's live windows or only from what replicas
    published (a process without a serving runtime)."""
    return "live" if monitor is not None else "published"


# -- executive ------------------------------------------------------------------------------


def gateway_totals(metrics: GatewayMetrics | None) -> dict[str, dict[str, float]]:
    """Per endpoint, since this server started: requests answered and the sum of their
    latencies in seconds (the cost proxy: model compute time), from the gateway's histogram."""
    out: dict[str, dict[str, float]] = {}
    if metrics is None:
        return out
    for family in metrics.registry.collect():
        if family.name != "bastion_gateway_request_duration_seconds":
            continue
        for sample in family.samples:
            endpoint = sample.labels.get("endpoint", "")
            if sample.name.endswith("_sum"):
                key = "compute_seconds"
            elif sample.name.endswith("_count"):
                key = "requests"
            else:
                continue
            totals = out.setdefault(endpoint, {"requests": 0.0, "compute_seconds": 0.0})
            totals[key] += float(sample.value)
    return out


def executive(
    platform: Platform,
    caller: Caller,
    monitor: Monitor | None,
    metrics: GatewayMetrics | None,
    *,
    minutes: int,
) -> dict[str, Any]:
    """Availability and latency trends per minute, error budgets, inference volume and the
    compute-time cost proxy per endpoint; the serving versions' registered quality metrics
    and live drift score (with `model.read`)."""
    if not 1 <= minutes <= MAX_MINUTES:
        raise InvalidInput(f"minutes must be 1 to {MAX_MINUTES}", code="input.invalid")
    now = time.time()
    endpoints = platform.deployments.endpoints(caller)
    totals = gateway_totals(metrics)
    quality = Permission.MODEL_READ in caller.permissions
    threshold = platform.settings.slo_latency_ms
    series_all: dict[float, list[int]] = {}
    rows = []
    for endpoint in endpoints:
        head = _endpoint_head(endpoint)
        series = monitor.minutes(endpoint.name, minutes, now) if monitor is not None else []
        requests = sum(m.requests for m in series)
        errors = sum(m.errors for m in series)
        slow = sum(m.slow for m in series)
        for m in series:
            point = series_all.setdefault(m.start, [0, 0, 0])
            point[0] += m.requests
            point[1] += m.errors
            point[2] += m.slow
        budget = (
            {k: v.remaining for k, v in monitor.slo.budget(endpoint.name, now).items()}
            if monitor is not None
            else None
        )
        gateway = totals.get(endpoint.name, {"requests": 0.0, "compute_seconds": 0.0})
        windows = endpoint_windows(monitor, platform.database, endpoint.name)
        versions = []
        if quality:
            versions = _quality(platform, caller, endpoint, windows)
        rows.append(
            {
                **head,
                **_slis(requests, errors, slow),
                "budget": budget,
                "series": [
                    {"t": m.start, "requests": m.requests, "errors": m.errors, "slow": m.slow}
                    for m in series
                ],
                "requests_since_start": int(gateway["requests"]),
                "compute_seconds": round(gateway["compute_seconds"], 6),
                "rows_in_window": sum(w.rows for w in windows.values()),
                "quality": versions if quality else None,
            }
        )
    requests = sum(r["requests"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    slow = sum(r["slow"] for r in rows)
    since_start = sum(r["requests_since_start"] for r in rows)
    compute = sum(r["compute_seconds"] for r in rows)
    return {
        "generated_at": now,
        "minutes": minutes,
        "source": _source(monitor),
        "objectives": {
            "availability": platform.settings.slo_availability,
            "latency": platform.settings.slo_latency_objective,
            "latency_threshold_ms": threshold,
        },
        "totals": {
            "endpoints": len(rows),
            "serving": sum(r["state"] == "serving" for r in rows),
            **_slis(requests, errors, slow),
            "requests_since_start": since_start,
            "compute_seconds": round(compute, 6),
            "compute_ms_per_request": (
                round(compute * 1000 / since_start, 6) if since_start else None
            ),
        },
        "series": [
            {"t": t, "requests": v[0], "errors": v[1], "slow": v[2]}
            for t, v in sorted(series_all.items())
        ],
        "endpoints": rows,
        "quality_visible": quality,
    }


def _quality(
    platform: Platform, caller: Caller, endpoint: Endpoint, windows: Mapping[str, WindowSummary]
) -> list[dict[str, Any]]:
    out = []
    profiles = reference_profiles(platform.database, list(windows))
    for role, ref in (("stable", endpoint.stable), ("canary", endpoint.canary)):
        if ref is None:
            continue
        version = platform.models.version(caller, endpoint.model, ref.number)
        window = windows.get(ref.id)
        profile = profiles.get(ref.id)
        report = window.drift(profile) if window is not None and profile else None
        out.append(
            {
                "role": role,
                "version": ref.number,
                "metrics": {k: v for k, v in version.metrics.items() if _is_number(v)},
                "drift_score": report.score if report is not None else None,
                "drift_measured": _measured(report),
                "error_rate": round(window.error_rate, 6) if window is not None else None,
                "shadow_divergence": round(window.divergence, 6) if window is not None else None,
            }
        )
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- on-call --------------------------------------------------------------------------------


def oncall(
    platform: Platform, caller: Caller, monitor: Monitor | None, *, events: int
) -> dict[str, Any]:
    """Per endpoint and version: the window's p50/p95/p99 latency, error rate, anomaly rate,
    drift score and shadow divergence (as `GET /v1/endpoints/{name}/monitoring`), the SLO burn
    rates; and the recent deployment events of every endpoint, newest first."""
    if not 1 <= events <= MAX_EVENTS:
        raise InvalidInput(f"events must be 1 to {MAX_EVENTS}", code="input.invalid")
    rows = []
    history: list[EndpointEvent] = []
    for endpoint in platform.deployments.endpoints(caller):
        windows = endpoint_windows(monitor, platform.database, endpoint.name)
        profiles = reference_profiles(platform.database, list(windows))
        role_of = roles(endpoint)
        versions = []
        for version_id, summary in sorted(windows.items(), key=lambda kv: kv[1].version):
            profile = profiles.get(version_id)
            drift = summary.drift(profile) if profile is not None else None
            versions.append(
                {
                    "version_id": version_id,
                    "role": role_of.get(version_id, "retired"),
                    **summary.overview(),
                    "drift_score": drift.score if drift is not None else None,
                    "drift_measured": _measured(drift),
                    "drifted": list(drift.drifted) if drift is not None else [],
                }
            )
        slo: dict[str, Any] = {}
        if monitor is not None:
            slo = {
                "burn_rates": {
                    kind: {str(int(w)): rate for w, rate in rates.items()}
                    for kind, rates in monitor.slo.burn_rates(endpoint.name).items()
                },
                "budget": {k: asdict(v) for k, v in monitor.slo.budget(endpoint.name).items()},
            }
        rows.append({**_endpoint_head(endpoint), "versions": versions, "slo": slo})
        history.extend(platform.deployments.history(caller, endpoint.name, limit=events))
    history.sort(key=lambda e: (e.at, e.id), reverse=True)
    return {
        "generated_at": time.time(),
        "source": _source(monitor),
        "endpoints": rows,
        "events": [_event(e) for e in history[:events]],
        "can_roll_back": Permission.DEPLOY_MANAGE in caller.permissions,
    }


def _event(event: EndpointEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "endpoint": event.endpoint,
        "action": event.action,
        "version": event.version,
        "weight": event.weight,
        "actor": event.actor,
        "reason": event.reason,
        "at": event.at.isoformat(),
    }


# -- debug ----------------------------------------------------------------------------------


def slot_labels(feature: FeatureProfile) -> list[str]:
    """A human label per slot of `feature` (layout in `bastion.registry.profile`)."""
    return feature.labels()


def _stats(drift: FeatureDrift | None) -> dict[str, Any]:
    if drift is None:
        return {"status": "unmeasured", "psi": None, "js": None, "p_value": None}
    return {"status": drift.status, "psi": drift.psi, "js": drift.js, "p_value": drift.p_value}


def debug(
    platform: Platform, caller: Caller, monitor: Monitor | None, name: str, *, features: int
) -> dict[str, Any]:
    """Per version of endpoint `name`: each feature's reference bins beside the live window's
    (most drifted first), the prediction's, shadow comparisons; the recent anomalous inputs,
    reduced to field, kind and count — the gateway never keeps the values, so they show as
    redacted."""
    if not 1 <= features <= MAX_FEATURES:
        raise InvalidInput(f"features must be 1 to {MAX_FEATURES}", code="input.invalid")
    endpoint = platform.deployments.get(caller, name)
    # Reference bins summarise the training data: shown to who may read the versions.
    platform.authorizer.authorize(caller, Permission.MODEL_READ)
    windows = endpoint_windows(monitor, platform.database, name)
    profiles = reference_profiles(platform.database, list(windows))
    role_of = roles(endpoint)
    versions = []
    for version_id, summary in sorted(windows.items(), key=lambda kv: kv[1].version):
        profile = profiles.get(version_id)
        doc: dict[str, Any] = {
            "version_id": version_id,
            "version": summary.version,
            "role": role_of.get(version_id, "retired"),
            "requests": summary.requests,
            "rows": summary.rows,
            "since": summary.since,
            "until": summary.until,
            "shadow": {
                "same": summary.shadow_same,
                "different": summary.shadow_different,
                "divergence": round(summary.divergence, 6),
            },
            "profile": profile is not None,
            "reference_rows": profile.rows if profile is not None else None,
            "drift_score": None,
            "drift_measured": False,
            "features": [],
            "features_total": 0,
            "prediction": None,
        }
        if profile is not None:
            report = summary.drift(profile)
            by_name = {f.name: f for f in report.features}
            doc["drift_score"] = report.score
            doc["drift_measured"] = _measured(report)
            listed = [
                {
                    "name": feature.name,
                    "kind": feature.kind,
                    "labels": slot_labels(feature),
                    "reference": list(feature.counts),
                    "live": list(summary.features.get(feature.name, [0] * feature.slots)),
                    **_stats(by_name.get(feature.name)),
                }
                for feature in profile.features.values()
            ]
            listed.sort(key=lambda f: (-(f["js"] or 0.0), f["name"]))
            doc["features_total"] = len(listed)
            doc["features"] = listed[:features]
            if profile.prediction is not None:
                doc["prediction"] = {
                    "labels": slot_labels(profile.prediction),
                    "reference": list(profile.prediction.counts),
                    "live": list(summary.prediction or [0] * profile.prediction.slots),
                    **_stats(report.prediction),
                }
        versions.append(doc)
    anomalies = monitor.recent_anomalies(name) if monitor is not None else []
    expected = _expected_ranges(platform, caller, endpoint, windows) if anomalies else {}
    return {
        "generated_at": time.time(),
        "source": _source(monitor),
        **_endpoint_head(endpoint),
        "versions": versions,
        "anomalies": [
            {
                "at": a["at"],
                "version": a["version"],
                "field": a["field"],
                "kind": a["kind"],
                "count": a["count"],
                "value": REDACTED,
                "expected": expected.get(str(a["version"]), {}).get(a["field"]),
                "sample": a.get("sample"),
            }
            for a in reversed(anomalies)
        ],
    }


def _expected_ranges(
    platform: Platform, caller: Caller, endpoint: Endpoint, windows: Mapping[str, WindowSummary]
) -> dict[str, dict[str, str]]:
    """version → field → what its input contract expects (the range or categories training
    saw): beside an anomaly it says what the value was not, without the value."""
    refs = {
        ref.id: ref
        for ref in (endpoint.stable, endpoint.canary, endpoint.shadow, endpoint.previous)
        if ref is not None
    }
    out: dict[str, dict[str, str]] = {}
    for version_id, summary in windows.items():
        ref = refs.get(version_id)
        if ref is None:
            continue
        try:
            version = platform.models.version(caller, endpoint.model, int(ref.number))
        except NotFound:
            continue
        fields = (version.input_contract or {}).get("fields") or []
        out[str(summary.version)] = {
            str(f["name"]): text for f in fields if (text := _expectation(f)) is not None
        }
    return out


def _expectation(spec: Mapping[str, Any]) -> str | None:
    low, high = spec.get("min"), spec.get("max")
    if low is not None or high is not None:
        lo = "-∞" if low is None else f"{low:.6g}"
        hi = "∞" if high is None else f"{high:.6g}"
        return f"within [{lo}, {hi}]"
    categories = spec.get("categories")
    if isinstance(categories, list):
        return f"one of {len(categories)} categories seen in training"
    return None


# -- governance -----------------------------------------------------------------------------


def _scan(scan: Mapping[str, Any]) -> dict[str, Any]:
    files = scan.get("files")
    findings = scan.get("findings")
    if isinstance(files, list):
        findings = sum(len(f.get("findings") or []) for f in files if isinstance(f, dict))
    return {
        "clean": bool(scan.get("clean")),
        "files": len(files) if isinstance(files, list) else None,
        "findings": findings if isinstance(findings, int) else 0,
        "allowlist_version": scan.get("allowlist_version"),
    }


def governance(platform: Platform, caller: Caller, *, limit: int) -> dict[str, Any]:
    """Every model version (newest first, at most `limit`) with its scan, signature,
    attestations and approvals; the lineage graph from dataset versions through model
    versions to the endpoints serving them (endpoints with `deploy.read`)."""
    if not 1 <= limit <= MAX_VERSIONS:
        raise InvalidInput(f"limit must be 1 to {MAX_VERSIONS}", code="input.invalid")
    found: list[ModelVersion] = []
    for model in platform.models.list(caller):
        found.extend(platform.models.versions(caller, model.name))
    found.sort(key=lambda v: (v.created_at, v.model, v.version), reverse=True)
    shown = found[:limit]
    deployed: dict[str, list[dict[str, str]]] | None = None
    endpoints: Sequence[Endpoint] = ()
    if Permission.DEPLOY_READ in caller.permissions:
        endpoints = platform.deployments.endpoints(caller)
        deployed = {}
        for endpoint in endpoints:
            for version_id, role in roles(endpoint).items():
                if role != "previous":
                    deployed.setdefault(version_id, []).append(
                        {"endpoint": endpoint.name, "role": role}
                    )
    versions = []
    for v in shown:
        attestations = platform.attestations.list(caller, v.model, v.version)
        approvals = platform.approvals.list(caller, v.model, v.version)
        states: dict[str, int] = {}
        for approval in approvals:
            states[approval.state] = states.get(approval.state, 0) + 1
        versions.append(
            {
                "id": v.id,
                "model": v.model,
                "version": v.version,
                "status": v.status,
                "aliases": list(v.aliases),
                "artifact_digest": v.artifact_digest,
                "format": v.format,
                "created_at": v.created_at.isoformat(),
                "created_by": v.created_by,
                "scan": _scan(v.scan),
                "signed": v.signed,
                "attestations": [
                    {
                        "type": a.predicate_type,
                        "verified": a.verified,
                        "by": a.created_by,
                        "at": a.created_at.isoformat(),
                    }
                    for a in attestations
                ],
                "approvals": {
                    "valid": states.get("valid", 0),
                    "total": len(approvals),
                    "states": states,
                    "approvers": sorted({a.approver_name for a in approvals if a.state == "valid"}),
                },
                "deployed": deployed.get(v.id, []) if deployed is not None else None,
            }
        )
    return {
        "generated_at": time.time(),
        "versions": versions,
        "total": len(found),
        "lineage": lineage_graph(shown, endpoints),
        "endpoints_visible": deployed is not None,
    }


def lineage_graph(
    versions: Iterable[ModelVersion], endpoints: Iterable[Endpoint]
) -> dict[str, Any]:
    """Nodes (datasets, model versions, endpoints) and edges dataset → version (the lineage
    role) and version → endpoint (stable, canary or shadow)."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []
    for v in versions:
        node = f"version:{v.id}"
        nodes[node] = {"id": node, "kind": "version", "label": v.ref, "status": v.status}
        for link in v.lineage:
            source = f"dataset:{link.dataset_id}"
            nodes.setdefault(
                source,
                {
                    "id": source,
                    "kind": "dataset",
                    "label": f"{link.dataset}@{link.dataset_version}",
                    "classification": str(link.classification),
                },
            )
            edges.append({"from": source, "to": node, "label": str(link.role)})
    for endpoint in endpoints:
        target = f"endpoint:{endpoint.name}"
        linked = False
        for version_id, role in roles(endpoint).items():
            source = f"version:{version_id}"
            if role == "previous" or source not in nodes:
                continue
            linked = True
            edges.append({"from": source, "to": target, "label": role})
        if linked:
            nodes[target] = {
                "id": target,
                "kind": "endpoint",
                "label": endpoint.name,
                "state": endpoint.state,
            }
    return {"nodes": list(nodes.values()), "edges": edges}


# -- the ledger -----------------------------------------------------------------------------


def names(platform: Platform, caller: Caller, ids: Sequence[str]) -> dict[str, Any]:
    """Principal id → name for the ids a view shows (actors, authors, approvers), so a person
    reads "alice", not "prn_…"; ids that are not principals (`system:…`) are left out."""
    if len(ids) > MAX_NAMES:
        raise InvalidInput(f"at most {MAX_NAMES} ids at a time", code="input.invalid")
    return {"names": platform.principals.names(caller, ids)}


def verify_ledger(platform: Platform, caller: Caller, trusted: str | None) -> dict[str, Any]:
    """Replay the audit ledger as `bastion audit verify` does — every entry, node and
    checkpoint signature — and, given a checkpoint the browser saw earlier, check that the log
    still extends it. A log that does not verify is a result (`status: failed` with the code,
    message and details), not an error; one verification runs at a time per process."""
    platform.authorizer.authorize(caller, Permission.AUDIT_READ)
    if trusted is not None and len(trusted) > MAX_NOTE_CHARS:
        raise InvalidInput("the trusted checkpoint is too long", code="input.invalid")
    if not _verifying.acquire(blocking=False):
        raise Unavailable("a ledger verification is already running", code="ui.verify_busy")
    started = time.perf_counter()
    try:
        latest = platform.ledger.latest_checkpoint()
        try:
            report = platform.ledger.verify(trusted_checkpoint=trusted)
        except LedgerError as error:
            if error.kind is ErrorKind.INVALID:
                raise
            return {
                "status": "failed",
                "code": error.code,
                "message": error.message,
                "details": dict(error.details),
                "checkpoint": {"size": latest.size, "root": latest.root.hex()},
                "trusted_checked": trusted is not None,
                "seconds": round(time.perf_counter() - started, 6),
            }
    except NotFound:
        return {"status": "empty", "trusted_checked": False, "seconds": 0.0}
    finally:
        _verifying.release()
    return {
        "status": "intact",
        **report.summary(),
        "checkpoint": {
            "size": latest.size,
            "root": latest.root.hex(),
            "note": latest.note,
            "created_at": latest.created_at.isoformat(),
        },
        "origin": platform.ledger.origin,
        "trusted_checked": trusted is not None,
        "seconds": round(time.perf_counter() - started, 6),
    }
