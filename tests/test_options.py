"""Options declared once: a config dataclass's fields carry flag, help and default (psr.core.options.option), and
psr.cli.options.dataclass_options builds the Typer options from them. The CLI cases run the real ``psr`` command."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess

import pytest
import yaml
from helpers import PSR, read_jsonl

from psr.cli.options import dataclass_options
from psr.core.options import option
from psr.core.records import IOConfig
from psr.engines.base import EngineConfig
from psr.search import MCTSConfig, SearchConfig
from psr.stages.annotate_eft import AnnotateConfig
from psr.stages.eval import EvalConfig
from psr.stages.grade import GradeConfig
from psr.stages.segment import SegmentConfig

ENV = {**os.environ, "PSR_QUIET": "1", "COLUMNS": "250"}


def psr(*args):
    return subprocess.run([*PSR, *map(str, args)], capture_output=True, text=True, env=ENV)


def declared(cls):
    return [f for f in dataclasses.fields(cls) if "flags" in f.metadata]


def test_the_group_builds_the_dataclass_from_its_declared_fields_only():
    build = dataclass_options(SearchConfig)
    import inspect

    params = inspect.signature(build).parameters
    assert list(params) == [f.name for f in declared(SearchConfig)] and "seed" not in params
    assert all(params[f.name].default == f.default for f in declared(SearchConfig))
    cfg = build(**{**{n: p.default for n, p in params.items()}, "width": 3, "mode": "srlm"})
    assert cfg == SearchConfig(width=3, mode="srlm")
    assert "width" not in inspect.signature(dataclass_options(SearchConfig, omit=("width",))).parameters
    with pytest.raises(ValueError, match="long flag first"):
        option(1, "-w", help="x")


def test_a_field_whose_name_a_shared_group_takes_gets_its_own_parameter_name():
    import inspect

    build = dataclass_options(SegmentConfig)
    params = inspect.signature(build).parameters
    assert "content_retries" in params and "max_retries" not in params  # the engine group's --max-retries
    cfg = build(**{**{n: p.default for n, p in params.items()}, "content_retries": 5})
    assert cfg == SegmentConfig(max_retries=5)


def test_content_retries_and_request_retries_are_two_options(tmp_path):
    """segment's --content-retries fills SegmentConfig.max_retries, the engine group's --max-retries the engine's:
    the resolved options a run writes keep them apart."""
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "p1", "question": "q?", "solution": "One. Two. \\boxed{2}"}) + "\n")
    out = tmp_path / "ift.jsonl"
    res = psr("segment", "-i", src, "-o", out, "--method", "rules", "--content-retries", "5", "--max-retries", "1")
    assert res.returncode == 0, res.stderr
    written = yaml.safe_load((tmp_path / "ift.jsonl.config.yaml").read_text())
    assert written["content-retries"] == 5 and written["max-retries"] == 1, written


@pytest.mark.parametrize(
    "command, cls",
    [
        ("search", SearchConfig),
        ("mine-pairs", MCTSConfig),
        ("eval", EvalConfig),
        ("segment", SegmentConfig),
        ("annotate-eft", AnnotateConfig),
        ("grade", GradeConfig),
        ("grade", IOConfig),
        ("mine-pairs", IOConfig),
        ("search", IOConfig),
        ("search", EngineConfig),
        ("eval", EngineConfig),
    ],
)
def test_help_lists_every_declared_field_with_its_flags_help_and_default(command, cls):
    res = psr(command, "--help")
    assert res.returncode == 0, res.stderr
    lines = {line.split()[1].split(",")[0]: line for line in res.stdout.splitlines() if line.startswith("│ --")}
    for f in declared(cls):
        flags = [g for flag in f.metadata["flags"] for g in flag.split("/")]  # --x/--no-x: two flags on one line
        line = lines[flags[0]]
        assert all(flag in line for flag in flags[1:]), (flags, line)
        assert f.metadata["help"].split()[0] in line  # the help starts on the option's own line
        # every option is shown with its default except a bool flag (off) and one without a default (None)
        if f.default not in (None, False) and len(flags) == len(f.metadata["flags"]):
            # (a --x/--no-x flag shows the flag that is on as its default)
            text = res.stdout[res.stdout.index(line) :]
            shown = text[: text.index("│ --", 3)] if "│ --" in text[3:] else text
            assert f"[default: {f.default}]" in " ".join(shown.replace("│", " ").split()), (f.name, shown)


@pytest.mark.parametrize(
    "args, flag",
    [
        (("search", "--mode", "beam"), "'--mode'"),
        (("eval", "--task", "poetry"), "'--task'"),
        (("eval", "--prompt", "cot"), "'--prompt'"),
        (("grade", "--grader", "exact"), "'--grader'"),
        (("search", "--engine", "frob"), "'--engine'"),
    ],
)
def test_a_typed_choice_is_rejected_by_the_command_line_with_exit_2(tmp_path, args, flag):
    res = psr(*args, "-i", tmp_path / "missing.jsonl", "-o", tmp_path / "out.jsonl")
    assert res.returncode == 2 and flag in res.stderr and "is not one of" in res.stderr, res.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_config_files_set_the_declared_options_and_flags_override_them(tmp_path):
    from psr.world.generator import generate_problems

    probs = tmp_path / "world.jsonl"
    probs.write_text(
        "".join(
            json.dumps({k: p[k] for k in ("id", "question", "answer")}) + "\n" for p in generate_problems(3, seed=3)
        )
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "input": [str(probs)],
                "engine": "oracle",
                "width": 5,
                "max_iterations": 7,
                "judge-orders": 2,
                "working-set": 2,
                "tts": True,
            }
        )
    )
    out = tmp_path / "answers.jsonl"
    res = psr("search", "--config", cfg, "-o", out, "--width", "3")
    assert res.returncode == 0, res.stderr
    written = yaml.safe_load((tmp_path / "answers.jsonl.config.yaml").read_text())
    assert written["width"] == 3 and written["max-iterations"] == 7 and written["judge-orders"] == 2
    assert written["tts"] is True and written["mode"] == "psr" and written["engine"] == "oracle"
    trajs = read_jsonl(out)
    # tts trajectories (no pairs); 3 candidates judged in both orders: 6 judge calls a round
    assert len(trajs) == 3 and not any("pairs" in t for t in trajs)
    assert all(t["judge_calls"] <= 6 * t["iterations"] for t in trajs)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"mode": "beam"}))
    res = psr("search", "--config", bad, "-i", probs, "-o", tmp_path / "o2.jsonl")
    assert res.returncode == 2 and "key 'mode'" in res.stderr and "'beam' is not one of" in res.stderr, res.stderr


def test_the_shared_groups_check_their_values_in_the_dataclass():
    from psr.core.errors import InputError, OptionError

    with pytest.raises(OptionError, match="Invalid value for --request-timeout: must be > 0"):
        EngineConfig(timeout=0)
    with pytest.raises(OptionError, match="--concurrency and --batch-size must be >= 1"):
        EngineConfig(batch_size=0)
    with pytest.raises(InputError, match="--workers must be >= 1"):
        GradeConfig(workers=0)
    assert IOConfig().inputs == ["-"] and IOConfig(inputs=None).inputs == ["-"]  # no -i: stdin
