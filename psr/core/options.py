"""A config dataclass field that is also a command-line option: its flags and help live beside its default.

``psr.cli.options.dataclass_options(Config)`` turns the fields declared with ``option`` into Typer options (the field's
type is the option's type: a ``Literal`` is a choice Typer lists and rejects), and builds ``Config(**values)`` for
the command, as TRL's ``TrlParser`` builds a CLI from ``SFTConfig``. Fields declared with plain defaults are not
options (a command sets them, e.g. the seed from ``--seed``). Adding an option is one ``option(...)`` line.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def option(default: Any, *flags: str, help: str) -> Any:  # noqa: A002 (the name Typer and click use)
    """``field(default=default)`` carrying ``flags`` (the long name first, then aliases) and ``help``."""
    if not flags or not flags[0].startswith("--"):
        raise ValueError(f"an option needs its long flag first, got {flags!r}")
    return field(default=default, metadata={"flags": flags, "help": help})
