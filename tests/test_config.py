"""--config FILE.yaml on every command, and the resolved options a run writes beside its output
(psr/cli/config.py). The exit codes are what the shell sees: those cases run the real ``psr`` command."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml
from helpers import PSR, read_jsonl, write_jsonl

from psr.cli import ORDER, app
from psr.cli.config import option_keys

ENV = {**os.environ, "PSR_QUIET": "1", "COLUMNS": "200"}
SOLUTIONS = [
    {
        "id": f"s{i}",
        "question": f"What is {i} + 1?",
        "solution": f"{i} + 1 = {i + 1}. So the sum is {i + 1}. The answer is \\boxed{{{i + 1}}}.",
    }
    for i in range(4)
]


def psr(*args, cwd=None):
    return subprocess.run([*PSR, *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd)


def config(path, values: dict) -> str:
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_every_command_shows_config_in_help():
    for name in ORDER:
        res = psr(name, "--help")
        assert res.returncode == 0, (name, res.stderr)
        assert "--config" in res.stdout and "FILE.yaml" in res.stdout, name


def test_file_values_and_flags_that_override_them(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", SOLUTIONS)
    cfg = config(tmp_path / "c.yaml", {"input": data, "method": "rules", "limit": 3, "box-answer": False})
    out = tmp_path / "out.jsonl"
    res = psr("segment", "--config", cfg, "-o", out, "--limit", "2")
    assert res.returncode == 0, res.stderr
    assert [r["id"] for r in read_jsonl(out)] == ["s0", "s1"]  # --limit 2 beat the file's 3
    written = yaml.safe_load((tmp_path / "out.jsonl.config.yaml").read_text())
    assert written["limit"] == 2 and written["method"] == "rules" and written["box-answer"] is False
    assert written["input"] == [data] and written["output"] == str(out)


def test_dashes_and_underscores_both_name_an_option(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", SOLUTIONS)
    for i, key in enumerate(("content-retries", "content_retries")):
        cfg = config(tmp_path / f"c{i}.yaml", {"input": [data], "method": "rules", key: 5, "box_answer": True})
        out = tmp_path / f"out{i}.jsonl"
        assert psr("segment", "--config", cfg, "-o", out).returncode == 0
        assert yaml.safe_load((tmp_path / f"out{i}.jsonl.config.yaml").read_text())["content-retries"] == 5


def test_a_repeatable_option_from_the_file_is_replaced_by_the_command_line(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", SOLUTIONS[:2])
    b = write_jsonl(tmp_path / "b.jsonl", SOLUTIONS[2:])
    cfg = config(tmp_path / "c.yaml", {"input": [a, b], "method": "rules"})
    both, only_b = tmp_path / "both.jsonl", tmp_path / "only_b.jsonl"
    assert psr("segment", "--config", cfg, "-o", both).returncode == 0
    assert [r["id"] for r in read_jsonl(both)] == ["s0", "s1", "s2", "s3"]
    assert psr("segment", "--config", cfg, "-o", only_b, "-i", b).returncode == 0
    assert [r["id"] for r in read_jsonl(only_b)] == ["s2", "s3"]  # not appended to the file's list


@pytest.mark.parametrize(
    "values, words",
    [
        ({"method": "rules", "no-such-option": 1}, ["unknown key 'no-such-option'", "c.yaml"]),
        ({"chunk-size": "many"}, ["key 'chunk-size'", "integer"]),
        ({"engine": "gpt"}, ["key 'engine'", "'gpt' is not one of"]),
        ({"box-answer": "perhaps"}, ["key 'box-answer'", "boolean"]),
        ({"max-tokens": 5, "max_tokens": 6}, ["'max-tokens' and 'max_tokens' set the same option"]),
        (["a", "list"], ["must be a mapping"]),
    ],
)
def test_bad_files_are_one_line_naming_the_key(tmp_path, values, words):
    cfg = config(tmp_path / "c.yaml", values)
    res = psr("segment", "--config", cfg, "-i", tmp_path / "missing.jsonl", "-o", tmp_path / "out.jsonl")
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in res.stderr, (w, res.stderr)
    assert not (tmp_path / "out.jsonl").exists()


def test_unreadable_and_broken_files(tmp_path):
    res = psr("grade", "--config", tmp_path / "nope.yaml")
    assert res.returncode == 2 and "nope.yaml: cannot read" in res.stderr
    (tmp_path / "broken.yaml").write_text("width: [1, 2\n")
    res = psr("search", "--config", tmp_path / "broken.yaml")
    assert res.returncode == 2 and "broken.yaml:2: not YAML" in res.stderr and "Traceback" not in res.stderr


def test_the_written_config_repeats_the_run(tmp_path):
    """The round trip: `psr CMD --config OUTPUT.config.yaml` alone makes the same output again."""
    data = write_jsonl(tmp_path / "in.jsonl", SOLUTIONS)
    res = psr(
        "segment", "-i", data, "-o", "out.jsonl", "--method", "rules", "--no-box-answer", "--shard", "0/2", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    first = (tmp_path / "out.jsonl").read_bytes()
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["s0", "s1"]
    written = tmp_path / "out.jsonl.config.yaml"
    assert "overwrite" not in yaml.safe_load(written.read_text())  # a rerun resumes, never deletes
    os.remove(tmp_path / "out.jsonl")
    res = psr("segment", "--config", "out.jsonl.config.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.jsonl").read_bytes() == first


def test_no_config_for_stdout_or_a_refused_run(tmp_path):
    data = write_jsonl(tmp_path / "in.jsonl", SOLUTIONS)
    res = psr("segment", "-i", data, "--method", "rules", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.count("\n") == 4
    assert psr("segment", "-i", data, "-o", data, "--method", "rules").returncode == 2  # -o is -i
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl"]


def test_keys_are_the_long_option_names():
    from typer.main import get_command

    commands = get_command(app).commands
    keys = option_keys(commands["search"])
    assert {"input", "output", "max-iterations", "prefix-sharing", "judge-engine", "api-key-env"} <= set(keys)
    assert "config" not in keys and "inputs" not in keys
    assert {"lr", "learning-rate"} <= set(option_keys(commands["sft"]))
    assert "summaries" in option_keys(commands["eval"])  # eval --compare's arguments


@pytest.mark.usefixtures("one_torch_thread")
def test_a_training_run_writes_its_options_into_the_model_directory(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    ift = write_jsonl(
        tmp_path / "ift.jsonl",
        [{"id": "i0", "question": "What is 1 + 1?", "steps": ["1 + 1 = 2.", "The answer is \\boxed{2}."]}],
    )
    cfg = config(
        tmp_path / "c.yaml",
        {"input": [ift], "model": tiny_model_dir, "max-steps": 1, "batch-size": 1, "learning_rate": 1e-4},
    )
    model = tmp_path / "m1"
    res = CliRunner().invoke(app, ["sft", "--config", cfg, "-o", str(model)])
    assert res.exit_code == 0, res.output
    options = yaml.safe_load((model / "psr_options.yaml").read_text())
    assert options["lr"] == 1e-4 and options["max-steps"] == 1 and options["output"] == str(model)
    assert options["input"] == [ift] and (model / "psr_config.json").exists()
    again = CliRunner().invoke(app, ["sft", "--config", cfg, "-o", str(model), "--lr", "0.5"])
    assert again.exit_code == 0, again.output  # a finished model is left as it is, and so are its options
    assert yaml.safe_load((model / "psr_options.yaml").read_text()) == options


def test_psr_demo_says_what_it_writes_and_refuses_a_missing_base_model(tmp_path):
    helped = " ".join(psr("demo", "--help").stdout.split())
    for words in (
        "world/",
        "ift.jsonl",
        "m1/",
        "evals/",
        "accuracy.md",
        "Rerunning resumes",
        "--world",
        "--distractors",
        "--other-first",
        "lookup-first",
    ):
        assert words in helped, words
    from psr.cli.demo import JUDGE_STYLES
    from psr.world.oracle import JUDGE_STYLES as ORACLE_STYLES

    assert JUDGE_STYLES == ORACLE_STYLES  # the CLI lists them without importing the world at startup
    res = psr("demo", "-o", tmp_path / "run", "--m0", tmp_path / "no_m0", "--size", "ci")
    assert res.returncode == 2 and "no base model at" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_search_with_engine_options_from_the_file_repeats_from_what_it_wrote(tmp_path):
    from psr.world.generator import generate_problems

    write_jsonl(tmp_path / "q.jsonl", generate_problems(3, seed=1, split="test"))
    cfg = config(
        tmp_path / "c.yaml",
        {
            "input": ["q.jsonl"],
            "engine": "oracle",
            "width": 2,
            "max_iterations": 6,
            "trajectories": "traj.jsonl",
            "seed": 3,
        },
    )
    assert psr("search", "--config", cfg, "-o", "ppd.jsonl", "--temperature", "0.9", cwd=tmp_path).returncode == 0
    written = yaml.safe_load((tmp_path / "ppd.jsonl.config.yaml").read_text())
    assert (written["engine"], written["width"], written["max-iterations"], written["temperature"]) == (
        "oracle",
        2,
        6,
        0.9,
    )
    first = read_jsonl(tmp_path / "traj.jsonl")
    assert len(first) == 3
    for name in ("ppd.jsonl", "ppd.jsonl.done", "traj.jsonl"):
        if (tmp_path / name).exists():
            os.remove(tmp_path / name)
    res = psr("search", "--config", "ppd.jsonl.config.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert read_jsonl(tmp_path / "traj.jsonl") == first
