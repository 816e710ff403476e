"""`bastion privacy …`, `bastion data …`, `bastion retention …`: the privacy command groups.

Each group's commands live in their own module (`privacy_pii`, `privacy_risk`, `privacy_dp`,
`privacy_stats`, `data_tokens`, `retention`), which adds them to the group here.
"""

from __future__ import annotations

import typer

from bastion.cli import (
    data_tokens,
    privacy_dp,
    privacy_pii,
    privacy_risk,
    privacy_stats,
    retention,
)

privacy_app = typer.Typer(
    help="Privacy: redact PII, scan datasets, re-identification risk, DP training and "
    "budgets, membership-inference audits.",
    no_args_is_help=True,
)
data_app = typer.Typer(
    help="Data protection: keyed tokenization and its keys.", no_args_is_help=True
)
retention_app = typer.Typer(
    help="Retention: enforce deletion by crypto-shredding, legal holds, evidence.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    privacy_pii.register(privacy_app)
    privacy_risk.register(privacy_app)
    privacy_dp.register(privacy_app)
    privacy_stats.register(privacy_app)
    data_tokens.register(data_app)
    retention.register(retention_app)
    app.add_typer(privacy_app, name="privacy")
    app.add_typer(data_app, name="data")
    app.add_typer(retention_app, name="retention")
