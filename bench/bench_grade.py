"""Grading: speed of `psr grade`, agreement with math-verify's cases, self-grading of reference solutions.

    .venv/bin/python bench/bench_grade.py [--shared ../shared] [--graders default,qwen,math-verify]

1. Speed: the 5000 MATH test problems self-graded, each reference solution (the model-like text)
   against its own gold, and against a perturbed gold (1 added to its first integer, or "+1"
   appended): wall seconds of the whole `psr grade` command (start-up included), items per second,
   accuracy, timeouts. Target (issue 21): < 60 s per command.
2. Agreement with the expected verdicts of math-verify's 273 test cases (../shared/peer).
3. The default grader on every benchmark file with reference solutions: the share of solutions
   graded correct against their own gold (each miss is an extraction failure; golds flagged
   `gold_issue` left out), and of perturbed golds graded correct (false positives).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def perturb(answer: str) -> str:
    m = re.search(r"\d+", answer)
    if m is None:
        return answer + "+1"
    return answer[: m.start()] + str(int(m.group()) + 1) + answer[m.end() :]


def _read(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _solved(path: str) -> list[dict]:
    return [r for r in _read(path) if r.get("solution") and r["answer"] and not r.get("gold_issue")]


def speed(bench: str, graders: list[str]) -> None:
    recs = _read(os.path.join(bench, "math_test.jsonl"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, change in (("self", lambda a: a), ("perturbed", perturb)):
            with open(os.path.join(tmp, f"{name}.jsonl"), "w", encoding="utf-8") as fh:
                for r in recs:
                    fh.write(
                        json.dumps(
                            {
                                "id": r["id"],
                                "question": r["question"],
                                "output": r["solution"],
                                "answer": change(r["answer"]),
                            }
                        )
                        + "\n"
                    )
        for grader in graders:
            for name in ("self", "perturbed"):
                out, summ = os.path.join(tmp, f"{grader}-{name}.out"), os.path.join(tmp, f"{grader}-{name}.json")
                cmd = [
                    sys.executable,
                    "-m",
                    "psr.cli",
                    "grade",
                    "-i",
                    os.path.join(tmp, f"{name}.jsonl"),
                    "-o",
                    out,
                    "--grader",
                    grader,
                    "--summary",
                    summ,
                    "--overwrite",
                ]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, env=dict(os.environ, PSR_QUIET="1"), stderr=subprocess.DEVNULL)
                dt = time.perf_counter() - t0
                with open(summ, encoding="utf-8") as fh:
                    s = json.load(fh)
                rows.append((grader, name, dt, len(recs) / dt, s["accuracy"], s["timeouts"]))
                print(f"{grader:12s} {name:9s} {dt:7.1f} s", file=sys.stderr, flush=True)
    print(f"\n1. psr grade on math_test.jsonl, reference solutions as outputs ({os.cpu_count()} CPUs), target < 60 s\n")
    print("| grader | gold | seconds | items/s | accuracy % | timeouts |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for grader, name, dt, rate, acc, tmo in rows:
        print(f"| {grader} | {name} | {dt:.1f} | {rate:.0f} | {acc:.2f} | {tmo} |")


def peer(shared: str, graders: list[str]) -> None:
    from psr.core.grading import grade_many

    path = os.path.join(shared, "peer", "math_verify_cases.jsonl")
    if not os.path.exists(path):
        print(f"\n2. {path} is not here: skipped")
        return
    cases = _read(path)
    print(f"\n2. Agreement with the expected verdicts of math-verify's {len(cases)} cases\n")
    print("| grader | agree | % | false positives | false negatives |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for grader in graders:
        got = grade_many([c["output"] for c in cases], [c["answer"] for c in cases], grader, timeout=30.0)
        fp = sum(g.correct and not c["expected"] for g, c in zip(got, cases, strict=True))
        fn = sum(c["expected"] and not g.correct for g, c in zip(got, cases, strict=True))
        n = len(cases) - fp - fn
        print(f"| {grader} | {n}/{len(cases)} | {100 * n / len(cases):.1f} | {fp} | {fn} |")


def self_grading(bench: str) -> None:
    from psr.core.grading import grade_many

    print("\n3. Default grader: reference solutions against their own gold, and against a perturbed gold\n")
    print("| file | solutions | graded correct % | perturbed gold graded correct |")
    print("| --- | ---: | ---: | ---: |")
    for name in sorted(os.listdir(bench)):
        if not name.endswith(".jsonl") or not (recs := _solved(os.path.join(bench, name))):
            continue
        outs, qs = [r["solution"] for r in recs], [r["question"] for r in recs]
        same = grade_many(outs, [r["answer"] for r in recs], "default", timeout=10.0, questions=qs)
        pert = grade_many(outs, [perturb(r["answer"]) for r in recs], "default", timeout=10.0, questions=qs)
        ok, fp = sum(g.correct for g in same), sum(g.correct for g in pert)
        print(f"| {name} | {len(recs)} | {100 * ok / len(recs):.2f} | {fp} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "shared"))
    ap.add_argument("--graders", default="default,qwen,math-verify")
    args = ap.parse_args()
    graders = args.graders.split(",")
    bench = os.path.join(args.shared, "benchmarks")
    speed(bench, graders)
    peer(args.shared, graders)
    self_grading(bench)


if __name__ == "__main__":
    main()
