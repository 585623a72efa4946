"""The demo's closing summary: every model's held-out accuracy, judge accuracy and pairs, as demo_summary.json and
a table on stderr (psr/world/demo.py calls it last)."""

from __future__ import annotations

import json
import os

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, highlight=False)


def report(d, models: list[str]) -> dict:
    """The Table-1-style summary of a finished demo run ``d`` (a Demo): demo_summary.json and the printed table."""

    def load(path):
        return json.load(open(path)) if os.path.exists(path) else None

    def count(path):
        return sum(1 for _ in open(path)) if os.path.exists(path) else 0

    rows = []
    for name in models:
        s = load(d.p("evals", f"{name}.json")) or {}
        j = load(d.p("evals", f"judge_{name}.json")) or {}
        ppd, traj_path = d.made.get(name, (None, None))
        traj = [json.loads(x) for x in open(traj_path)] if traj_path and os.path.exists(traj_path) else []
        rows.append(
            {
                "model": name.upper(),
                "benchmarks": {b: v.get("accuracy") for b, v in (s.get("benchmarks") or {}).items()},
                "average": s.get("average"),
                "steps": {b: v.get("mean_steps") for b, v in (s.get("benchmarks") or {}).items()},
                # pairwise judges: accuracy over both orders; scorers (S rows): exact 0-5 score match
                "judge_accuracy": j.get("accuracy"),
                "judge_format": j.get("format", "pairwise") if j else None,
                "judge_pair_order_accuracy": j.get("pair_order_accuracy"),
                "judge_no_score_rate": j.get("no_score_rate"),
                "trained_on_pairs": count(ppd) if ppd else None,
                "rollbacks": sum(t.get("rollbacks", 0) for t in traj) if traj else None,
            }
        )
    prm_eval = (
        [json.loads(x) for x in open(d.p("prm", "metrics.jsonl")) if "eval_auc" in x]
        if os.path.exists(d.p("prm", "metrics.jsonl"))
        else []
    )
    sft = {}
    for name in ("m1", "s1"):
        done = load(d.p(name, "psr_config.json")) or {}
        if done:  # what SFT trained on and left out as longer than M0's positions
            sft[name.upper()] = {
                k: done.get(k) for k in ("examples", "ift_records", "eft_records", "too_long", "too_long_eft")
            }
    summary = {
        "seed": d.seed,
        "sizes": d.cfg,
        "models": rows,
        "prm_eval": prm_eval[-1] if prm_eval else None,
        "mining": load(d.p("mine_stats.json")),
        "eft_pairs": count(d.p("eft.jsonl")),
        "candidate_pairs": count(d.p("pairs.jsonl")),
        "eft_scoring_records": count(d.p("eft_scoring.jsonl")),
        "sft": sft,
        "ift_records": count(d.p("ift.jsonl")),
        "judge_gate": load(d.p("judge_gate.json")),
        "timings_s": {t: round(s, 1) for t, s in d.timings},
    }
    json.dump(summary, open(d.p("demo_summary.json"), "w"), indent=2)
    table = Table(title=f"psr demo (seed {d.seed}): accuracy %, steps, judge accuracy %, pairs")
    benches = sorted({b for r in rows for b in r["benchmarks"]})
    for col in [
        "model",
        *benches,
        "avg",
        "steps (world)",
        "judge acc",
        "judge pair order",
        "trained on pairs",
        "search rollbacks",
    ]:
        table.add_column(col, justify="right")

    def fmt(x, decimals=True):
        # JSON gives back 3.0 as 3: accuracies and means are printed with one decimal either way.
        if x is None:
            return "-"
        return f"{x:.1f}" if decimals else str(x)

    for r in rows:
        table.add_row(
            r["model"],
            *[fmt(r["benchmarks"].get(b)) for b in benches],
            fmt(r["average"]),
            fmt(r["steps"].get("world")),
            fmt(r["judge_accuracy"]),
            fmt(r["judge_pair_order_accuracy"]),
            fmt(r["trained_on_pairs"], False),
            fmt(r["rollbacks"], False),
        )
    console.print(table)
    if any(r["judge_format"] == "scoring" for r in rows):
        console.print(
            "judge acc: M, O rows judge held-out step pairs (Figure 5, both orders); S rows score "
            "held-out responses 0-5 (exact match), and judge pair order is how often the better "
            "response of a pair scores strictly higher"
        )
    if summary["prm_eval"]:
        console.print(
            f"PRM on held-out steps: accuracy {summary['prm_eval'].get('eval_accuracy', 0):.3f}, "
            f"AUC {summary['prm_eval'].get('eval_auc', 0):.3f}"
        )
    console.print(
        f"IFT records {summary['ift_records']}, candidate pairs {summary['candidate_pairs']}, "
        f"EFT records {summary['eft_pairs']}; plot: {d.p('accuracy.png')}; "
        f"summary: {d.p('demo_summary.json')}"
    )
    if "S1" in sft:
        s1 = sft["S1"]
        console.print(
            f"S1: {summary['eft_scoring_records']} scoring EFT records for training, "
            f"{s1['too_long_eft']} of them left out as longer than {d.max_length} tokens "
            f"(SFT trained on {s1['examples']} examples)"
        )
    return summary
