"""The ``psr`` command: one Typer subcommand per stage, each in its own module under psr/cli/."""

from __future__ import annotations

import sys

import typer

from psr.core.errors import InputError, PsrError
from psr.core.log import console

app = typer.Typer(
    name="psr",
    help=(
        "Process-based Self-Rewarding language models (Zhang et al., 2025). The loop: segment (IFT data) + "
        "train-prm -> mine-pairs -> annotate-eft (EFT data) -> sft (M0 -> M1) -> then repeat search (the model "
        "judges its own candidate steps: PPD pairs) -> step-dpo (Mi -> Mi+1); eval measures each Mi. Every stage "
        "reads and writes JSONL, so stages pipe, resume (rerun the same command) and split across machines "
        "(--shard K/N)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module registers its command on `app` when imported.
from psr.cli import (  # noqa: E402,F401
    annotate_eft,
    eval,
    grade,
    mine_pairs,
    search,
    segment,
    sft,
    step_dpo,
    train_prm,
    world,
)

# --help lists the stages in the order of the loop, then the tools.
ORDER = ["segment", "train-prm", "mine-pairs", "annotate-eft", "sft", "search", "step-dpo", "eval", "grade", "world"]
app.registered_commands.sort(key=lambda c: ORDER.index(c.name) if c.name in ORDER else len(ORDER))


def main() -> None:
    try:
        app(standalone_mode=False)
    except InputError as e:
        console.print(f"[red]error:[/red] {e}", markup=True, soft_wrap=True)
        sys.exit(2)
    except PsrError as e:
        console.print(f"[red]error:[/red] {e}", markup=True, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]; rerun the same command to resume", markup=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as e:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise
