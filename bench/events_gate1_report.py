"""Print the numbers of bench/events_gate1.sh runs: M1 with its interval and errors by kind, M1's judge gate
(accuracy over records, both orders, and by the right step's position), and O2 - M1 per seed and pooled, with
95% intervals (paired over problems; over seeds when there are several).

    .venv/bin/python bench/events_gate1_report.py runs/events-seed0 runs/events-seed1
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from demo_seeds import T975, m1_errors, paired_gain, world_correct  # noqa: E402

from psr.core.stats import wilson  # noqa: E402


def judge_gate(run: str) -> str:
    recs: dict[str, dict] = {}
    for line in open(os.path.join(run, "evals", "judge_m1.jsonl")):
        r = json.loads(line)
        recs.setdefault(r["id"], r)  # one record per id, whatever a concurrent rerun appended
    at = {"A": [], "B": []}
    for r in recs.values():
        at[r["label"]].append(bool(r["correct"]))
        at["B" if r["label"] == "A" else "A"].append(bool(r["correct_swapped"]))
    n = len(recs)
    acc = 100 * (sum(at["A"]) + sum(at["B"])) / (2 * n)
    lo, hi = wilson(acc / 100 * n, n)
    return (
        f"M1 judge {acc:.1f}% (95% CI {lo:.1f}-{hi:.1f}, {n} records, both orders); right step as A "
        f"{100 * statistics.mean(at['A']):.1f}%, as B {100 * statistics.mean(at['B']):.1f}%"
    )


def main(runs: list[str]) -> None:
    gains: dict[str, list[tuple[float, list[int]]]] = {}
    for run in runs:
        m1 = world_correct(os.path.join(run, "evals", "m1.jsonl"))
        lo, hi = wilson(sum(m1.values()), len(m1))
        print(f"{run}: M1 {100 * sum(m1.values()) / len(m1):.1f}% (95% CI {lo:.1f}-{hi:.1f}, {len(m1)} problems)")
        print(f"  M1's wrong solutions by first error: {m1_errors(run)}")
        print(f"  {judge_gate(run)}")
        for name in sorted(
            f[:-6] for f in os.listdir(os.path.join(run, "evals")) if f.startswith("o2-lr") and f.endswith(".jsonl")
        ):
            o2 = world_correct(os.path.join(run, "evals", f"{name}.jsonl"))
            d = [int(o2[i]) - int(m1[i]) for i in sorted(set(o2) & set(m1))]
            g, glo, ghi = paired_gain(d)
            print(
                f"  {name}: {100 * sum(o2.values()) / len(o2):.1f}%, O2 - M1 {g:+.1f} (95% CI {glo:+.1f} to "
                f"{ghi:+.1f}; fixed {d.count(1)}, broken {d.count(-1)})"
            )
            gains.setdefault(name, []).append((g, d))
    for name, xs in gains.items():
        g, lo, hi = paired_gain([x for _, d in xs for x in d])
        text = f"pooled {name}: O2 - M1 {g:+.1f} (95% CI over problems {lo:+.1f} to {hi:+.1f})"
        if len(xs) > 1:
            per = [x for x, _ in xs]
            m, h = statistics.mean(per), T975[len(per) - 1] * statistics.stdev(per) / math.sqrt(len(per))
            text += f", over seeds {m:+.1f} ({m - h:+.1f} to {m + h:+.1f})"
        print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
