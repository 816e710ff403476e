"""`bastion privacy scan|risk|release|inventory`: the column-level PII scan of a stored
dataset, its re-identification risk (k-anonymity, l-diversity), the `data_release` gate, and
what the inventory holds about both.

Each runs in-process with the caller's token (BASTION_TOKEN) through the same services,
gate and ledger as the API. Output never holds a data value: only column names, entity
types, shares and counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from bastion.cli.common import (
    JsonFlag,
    TokenFile,
    caller_of,
    new_table,
    open_platform,
    out,
    print_json,
)
from bastion.core.errors import InvalidInput
from bastion.privacy.scan import DEFAULT_SAMPLE

DatasetRef = Annotated[str, typer.Argument(help="DATASET or DATASET@VERSION (default: latest).")]


def register(group: typer.Typer) -> None:
    """Add this module's commands to `group`."""
    group.command("scan")(scan)
    group.command("risk")(risk)
    group.command("release")(release)
    group.command("inventory")(inventory)


def dataset_ref(text: str) -> tuple[str, int | None]:
    """`name` or `name@3` → (name, version or None); `InvalidInput` for anything else."""
    name, at, version = text.partition("@")
    if not name or (at and not version.isdigit()) or (at and int(version) < 1):
        raise InvalidInput(
            f"name a dataset as DATASET or DATASET@VERSION (a number), not {text!r}",
            code="cli.bad_dataset_ref",
        )
    return name, int(version) if at else None


def column_list(text: str | None, option: str) -> list[str]:
    names = [c.strip() for c in (text or "").split(",") if c.strip()]
    if text is not None and not names:
        raise InvalidInput(f"{option} takes column names, e.g. a,b,c", code="cli.bad_option")
    return names


def scan(
    dataset: DatasetRef,
    sample: Annotated[
        int, typer.Option(help="Rows to sample (deterministic reservoir sample).")
    ] = DEFAULT_SAMPLE,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Scan a stored dataset's columns for PII; store the report in the inventory."""
    name, version = dataset_ref(dataset)
    with open_platform() as platform:
        result = platform.privacy_scan.scan(
            caller_of(platform, token_file), name, version, sample=sample
        )
    if as_json:
        print_json({"dataset": f"{result.name}@{result.version}", **result.report})
        return
    _show_scan(f"{result.name}@{result.version}", result.report)


def _show_scan(ref: str, report: Mapping[str, Any]) -> None:
    table = new_table("column", "entities (share of non-empty values)", "sensitive", "name hint")
    for column, info in report["columns"].items():
        entities = ", ".join(f"{e} {share:.0%}" for e, share in info["entities"].items())
        table.add_row(
            column,
            entities or "-",
            "yes" if info["sensitive"] else "no",
            info["name_hint"] or "-",
        )
    out.print(table)
    rows = f"{report['scanned_rows']} of {report['total_rows']} rows scanned"
    verdict = (
        f"proposed {report['proposed_classification']}, "
        f"declared {report['declared_classification']}"
    )
    out.print(f"{ref}: {rows}; {verdict}", highlight=False)
    if report["under_classified"]:
        out.print(
            f"[bold yellow]under-classified[/]: the findings call for "
            f"{report['proposed_classification']} (the declared level is left as it is)"
        )
    if report["hinted_columns"]:
        out.print(
            "review (named like personal data, no values matched): "
            + ", ".join(report["hinted_columns"]),
            highlight=False,
        )


def risk(
    dataset: DatasetRef,
    quasi: Annotated[
        str,
        typer.Option(help="Quasi-identifier columns, comma-separated (e.g. age,zip,sex)."),
    ],
    sensitive: Annotated[
        str | None,
        typer.Option(help="Sensitive attribute columns, comma-separated (for l-diversity)."),
    ] = None,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Measure k-anonymity, l-diversity and unique records exactly; store the report."""
    name, version = dataset_ref(dataset)
    quasi_identifiers = column_list(quasi, "--quasi")
    sensitive_attributes = column_list(sensitive, "--sensitive")
    with open_platform() as platform:
        result = platform.privacy_risk.measure(
            caller_of(platform, token_file),
            name,
            version,
            quasi_identifiers=quasi_identifiers,
            sensitive=sensitive_attributes,
        )
    if as_json:
        print_json({"dataset": f"{result.name}@{result.version}", **result.report})
        return
    _show_risk(f"{result.name}@{result.version}", result.report)


def _show_risk(ref: str, report: Mapping[str, Any]) -> None:
    line = (
        f"{ref}: k = {report['k']} over {', '.join(report['quasi_identifiers'])}; "
        f"{report['classes']} classes in {report['rows']} rows; "
        f"unique records {report['unique_share']:.2%}"
    )
    if report["l"] is not None:
        line += (
            f"; l = {report['l']} (entropy l = {report['l_entropy']:.2f}) "
            f"for {', '.join(report['sensitive'])}"
        )
    out.print(line, highlight=False)
    table = new_table("class size", "classes", "records")
    for bucket in report["class_sizes"]:
        table.add_row(bucket["size"], str(bucket["classes"]), str(bucket["records"]))
    out.print(table)


def release(
    dataset: DatasetRef,
    to: Annotated[
        str, typer.Option("--to", help="The classification it is released at (e.g. internal).")
    ],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Check a release at a lower classification against the data_release gate (k >= K).

    Only the check and its record: copying the data out is up to the release process."""
    name, version = dataset_ref(dataset)
    with open_platform() as platform:
        check = platform.privacy_risk.release_check(
            caller_of(platform, token_file), name, to, reason, version=version
        )
    if as_json:
        print_json(check)
        return
    out.print(
        f"release of {check.name}@{check.version} ({check.from_classification}) as "
        f"{check.to_classification} allowed (decision {check.decision_id})",
        highlight=False,
    )


def inventory(
    dataset: DatasetRef,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """What the inventory holds on a dataset's privacy: its last scan and risk measurement."""
    name, version = dataset_ref(dataset)
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        scanned = platform.privacy_scan.report(caller, name, version)
        measured = platform.privacy_risk.report(caller, name, version)
    if as_json:
        print_json(
            {
                "pii_report": None if scanned is None else dict(scanned.report),
                "privacy_report": None if measured is None else dict(measured.report),
            }
        )
        return
    ref = dataset if "@" in dataset else name
    if scanned is None:
        out.print(f"{ref}: never scanned (bastion privacy scan {ref})", highlight=False)
    else:
        _show_scan(f"{scanned.name}@{scanned.version}", scanned.report)
    if measured is None:
        out.print(
            f"{ref}: re-identification risk never measured "
            f"(bastion privacy risk {ref} --quasi COLUMNS)",
            highlight=False,
        )
    else:
        _show_risk(f"{measured.name}@{measured.version}", measured.report)
