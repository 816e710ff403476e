"""`bastion dataset …`, `bastion model …`, `bastion lineage …`, `bastion signer …`.

These run in-process against the local home with the same services, checks and ledger
entries as the API. `model register` stages the local file or directory through the same
upload path the API uses, so the scan, sealing and limits are identical.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.common import (
    JsonFlag,
    TokenFile,
    caller_of,
    err,
    new_table,
    open_platform,
    out,
    parse_duration,
    print_json,
)
from bastion.core.errors import InvalidInput
from bastion.registry import (
    Dataset,
    DatasetRef,
    LineageLink,
    ModelSpec,
    ModelVersion,
    VersionSpec,
    local_environment,
)
from bastion.registry.contract import FieldType, InputContract, derive_from_csv
from bastion.registry.openlineage import export_to_file, run_events
from bastion.serving.convert import convert_skops
from bastion.supplychain.scan import AllowList

dataset_app = typer.Typer(help="The dataset inventory.", no_args_is_help=True)
model_app = typer.Typer(help="Models, versions, artifacts and signatures.", no_args_is_help=True)
lineage_app = typer.Typer(
    help="Lineage between datasets and model versions.", invoke_without_command=True
)
signer_app = typer.Typer(help="Trusted model-signing keys, per team.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
    app.add_typer(model_app, name="model")
    app.add_typer(lineage_app, name="lineage")
    app.add_typer(signer_app, name="signer")


def _json_file(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise InvalidInput(f"cannot read {what} file {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{what} file {path} is not JSON: {error}") from None


def _pairs(values: list[str], what: str) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"{what} must be KEY=VALUE, not {item!r}")
        result[key] = value
    return result


def _metrics(values: list[str]) -> dict[str, float]:
    result = {}
    for key, value in _pairs(values, "--metric").items():
        try:
            result[key] = float(value)
        except ValueError:
            raise InvalidInput(f"metric {key} must be a number, not {value!r}") from None
    return result


def _ref(text: str) -> tuple[str, str | None]:
    """`model`, `model@3`, `model@champion`."""
    name, _, ref = text.partition("@")
    return name, ref or None


def _exact_ref(text: str) -> tuple[str, str]:
    """`model@3` or `model@champion`: commands that change or vouch for one version never
    guess which one."""
    name, ref = _ref(text)
    if ref is None:
        raise InvalidInput(
            f"name the version: {name}@VERSION or {name}@ALIAS", code="cli.version_required"
        )
    return name, ref


def _dataset_dict(d: Dataset) -> dict[str, Any]:
    data = asdict(d)
    data["classification"] = d.classification.value
    return data


def _version_dict(v: ModelVersion) -> dict[str, Any]:
    data = asdict(v)
    data["status"] = v.status.value
    data["lineage"] = [_link_dict(link) for link in v.lineage]
    return data


def _link_dict(link: LineageLink) -> dict[str, Any]:
    data = asdict(link)
    data["role"] = link.role.value
    data["classification"] = link.classification.value
    return data


# -- datasets --------------------------------------------------------------------------------


@dataset_app.command("register")
def dataset_register(
    name: str,
    classification: Annotated[
        str, typer.Option(help="public, internal, confidential or restricted.")
    ],
    purpose: Annotated[
        list[str], typer.Option(help="An allowed purpose (repeatable), e.g. fraud-detection.")
    ],
    file: Annotated[
        Path | None, typer.Option(help="The data file: sealed (encrypted) into the blob store.")
    ] = None,
    digest: Annotated[
        str | None, typer.Option(help="sha256:… of data kept elsewhere (instead of --file).")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Owning team (default: you).")] = None,
    retention: Annotated[
        str | None, typer.Option(help="How long it may be kept, e.g. 365d.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Where it came from.")] = None,
    schema: Annotated[
        Path | None, typer.Option(help="JSON list of {name, type}; inferred for CSV.")
    ] = None,
    description: Annotated[str, typer.Option()] = "",
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable).")] = None,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Register a dataset version in the inventory."""
    retention_days = None
    if retention:
        seconds = parse_duration(retention).total_seconds()
        retention_days = max(1, int(seconds // 86400))
    with open_platform() as platform:
        dataset = platform.datasets.register(
            caller_of(platform, token_file),
            name,
            classification_=classification,
            purposes=purpose,
            owner=owner,
            description=description,
            retention_days=retention_days,
            schema=_json_file(schema, "schema"),
            source=source,
            digest=digest,
            file=file,
            tags=_pairs(tag or [], "--tag"),
        )
    if as_json:
        print_json(_dataset_dict(dataset))
        return
    out.print(
        f"registered dataset {dataset.ref} ({dataset.classification.value}, "
        f"{len(dataset.schema)} columns) {dataset.digest}"
    )


@dataset_app.command("list")
def dataset_list(
    name: Annotated[str | None, typer.Argument(help="Show every version of one dataset.")] = None,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Datasets (latest versions), or every version of NAME."""
    with open_platform() as platform:
        rows = platform.datasets.list(caller_of(platform, token_file), name=name)
    if as_json:
        print_json([_dataset_dict(d) for d in rows])
        return
    table = new_table("dataset", "classification", "owner", "purposes", "expires", "digest")
    for d in rows:
        table.add_row(
            d.ref,
            d.classification.value,
            d.owner,
            ",".join(d.purposes),
            d.expires_at.date().isoformat() if d.expires_at else "-",
            d.digest[:19] + "…",
        )
    out.print(table)


@dataset_app.command("show")
def dataset_show(
    ref: Annotated[str, typer.Argument(help="NAME or NAME@VERSION")],
    token_file: TokenFile = None,
) -> None:
    """One dataset version, with the model versions that used it."""
    name, version = _ref(ref)
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        dataset = platform.datasets.get(caller, name, int(version) if version else None)
        consumers = platform.models.consumers(caller, dataset=name, version=dataset.version)
    data = _dataset_dict(dataset)
    data["used_by"] = [_link_dict(link) for link in consumers]
    print_json(data)


# -- models ----------------------------------------------------------------------------------


@model_app.command("create")
def model_create(
    name: str,
    owner: Annotated[str | None, typer.Option()] = None,
    custodian: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str, typer.Option()] = "",
    intended_use: Annotated[str, typer.Option("--intended-use")] = "",
    purpose: Annotated[str | None, typer.Option(help="The model's declared purpose.")] = None,
    token_file: TokenFile = None,
) -> None:
    """Create a model (its versions come with `model register`)."""
    with open_platform() as platform:
        model = platform.models.create(
            caller_of(platform, token_file),
            name,
            ModelSpec(
                owner=owner,
                custodian=custodian,
                description=description,
                intended_use=intended_use,
                purpose=purpose,
            ),
        )
    out.print(f"created model {model.name} ({model.id})")


@model_app.command("register")
def model_register(
    name: Annotated[str, typer.Option("--name", help="Model name (created if new).")],
    file: Annotated[Path, typer.Option("--file", help="Model file or directory.")],
    dataset: Annotated[
        list[str] | None,
        typer.Option(help="NAME[@VERSION][:training|evaluation|validation] (repeatable)."),
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(help="NAME=NUMBER (repeatable).")] = None,
    param: Annotated[list[str] | None, typer.Option(help="NAME=VALUE (repeatable).")] = None,
    params_file: Annotated[Path | None, typer.Option(help="JSON object of parameters.")] = None,
    code_ref: Annotated[str | None, typer.Option(help="e.g. git URL@commit.")] = None,
    input_contract: Annotated[Path | None, typer.Option(help="JSON input contract.")] = None,
    output_contract: Annotated[Path | None, typer.Option(help="JSON output contract.")] = None,
    model_card: Annotated[Path | None, typer.Option(help="JSON model card sections.")] = None,
    description: Annotated[str, typer.Option()] = "",
    task: Annotated[str | None, typer.Option(help="e.g. classification.")] = None,
    framework: Annotated[str | None, typer.Option(help="e.g. scikit-learn.")] = None,
    purpose: Annotated[str | None, typer.Option(help="Declared purpose (new models).")] = None,
    intended_use: Annotated[str, typer.Option("--intended-use", help="(new models)")] = "",
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE (repeatable).")] = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Label column: derive the input contract from the training data "
            "(--training-csv here, else the training dataset stored in Bastion)."
        ),
    ] = None,
    training_csv: Annotated[
        Path | None, typer.Option(help="Local training CSV to derive the contract from.")
    ] = None,
    onnx: Annotated[
        bool,
        typer.Option(
            "--onnx/--no-onnx",
            help="Convert a skops model to ONNX (checked to predict the same) and register "
            "both; the gateway then serves it with ONNX Runtime.",
        ),
    ] = False,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Upload, scan, encrypt and register a new model version."""
    contract_doc = _json_file(input_contract, "input contract")
    records: list[dict[str, Any]] | None = None
    if training_csv is not None:
        if contract_doc is not None or target is None:
            raise InvalidInput(
                "--training-csv derives the contract: give it with --target, without "
                "--input-contract",
                code="cli.bad_option",
            )
        contract_doc, records = _contract_from_csv(training_csv, target)
    with tempfile.TemporaryDirectory(prefix="bastion-register-") as scratch:
        if onnx:
            file = _with_onnx(file, contract_doc, records, Path(scratch))
        _register(
            name, file, dataset, metric, param, params_file, code_ref, contract_doc,
            output_contract, model_card, description, task, framework, purpose, intended_use,
            tag, None if training_csv is not None else target, token_file, as_json,
        )  # fmt: skip


def _contract_from_csv(path: Path, target: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The contract of a local training CSV, and up to 256 of its rows for checking a
    conversion."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read training CSV {path}: {error}") from None
    contract = derive_from_csv(io.StringIO(text), exclude=[target])
    rows = list(csv.DictReader(io.StringIO(text)))[:256]
    records = [_typed_row(contract, row) for row in rows]
    return contract.to_json(), records


def _typed_row(contract: InputContract, row: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in contract.fields:
        raw = row.get(spec.name, "")
        if raw == "":
            out[spec.name] = None
        elif spec.type is FieldType.BOOLEAN:
            out[spec.name] = raw.strip().lower() == "true"
        elif spec.type is FieldType.STRING:
            out[spec.name] = raw
        else:
            out[spec.name] = float(raw)
    return out


def _with_onnx(
    source: Path,
    contract_doc: Mapping[str, Any] | None,
    records: list[dict[str, Any]] | None,
    scratch: Path,
) -> Path:
    """A copy of `source` with `model.onnx` converted from its one skops file."""
    if contract_doc is None:
        raise InvalidInput(
            "--onnx needs the input contract (--input-contract, or --training-csv with --target)",
            code="cli.bad_option",
        )
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    skops_files = [p for p in files if zipfile.is_zipfile(p) and _is_skops(p)]
    if len(skops_files) != 1:
        raise InvalidInput(
            f"--onnx converts exactly one skops file; found {len(skops_files)}",
            code="cli.bad_option",
        )
    contract = InputContract.from_json(contract_doc)
    onnx_bytes, report = convert_skops(
        skops_files[0].read_bytes(), contract, allowlist=AllowList.load(None), records=records
    )
    copy = scratch / "model"
    if source.is_file():
        copy.mkdir()
        shutil.copy2(source, copy / source.name)
    else:
        shutil.copytree(source, copy, symlinks=True)
    (copy / "model.onnx").write_bytes(onnx_bytes)
    err.print(
        f"converted {skops_files[0].name} to ONNX: {report.rows} rows checked, "
        f"{report.label_mismatches} label mismatches, max probability difference "
        f"{report.max_abs_prob_diff}"
    )
    return copy


def _is_skops(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return "schema.json" in archive.namelist()


def _register(
    name: str,
    file: Path,
    dataset: list[str] | None,
    metric: list[str] | None,
    param: list[str] | None,
    params_file: Path | None,
    code_ref: str | None,
    contract_doc: Mapping[str, Any] | None,
    output_contract: Path | None,
    model_card: Path | None,
    description: str,
    task: str | None,
    framework: str | None,
    purpose: str | None,
    intended_use: str,
    tag: list[str] | None,
    target: str | None,
    token_file: Path | None,
    as_json: bool,
) -> None:
    parameters: dict[str, Any] = dict(_json_file(params_file, "parameters") or {})
    parameters.update(_pairs(param or [], "--param"))
    spec = VersionSpec(
        datasets=tuple(DatasetRef.parse(d) for d in dataset or []),
        description=description,
        metrics=_metrics(metric or []),
        parameters=parameters,
        code_ref=code_ref,
        environment=local_environment(),
        input_contract=contract_doc,
        output_contract=_json_file(output_contract, "output contract"),
        model_card=_json_file(model_card, "model card") or {},
        tags=_pairs(tag or [], "--tag"),
        task=task,
        framework=framework,
        target=target,
    )
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        upload = platform.staging.create(caller)
        try:
            platform.staging.add_tree(caller, upload.id, file)
        except BaseException:
            platform.staging.abort(caller, upload.id)
            raise
        version = platform.models.register_version(
            caller,
            name,
            upload.id,
            spec,
            create=ModelSpec(purpose=purpose, intended_use=intended_use),
        )
    if as_json:
        print_json(_version_dict(version))
        return
    out.print(
        f"registered {version.ref}: {version.format}, {len(version.files) - 1} file(s), "
        f"{version.artifact_size} bytes, scan clean "
        f"(allow-list {version.scan.get('allowlist_version')})"
    )
    out.print(f"  artifact {version.artifact_digest}")
    out.print(f"  ML-BOM   {version.mlbom_digest}")
    for link in version.lineage:
        out.print(f"  {link.role.value} on {link.dataset}@{link.dataset_version}")


@model_app.command("list")
def model_list(token_file: TokenFile = None, as_json: JsonFlag = False) -> None:
    """Models and their aliases."""
    with open_platform() as platform:
        models = platform.models.list(caller_of(platform, token_file))
    if as_json:
        print_json([asdict(m) for m in models])
        return
    table = new_table("model", "owner", "purpose", "aliases")
    for m in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in m.aliases.items())
        table.add_row(m.name, m.owner, m.purpose or "-", aliases or "-")
    out.print(table)


@model_app.command("versions")
def model_versions(name: str, token_file: TokenFile = None, as_json: JsonFlag = False) -> None:
    """Every version of a model."""
    with open_platform() as platform:
        versions = platform.models.versions(caller_of(platform, token_file), name)
    if as_json:
        print_json([_version_dict(v) for v in versions])
        return
    table = new_table("version", "status", "format", "signed", "aliases", "datasets", "created")
    for v in versions:
        table.add_row(
            str(v.version),
            v.status.value,
            v.format,
            "yes" if v.signed else "no",
            ",".join(v.aliases) or "-",
            ", ".join(f"{x.dataset}@{x.dataset_version}" for x in v.lineage) or "-",
            v.created_at.isoformat(timespec="seconds"),
        )
    out.print(table)


@model_app.command("show")
def model_show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@ALIAS")],
    token_file: TokenFile = None,
) -> None:
    """One version in full (latest when no version is given)."""
    name, version = _ref(ref)
    with open_platform() as platform:
        print_json(
            _version_dict(platform.models.version(caller_of(platform, token_file), name, version))
        )


@model_app.command("alias")
def model_alias(
    name: str,
    alias: str,
    version: Annotated[int | None, typer.Argument(help="Version to point at.")] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the alias.")] = False,
    token_file: TokenFile = None,
) -> None:
    """Point ALIAS (e.g. champion) at VERSION, or remove it."""
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        if remove:
            platform.models.remove_alias(caller, name, alias)
            out.print(f"removed {name}@{alias}")
            return
        if version is None:
            raise InvalidInput("give a version, or --remove")
        v = platform.models.set_alias(caller, name, alias, version)
    out.print(f"{name}@{alias} → version {v.version}")


@model_app.command("status")
def model_status(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    status: Annotated[str, typer.Argument(help="registered, deprecated or archived")],
    token_file: TokenFile = None,
) -> None:
    """Change a version's status."""
    name, version = _exact_ref(ref)
    with open_platform() as platform:
        v = platform.models.set_status(caller_of(platform, token_file), name, version, status)
    out.print(f"{v.ref} is {v.status.value}")


@model_app.command("sign")
def model_sign(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")], token_file: TokenFile = None
) -> None:
    """Sign a version with Bastion's key (OpenSSF model-signing format)."""
    name, version = _exact_ref(ref)
    with open_platform() as platform:
        record = platform.signatures.sign(caller_of(platform, token_file), name, version)
    out.print(
        f"signed {name}@{version} ({record.id}) with {record.team} key {record.key_fingerprint}"
    )


@model_app.command("attach-signature")
def model_attach_signature(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    signature: Annotated[Path, typer.Option(help="Bundle made by a registered signer key.")],
    token_file: TokenFile = None,
) -> None:
    """Store a signature made elsewhere (e.g. `model_signing sign key`) with the version."""
    name, version = _exact_ref(ref)
    try:
        bundle = signature.read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read {signature}: {error.strerror}") from None
    with open_platform() as platform:
        record = platform.signatures.attach(caller_of(platform, token_file), name, version, bundle)
    out.print(f"attached {record.id}: signed by {record.team} key {record.key_fingerprint}")


@model_app.command("verify")
def model_verify(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Re-hash the stored bytes and check the signature. Exit 0 valid, 1 invalid."""
    name, version = _exact_ref(ref)
    with open_platform() as platform:
        result = platform.signatures.verify(caller_of(platform, token_file), name, version)
    if as_json:
        print_json(asdict(result))
    elif result.valid:
        out.print(
            f"valid: {name}@{result.version}, {result.files_checked} files re-hashed, signed by "
            f"{result.signer_team} key {result.key_fingerprint}"
        )
    else:
        err.print(f"INVALID: {name}@{result.version}")
        for problem in result.problems:
            err.print(f"  {problem}", highlight=False)
    raise typer.Exit(0 if result.valid else 1)


@model_app.command("download")
def model_download(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to create.")],
    token_file: TokenFile = None,
) -> None:
    """Write every file of a version (ML-BOM included) to a new directory, and its newest
    signature to OUT.sig: `model_signing verify key OUT --signature OUT.sig …` accepts it."""
    name, version = _ref(ref)
    if out_dir.exists():
        raise InvalidInput(f"{out_dir} already exists")
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        v = platform.models.version(caller, name, version)
        out_dir.mkdir(mode=0o700, parents=True)
        for f in v.files:
            target = out_dir / f.path
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with platform.models.open_artifact(caller, name, v.version, f.path) as (_, src):
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as dst:
                    while chunk := src.read(1024 * 1024):
                        dst.write(chunk)
        signed = ""
        if v.signed:
            _, bundle = platform.signatures.bundle(caller, name, v.version)
            sig_path = out_dir.with_name(out_dir.name + ".sig")
            sig_path.write_bytes(bundle)
            signed = f"; signature {sig_path}"
    out.print(f"wrote {len(v.files)} files of {v.ref} to {out_dir}{signed}")


@model_app.command("mlbom")
def model_mlbom(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION")], token_file: TokenFile = None
) -> None:
    """Print the version's CycloneDX 1.6 ML-BOM."""
    name, version = _exact_ref(ref)
    with open_platform() as platform:
        data = platform.models.read_mlbom(caller_of(platform, token_file), name, version)
    typer.echo(data.decode())


# -- lineage ---------------------------------------------------------------------------------


@lineage_app.callback()
def lineage(
    ctx: typer.Context,
    dataset: Annotated[
        str | None, typer.Option(help="NAME or NAME@VERSION: which versions used it?")
    ] = None,
    digest: Annotated[str | None, typer.Option(help="sha256:… of dataset bytes.")] = None,
    model: Annotated[str | None, typer.Option(help="Datasets behind a model's versions.")] = None,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Lineage both ways: the datasets behind a model, or the versions behind a dataset."""
    if ctx.invoked_subcommand is not None:
        return
    with open_platform() as platform:
        caller = caller_of(platform, token_file)
        if dataset is not None or digest is not None:
            name, version = _ref(dataset) if dataset else (None, None)
            links = platform.models.consumers(
                caller, dataset=name, version=int(version) if version else None, digest=digest
            )
        else:
            links = platform.models.lineage(caller, model)
    if as_json:
        print_json([_link_dict(link) for link in links])
        return
    table = new_table("model version", "role", "dataset", "classification", "dataset digest")
    for link in links:
        table.add_row(
            f"{link.model}@{link.model_version}",
            link.role.value,
            f"{link.dataset}@{link.dataset_version}",
            link.classification.value,
            link.dataset_digest,
        )
    out.print(table)


@lineage_app.command("export")
def lineage_export(
    out_file: Annotated[Path, typer.Option("--out", help="JSON-lines file (appended).")],
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    token_file: TokenFile = None,
) -> None:
    """Export lineage as OpenLineage run events (file transport)."""
    with open_platform() as platform:
        runs = platform.models.lineage_runs(
            caller_of(platform, token_file), model, platform.settings.ledger_origin
        )
        events = [e for run in runs for e in run_events(run, producer=platform.models.producer)]
    count = export_to_file(events, out_file)
    out.print(f"wrote {count} OpenLineage events for {len(runs)} runs to {out_file}")


# -- signer keys -----------------------------------------------------------------------------


@signer_app.command("add")
def signer_add(
    team: Annotated[str, typer.Option(help="Team (organisation unit) the key signs for.")],
    pubkey: Annotated[Path, typer.Option(help="EC public key, PEM.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    token_file: TokenFile = None,
) -> None:
    """Trust a public key for a team's model signatures (admin)."""
    try:
        pem = pubkey.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read {pubkey}: {error}") from None
    with open_platform() as platform:
        key = platform.signatures.add_key(caller_of(platform, token_file), team, name, pem)
    out.print(f"trusted {key.id} for team {key.team}: {key.fingerprint}")


@signer_app.command("list")
def signer_list(token_file: TokenFile = None, as_json: JsonFlag = False) -> None:
    """Trusted signer keys."""
    with open_platform() as platform:
        keys = platform.signatures.list_keys(caller_of(platform, token_file))
    if as_json:
        print_json([asdict(k) for k in keys])
        return
    table = new_table("id", "team", "name", "fingerprint", "revoked")
    for k in keys:
        table.add_row(
            k.id, k.team, k.name, k.fingerprint, k.revoked_at.isoformat() if k.revoked_at else "-"
        )
    out.print(table)


@signer_app.command("revoke")
def signer_revoke(key_id: str, token_file: TokenFile = None) -> None:
    """Stop trusting a key (admin): its signatures stop verifying."""
    with open_platform() as platform:
        key = platform.signatures.revoke_key(caller_of(platform, token_file), key_id)
    out.print(f"revoked {key.id} ({key.team})")
