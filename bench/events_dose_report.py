"""The dose-response table of bench/events_dose.sh points: for each difficulty (events N, distractors D), M1's
held-out accuracy (the headroom is what it gets wrong), the pairs each oracle-judged round made, and O2 - M1,
O3 - M1, the reversed-pairs control's O2r - M1 and the self-judged round's M2 - M1 (bench/events_dose_self.sh) per seed and pooled per problem with 95% intervals; each seed's own demo run (D = 2, 500 held-out problems,
its O2 and O3) is the default point.

    .venv/bin/python bench/events_dose_report.py runs/events-seed0 runs/events-seed1
"""

from __future__ import annotations

import glob
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from demo_seeds import paired_gain, world_correct  # noqa: E402


def lines(path: str) -> int | None:
    return sum(1 for _ in open(path)) if os.path.exists(path) else None


def point(evals: str, ppds: list[str]) -> dict | None:
    """M1's accuracy and the per-problem differences O2 - M1, O3 - M1 where those evaluations exist."""
    m1_path = os.path.join(evals, "m1.jsonl")
    if not os.path.exists(m1_path):
        return None
    m1 = world_correct(m1_path)
    if not m1:  # still being evaluated
        return None
    out = {"m1": 100 * sum(m1.values()) / len(m1), "pairs": [lines(p) for p in ppds], "gains": {}}
    for name in ("o2", "o3", "o2-reversed", "m2"):
        path = os.path.join(evals, f"{name}.jsonl")
        if os.path.exists(path):
            o = world_correct(path)
            ids = sorted(set(m1) & set(o))
            if len(ids) == len(m1):  # a finished evaluation, not one still running
                out["gains"][name] = [int(o[i]) - int(m1[i]) for i in ids]
    return out


def main(runs: list[str]) -> None:
    rows: dict[tuple[int, int], list[dict]] = {}
    for run in runs:
        p = point(os.path.join(run, "evals"), [os.path.join(run, f"ppd_{m}_oracle.jsonl") for m in ("m1", "o2")])
        if p:
            rows.setdefault((4, 2), []).append(p)
        for w in sorted(glob.glob(os.path.join(run, "dose-e*-d*"))):
            n, d = map(int, re.search(r"dose-e(\d+)-d(\d+)$", w).groups())
            p = point(os.path.join(w, "evals"), [os.path.join(w, f) for f in ("ppd_o.jsonl", "ppd_o_r2.jsonl")])
            if p:
                rows.setdefault((n, d), []).append(p)
    print(
        "| events N | distractors D | seeds | M1 held-out % (per seed) | headroom (100 - M1) | oracle pairs per round | "
        "O2 - M1 per seed | O2 - M1 pooled (95% CI) | O3 - M1 per seed | O3 - M1 pooled (95% CI) | "
        "reversed pairs: O2r - M1 per seed | pooled (95% CI) | self-judged: M2 - M1 per seed | pooled (95% CI) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (n, d), pts in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cells = []
        for name in ("o2", "o3", "o2-reversed", "m2"):
            have = [p["gains"][name] for p in pts if name in p["gains"]]
            if not have:
                cells += ["-", "-"]
                continue
            mean, lo, hi = paired_gain([x for g in have for x in g])
            cells += [", ".join(f"{100 * sum(g) / len(g):+.1f}" for g in have), f"{mean:+.1f} ({lo:+.1f} to {hi:+.1f})"]
        m1 = [p["m1"] for p in pts]
        pairs = "; ".join("/".join(str(x) for x in p["pairs"] if x is not None) for p in pts)
        print(
            f"| {n} | {d} | {len(pts)} | {', '.join(f'{x:.1f}' for x in m1)} | {100 - sum(m1) / len(m1):.1f} | "
            f"{pairs} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
