"""The dose-response table of bench/events_dose.sh points: for each difficulty (events N, distractors D), M1's
held-out accuracy (the headroom is what it gets wrong), the pairs one oracle-judged round made, and O2 - M1 per
seed and pooled per problem with its 95% interval; the seeds' own D = 2 runs (their O2) are the default point.

    .venv/bin/python bench/events_dose_report.py runs/events-seed0 runs/events-seed1
"""

from __future__ import annotations

import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from demo_seeds import paired_gain, world_correct  # noqa: E402


def point(m1: str, o2: str, ppd: str) -> tuple[float, list[int], int] | None:
    if not (os.path.exists(m1) and os.path.exists(o2)):
        return None
    a, b = world_correct(m1), world_correct(o2)
    ids = sorted(set(a) & set(b))
    pairs = sum(1 for _ in open(ppd)) if os.path.exists(ppd) else 0
    return 100 * sum(a[i] for i in ids) / len(ids), [int(b[i]) - int(a[i]) for i in ids], pairs


def main(runs: list[str]) -> None:
    rows: dict[tuple[int, int], list] = {}
    for run in runs:
        p = point(
            os.path.join(run, "evals", "m1.jsonl"),
            os.path.join(run, "evals", "o2.jsonl"),
            os.path.join(run, "ppd_m1_oracle.jsonl"),
        )
        if p:
            rows.setdefault((4, 2), []).append((run, *p))
        for w in sorted(glob.glob(os.path.join(run, "dose-e*-d*"))):
            n, d = map(int, re.search(r"dose-e(\d+)-d(\d+)$", w).groups())
            p = point(
                os.path.join(w, "evals", "m1.jsonl"),
                os.path.join(w, "evals", "o2.jsonl"),
                os.path.join(w, "ppd_o.jsonl"),
            )
            if p:
                rows.setdefault((n, d), []).append((run, *p))
    print(
        "| events N | distractors D | seeds | M1 held-out % (per seed) | headroom (100 - M1) | oracle pairs | "
        "O2 - M1 per seed | pooled (95% CI over problems) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (n, d), pts in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        diffs = [x for _, _, ds, _ in pts for x in ds]
        mean, lo, hi = paired_gain(diffs)
        m1 = [acc for _, acc, _, _ in pts]
        per_seed = [100 * sum(ds) / len(ds) for _, _, ds, _ in pts]
        print(
            f"| {n} | {d} | {len(pts)} | {', '.join(f'{x:.1f}' for x in m1)} | {100 - sum(m1) / len(m1):.1f} | "
            f"{', '.join(str(p) for *_, p in pts)} | {', '.join(f'{x:+.1f}' for x in per_seed)} | "
            f"{mean:+.1f} ({lo:+.1f} to {hi:+.1f}) |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
