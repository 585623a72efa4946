"""``--config FILE.yaml`` on every command, and the resolved options each run writes beside its output.

Implemented once, as the click command class of every ``psr`` command (psr/cli/__init__.py sets it): the file's
values become click's ``default_map`` (defaults that flags on the command line override, a repeated ``-i`` too:
it replaces the file's list), read by an eager option so that they are in place before any other option is read.
Keys are the long option names, with dashes or underscores (``max-iterations``, ``max_iterations``, ``input``
for ``-i/--input``, ``prefix-sharing: false`` for ``--no-prefix-sharing``); each value is checked by the option's
own type, so a bad one is a usage error naming its key.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
import yaml
from typer.core import TyperCommand

from psr.core.paths import write_text

# typer bundles its own click (typer._click); its exceptions are the ones the commands raise
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

TRAINING_FILE = "psr_options.yaml"  # in a model directory, beside psr_config.json
# options under which a command's -o is not an output of the run (eval --compare / --summarize write none)
NOT_A_RUN = {"eval": ("compare", "summarize")}
# not recorded: a rerun from the written file resumes; add --overwrite to start afresh on purpose
NOT_RECORDED = ("overwrite",)


def _key(name: str) -> str:
    return name.lstrip("-").replace("_", "-")


def option_keys(command) -> dict[str, Any]:
    """Each accepted key (dashed) -> the click parameter: every long option name, an argument by its name."""
    keys = {}
    for p in command.params:
        if p.name == "config" or not p.expose_value:
            continue
        names = [o for o in p.opts if o.startswith("--")] if p.param_type_name == "option" else [p.name]
        for n in names:
            keys[_key(n)] = p
    return keys


def load(ctx, path: str) -> dict[str, Any]:
    """The file's values as a default_map (parameter name -> value), each checked by its option's type."""
    where = f"--config {path}"
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{where}: cannot read: {getattr(e, 'strerror', None) or e}", ctx) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{where}{line}: not YAML: {getattr(e, 'problem', None) or e}", ctx) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"{where}: must be a mapping of option names to values, got {type(data).__name__}", ctx
        ) from None
    keys = option_keys(ctx.command)
    values: dict[str, Any] = {}
    given: dict[str, str] = {}
    for key, value in data.items():
        param = keys.get(_key(str(key)))
        if param is None:
            raise UsageError(
                f"{where}: unknown key {key!r} (psr {ctx.command.name} has no option --{_key(str(key))})", ctx
            )
        if param.name in given:
            raise UsageError(f"{where}: keys {given[param.name]!r} and {key!r} set the same option", ctx)
        given[param.name] = str(key)
        if value is not None and (param.multiple or param.nargs == -1) and not isinstance(value, list):
            value = [value]  # `input: a.jsonl` for one input
        if value is not None:
            try:
                param.get_runtime_param().coerce(value, param=param, ctx=ctx)
            except Exception as e:  # typer's coercion raises click's BadParameter, TypeError or ValueError
                message = e.format_message() if hasattr(e, "format_message") else str(e)
                raise UsageError(f"{where}: key {key!r}: {' '.join(message.split())}", ctx) from None
        values[param.name] = value
    return values


def _read_config(ctx: typer.Context, value: str | None) -> None:
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), **load(ctx, value)}


ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE.yaml",
        is_eager=True,
        expose_value=False,
        callback=_read_config,
        help="Option defaults from a YAML file: keys are the long option names (max-iterations or max_iterations; "
        "a list for a repeatable option such as input; prefix-sharing: false); options on the command line override it. Every run "
        "writes its resolved options in this format beside its output (OUTPUT.config.yaml; a model directory: "
        f"DIR/{TRAINING_FILE}), so `--config` of that file repeats it.",
    ),
]


def _config_param():
    """The --config click parameter, built by typer from the annotation above like every other option."""
    probe = typer.Typer()

    @probe.command()
    def _probe(config: ConfigOption = None) -> None:
        pass

    return typer.main.get_command(probe).params[0]


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def resolved(command, params: dict[str, Any]) -> dict[str, Any]:
    """The options a run used (file + flags + defaults), keyed as --config reads them."""
    out = {}
    for key, p in option_keys(command).items():
        if p.name in params and p.name not in NOT_RECORDED and p.name not in {_p.name for _p in out.values()}:
            out[key] = p
    return {key: _plain(params[p.name]) for key, p in out.items()}


def written_path(command, params: dict[str, Any]) -> str | None:
    """Where a run's resolved options go: OUTPUT.config.yaml beside a file output, DIR/psr_options.yaml in an
    output directory; None for stdout, an output the run did not make, or a run that is not one."""
    if any(params.get(flag) for flag in NOT_A_RUN.get(command.name, ())):
        return None
    out = next((p for p in command.params if "-o" in getattr(p, "opts", ())), None)
    target = params.get(out.name) if out is not None else None
    if not target or target == "-":
        return None
    if os.path.isdir(target):
        path = os.path.join(target, TRAINING_FILE)
        model = os.path.join(target, "psr_config.json")  # a training stage's, written when training ends
        if os.path.exists(path) and os.path.exists(model) and os.path.getmtime(path) >= os.path.getmtime(model):
            return None  # a finished model left as it was: its options are those that trained it, not this rerun's
        return path
    return target + ".config.yaml" if os.path.isfile(target) else None


def write_resolved(command, params: dict[str, Any]) -> None:
    path = written_path(command, params)
    if path is None or os.environ.get("RANK", "0") != "0":  # several training processes: the main one writes
        return
    text = yaml.safe_dump(resolved(command, params), sort_keys=False, allow_unicode=True, width=1000)
    write_text(
        path,
        f"# psr {command.name}: the resolved options of a run; repeat it with "
        f"`psr {command.name} --config {os.path.basename(path)}` (add --overwrite to start afresh)\n" + text,
    )


class ConfigCommand(TyperCommand):
    """A typer command with --config, that writes its resolved options when its run has done its work."""

    def __init__(self, *args: Any, params: list | None = None, **kwargs: Any) -> None:
        super().__init__(*args, params=[*(params or []), _config_param()], **kwargs)

    def invoke(self, ctx):
        from psr.core.errors import InputError, PsrError

        try:
            result = super().invoke(ctx)
        except PsrError as e:
            if not isinstance(e, InputError):  # some records failed (exit 1): a rerun resumes the same run
                write_resolved(self, ctx.params)
            raise
        write_resolved(self, ctx.params)
        return result
