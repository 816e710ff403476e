"""`bastion monitoring …`: the Prometheus rule file and the Grafana on-call dashboard (pure
generation: no token, no database), and a signed test notification to an alert webhook.

`rules` takes its SLO defaults from `BASTION_SLO_*` (options override them); `test-webhook`
from `BASTION_ALERT_WEBHOOK_URL` / `BASTION_ALERT_WEBHOOK_SECRET` when not given.
"""

from __future__ import annotations

import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.common import out
from bastion.core.errors import ConfigError, InvalidInput, Unavailable
from bastion.core.settings import Settings
from bastion.monitoring.alerts import Alert, AlertEvent, WebhookSink
from bastion.monitoring.rules import render_rules
from bastion.monitoring.slo import SloSpec

monitoring_app = typer.Typer(
    help="Monitoring: Prometheus alert rules, the Grafana dashboard, webhook test.",
    no_args_is_help=True,
)

OutFile = Annotated[
    Path | None, typer.Option("--out", help="Write to this file instead of standard output.")
]


def register(app: typer.Typer) -> None:
    app.add_typer(monitoring_app, name="monitoring")


def dashboard_text() -> str:
    """The packaged Grafana dashboard (JSON text, importable as is)."""
    return (
        resources.files("bastion.monitoring")
        .joinpath("dashboards", "oncall.json")
        .read_text(encoding="utf-8")
    )


def _emit(text: str, path: Path | None, what: str) -> None:
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from error
    out.print(f"Wrote {what} to {path}.", highlight=False)


@monitoring_app.command("rules")
def rules(
    out_path: OutFile = None,
    availability: Annotated[
        float | None,
        typer.Option(help="Availability objective, e.g. 0.999 (default BASTION_SLO_AVAILABILITY)."),
    ] = None,
    latency_ms: Annotated[
        float | None,
        typer.Option(
            help="Latency threshold in ms, a bucket bound of the request histogram "
            "(default BASTION_SLO_LATENCY_MS)."
        ),
    ] = None,
    latency_objective: Annotated[
        float | None,
        typer.Option(help="Share of requests within the threshold, e.g. 0.95."),
    ] = None,
    min_requests: Annotated[
        int | None,
        typer.Option(help="Fewest requests in a short window before a burn alert fires."),
    ] = None,
    job_selector: Annotated[
        str, typer.Option(help='Extra label matchers for every selector, e.g. job="bastion".')
    ] = "",
) -> None:
    """Print the Prometheus rule file: SLO recording rules and burn-rate alerts, plus
    rollback, refused-model, dropped-receipt, auth-failure and drift alerts."""
    settings = Settings.from_env()
    spec = SloSpec(
        availability=settings.slo_availability if availability is None else availability,
        latency_threshold=(settings.slo_latency_ms if latency_ms is None else latency_ms) / 1000,
        latency_objective=(
            settings.slo_latency_objective if latency_objective is None else latency_objective
        ),
    )
    text = render_rules(
        spec,
        job_selector=job_selector,
        min_requests=settings.slo_min_requests if min_requests is None else min_requests,
    )
    _emit(text, out_path, "the rule file")


@monitoring_app.command("dashboard")
def dashboard(out_path: OutFile = None) -> None:
    """Print the Grafana on-call dashboard (import it and pick the Prometheus data source)."""
    _emit(dashboard_text(), out_path, "the dashboard")


@monitoring_app.command("test-webhook")
def webhook_test(
    url: Annotated[
        str | None, typer.Argument(help="Receiver URL (default BASTION_ALERT_WEBHOOK_URL).")
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(help="File holding the HMAC secret (default BASTION_ALERT_WEBHOOK_SECRET)."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for delivery.")] = 10.0,
) -> None:
    """Send one signed `info` test alert to the webhook; exit 0 when it was accepted (2xx)."""
    settings = Settings.from_env()
    target = url or settings.alert_webhook_url
    if not target:
        raise InvalidInput("give the webhook URL (or set BASTION_ALERT_WEBHOOK_URL)")
    if secret_file is not None:
        try:
            secret = secret_file.read_bytes().strip()
        except OSError as error:
            raise ConfigError(f"cannot read {secret_file}: {error.strerror}") from error
    elif settings.alert_webhook_secret is not None:
        secret = settings.alert_webhook_secret.get_secret_value().encode()
    else:
        raise InvalidInput("give --secret-file (or set BASTION_ALERT_WEBHOOK_SECRET)")
    sink = WebhookSink(target, secret, timeout=min(timeout, 5.0), max_attempts=3, backoff=0.5)
    now = time.time()
    alert = Alert(
        name="BastionTestAlert",
        severity="info",
        endpoint="-",
        summary="Test notification from `bastion monitoring test-webhook`",
        labels={},
        value=None,
        started_at=now,
    )
    sink.send(AlertEvent(alert, "firing", now))
    sink.close(timeout)
    stats = sink.stats()
    if stats["sent"] != 1:
        raise Unavailable(
            f"the webhook {sink.target} did not accept the test alert "
            f"({stats['retried']} retries; see the log for the last answer)",
            code="alerts.webhook_unreachable",
        )
    out.print(f"Delivered a signed test alert to {sink.target}.", highlight=False)
