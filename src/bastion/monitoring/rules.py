"""The Prometheus rule file for Bastion's SLOs and operational alerts (`bastion monitoring
rules`): recording rules per burn-rate window, multiwindow multi-burn-rate alerts (Google SRE
workbook, "Alerting on SLOs", alert 6) and a few alerts over metrics the gateway already has.

The file follows Prometheus' rule format (`promtool check rules` accepts it) and uses the SLO
definitions of `bastion.monitoring.slo`, with two approximations forced by what the metrics
can say:

- latency: `bastion_gateway_request_duration_seconds` counts every request, 5xx included,
  while the SLO counts only non-5xx ones. The slow ratio here is
  `1 - requests within the threshold / all requests`; a burst of slow 5xx answers therefore
  also burns the latency budget (fast 5xx answers slightly dilute it). The threshold must be
  a bucket bound of the histogram (`REQUEST_BUCKETS`), or the ratio would be wrong.
- minimum traffic: an alert needs `min_requests` requests (all statuses) in its short window,
  estimated from the request rate.

Recording rules (per window W in the burn rules, e.g. 5m, 30m, 1h, 2h, 6h, 1d, 3d), all
`sum by (endpoint)` over the gateway's replicas and versions:

    bastion:slo_requests:rateW             requests per second
    bastion:slo_errors:ratio_rateW         5xx share (0 when there were requests but no 5xx)
    bastion:slo_latency_slow:ratio_rateW   share slower than the threshold

Alerts: `BastionSlo{Availability,Latency}{Fast,Slow}Burn` (page: the `page` rules OR-ed;
ticket: the `ticket` rules), then `BastionRollback`, `BastionModelLoadRefused`,
`BastionReceiptsDropped`, `BastionAuthFailureSpike` and `BastionDriftDetected`.

May import `bastion.core` and the rest of `bastion.monitoring`; never `bastion.deploy`,
`bastion.serving`, `bastion.api`, `bastion.cli` or `bastion.platform`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Final

import yaml

from bastion.core.errors import InvalidInput
from bastion.monitoring.metrics import REQUEST_BUCKETS
from bastion.monitoring.slo import (
    ALERT_NAMES,
    DEFAULT_RULES,
    DEFAULT_SPEC,
    SLOS,
    BurnRule,
    Slo,
    SloSpec,
    duration_label,
    rule_windows,
)

REQUESTS: Final = "bastion_gateway_requests_total"
DURATION: Final = "bastion_gateway_request_duration_seconds"
RECORDED: Final = {
    "requests": "bastion:slo_requests:rate",
    "availability": "bastion:slo_errors:ratio_rate",
    "latency": "bastion:slo_latency_slow:ratio_rate",
}
# A comma-separated list of label matchers: job="bastion", namespace=~"prod-.*"
_MATCHER: Final = r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(?:=|!=|=~|!~)\s*"(?:[^"\\\n]|\\.)*"\s*'
_SELECTOR_RE: Final = re.compile(rf"(?:{_MATCHER})(?:,{_MATCHER})*")
_MAX_SELECTOR: Final = 500


def _num(x: float) -> str:
    return f"{x:.12g}"


def _percent(share: float) -> str:
    return f"{share * 100:.12g} %"


def latency_bucket(threshold: float) -> str:
    """The histogram's `le` label value for `threshold` seconds, which must be one of
    `REQUEST_BUCKETS`; `InvalidInput` (`rules.latency_not_a_bucket`) otherwise."""
    for bound in REQUEST_BUCKETS:
        if math.isclose(threshold, bound, rel_tol=1e-9):
            # As prometheus_client writes bucket bounds (repr: 0.2, 1.0, 0.0005).
            return repr(float(bound))
    raise InvalidInput(
        f"the latency threshold {threshold:g} s is not a bucket bound of "
        f"{DURATION}: use one of {', '.join(f'{b:g}' for b in REQUEST_BUCKETS)} s",
        code="rules.latency_not_a_bucket",
        details={"threshold": threshold, "buckets": list(REQUEST_BUCKETS)},
    )


class _Selector:
    def __init__(self, extra: str) -> None:
        extra = extra.strip()
        if extra and (len(extra) > _MAX_SELECTOR or not _SELECTOR_RE.fullmatch(extra)):
            raise InvalidInput(
                'job_selector must be label matchers such as job="bastion" (comma-separated)',
                code="rules.bad_selector",
            )
        self._extra = extra

    def __call__(self, metric: str, *matchers: str) -> str:
        parts = [*matchers, self._extra] if self._extra else list(matchers)
        return f"{metric}{{{','.join(parts)}}}" if parts else metric


def _increased(series: str, by: str, window: str) -> str:
    """Counter went up within `window`, including a series that first appeared in it with a
    positive value (`increase` alone misses a process's first event: a child counter is
    created at its first increment, so the series has no earlier sample)."""
    return (
        f"(sum by ({by}) (increase({series}[{window}])) > 0) or "
        f"(sum by ({by}) ({series} unless {series} offset {window}) > 0)"
    )


def _recording(sel: _Selector, windows: Sequence[int], le: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    all_requests = sel(REQUESTS)
    server_errors = sel(REQUESTS, 'status=~"5.."')
    within = sel(f"{DURATION}_bucket", f'le="{le}"')
    observed = sel(f"{DURATION}_count")
    for w in windows:
        d = duration_label(w)
        total = f"sum by (endpoint) (rate({all_requests}[{d}]))"
        errors = f"sum by (endpoint) (rate({server_errors}[{d}]))"
        fast = f"sum by (endpoint) (rate({within}[{d}]))"
        count = f"sum by (endpoint) (rate({observed}[{d}]))"
        rules += [
            {"record": f"{RECORDED['requests']}{d}", "expr": total},
            {
                "record": f"{RECORDED['availability']}{d}",
                # `or`: an endpoint that never answered 5xx has no 5xx series; its ratio is 0.
                "expr": f"({errors} or 0 * {total}) / {total}",
            },
            {"record": f"{RECORDED['latency']}{d}", "expr": f"1 - ({fast} / {count})"},
        ]
    return rules


def _burn_alert(
    slo: Slo,
    severity: str,
    rules: Sequence[BurnRule],
    spec: SloSpec,
    min_requests: int,
) -> dict[str, Any]:
    budget = 1 - spec.objective(slo)
    ratio = RECORDED[slo]
    terms = []
    for r in rules:
        long_d, short_d = duration_label(r.long_window), duration_label(r.short_window)
        threshold = _num(r.factor * budget)
        terms.append(
            f"({ratio}{long_d} >= {threshold} and {ratio}{short_d} >= {threshold}"
            f" and {RECORDED['requests']}{short_d} * {_num(r.short_window)} >= {min_requests})"
        )
    if slo == "availability":
        what = "5xx ratio"
        objective = f"{_percent(spec.availability)} of requests not 5xx"
    else:
        what = f"share of requests slower than {spec.latency_threshold:g} s"
        objective = (
            f"{_percent(spec.latency_objective)} of requests within {spec.latency_threshold:g} s"
        )
    speed = "fast" if severity == "page" else "slowly"
    windows = ", ".join(f"{r.label} at {r.factor:g}x" for r in rules)
    return {
        "alert": ALERT_NAMES[(slo, "page" if severity == "page" else "ticket")],
        "expr": " or ".join(terms),
        "labels": {"severity": severity, "slo": slo},
        "annotations": {
            "summary": f"{{{{ $labels.endpoint }}}}: {slo} error budget burning {speed}",
            "description": (
                f"The {what} of endpoint {{{{ $labels.endpoint }}}} is "
                f"{{{{ $value | humanizePercentage }}}} over the long window; the budget is "
                f"{_percent(budget)} ({objective} over {duration_label(spec.period)}). "
                f"Burn-rate rules (long/short window at factor): {windows}."
            ),
        },
    }


def prometheus_rules(
    spec: SloSpec = DEFAULT_SPEC,
    rules: Sequence[BurnRule] = DEFAULT_RULES,
    *,
    job_selector: str = "",
    min_requests: int = 10,
    auth_failure_rate: float = 1.0,
    drift_threshold: float = 0.1,
) -> dict[str, Any]:
    """The rule file as a document (`{"groups": [...]}`).

    `job_selector` adds label matchers to every gateway selector (e.g. `job="bastion"`);
    `auth_failure_rate` is the refused requests per second per endpoint, sustained 5 m, that
    raise `BastionAuthFailureSpike`; `drift_threshold` the drift score that, held 15 m,
    raises `BastionDriftDetected`. Raises `InvalidInput` for a latency threshold that is not
    a histogram bucket bound (`rules.latency_not_a_bucket`) or a bad selector or limit.
    """
    le = latency_bucket(spec.latency_threshold)
    sel = _Selector(job_selector)
    rules = tuple(rules)
    if not rules:
        raise InvalidInput("at least one burn rule is needed", code="rules.bad_rule")
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 1:
        raise InvalidInput("min_requests must be a positive integer", code="rules.bad_limit")
    for name, value in (
        ("auth_failure_rate", auth_failure_rate),
        ("drift_threshold", drift_threshold),
    ):
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise InvalidInput(f"{name} must be a positive number", code="rules.bad_limit")
    windows = rule_windows(rules)
    if spec.period < windows[-1]:
        raise InvalidInput(
            "the error-budget period must be at least the longest rule window",
            code="rules.bad_rule",
        )

    slo_alerts = []
    for slo in SLOS:
        for severity in ("page", "ticket"):
            chosen = [r for r in rules if r.severity == severity]
            if chosen:
                slo_alerts.append(_burn_alert(slo, severity, chosen, spec, min_requests))

    loads_refused = sel("bastion_gateway_model_loads_total", 'outcome="refused"')
    operations = [
        {
            "alert": "BastionRollback",
            "expr": _increased(
                sel("bastion_deploy_time_to_rollback_seconds_count"), "endpoint", "5m"
            ),
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.endpoint }} was rolled back",
                "description": "A rollback of endpoint {{ $labels.endpoint }} completed in the "
                "last 5 minutes; find the reason in its deployment history.",
            },
        },
        {
            "alert": "BastionModelLoadRefused",
            "expr": _increased(loads_refused, "endpoint, version", "5m"),
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "{{ $labels.endpoint }}: the gateway refused to load a model",
                "description": "Version {{ $labels.version }} of endpoint "
                "{{ $labels.endpoint }} failed verification when loaded (digest, signature "
                "or scan): the artifact may have been tampered with.",
            },
        },
        {
            "alert": "BastionReceiptsDropped",
            "expr": _increased(sel("bastion_gateway_receipts_dropped_total"), "endpoint", "5m"),
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.endpoint }}: prediction receipts dropped",
                "description": "Predictions of {{ $labels.endpoint }} were served without a "
                "receipt in the last 5 minutes because the receipt queue was full.",
            },
        },
        {
            "alert": "BastionAuthFailureSpike",
            "expr": f"sum by (endpoint) (rate({sel('bastion_gateway_auth_failures_total')}[5m]))"
            f" > {_num(auth_failure_rate)}",
            "for": "5m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.endpoint }}: many requests refused by authentication",
                "description": "{{ $value | humanize }} requests per second to "
                "{{ $labels.endpoint }} have been refused for bad or missing credentials "
                f"for 5 minutes (threshold {_num(auth_failure_rate)}/s).",
            },
        },
        {
            "alert": "BastionDriftDetected",
            "expr": f"max by (endpoint, version) ({sel('bastion_monitor_drift_score')})"
            f" > {_num(drift_threshold)}",
            "for": "15m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "{{ $labels.endpoint }}: input or prediction drift",
                "description": "The drift score of {{ $labels.endpoint }} version "
                "{{ $labels.version }} is {{ $value | humanize }} (threshold "
                f"{_num(drift_threshold)}) and has been for 15 minutes.",
            },
        },
    ]
    return {
        "groups": [
            {"name": "bastion-slo-recording", "rules": _recording(sel, windows, le)},
            {"name": "bastion-slo-alerts", "rules": slo_alerts},
            {"name": "bastion-operations", "rules": operations},
        ]
    }


def render_rules(
    spec: SloSpec = DEFAULT_SPEC,
    rules: Sequence[BurnRule] = DEFAULT_RULES,
    *,
    job_selector: str = "",
    min_requests: int = 10,
    auth_failure_rate: float = 1.0,
    drift_threshold: float = 0.1,
) -> str:
    """`prometheus_rules(...)` as the YAML text of a rule file, with a header saying what
    generated it."""
    document = prometheus_rules(
        spec,
        rules,
        job_selector=job_selector,
        min_requests=min_requests,
        auth_failure_rate=auth_failure_rate,
        drift_threshold=drift_threshold,
    )
    header = (
        "# Bastion SLO and operations alerts, generated by `bastion monitoring rules`.\n"
        f"# availability {spec.availability:g}, latency {spec.latency_objective:g} of requests"
        f" within {spec.latency_threshold:g} s, error-budget period "
        f"{duration_label(spec.period)}; burn rules "
        + ", ".join(f"{r.severity} {r.label} x{r.factor:g}" for r in rules)
        + ".\n# Regenerate instead of editing; check with `promtool check rules FILE`.\n"
    )
    body = yaml.safe_dump(document, sort_keys=False, width=1_000_000, allow_unicode=False)
    return header + body
