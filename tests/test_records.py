import json
import os
import signal
import subprocess
import sys
import time

import pytest

from psr.core.errors import InputError
from psr.core.records import IOConfig, RecordWriter, parse_shard, read_records, select


def write(path, text: bytes | str):
    with open(path, "wb") as fh:
        fh.write(text if isinstance(text, bytes) else text.encode())
    return str(path)


GOOD = '{"id": "a", "question": "1+1?", "answer": "2"}\n{"id": "b", "question": "2+2?"}\n'


def test_reads_valid_problems(tmp_path):
    recs = read_records(write(tmp_path / "p.jsonl", GOOD + "\n"), "problem")
    assert [r["id"] for r in recs] == ["a", "b"]


@pytest.mark.parametrize(
    "content, line, needle",
    [
        (b"", 1, "empty"),
        (b"\n  \n", 1, "empty"),
        (GOOD.encode() + b'{"id": "c", "question": \n', 3, "invalid JSON"),
        (GOOD.encode() + b'{"id": "c"}\n', 3, "missing field 'question'"),
        (GOOD.encode() + b'{"id": 7, "question": "x"}\n', 3, "field 'id' must be a string"),
        (GOOD.encode() + b'{"id": "a", "question": "x"}\n', 3, "duplicate id 'a'"),
        (GOOD.encode() + b'{"id": "c", "question": "   "}\n', 3, "field 'question' is empty"),
        (GOOD.encode() + b'{"id": "c", "question": "caf\xe9"}\n', 3, "not valid UTF-8"),
        (GOOD.encode() + b'{"id": "c", "quest', 3, "torn"),
        (b"[1, 2]\n", 1, "expected a JSON object"),
    ],
    ids=[
        "empty",
        "blank",
        "invalid-json",
        "missing-field",
        "wrong-type",
        "duplicate-id",
        "empty-question",
        "non-utf8",
        "torn-last-line",
        "not-object",
    ],
)
def test_bad_input_names_file_and_line(tmp_path, content, line, needle):
    path = write(tmp_path / "bad.jsonl", content)
    with pytest.raises(InputError) as e:
        read_records(path, "problem")
    assert str(e.value).startswith(f"{path}:{line}: ")
    assert needle in str(e.value)


def test_duplicate_ids_across_files(tmp_path):
    a = write(tmp_path / "a.jsonl", GOOD)
    b = write(tmp_path / "b.jsonl", '{"id": "b", "question": "again"}\n')
    with pytest.raises(InputError, match=r"b\.jsonl:1: duplicate id 'b' \(first at .*a\.jsonl:2\)"):
        read_records([a, b], "problem")


def test_type_checks_of_other_contracts(tmp_path):
    p = write(
        tmp_path / "ppd.jsonl",
        json.dumps(
            {"id": "x", "question": "q", "previous_steps": ["s"], "chosen": "c", "rejected": "r", "is_final": "yes"}
        )
        + "\n",
    )
    with pytest.raises(InputError, match="field 'is_final' must be a boolean"):
        read_records(p, "ppd")
    p = write(tmp_path / "prm.jsonl", json.dumps({"prompt": "q", "completions": ["a", "b"], "labels": [True]}) + "\n")
    with pytest.raises(InputError, match="differ in length"):
        read_records(p, "prm")
    p = write(
        tmp_path / "eft.jsonl",
        json.dumps(
            {
                "id": "x",
                "question": "q",
                "previous_steps": [],
                "step_a": "a",
                "step_b": "b",
                "judgment": "j [[A]]",
                "label": "C",
            }
        )
        + "\n",
    )
    with pytest.raises(InputError, match="'label' must be"):
        read_records(p, "eft")


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_in_order(n):
    recs = [{"id": str(i)} for i in range(23)]
    parts = [select(recs, (k, n)) for k in range(n)]
    assert sum(parts, []) == recs
    assert all(abs(len(p) - 23 / n) < 1 for p in parts)


def test_shard_and_limit_validation():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "x", "1/0", "1/2/3"):
        with pytest.raises(InputError):
            parse_shard(bad)
    assert select([{"id": "1"}, {"id": "2"}, {"id": "3"}], (0, 1), 2) == [{"id": "1"}, {"id": "2"}]


def test_resume_skips_done_ids_and_overwrite_starts_afresh(tmp_path):
    src = write(tmp_path / "in.jsonl", GOOD)
    out = str(tmp_path / "out.jsonl")
    with RecordWriter(out) as w:
        w.write({"id": "a", "x": 1})
    io = IOConfig(inputs=[src], output=out)
    with RecordWriter(out) as w:
        assert [r["id"] for r in io.todo("problem", w)] == ["b"]
    with RecordWriter(out, overwrite=True) as w:
        assert [r["id"] for r in io.todo("problem", w)] == ["a", "b"]
    assert open(out).read() == ""


def test_torn_tail_is_cut_on_reopen(tmp_path):
    out = write(tmp_path / "out.jsonl", '{"id": "a"}\n{"id": "b"}\n{"id": "c", "tex')
    with RecordWriter(out) as w:
        assert w.done == {"a", "b"}
        w.write({"id": "c"})
    assert [json.loads(x)["id"] for x in open(out)] == ["a", "b", "c"]


def test_groups_of_unfinished_work_are_dropped(tmp_path):
    out = str(tmp_path / "pairs.jsonl")
    with RecordWriter(out, group_field="problem_id") as w:
        w.write_group("p1", [{"id": "p1-1", "problem_id": "p1"}, {"id": "p1-2", "problem_id": "p1"}])
        w.write_group("p2", [])
    # A crash after p3's records but before its completion mark.
    with open(out, "a") as fh:
        fh.write('{"id": "p3-1", "problem_id": "p3"}\n')
    with RecordWriter(out, group_field="problem_id") as w:
        assert w.done == {"p1", "p2"}
    assert [json.loads(x)["id"] for x in open(out)] == ["p1-1", "p1-2"]


WRITER = r"""
import sys, time
from psr.core.records import IOConfig, RecordWriter
out = sys.argv[1]
with RecordWriter(out) as w:
    todo = IOConfig(inputs=[sys.argv[2]], output=out).todo("problem", w)
    for r in todo:
        w.write({"id": r["id"], "payload": "x" * 2000})
        time.sleep(0.002)
"""


def test_kill_9_mid_write_loses_and_duplicates_nothing(tmp_path):
    n = 400
    src = write(tmp_path / "in.jsonl", "".join(json.dumps({"id": f"q{i}", "question": "?"}) + "\n" for i in range(n)))
    out = str(tmp_path / "out.jsonl")
    env = {**os.environ, "PSR_QUIET": "1"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, out, src], env=env)
    deadline = time.time() + 60
    while (not os.path.exists(out) or os.path.getsize(out) < 20_000) and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = sum(1 for _ in open(out, "rb"))
    assert 0 < partial < n, "the kill should land mid-run"
    subprocess.run([sys.executable, "-c", WRITER, out, src], env=env, check=True)
    ids = [json.loads(x)["id"] for x in open(out)]
    assert sorted(ids) == sorted(f"q{i}" for i in range(n))  # 0 lost, 0 duplicated
