"""Typer options built from config dataclasses (psr.core.options.option fields), and the shared groups."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer

from psr.core.errors import OptionError
from psr.core.records import IOConfig
from psr.engines.base import ENGINES, EngineConfig

# The shared groups are config dataclasses too: IOConfig (-i, -o, --overwrite, --limit, --shard) and EngineConfig
# (--engine, --model, ...). A command takes them as `with_options(io_options(), "io")` / `engine_options()`.
EngineChoice = Literal[ENGINES]


def field_option(cls: type, name: str) -> Any:
    """One declared field of a config dataclass as a Typer option annotation, for a command that takes that option
    alone (the training commands' --model, --seed; world's --seed): the flags and help stay declared once."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    hint = typing.get_type_hints(cls, include_extras=True)[name]
    return Annotated[hint, typer.Option(*f.metadata["flags"], help=f.metadata["help"])]


Inputs = field_option(IOConfig, "inputs")
Limit = field_option(IOConfig, "limit")
Model = field_option(EngineConfig, "model")
Seed = field_option(EngineConfig, "seed")
Dtype = field_option(EngineConfig, "dtype")
TrustRemoteCode = field_option(EngineConfig, "trust_remote_code")


def io_options(**helps: str) -> Callable[..., IOConfig]:
    """The I/O group; ``helps`` rewords an option for a command (eval's --limit counts per benchmark)."""
    return dataclass_options(IOConfig, helps=helps)


def engine_options() -> Callable[..., EngineConfig]:
    """The engine group (defaults and omissions per command go to ``with_options``)."""
    return dataclass_options(EngineConfig)


def with_options(
    group: Callable[..., Any], into: str, *, after: str | None = None, omit: tuple[str, ...] = (), **defaults: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: give a command the options declared once as the parameters of `group`; the command gets
    ``group(**those options)`` as its (keyword-only) parameter `into` instead.

    Typer reads a command's options, their help and defaults from its signature, so the signature is rewritten:
    the group's options come after the command's own ones, or with `after`, the command's own options come right
    after that group option (so each --help lists its options in the order the command had). `defaults` are the
    command's own defaults for group options; `omit` leaves group options out (they keep the group's default).
    """
    shared = [
        p.replace(default=defaults.pop(p.name, p.default))
        for p in inspect.signature(group, eval_str=True).parameters.values()
        if p.name not in omit
    ]
    if defaults:
        raise TypeError(f"{group.__name__} has no options {sorted(defaults)}")
    names = [p.name for p in shared]
    cut = names.index(after) + 1 if after else 0

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != into]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            options = {name: kwargs.pop(name) for name in names}
            return command(**kwargs, **{into: group(**options)})

        # keyword-only parameters (another group's `into`, for a later with_options) stay last
        kw_only = [p for p in own if p.kind is p.KEYWORD_ONLY]
        params = shared[:cut] + [p for p in own if p not in kw_only] + shared[cut:] + kw_only
        run.__signature__ = inspect.Signature(params)
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return decorate


def dataclass_options(
    cls: type, *, omit: tuple[str, ...] = (), helps: dict[str, str] | None = None
) -> Callable[..., Any]:
    """The option group of a config dataclass, for ``with_options(dataclass_options(Config), "cfg")``: one Typer
    option for each field declared with ``psr.core.options.option`` (its flags, help, default; its type, so a
    ``Literal`` field is a choice), returning ``Config(**values)``; other fields keep their defaults, as do ``omit``.
    ``helps`` replaces a field's help for one command. A bad value the dataclass's ``__post_init__`` finds
    (``OptionError``) is reported as click reports one (exit 2), naming the flag."""
    helps = helps or {}
    hints = typing.get_type_hints(cls, include_extras=True)
    params, field_of = [], {}
    for f in dataclasses.fields(cls):
        if "flags" not in f.metadata or f.name in omit:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        name = f.metadata.get("param", f.name)
        field_of[name] = f.name
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=default,
                annotation=Annotated[
                    hints[f.name], typer.Option(*f.metadata["flags"], help=helps.get(f.name, f.metadata["help"]))
                ],
            )
        )

    def build(**values: Any) -> Any:
        try:
            return cls(**{field_of[k]: v for k, v in values.items()})
        except OptionError as e:
            raise typer.BadParameter(e.message, param_hint=e.option) from None

    build.__name__ = cls.__name__
    build.__signature__ = inspect.Signature(params)
    return build
