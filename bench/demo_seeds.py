"""The embedded world's research result over several seeds: does self-rewarding improve the policy? (issue 9)

Reads finished demo runs (``python -m psr.world.demo --srlm --oracle-judge --seed N --out runs/seedN``) and
prints, as Markdown: held-out world accuracy of every model per seed, M1's judge gate, S1's scoring accuracy,
pairs trained on; then the gains that matter (M3 - M1 for PSRLM, S3 - S1 for the SRLM baseline from its own
M1, S1 - M1 for the EFT format alone, M3 - S3, and O3 - M1 for the oracle-judged control when the run has it;
runs made before the SRLM baseline had its own S1 give S3 - M1 instead) with two 95% intervals:

- over seeds: mean of the per-seed differences +- t(0.975, seeds-1) * sd / sqrt(seeds) — what varies when
  the whole pipeline is rerun (data, M1, pairs), the interval the issue asks for;
- over problems: all models of a seed answer the same held-out problems, so the difference is paired per
  problem (d in {-1, 0, 1}), pooled over seeds: mean +- 1.96 * sd / sqrt(n) — narrower, and blind to the
  seed-to-seed variance of training.

    .venv/bin/python bench/demo_seeds.py runs/seed0 runs/seed1 runs/seed2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from psr.core.stats import wilson  # noqa: E402

# t quantiles (0.975) for small numbers of seeds; degrees of freedom -> t
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def world_correct(predictions: str) -> dict[str, bool]:
    """id -> correct, for the world problems of an eval predictions file."""
    with open(predictions) as fh:
        return {r["id"]: bool(r["correct"]) for r in map(json.loads, fh) if r.get("benchmark") == "world"}


def correct_by_id(run: str, model: str) -> dict[str, bool]:
    return world_correct(os.path.join(run, "evals", f"{model.lower()}.jsonl"))


def paired_gain(diffs: list[int]) -> tuple[float, float, float]:
    """Mean of per-problem differences (d in {-1, 0, 1}) in points, with its normal 95% interval."""
    mean = 100 * statistics.mean(diffs)
    h = 100 * 1.96 * statistics.pstdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - h, mean + h


def compare(runs: list[str], a: str, b: str) -> dict | None:
    """a - b in world accuracy points, per seed and pooled per problem."""
    per_seed, diffs = [], []
    for run in runs:
        try:
            ca, cb = correct_by_id(run, a), correct_by_id(run, b)
        except FileNotFoundError:
            return None
        ids = sorted(set(ca) & set(cb))
        d = [int(ca[i]) - int(cb[i]) for i in ids]
        per_seed.append(100 * sum(d) / len(d))
        diffs += d
    mean = statistics.mean(per_seed)
    if len(per_seed) > 1:
        h = T975.get(len(per_seed) - 1, 1.96) * statistics.stdev(per_seed) / math.sqrt(len(per_seed))
    else:
        h = float("nan")
    pooled, lo, hi = paired_gain(diffs)
    return {
        "per_seed": per_seed,
        "mean": mean,
        "seed_ci": (mean - h, mean + h),
        "pooled": pooled,
        "problem_ci": (lo, hi),
        "n": len(diffs),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="demo run directories (each with demo_summary.json)")
    a = ap.parse_args(argv)
    runs = [r for r in a.runs if os.path.exists(os.path.join(r, "demo_summary.json"))]
    if not runs:
        raise SystemExit("no finished demo runs (demo_summary.json) among the given directories")
    summaries = [json.load(open(os.path.join(r, "demo_summary.json"))) for r in runs]
    # Every model of any run, in run order; a branch a run did not make (e.g. --oracle-judge on one seed only)
    # counts over the runs that have it.
    models: list[str] = []
    for s in summaries:
        models += [m["model"] for m in s["models"] if m["model"] not in models]
    has = {
        m: [r for r, s in zip(runs, summaries, strict=True) if any(x["model"] == m for x in s["models"])]
        for m in models
    }
    print(f"## Held-out world accuracy (%), {len(runs)} seeds\n")
    srlm_from = "S1" if "S1" in models else "M1"  # older runs branched the SRLM baseline off M1
    print(
        "| seed | " + " | ".join(models) + " | M1 judge accuracy (95% CI) | S1 score match / pair order | "
        f"pairs made by M1 / M2 | SRLM pairs made by {srlm_from} / S2 | oracle-judged pairs made by M1 / O2 |"
    )
    print("|" + "---|" * (len(models) + 6))
    for s in summaries:
        acc = {m["model"]: m["benchmarks"].get("world") for m in s["models"]}
        pairs = {m["model"]: m["trained_on_pairs"] for m in s["models"]}
        s1 = next((m for m in s["models"] if m["model"] == "S1"), {})
        gate = s.get("judge_gate") or {}
        ci = gate.get("ci95") or ["-", "-"]
        print(
            f"| {s['seed']} | "
            + " | ".join(f"{acc[m]:.1f}" if m in acc else "-" for m in models)
            + f" | {gate.get('accuracy', float('nan')):.1f} ({ci[0]}-{ci[1]}) "
            f"| {s1.get('judge_accuracy')} / {s1.get('judge_pair_order_accuracy')} "
            f"| {pairs.get('M2')} / {pairs.get('M3')} "
            f"| {pairs.get('S2')} / {pairs.get('S3')} | {pairs.get('O2')} / {pairs.get('O3')} |"
        )
    n_test = len(correct_by_id(runs[0], "M1"))
    means = {
        m: statistics.mean(x["benchmarks"]["world"] for s2 in summaries for x in s2["models"] if x["model"] == m)
        for m in models
    }
    lo_hi = {m: wilson(means[m] / 100 * n_test * len(has[m]), n_test * len(has[m])) for m in models}
    print(
        "| mean | "
        + " | ".join(
            f"{means[m]:.1f}"
            + (f" ({len(has[m])} seed{'s' if len(has[m]) > 1 else ''})" if len(has[m]) < len(runs) else "")
            for m in models
        )
        + " | | | | | |"
    )
    print(
        "| 95% CI (problems) | " + " | ".join(f"{lo_hi[m][0]:.1f}-{lo_hi[m][1]:.1f}" for m in models) + " | | | | | |"
    )
    print(f"\n## Gains in accuracy points ({n_test} held-out problems a seed)\n")
    print("| comparison | per seed | mean | 95% CI over seeds | pooled per problem | 95% CI over problems |")
    print("|---|---|---|---|---|---|")
    for a_, b_, what in (
        ("M2", "M1", "PSRLM round 1"),
        ("M3", "M1", "PSRLM, two rounds"),
        ("S1", "M1", "SRLM's own M1: scoring vs pairwise EFT"),
        ("S2", srlm_from, "SRLM round 1"),
        ("S3", srlm_from, "SRLM, two rounds"),
        ("M3", "S3", "PSRLM vs SRLM, same budget"),
        ("O2", "M1", "oracle-judged control, round 1"),
        ("O3", "M1", "oracle-judged control, two rounds"),
        ("M3", "O3", "self-judged vs oracle-judged"),
    ):
        if a_ not in models or b_ not in models:
            continue
        gain_row(a_, b_, what, [r for r in has[a_] if r in has[b_]])
    # The control that should fail (bench/events_reversed.sh): not a demo model, so read from the runs that have it.
    reversed_runs = [r for r in runs if os.path.exists(os.path.join(r, "evals", "o2-reversed.jsonl"))]
    if reversed_runs and "M1" in models:
        gain_row("O2-reversed", "M1", "control that should fail: round 1's oracle pairs reversed", reversed_runs)
    gates(runs, summaries)


def gain_row(a_: str, b_: str, what: str, runs: list[str]) -> None:
    """One row of the gains table: a_ - b_ over ``runs``, per seed, over seeds and pooled over problems."""
    c = compare(runs, a_, b_)
    if c is not None:
        print(
            f"| {a_} - {b_} ({what}) | {', '.join(f'{x:+.1f}' for x in c['per_seed'])} | {c['mean']:+.1f} | "
            + (f"{c['seed_ci'][0]:+.1f} to {c['seed_ci'][1]:+.1f}" if len(c["per_seed"]) > 1 else "- (one seed)")
            + f" | {c['pooled']:+.1f} | "
            f"{c['problem_ci'][0]:+.1f} to {c['problem_ci'][1]:+.1f} |"
        )


def position_accuracy(run: str, model: str = "m1") -> tuple[float, float, int] | None:
    """Judge accuracy (%) when the right step is shown as A and when it is shown as B, over both orders."""
    path = os.path.join(run, "evals", f"judge_{model}.jsonl")
    if not os.path.exists(path):
        return None
    at = {"A": [], "B": []}
    for r in map(json.loads, open(path)):
        if r.get("label") not in ("A", "B") or "correct_swapped" not in r:
            continue
        at[r["label"]].append(bool(r["correct"]))
        at["B" if r["label"] == "A" else "A"].append(bool(r["correct_swapped"]))
    if not at["A"] or not at["B"]:
        return None
    return 100 * statistics.mean(at["A"]), 100 * statistics.mean(at["B"]), len(at["A"]) + len(at["B"])


def judge_by_case(run: str, model: str = "m1") -> dict[str, list[int]] | None:
    """Judge accuracy split by what a held-out EFT record asks: is its prefix (the mined path's previous steps)
    right, and is exactly one candidate right ("one right") or are both wrong ("both wrong", ranked by how far
    each gets)? -> case -> [right judgments, judgments]."""
    from psr.world.generator import parse_question
    from psr.world.oracle import check_step

    path = os.path.join(run, "evals", f"judge_{model}.jsonl")
    if not os.path.exists(path):
        return None
    cases: dict[str, list[int]] = {}
    for r in map(json.loads, open(path)):
        meta, prev = parse_question(r["question"]), r["previous_steps"]
        if meta is None or "correct_swapped" not in r:
            continue
        prefix = "right prefix" if all(check_step(meta, prev[:j], x).ok for j, x in enumerate(prev)) else "wrong prefix"
        ok = [check_step(meta, prev, r[k]).ok for k in ("step_a", "step_b")]
        c = cases.setdefault(
            f"{prefix}, {'one right' if ok[0] != ok[1] else 'both right' if ok[0] else 'both wrong'}", [0, 0]
        )
        c[0] += bool(r["correct"]) + bool(r["correct_swapped"])
        c[1] += 2
    return cases


def errors_by_kind(run: str, model: str = "m1") -> dict | None:
    """A model's wrong held-out solutions counted by the kind of their first wrong step (psr.world.errors)."""
    from psr.world.errors import error_table

    path = os.path.join(run, "evals", f"{model}.jsonl")
    if not os.path.exists(path):
        return None
    return error_table([r for r in map(json.loads, open(path)) if r.get("benchmark") == "world"])


def gates(runs: list[str], summaries: list[dict]) -> None:
    """Issue 18's three gates, each with its numbers: the training half (O3 - M1), the judge half (M1 as a
    judge), the method (M3 - M1, M3 - S3, judge accuracy of M2, M3 against M1's)."""
    print("\n## Gates (issue 18)\n")

    def line(name: str, ok: bool | None, text: str) -> None:
        print(f"- {name}: **{'passed' if ok else 'not passed' if ok is not None else 'not run'}** - {text}")

    o3 = (
        compare([r for r in runs if os.path.exists(os.path.join(r, "evals", "o3.jsonl"))], "O3", "M1")
        if any(os.path.exists(os.path.join(r, "evals", "o3.jsonl")) for r in runs)
        else None
    )
    if o3:
        ok = len(o3["per_seed"]) >= 2 and o3["problem_ci"][0] > 0 and o3["mean"] >= 5
        line(
            "gate 1 (training half: oracle-judged O3 - M1 >= +5, 95% CI over problems above 0, >= 2 seeds)",
            ok,
            f"per seed {', '.join(f'{x:+.1f}' for x in o3['per_seed'])}; pooled {o3['pooled']:+.1f} "
            f"(95% CI {o3['problem_ci'][0]:+.1f} to {o3['problem_ci'][1]:+.1f}, {o3['n']} problem-seeds)",
        )
    elif any(os.path.exists(os.path.join(r, "evals", "o2.jsonl")) for r in runs):
        o2 = compare([r for r in runs if os.path.exists(os.path.join(r, "evals", "o2.jsonl"))], "O2", "M1")
        line(
            "gate 1 (asks for two oracle-judged rounds, O3)",
            None,
            f"one round only: O2 - M1 per seed {', '.join(f'{x:+.1f}' for x in o2['per_seed'])}; pooled "
            f"{o2['pooled']:+.1f} (95% CI {o2['problem_ci'][0]:+.1f} to {o2['problem_ci'][1]:+.1f})",
        )
    else:
        line("gate 1", None, "no run has the oracle-judged branch (--oracle-judge)")
    parts, oks = [], []
    for r, s in zip(runs, summaries, strict=True):
        gate = s.get("judge_gate") or {}
        pos = position_accuracy(r)
        if not gate or pos is None:
            continue
        ok = gate["accuracy"] >= 70 and abs(pos[0] - pos[1]) <= 15
        oks.append(ok)
        parts.append(
            f"seed {s['seed']}: {gate['accuracy']:.1f}% (95% CI {gate['ci95'][0]}-{gate['ci95'][1]}, "
            f"{gate['records']} records), right step shown as A {pos[0]:.1f}% / as B {pos[1]:.1f}%"
        )
    line(
        "gate 2 (judge half: M1 >= 70% on held-out EFT, both orders, A/B within 15 points)",
        all(oks) if oks else None,
        "; ".join(parts) or "no judge evaluations",
    )
    for r, s in zip(runs, summaries, strict=True):
        cases = judge_by_case(r)
        if cases:
            print(
                f"  - seed {s['seed']}, M1's judgments right by record: "
                + "; ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(cases.items()))
            )
    m3 = compare(runs, "M3", "M1") if all(os.path.exists(os.path.join(r, "evals", "m3.jsonl")) for r in runs) else None
    s3 = (
        compare([r for r in runs if os.path.exists(os.path.join(r, "evals", "s3.jsonl"))], "M3", "S3")
        if any(os.path.exists(os.path.join(r, "evals", "s3.jsonl")) for r in runs)
        else None
    )
    judges = []
    for s in summaries:
        acc = {m["model"]: m.get("judge_accuracy") for m in s["models"]}
        judges.append((acc.get("M1"), acc.get("M2"), acc.get("M3")))
    judge_ok = all(
        j[0] is not None and j[1] is not None and j[2] is not None and min(j[1], j[2]) >= j[0] for j in judges
    )
    if m3:
        ok = (
            len(m3["per_seed"]) >= 3
            and m3["seed_ci"][0] > 0
            and m3["mean"] >= 5
            and bool(s3)
            and s3["mean"] > 0
            and judge_ok
        )
        line(
            "gate 3 (method: M3 - M1 >= +5, 95% CI over >= 3 seeds above 0; M3 - S3 > 0; judge acc M2, M3 >= M1)",
            ok,
            f"M3 - M1 per seed {', '.join(f'{x:+.1f}' for x in m3['per_seed'])}, mean {m3['mean']:+.1f} "
            + (
                f"(95% CI over seeds {m3['seed_ci'][0]:+.1f} to {m3['seed_ci'][1]:+.1f}; over problems "
                if len(m3["per_seed"]) > 1
                else "(one seed, no interval over seeds; 95% CI over problems "
            )
            + f"{m3['problem_ci'][0]:+.1f} to {m3['problem_ci'][1]:+.1f})"
            + (
                f"; M3 - S3 mean {s3['mean']:+.1f} (95% CI over problems {s3['problem_ci'][0]:+.1f} to "
                f"{s3['problem_ci'][1]:+.1f})"
                if s3
                else "; no SRLM branch (--srlm)"
            )
            + "; judge accuracy M1/M2/M3 per seed "
            + ", ".join("/".join(f"{x}" for x in j) for j in judges),
        )
    for r, s in zip(runs, summaries, strict=True):
        e = errors_by_kind(r)
        if e:
            print(
                f"- M1's wrong held-out solutions, seed {s['seed']}: {e['wrong']}, first error by kind "
                f"{e['kinds']}; checkable by lookup {e['checkable']} ({100 * (e['checkable_share'] or 0):.0f}%)"
            )
            # What each round's pairs fixed or taught, by kind (the oracle's and the model's own).
            for m in ("o2", "o3", "m2", "m3"):
                later = errors_by_kind(r, m)
                if later:
                    print(f"  - {m.upper()}: {later['wrong']} wrong, by kind {later['kinds']}")


if __name__ == "__main__":
    main()
