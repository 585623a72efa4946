"""A ``psr paper`` recipe (psr/cli/paper.py): reading the file and its ``extends`` chain, the checks of its keys,
and launching one ``psr`` command of it, printed as a user would type it and logged to RUN/run.jsonl."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from typing import Any

import yaml

from psr.cli import run_log
from psr.core.errors import InputError

TRAINING = ("train-prm", "sft", "step-dpo")
KEYS = {
    "data",
    "data_paths",
    "run",
    "base_model",
    "policy_model",
    "accelerate_config",
    "env",
    "rounds",
    "new_questions",
    "round_options",
    "srlm",
    "judge_few_shot",
    "tts_models",
    "stages",
}


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``; the ``stages`` blocks merge key by key, every other key is replaced."""
    out = dict(base)
    for key, value in over.items():
        if key == "stages" and isinstance(value, dict):
            stages = dict(out.get("stages") or {})
            for name, block in value.items():
                stages[name] = {**(stages.get(name) or {}), **(block or {})}
            out["stages"] = stages
        else:
            out[key] = value
    return out


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as e:
        raise InputError(f"cannot read recipe {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a recipe is a mapping of keys to values")
    return data


def load_recipe(path: str, overrides: list[str] = ()) -> dict:
    """The recipe with its ``extends`` chain and ``data`` file resolved (paths relative to the file naming them)
    and the override files merged on top, in order."""
    recipe = _read(path)
    if recipe.get("extends"):
        parent = os.path.join(os.path.dirname(path), recipe.pop("extends"))
        recipe = _merge(load_recipe(parent), recipe)
    elif recipe.get("data"):
        recipe["data"] = os.path.join(os.path.dirname(path), recipe["data"])
    for over in overrides:
        recipe = _merge(recipe, _read(over))
    return recipe


class Runner:
    """A recipe's run directory and data file, and the launching of its commands (the stages are
    psr.cli.paper.Recipe's)."""

    def __init__(self, recipe: dict, dry_run: bool = False):
        self.r, self.dry_run = recipe, dry_run
        data_path = recipe.get("data")
        self.data = _read(data_path) if isinstance(data_path, str) else dict(data_path or {})
        self.data.update(recipe.get("data_paths") or {})  # an override file can point at other data
        unknown = sorted(set(recipe) - KEYS)
        if unknown:
            raise InputError(f"the recipe has an unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
        for key in ("run", "base_model"):
            if not recipe.get(key):
                raise InputError(f"the recipe sets no {key!r}")
        self.run = recipe["run"]
        self.rounds = int(recipe.get("rounds", 3))
        questions = self.data.get("questions") or []
        if len(questions) < self.rounds or len(recipe.get("new_questions") or []) < self.rounds:
            raise InputError(
                f"{self.rounds} rounds need {self.rounds} question files (data: questions) and "
                f"{self.rounds} sizes (new_questions)"
            )
        self.commands: list[list[str]] = []

    def p(self, *parts: str) -> str:
        return os.path.join(self.run, *parts)

    def d(self, key: str) -> str:
        value = self.data.get(key)
        if not value:
            raise InputError(f"the data file sets no {key!r}")
        return value.replace("{run}", self.run) if isinstance(value, str) else value

    def block(self, name: str) -> str:
        """RUN/configs/NAME.yaml: the recipe's block for NAME, what `psr COMMAND --config` reads."""
        values = self.r.get("stages", {}).get(name) or {}
        path = self.p("configs", f"{name}.yaml")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"# psr {name}: written by `psr paper` from its recipe\n")
            yaml.safe_dump(values, fh, sort_keys=False)
        return path

    def psr(self, command: str, block: str, *args: Any, done: str | None = None) -> None:
        """Run `psr COMMAND --config RUN/configs/BLOCK.yaml ARGS` (training stages through accelerate when the
        recipe names a config); skipped when the file ``done`` exists (a finished model's psr_config.json)."""
        args = [str(a) for a in args]
        config = self.block(block)
        accelerate = self.r.get("accelerate_config")
        if command in TRAINING and accelerate:
            shown = ["accelerate", "launch", "--config_file", accelerate, "-m", "psr.cli", command]
            argv = [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--config_file",
                accelerate,
                "-m",
                "psr.cli",
                command,
            ]
        else:
            shown, argv = ["psr", command], [sys.executable, "-m", "psr.cli", command]
        env = {str(k): str(v) for k, v in (self.r.get("env") or {}).items()}
        shown = [f"{k}={v}" for k, v in env.items()] + shown  # as a shell line sets them
        tail = ["--config", config, *args]
        self.commands.append([*shown, *tail])
        line = shlex.join([*shown, *tail])
        entry = {
            "stage": block,
            "command": line,
            "config": config,
            "output": run_log.option_value(args, "-o", "--output"),
        }
        if done and os.path.exists(done):
            print(f"skip (finished: {done}) $ {line}", file=sys.stderr, flush=True)
            if not self.dry_run:
                run_log.append(self.run, {**entry, "status": "skipped", **run_log.stage_facts(args)})
            return
        print("$ " + line, file=sys.stderr, flush=True)
        if self.dry_run:
            return
        start = time.monotonic()
        rc = subprocess.call([*argv, *tail], env={**os.environ, **env})
        run_log.append(
            self.run,
            {
                **entry,
                "status": "done" if rc == 0 else "failed",
                "exit_code": rc,
                "wall_s": round(time.monotonic() - start, 1),
                **run_log.stage_facts(args),
            },
        )
        if rc != 0:
            raise RecipeFailed(rc, f"paper: stage `{command}` failed with exit code {rc}: {shlex.join(shown + tail)}")


class RecipeFailed(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
