"""`bastion privacy stat`: one differentially private aggregate over a dataset column, paid
from the dataset's privacy budget (see `bastion.privacy.stats`)."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.common import JsonFlag, TokenFile, caller_of, open_platform, out, print_json
from bastion.privacy.stats import STATISTICS
from bastion.registry import DatasetRef


def register(group: typer.Typer) -> None:
    """Add `stat` to the `privacy` group."""
    group.command("stat")(stat)


def stat(
    dataset: Annotated[str, typer.Argument(help="NAME or NAME@VERSION.")],
    column: Annotated[str, typer.Option("--column", help="The column to aggregate.")],
    statistic: Annotated[str, typer.Option("--stat", help=" | ".join(STATISTICS))],
    epsilon: Annotated[float, typer.Option("--epsilon", help="ε to spend on this answer.")],
    lower: Annotated[float | None, typer.Option(help="Public lower bound (all but count).")] = None,
    upper: Annotated[float | None, typer.Option(help="Public upper bound (all but count).")] = None,
    quantile: Annotated[
        float | None, typer.Option(help="With --stat quantile: which one (0-1).")
    ] = None,
    bins: Annotated[int, typer.Option(help="With --stat histogram: equal-width bins.")] = 10,
    token_file: TokenFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Answer one aggregate question with differential privacy; spends ε from the budget."""
    ref = DatasetRef.parse(dataset)
    with open_platform() as platform:
        answer = platform.privacy_stats.compute(
            caller_of(platform, token_file),
            ref.name,
            column,
            statistic,
            epsilon=epsilon,
            version=ref.version,
            lower=lower,
            upper=upper,
            quantile=quantile,
            bins=bins,
        )
    if as_json:
        print_json(answer.to_json())
        return
    what = f"{answer.statistic}"
    if answer.statistic == "quantile":
        what = f"quantile {answer.quantile:g}"
    if isinstance(answer.value, list):
        out.print(f"{what} of {answer.column} ({answer.dataset}@{answer.version}), noisy counts:")
        for low, high, count in zip(answer.edges, answer.edges[1:], answer.value, strict=False):
            out.print(f"  [{low:g}, {high:g})  {count}")
    else:
        out.print(
            f"{what} of {answer.column} ({answer.dataset}@{answer.version}): {answer.value:g}"
        )
    out.print(f"  ε {answer.epsilon:g} spent (spend {answer.spend_id}); {answer.mechanism}")
