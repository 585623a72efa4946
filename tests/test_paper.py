"""``psr paper`` (psr/cli/paper.py) and the recipes in configs/paper/: the dry run's commands, every stage block
accepted by its command's --config reader, bad recipes and failing stages; the slow tier runs the tiny recipe
end to end."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest
import yaml
from helpers import PSR
from typer.testing import CliRunner

from psr.cli import app
from psr.cli import paper as P

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "configs", "paper")
ENV = {**os.environ, "PSR_QUIET": "1", "COLUMNS": "200"}
BENCHMARKS = {"gsm8k", "math", "gaokao2023en", "olympiadbench", "aime2024", "amc2023"}


def dry_run(tmp_path, recipe: str, *overrides: str) -> tuple[P.Recipe, list[list[str]]]:
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the recipe's run directory is relative: its configs/ land in tmp_path
    try:
        r = P.run(os.path.join(RECIPES, recipe), list(overrides), dry_run=True)
    finally:
        os.chdir(cwd)
    return r, r.commands


def flag(cmd: list[str], name: str) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == name]


@pytest.mark.parametrize("size", ["7b", "72b"])
def test_the_dry_run_lists_every_stage_of_the_paper(tmp_path, size, capsys):
    r, cmds = dry_run(tmp_path, f"{size}.yaml")
    printed = [line[2:] for line in capsys.readouterr().err.splitlines() if line.startswith("$ ")]
    assert printed == [shlex.join(c) for c in cmds]  # each command printed exactly as run
    assert not os.path.exists(tmp_path / f"runs/paper-{size}/ift.jsonl")  # nothing ran
    stage = [c[c.index("psr.cli") + 1] if "psr.cli" in c else c[1] for c in cmds]
    order = [s for i, s in enumerate(stage) if s not in stage[:i]]
    assert order == ["segment", "train-prm", "mine-pairs", "annotate-eft", "sft", "search", "step-dpo", "eval"]
    for c, s in zip(cmds, stage, strict=True):  # training through accelerate, the rest plain psr
        assert (c[:2] == ["accelerate", "launch"]) == (s in P.TRAINING), c
    base = f"Qwen/Qwen2.5-Math-{size.upper()}"
    assert flag(cmds[stage.index("train-prm")], "--model") == [base]
    assert flag(cmds[stage.index("mine-pairs")], "--model") == [base + "-Instruct"]
    searches = [c for c, s in zip(cmds, stage, strict=True) if s == "search"]
    psr_rounds = [c for c in searches if "search-srlm" not in flag(c, "--config")[0]]
    assert [flag(c, "--limit") for c in psr_rounds] == [["400"], ["800"], ["1200"]]
    assert len({flag(c, "-i")[0] for c in psr_rounds}) == 3  # each round its own new questions
    assert len(searches) == 6  # and the SRLM baseline's three rounds on the same questions
    dpo = [flag(c, "-o")[0] for c, s in zip(cmds, stage, strict=True) if s == "step-dpo"]
    assert [os.path.basename(d) for d in dpo] == ["m2", "m3", "m4", "s2", "s3", "s4"]
    evals = [c for c, s in zip(cmds, stage, strict=True) if s == "eval" and "--compare" not in c]
    math = [c for c in evals if "eval.yaml" in flag(c, "--config")[0]]
    assert [flag(c, "--name")[0] for c in math] == ["M0", "M1", "M2", "M3", "M4", "S1", "S2", "S3", "S4"]
    for c in math:
        assert {i.split("=")[0] for i in flag(c, "-i")} == BENCHMARKS
        assert any(i.endswith("math_test.jsonl") for i in flag(c, "-i"))  # the full 5000-problem MATH
    judges = [c for c in evals if "eval-judge" in flag(c, "--config")[0]]
    m0_judge = next(c for c in judges if flag(c, "--name") == ["M0"])
    assert flag(m0_judge, "--few-shot") == ["3"]
    assert all("--few-shot" not in c for c in judges if c is not m0_judge)
    table1 = next(c for c in cmds if "--compare" in c)
    assert [os.path.basename(a) for a in table1 if a.endswith(".json") and "evals" in a][:5] == [
        "m0.json",
        "m1.json",
        "m2.json",
        "m3.json",
        "m4.json",
    ]
    # the blocks: the paper's settings, each read by its own command
    blocks = tmp_path / f"runs/paper-{size}/configs"
    ev = yaml.safe_load((blocks / "eval.yaml").read_text())
    assert ev["grader"] == "qwen"
    search = yaml.safe_load((blocks / "search.yaml").read_text())
    assert (search["width"], search["temperature"], search["top-p"], search["max-iterations"]) == (6, 0.5, 0.95, 20)
    if size == "72b":
        assert yaml.safe_load((blocks / "mine-pairs.yaml").read_text())["tensor-parallel-size"] == 8


def test_every_block_is_accepted_by_its_command(tmp_path):
    """`psr COMMAND --config block.yaml --help`: the config file is read (and checked) before --help exits."""
    commands = {
        "annotate-eft-scoring": "annotate-eft",
        "search-srlm": "search",
        "eval-judge": "eval",
        "eval-tts": "eval",
        "compare": "eval",
    }
    runner = CliRunner()
    seen = 0
    for recipe, overrides in [("7b.yaml", ()), ("72b.yaml", ()), ("7b.yaml", (os.path.join(RECIPES, "tiny.yaml"),))]:
        r, _ = dry_run(tmp_path, recipe, *overrides)
        for block in os.listdir(os.path.join(tmp_path, r.run, "configs")):
            name = block[: -len(".yaml")]
            res = runner.invoke(
                app, [commands.get(name, name), "--config", os.path.join(tmp_path, r.run, "configs", block), "--help"]
            )
            assert res.exit_code == 0, (recipe, block, res.output)
            seen += 1
    assert seen >= 3 * 11
    bad = tmp_path / "bad.yaml"
    bad.write_text("widht: 3\n")
    res = runner.invoke(app, ["search", "--config", str(bad), "--help"])
    assert res.exit_code == 2  # the same check fails on a key the command lacks


def test_a_bad_block_stops_before_any_stage_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stages": {"search": {"widht": 3}}}))
    res = subprocess.run(
        [*PSR, "paper", os.path.join(RECIPES, "7b.yaml"), "--override", str(bad)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
    )
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "widht" in res.stderr and "search" in res.stderr
    assert not os.path.exists(tmp_path / "runs/paper-7b/ift.jsonl")


def test_a_failing_stage_stops_the_recipe_with_its_exit_code(tmp_path):
    missing = tmp_path / "over.yaml"
    missing.write_text(
        yaml.safe_dump(
            {
                "run": str(tmp_path / "run"),
                "data_paths": {"numina": "nowhere.jsonl"},
                "stages": {"segment": {"engine": "oracle", "model": None}},
            }
        )
    )
    res = subprocess.run(
        [*PSR, "paper", os.path.join(RECIPES, "7b.yaml"), "--override", str(missing), "--until", "segment"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
    )
    assert res.returncode == 2, res.stderr
    assert "stage `segment` failed with exit code 2" in res.stderr.splitlines()[-1]
    assert "train-prm" not in res.stderr  # nothing after it ran or was printed


@pytest.mark.slow
def test_the_tiny_recipe_runs_end_to_end_and_resumes(tmp_path):
    over = tmp_path / "run.yaml"
    run = tmp_path / "run"
    over.write_text(yaml.safe_dump({"run": str(run)}))
    args = [
        *PSR,
        "paper",
        os.path.join(RECIPES, "7b.yaml"),
        "--override",
        os.path.join(RECIPES, "tiny.yaml"),
        "--override",
        str(over),
    ]
    res = subprocess.run(args, capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    for f in [
        "world/train.jsonl",
        "ift.jsonl",
        "prm/psr_config.json",
        "pairs.jsonl",
        "eft.jsonl",
        "eft_test.jsonl",
        "m1/psr_config.json",
        *[f"ppd_m{i}.jsonl" for i in (1, 2, 3)],
        *[f"m{i}/psr_config.json" for i in (2, 3, 4)],
        *[f"evals/m{i}.json" for i in range(5)],
        *[f"evals/judge_m{i}.json" for i in range(5)],
        "evals/tts_m4.json",
        "table1.md",
        "table3.md",
    ]:
        assert os.path.getsize(run / f) > 0, f
    table = json.loads((run / "table1.json").read_text())
    assert [row["name"] for row in table["rows"]] == ["M0", "M1", "M2", "M3", "M4"]
    assert json.loads((run / "evals/judge_m0.json").read_text()).get("few_shot") == 3
    # the run directory's log: every stage once, with its wall time, its counts and its resolved options
    from psr.cli import run_log

    log = run_log.read(str(run))
    stages = [e["stage"] for e in log]
    assert {
        "segment",
        "train-prm",
        "mine-pairs",
        "annotate-eft",
        "sft",
        "search",
        "step-dpo",
        "eval",
        "compare",
    } <= set(stages)
    assert all(e["status"] == "done" and e["exit_code"] == 0 and e["wall_s"] >= 0 for e in log)
    mine = next(e for e in log if e["stage"] == "mine-pairs")
    assert mine["records"] == mine["pairs"] == len((run / "pairs.jsonl").read_text().splitlines())
    assert mine["resolved_config"]["prm"] == str(run / "prm")
    m1 = next(e for e in log if e["stage"] == "eval" and e["output"].endswith("m1.jsonl"))
    assert m1["average"] == json.loads((run / "evals/m1.json").read_text())["average"]
    assert next(e for e in log if e["stage"] == "sft")["global_steps"] > 0
    assert "paper: the run so far" in res.stderr and "mine-pairs" in res.stderr.split("the run so far")[-1]
    # rerun: the finished models are skipped, every other stage resumes to nothing; no output changes
    outputs = {
        f: (run / f).read_bytes()
        for f in ["ift.jsonl", "pairs.jsonl", "ppd_m1.jsonl", "evals/m2.jsonl", "m4/psr_config.json"]
    }
    res = subprocess.run(args, capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stderr.count("skip (finished") == 6  # world, prm, m1..m4
    again = run_log.read(str(run))[len(log) :]
    assert sum(e["status"] == "skipped" for e in again) == 6 and all(e["status"] != "failed" for e in again)
    assert outputs == {f: (run / f).read_bytes() for f in outputs}
