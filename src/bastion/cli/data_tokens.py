"""`bastion data tokenize|detokenize`, `bastion data keys list|rotate|destroy|evidence`.

In-process with the caller's token (BASTION_TOKEN or --token-file), through the same
`Tokenizer` service, permissions and ledger entries as any other caller.

Line mode reads one value (or token) per line on stdin and writes one token (or value) per
line on stdout; an empty line stays empty (so an empty string cannot be tokenized here).
CSV mode (`--csv FILE --columns a,b`) rewrites those columns and copies the rest; the
context of a column is its name unless `--context` gives one for all of them (use the same
context in two files to join them on tokens). Work goes to the service in batches of
`MAX_BATCH` lines or rows, so each batch of a detokenize is one ledger entry, and an error
stops at its batch: with `--out` the output file appears only when everything succeeded
(written privately, 0600, then renamed), on stdout the earlier batches are already written.
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO, TypeVar

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
from bastion.privacy.tokens import MAX_BATCH, DestructionEvidence, TokenKey

keys_app = typer.Typer(
    help="Tokenization keys: list, rotate, destroy (crypto-shred), evidence.",
    no_args_is_help=True,
)

Context = Annotated[
    str | None,
    typer.Option(help="Token domain, e.g. a column name (default in CSV mode: each column's)."),
]
CsvFile = Annotated[
    Path | None, typer.Option("--csv", help="Rewrite columns of this CSV file (header row).")
]
Columns = Annotated[str | None, typer.Option(help="With --csv: the columns, comma-separated.")]
OutFile = Annotated[
    Path | None, typer.Option("--out", help="With --csv: write here (default: stdout).")
]

_T = TypeVar("_T")

# A column mapped batch by batch: (context, cells) -> new cells.
_Apply = Callable[[str, list[str | None]], list[str | None]]


def register(group: typer.Typer) -> None:
    group.command("tokenize")(tokenize)
    group.command("detokenize")(detokenize)
    group.add_typer(keys_app, name="keys")


def tokenize(
    context: Context = None,
    reversible: Annotated[
        bool, typer.Option("--reversible", help="AES-SIV tokens (rtk_) that detokenize.")
    ] = False,
    key_version: Annotated[
        int | None,
        typer.Option(help="Use this retired key version (to join with older tokens)."),
    ] = None,
    csv_file: CsvFile = None,
    columns: Columns = None,
    out_file: OutFile = None,
    token_file: TokenFile = None,
) -> None:
    """Replace values with keyed tokens: stdin lines to stdout, or --csv columns."""
    _check_mode(context, csv_file, columns, out_file)
    with open_platform() as platform:
        caller = caller_of(platform, token_file)

        def apply(ctx: str, values: list[str | None]) -> list[str | None]:
            return platform.tokenizer.tokenize(
                caller, values, context=ctx, reversible=reversible, version=key_version
            )

        _run(apply, context, csv_file, columns, out_file)


def detokenize(
    context: Context = None,
    csv_file: CsvFile = None,
    columns: Columns = None,
    out_file: OutFile = None,
    token_file: TokenFile = None,
) -> None:
    """Reverse rtk_ tokens to their values (privacy.manage; each batch is ledgered)."""
    _check_mode(context, csv_file, columns, out_file)
    with open_platform() as platform:
        caller = caller_of(platform, token_file)

        def apply(ctx: str, tokens: list[str | None]) -> list[str | None]:
            return platform.tokenizer.detokenize(caller, tokens, context=ctx)

        _run(apply, context, csv_file, columns, out_file)


@keys_app.command("list")
def keys_list(token_file: TokenFile = None, as_json: JsonFlag = False) -> None:
    """Every key version and its state (active, retired, destroyed)."""
    with open_platform() as platform:
        keys = platform.tokenizer.keys(caller_of(platform, token_file))
    if as_json:
        print_json([_key_doc(key) for key in keys])
        return
    table = new_table("version", "state", "key id", "created", "by", "retired", "destroyed")
    for key in keys:
        doc = _key_doc(key)
        table.add_row(
            f"v{key.version}",
            key.state.value,
            key.key_id,
            doc["created_at"],
            key.created_by,
            doc["retired_at"] or "-",
            doc["destroyed_at"] or "-",
        )
    out.print(table)


@keys_app.command("rotate")
def keys_rotate(token_file: TokenFile = None, as_json: JsonFlag = False) -> None:
    """Make a new active key version; the previous one is retired (still detokenizes)."""
    with open_platform() as platform:
        key = platform.tokenizer.rotate(caller_of(platform, token_file))
    if as_json:
        print_json(_key_doc(key))
        return
    out.print(f"token key v{key.version} is active ({key.key_id})", highlight=False)


@keys_app.command("destroy")
def keys_destroy(
    version: Annotated[int, typer.Argument(help="A retired key version.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Crypto-shred a retired key version: its tokens can never be reversed again."""
    if not yes:
        raise InvalidInput(
            f"destroying token key v{version} is irreversible; add --yes to confirm",
            code="cli.confirm_required",
        )
    with open_platform() as platform:
        evidence = platform.tokenizer.destroy(caller_of(platform, token_file), version)
    _show_evidence(evidence, as_json)


@keys_app.command("evidence")
def keys_evidence(
    version: Annotated[int, typer.Argument(help="A destroyed key version.")],
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Check now that a destroyed key version's data key is refused by the key store."""
    with open_platform() as platform:
        evidence = platform.tokenizer.evidence(caller_of(platform, token_file), version)
    _show_evidence(evidence, as_json)


# ------------------------------------------------------------------------------ helpers


def _check_mode(
    context: str | None, csv_file: Path | None, columns: str | None, out_file: Path | None
) -> None:
    if csv_file is None:
        if columns is not None or out_file is not None:
            raise InvalidInput("--columns and --out go with --csv", code="cli.bad_option")
        if context is None:
            raise InvalidInput(
                "give --context (the tokens' domain, e.g. the column name)",
                code="cli.context_required",
            )
    elif not columns:
        raise InvalidInput("--csv needs --columns a,b,…", code="cli.columns_required")


def _run(
    apply: _Apply,
    context: str | None,
    csv_file: Path | None,
    columns: str | None,
    out_file: Path | None,
) -> None:
    if csv_file is None:
        assert context is not None  # checked by _check_mode
        try:
            _lines(apply, context, sys.stdin, sys.stdout)
        except UnicodeDecodeError:
            raise InvalidInput("stdin is not UTF-8 text", code="cli.bad_input") from None
        return
    names = [name.strip() for name in (columns or "").split(",") if name.strip()]
    with _open_csv(csv_file) as source:
        if out_file is None:
            _csv(apply, context, names, source, sys.stdout)
            return
        with _private_output(out_file) as sink:
            _csv(apply, context, names, source, sink)


def _lines(apply: _Apply, context: str, source: TextIO, sink: TextIO) -> None:
    for batch in _batches(source):
        cells = [line.removesuffix("\n").removesuffix("\r") or None for line in batch]
        result = apply(context, cells)
        sink.write("".join(f"{cell or ''}\n" for cell in result))
    sink.flush()


def _csv(
    apply: _Apply, context: str | None, names: list[str], source: TextIO, sink: TextIO
) -> None:
    reader = csv.reader(source)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput(
            "the CSV file is empty (no header row)", code="privacy.bad_csv"
        ) from None
    except csv.Error as error:
        raise _bad_csv(1, error) from None
    unknown = [name for name in names if name not in header]
    if unknown:
        raise InvalidInput(
            f"unknown column(s): {', '.join(unknown)}; the file has: {', '.join(header)}",
            code="privacy.unknown_column",
            details={"unknown": unknown},
        )
    wanted = [(header.index(name), context or name) for name in dict.fromkeys(names)]
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(header)
    line = 1
    for batch in _batches(_rows(reader)):
        for row in batch:
            line += 1
            if len(row) != len(header):
                raise InvalidInput(
                    f"CSV record {line} has {len(row)} fields; the header has {len(header)}",
                    code="privacy.bad_csv",
                    details={"line": line},
                )
        for index, ctx in wanted:
            result = apply(ctx, [row[index] or None for row in batch])
            for row, cell in zip(batch, result, strict=True):
                row[index] = cell or ""
        writer.writerows(batch)
    sink.flush()


def _rows(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise _bad_csv(line + 1, error) from None
        line += 1
        yield row


def _batches(items: Iterable[_T]) -> Iterator[list[_T]]:
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) == MAX_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


@contextlib.contextmanager
def _open_csv(path: Path) -> Iterator[TextIO]:
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as error:
        raise InvalidInput(
            f"cannot read {path}: {error.strerror}", code="privacy.bad_csv"
        ) from None
    with handle:
        try:
            yield handle
        except UnicodeDecodeError:
            raise InvalidInput(f"{path} is not UTF-8 text", code="privacy.bad_csv") from None


@contextlib.contextmanager
def _private_output(path: Path) -> Iterator[TextIO]:
    """A 0600 temporary file beside `path`, renamed onto it only if the block succeeds."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise InvalidInput(
            f"cannot write beside {path}: {error.strerror}", code="cli.bad_output"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def _bad_csv(line: int, error: csv.Error) -> InvalidInput:
    return InvalidInput(
        f"CSV record {line} cannot be parsed: {error}",
        code="privacy.bad_csv",
        details={"line": line},
    )


def _key_doc(key: TokenKey) -> dict[str, Any]:
    return {
        "version": key.version,
        "key_id": key.key_id,
        "state": key.state.value,
        "created_at": key.created_at.isoformat(),
        "created_by": key.created_by,
        "retired_at": key.retired_at.isoformat() if key.retired_at else None,
        "destroyed_at": key.destroyed_at.isoformat() if key.destroyed_at else None,
    }


def _show_evidence(evidence: DestructionEvidence, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "version": evidence.version,
                "key_id": evidence.key_id,
                "destroyed_at": evidence.destroyed_at.isoformat(),
                "keystore_answer": evidence.keystore_answer,
            }
        )
        return
    out.print(
        f"token key v{evidence.version} destroyed {evidence.destroyed_at.isoformat()}; the key "
        f"store refuses data key {evidence.key_id} ({evidence.keystore_answer})",
        highlight=False,
    )
