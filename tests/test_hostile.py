"""What a hostile but fair new user tries, over every stage where it applies: each case must end with its exit
code (2: bad usage or input), one line on stderr naming what is wrong, no traceback, and every file that was
there before unchanged (an output may at most have been created, empty).

The cases run ``psr.cli.main`` in this process (a subprocess per case would cost seconds each); two run the
real ``psr`` command, so that what the shell sees is tested too. The training commands' cases are in
tests/test_hostile_training.py."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from helpers import PSR, check_refused, run_psr, write_jsonl

PROBLEM = {
    "id": "world-0",
    "question": "Ann has 3 apples. Then she buys 2 more apples. How many apples does Ann have now?",
    "answer": "5",
}
INPUTS = {  # a valid input record of each stage
    "segment": {"id": "s1", "question": "What is 1 + 1?", "solution": "1 + 1 = 2. The answer is \\boxed{2}."},
    "annotate-eft": {
        "id": "p1",
        "question": "What is 1 + 1?",
        "previous_steps": [],
        "chosen": "1 + 1 = 2.",
        "rejected": "1 + 1 = 3.",
        "chosen_score": 0.9,
        "rejected_score": 0.1,
    },
    "search": PROBLEM,
    "mine-pairs": PROBLEM,
    "eval": PROBLEM,
    "grade": {"id": "g1", "output": "The answer is \\boxed{2}.", "answer": "2"},
}
OPTIONS = {
    "segment": ["--method", "rules"],
    "annotate-eft": ["--engine", "oracle"],
    "search": ["--engine", "oracle"],
    "mine-pairs": ["--engine", "oracle", "--prm", "{prm}"],
    "eval": ["--engine", "oracle"],
    "grade": [],
}
OTHER_OUTPUT = {
    "segment": "--rejects",
    "annotate-eft": "--test-output",
    "search": "--trajectories",
    "mine-pairs": "--stats",
    "eval": "--summary",
    "grade": "--summary",
}
GROUP_FIELD = {"annotate-eft": "id", "search": "problem_id", "mine-pairs": "problem_id"}  # grouped outputs
ENGINE_STAGES = ("segment", "annotate-eft", "search", "mine-pairs", "eval")


class Case:
    def __init__(self, tmp, stage: str):
        self.tmp, self.stage = tmp, stage
        self.input = write_jsonl(tmp / "in.jsonl", [INPUTS[stage]])
        self.output = str(tmp / "out.jsonl")
        prm = tmp / "prm"
        prm.mkdir()
        (prm / "config.json").write_text(json.dumps({"psr_prm": {"step_tag": " ки"}}))  # looks like a PRM
        self.options = [o.replace("{prm}", str(prm)) for o in OPTIONS[stage]]

    def argv(self, *extra, output: str | None = None) -> list[str]:
        return [self.stage, "-i", self.input, "-o", output or self.output, *self.options, *extra]


def _o_is_i(c):
    return c.argv(output=c.input), "is the same file as the input -i"


def _o_is_a_symlink_to_i(c):
    os.symlink(c.input, c.tmp / "link.jsonl")
    return c.argv(output=str(c.tmp / "link.jsonl")), "is the same file as the input -i"


def _o_is_a_hard_link_to_i(c):
    os.link(c.input, c.tmp / "hard.jsonl")
    return c.argv(output=str(c.tmp / "hard.jsonl")), "is the same file as the input -i"


def _o_is_a_directory(c):
    (c.tmp / "dir").mkdir()
    return c.argv(output=str(c.tmp / "dir")), "is a directory"


def _o_cannot_be_created(c):
    (c.tmp / "afile").write_text("x")
    return c.argv(output=str(c.tmp / "afile" / "out.jsonl")), "is a file, not a directory"


def _other_output_is_i(c):
    return c.argv(OTHER_OUTPUT[c.stage], c.input), f"{OTHER_OUTPUT[c.stage]} {c.input} is the same file as the input"


def _other_output_cannot_be_created(c):
    (c.tmp / "afile").write_text("x")
    return c.argv(OTHER_OUTPUT[c.stage], str(c.tmp / "afile" / "x.json")), "is a file, not a directory"


def _garbage_line_in_output(c):
    good = {"id": "old", GROUP_FIELD.get(c.stage, "id"): "old"}
    (c.tmp / "out.jsonl").write_text(json.dumps(good) + "\nnot json at all\n")
    if c.stage in GROUP_FIELD:
        (c.tmp / "out.jsonl.done").write_text('"old"\n')
    return c.argv(), "out.jsonl:2: existing output: this line is not a psr record"


def _garbage_line_in_done_file(c):
    (c.tmp / "out.jsonl").write_text("")
    (c.tmp / "out.jsonl.done").write_text('"a"\n{"oops": \n')
    return c.argv(), "out.jsonl.done:2: existing output: this line is not a finished key"


def _output_line_without_its_group_field(c):
    (c.tmp / "out.jsonl").write_text(json.dumps({"question": "q", "chosen": "a"}) + "\n")
    (c.tmp / "out.jsonl.done").write_text("")
    return c.argv(), f"out.jsonl:1: existing output: this line is not a psr record with '{GROUP_FIELD[c.stage]}'"


def _deeply_nested_input(c):
    (c.tmp / "in.jsonl").write_text('{"id": "n", "question": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    return c.argv(), "in.jsonl:1: JSON nested too deeply"


def _unknown_option(c):
    return c.argv("--frobnicate"), "No such option: --frobnicate"


def _limit_not_a_number(c):
    return c.argv("--limit", "abc"), "Invalid value for '--limit'"


def _input_without_a_value(c):
    return [c.stage, "-o", c.output, *c.options, "-i"], "Option '-i' requires an argument"


BAD_NUMBER = {
    "segment": ("--chunk-size", "0"),
    "annotate-eft": ("--chunk-size", "0"),
    "search": ("--width", "1"),
    "mine-pairs": ("--temperature", "-1"),
    "eval": ("--max-tokens", "0"),
    "grade": ("--timeout", "0"),
}


def _bad_number(c):
    option, value = BAD_NUMBER[c.stage]
    return c.argv(option, value), option


def _input_is_the_outputs_done_file(c):
    os.replace(c.input, c.output + ".done")
    c.input = c.output + ".done"
    return c.argv(), "is the same file as the input -i"


def _unknown_engine(c):
    return c.argv("--engine", "frob"), "Invalid value for '--engine'"


EVERY_STAGE = [
    _o_is_i,
    _o_is_a_symlink_to_i,
    _o_is_a_hard_link_to_i,
    _o_is_a_directory,
    _o_cannot_be_created,
    _other_output_is_i,
    _other_output_cannot_be_created,
    _garbage_line_in_output,
    _deeply_nested_input,
    _unknown_option,
    _limit_not_a_number,
    _input_without_a_value,
    _bad_number,
    _input_is_the_outputs_done_file,
]
TABLE = (
    [(s, k) for s in INPUTS for k in EVERY_STAGE]
    + [(s, k) for s in GROUP_FIELD for k in (_garbage_line_in_done_file, _output_line_without_its_group_field)]
    + [(s, _unknown_engine) for s in ENGINE_STAGES]
)


@pytest.mark.parametrize("stage,case", TABLE, ids=[f"{s}-{k.__name__.strip('_')}" for s, k in TABLE])
def test_hostile_case(stage, case, tmp_path, monkeypatch, capsys):
    c = Case(tmp_path, stage)
    argv, needle = case(c)
    check_refused(argv, needle, tmp_path, monkeypatch, capsys)


def test_single_hostile_cases(tmp_path, monkeypatch, capsys):
    (tmp_path / "a.bin").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    check_refused(
        ["eval", "--compare", str(tmp_path / "a.bin")],
        "a.bin: not a JSON summary: not valid UTF-8",
        tmp_path,
        monkeypatch,
        capsys,
    )
    (tmp_path / "world.txt").write_text("x")
    check_refused(["world", "-o", str(tmp_path / "world.txt")], "-o names a file", tmp_path, monkeypatch, capsys)
    check_refused(["frobnicate"], "No such command 'frobnicate'", tmp_path, monkeypatch, capsys)
    check_refused(
        ["search", "-i", "x", "--judge-engine", "frob"],
        "Invalid value for '--judge-engine'",
        tmp_path,
        monkeypatch,
        capsys,
    )
    check_refused(
        ["annotate-eft", "-i", "x", "--request-timeout", "0"],
        "--request-timeout: must be > 0",
        tmp_path,
        monkeypatch,
        capsys,
    )
    bench = write_jsonl(tmp_path / "b.jsonl", [PROBLEM])
    check_refused(
        ["eval", "-i", f"mybench={bench}", "-o", bench, "--engine", "oracle"],
        "is the same file as the input",
        tmp_path,
        monkeypatch,
        capsys,
    )  # a NAME=PATH input
    src = write_jsonl(tmp_path / "g.jsonl", [INPUTS["grade"]])
    check_refused(
        ["grade", "-i", src, "-o", str(tmp_path / "g_out.jsonl"), "--summary", str(tmp_path / "g_out.jsonl")],
        "-o",
        tmp_path,
        monkeypatch,
        capsys,
    )  # two outputs on one file


def test_mine_pairs_refuses_a_base_model_as_prm(tiny_model_dir, tmp_path, monkeypatch, capsys):
    src = write_jsonl(tmp_path / "p.jsonl", [PROBLEM])
    check_refused(
        ["mine-pairs", "-i", src, "-o", str(tmp_path / "o.jsonl"), "--engine", "oracle", "--prm", tiny_model_dir],
        "not a process reward model written by `psr train-prm`",
        tmp_path,
        monkeypatch,
        capsys,
    )


def test_a_truncated_model_file_is_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    src = write_jsonl(tmp_path / "q.jsonl", [PROBLEM])
    check_refused(
        ["eval", "-i", src, "-o", str(tmp_path / "o.jsonl"), "--model", str(model)],
        "cannot load it with transformers",
        tmp_path,
        monkeypatch,
        capsys,
    )
    ift = write_jsonl(tmp_path / "ift.jsonl", [{"id": "i", "question": "q", "steps": ["s"]}])
    check_refused(
        ["sft", "-i", ift, "-o", str(tmp_path / "m1"), "--model", str(model)],
        "cannot read a model's weights",
        tmp_path,
        monkeypatch,
        capsys,
    )


def test_the_real_command_exits_2_with_one_line(tmp_path):
    """The shell's view: bare `psr` shows the help and exits 2; a usage error is one line."""
    bare = subprocess.run(PSR, capture_output=True, text=True)
    assert bare.returncode == 2 and "Usage" in bare.stdout + bare.stderr and "Traceback" not in bare.stderr
    bad = subprocess.run([*PSR, "segment", "--limit", "abc"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert [ln for ln in bad.stderr.splitlines() if ln.strip()] == [
        "error: psr segment: Invalid value for '--limit': Input should be a valid integer, unable to parse string "
        "as an integer (see psr segment --help)"
    ]


def test_a_pipe_or_device_as_output_is_written_to_never_replaced(tmp_path, monkeypatch, capsys):
    """-o /dev/null --overwrite must not delete /dev/null, nor --summary /dev/null rename a file over it; a FIFO
    stands in for the device here."""
    import stat
    import threading

    def read_all(path, into):
        with open(path, "rb") as fh:
            into.append(fh.read())

    src = write_jsonl(tmp_path / "sol.jsonl", [INPUTS["segment"]])
    bench = write_jsonl(tmp_path / "bench.jsonl", [PROBLEM])
    for argv_of in (
        lambda pipe: ["segment", "--method", "rules", "-i", src, "-o", pipe, "--overwrite"],
        lambda pipe: [
            "eval",
            "--engine",
            "oracle",
            "-i",
            bench,
            "-o",
            str(tmp_path / "preds.jsonl"),
            "--summary",
            pipe,
            "--summary-md",
            str(tmp_path / "s.md"),
            "--overwrite",
        ],
    ):
        pipe = str(tmp_path / "pipe")
        os.mkfifo(pipe)
        got: list[bytes] = []
        reader = threading.Thread(target=read_all, args=(pipe, got), daemon=True)
        reader.start()
        rc, err = run_psr(argv_of(pipe), monkeypatch, capsys)
        reader.join(timeout=60)
        assert rc == 0, err
        assert stat.S_ISFIFO(os.stat(pipe).st_mode) and not os.path.exists(pipe + ".tmp")
        assert got and got[0].strip()  # what was written went through the pipe
        os.remove(pipe)
