"""Which step-DPO settings turn right preference pairs into a better policy? (issue 9's control)

For each finished demo run (``--oracle-judge``), M1's first-round pairs from both judges — its own
(``ppd_m1.jsonl``: the method) and the oracle's (``ppd_m1_oracle.jsonl``: right preferences; and of those only
the pairs of a right and a wrong step, ``oracle-right``) — train M1 with
step-DPO at each learning rate and SFT weight (``--sft-weight``: RPO's NLL term on the chosen step), and each
result is evaluated greedily on the run's held-out world problems. Prints accuracy and the gain over M1
with a 95% interval over problems (paired, pooled over runs). Resumable: finished variants are skipped.

    .venv/bin/python bench/dpo_control.py runs/seed0 runs/seed1 [--variants 5e-5:0,5e-5:1,1e-4:1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from demo_seeds import correct_by_id, paired_gain, world_correct  # noqa: E402  (bench/ is the script's folder)

SOURCES = {"self": "ppd_m1.jsonl", "oracle": "ppd_m1_oracle.jsonl", "oracle-right": "ppd_m1_oracle_right.jsonl"}


def right_pairs(run: str) -> str:
    """The oracle-judged pairs whose chosen step is right and rejected step wrong (the oracle also prefers the
    less wrong of two wrong steps; those pairs teach a wrong step as "chosen")."""
    from psr.world.generator import parse_question
    from psr.world.oracle import label_step

    out = os.path.join(run, SOURCES["oracle-right"])
    if not os.path.exists(out):
        with open(os.path.join(run, SOURCES["oracle"])) as src, open(out + ".tmp", "w") as dst:
            for line in src:
                r = json.loads(line)
                p = {"question": r["question"], "world": parse_question(r["question"])}
                if label_step(p, r["previous_steps"], r["chosen"]) and not label_step(p, r["previous_steps"], r["rejected"]):
                    dst.write(line)
        os.replace(out + ".tmp", out)
    return out


def psr(*args) -> None:
    cmd = [sys.executable, "-m", "psr.cli", *map(str, args)]
    print("$ psr " + " ".join(map(str, args)), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--variants", default="1e-5:0,5e-5:0,5e-5:1,1e-4:1", help="lr:sft_weight, comma-separated")
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--sources", default=",".join(SOURCES), help=f"pair sources, of {', '.join(SOURCES)}")
    a = ap.parse_args(argv)
    variants = [(float(v.split(":")[0]), float(v.split(":")[1])) for v in a.variants.split(",")]
    rows = []
    for run in a.runs:
        right_pairs(run)
    for source in a.sources.split(","):
        ppd = SOURCES[source]
        for lr, w in variants:
            diffs, accs, pairs = [], [], []
            for run in a.runs:
                out = os.path.join(run, "dpo_control", f"{source}_lr{lr:g}_sft{w:g}")
                preds = os.path.join(out, "eval.jsonl")
                if not os.path.exists(os.path.join(out, "summary.json")):
                    psr("step-dpo", "-i", os.path.join(run, ppd), "--model", os.path.join(run, "m1"), "-o", out,
                        "--lr", lr, "--beta", a.beta, "--sft-weight", w, "--batch-size", 16,
                        "--per-device-batch-size", 16, "--seed", 0, "--overwrite")
                    psr("eval", "-i", f"world={os.path.join(run, 'world', 'test.jsonl')}", "--model", out,
                        "-o", preds, "--summary", os.path.join(out, "summary.json"), "--max-tokens", 200,
                        "--overwrite")
                base, new = correct_by_id(run, "m1"), world_correct(preds)
                ids = sorted(set(base) & set(new))
                diffs += [int(new[i]) - int(base[i]) for i in ids]
                accs.append(100 * sum(new[i] for i in ids) / len(ids))
                pairs.append(sum(1 for _ in open(os.path.join(run, ppd))))
            rows.append((source, lr, w, pairs, accs, *paired_gain(diffs)))
    print(f"\nstep-DPO on M1's first-round pairs, beta {a.beta:g}, 1 epoch, batch 16; runs: {', '.join(a.runs)}\n")
    print("| pairs judged by | lr | sft weight | pairs per run | accuracy per run | gain over M1 | 95% CI (problems) |")
    print("|---|---|---|---|---|---|---|")
    for source, lr, w, pairs, accs, mean, lo, hi in rows:
        print(f"| {source} | {lr:g} | {w:g} | {', '.join(map(str, pairs))} | {', '.join(f'{x:.1f}' for x in accs)} "
              f"| {mean:+.1f} | {lo:+.1f} to {hi:+.1f} |")


if __name__ == "__main__":
    main()
