"""The ``psr`` command: one Typer subcommand per stage, each in its own module under psr/cli/."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

# Each command module registers its command on `app` (psr/cli/root.py) when imported.
from psr.cli import (  # noqa: F401
    annotate_eft,
    demo,
    eval,
    grade,
    launch,
    mine_pairs,
    paper,
    search,
    segment,
    sft,
    step_dpo,
    train_prm,
    world,
)
from psr.cli.config import ConfigCommand
from psr.cli.root import app
from psr.core.errors import InputError, PsrError
from psr.core.log import console

# --help lists the stages in the order of the loop, then the tools.
ORDER = [
    "segment",
    "train-prm",
    "mine-pairs",
    "annotate-eft",
    "sft",
    "search",
    "step-dpo",
    "eval",
    "grade",
    "world",
    "demo",
    "paper",
]
app.registered_commands.sort(key=lambda c: ORDER.index(c.name) if c.name in ORDER else len(ORDER))
# Every command reads --config FILE.yaml and writes its resolved options (psr/cli/config.py).
for _command in app.registered_commands:
    _command.cls = ConfigCommand


# Usage errors (unknown option or command, a bad value, a missing argument). Typer 0.29 raises the click
# exceptions it bundles (typer._click), which are not click's own; catch both so that no usage error ever
# reaches the user as a traceback (pyproject pins the tested typer range).
_CLICK_ERRORS: tuple[type[Exception], ...] = (
    next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"),
)
try:
    import click

    _CLICK_ERRORS += (click.ClickException,)
except ImportError:  # the bundling typer does not need click installed
    pass


def main() -> None:
    try:
        app(standalone_mode=False)
    except InputError as e:
        _error(str(e))
        sys.exit(2)
    except PsrError as e:
        _error(str(e))
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]; rerun the same command to resume", markup=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(1)
    except RecursionError:
        _error("the input is nested too deeply to process (thousands of levels of brackets)")
        sys.exit(2)
    except _CLICK_ERRORS as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `psr` or `psr CMD` with nothing: the help
            e.show()
        else:
            _error(_usage_message(e))
        sys.exit(e.exit_code)
    except Exception as e:
        if type(e).__name__ != "SafetensorError":  # any model load (training too) meets a broken weights file
            raise
        _error(f"cannot read a model's weights: {e} (is a .safetensors file truncated or corrupt? copy it again)")
        sys.exit(2)


def _error(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", markup=True, soft_wrap=True)


def _usage_message(e) -> str:
    """One line: what is wrong and where to look (click's own message spans four lines)."""
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None else "psr"
    return f"{where}: {' '.join(message.split())} (see {where} --help)"
