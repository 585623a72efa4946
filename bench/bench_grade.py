"""Time `psr grade` on the 5000 MATH test golds, graded against themselves and a perturbed copy.

    .venv/bin/python bench/bench_grade.py [--benchmarks ../shared/benchmarks] [--graders default,qwen,math-verify]

Each gold is wrapped in a model-like output ("... So the answer is $\\boxed{GOLD}$."); the perturbed
copy adds 1 to the first integer in the gold (or appends "+1"). Prints one row per grader and copy:
wall seconds of the whole command (start-up included), items per second, accuracy, timeouts.
Target (issue 2): <= 60 s per command on 2 cores.
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


def perturb(answer: str) -> str:
    m = re.search(r"\d+", answer)
    if m is None:
        return answer + "+1"
    return answer[:m.start()] + str(int(m.group()) + 1) + answer[m.end():]


def write_copy(src: str, dst: str, change) -> int:
    n = 0
    with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
        for line in fin:
            if not line.strip():
                continue
            r = json.loads(line)
            out = f"Step 1: Work it out.\nStep 2: So the answer is $\\boxed{{{change(r['answer'])}}}$."
            fout.write(json.dumps({"id": r["id"], "output": out, "answer": r["answer"]}) + "\n")
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmarks", default=os.path.join(HERE, "..", "..", "shared", "benchmarks"))
    ap.add_argument("--graders", default="default,qwen,math-verify")
    args = ap.parse_args()
    src = os.path.join(args.benchmarks, "math_test.jsonl")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        copies = {"self": lambda a: a, "perturbed": perturb}
        n = {}
        for name, change in copies.items():
            n[name] = write_copy(src, os.path.join(tmp, f"{name}.jsonl"), change)
        for grader in args.graders.split(","):
            for name in copies:
                out, summ = os.path.join(tmp, f"{grader}-{name}.out"), os.path.join(tmp, f"{grader}-{name}.json")
                cmd = [sys.executable, "-m", "psr.cli", "grade", "-i", os.path.join(tmp, f"{name}.jsonl"), "-o", out,
                       "--grader", grader, "--summary", summ, "--overwrite"]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, env=dict(os.environ, PSR_QUIET="1"), stderr=subprocess.DEVNULL)
                dt = time.perf_counter() - t0
                with open(summ, encoding="utf-8") as fh:
                    s = json.load(fh)
                rows.append((grader, name, dt, n[name] / dt, s["accuracy"], s["timeouts"]))
                print(f"{grader:12s} {name:9s} {dt:7.1f} s", file=sys.stderr, flush=True)
    print(f"\npsr grade on {os.path.basename(src)} ({os.cpu_count()} CPUs), target <= 60 s per command\n")
    print("| grader | copy | seconds | items/s | accuracy % | timeouts |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for grader, name, dt, rate, acc, tmo in rows:
        print(f"| {grader} | {name} | {dt:.1f} | {rate:.0f} | {acc:.2f} | {tmo} |")


if __name__ == "__main__":
    main()
