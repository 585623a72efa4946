"""The root ``psr`` Typer app, on which each command module (psr/cli/<command>.py) registers its command; apart
from psr/cli/__init__.py, which imports those modules, so that no module imports the package that imports it."""

from __future__ import annotations

import typer

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
