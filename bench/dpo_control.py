"""Which step-DPO settings turn right preference pairs into a better policy? (issue 9's control)

For each finished demo run (``--oracle-judge``), M1's first-round pairs from both judges — its own
(``ppd_m1.jsonl``: the method) and the oracle's (``ppd_m1_oracle.jsonl``: right preferences; and of those only
the pairs of a right and a wrong step, ``oracle-right``) — train M1 with
step-DPO in each variant, and each result is evaluated greedily on the run's held-out world problems. Prints
accuracy, the problems fixed and broken, and the gain over M1 with a 95% interval over problems (paired,
pooled over runs). Resumable: finished variants are skipped.

A variant is ``lr:sft_weight[:loss[:more step-dpo flags]]``: the SFT weight is RPO's NLL term on the chosen
step, the loss one of TRL's (``psr step-dpo --loss``). Source ``oracle-big`` first runs its own oracle-judged
search from M1 (``--big-problems`` train problems at ``--big-width`` / ``--big-temperature``: about five times the
demo's pairs; ``--big-from`` names the problems), to ask whether more right pairs help. ``--errors`` also prints the kinds of M1's held-out errors
(the oracle's check of the first wrong step).

    .venv/bin/python bench/dpo_control.py runs/seed0 runs/seed1 [--variants 5e-5:0,5e-5:1,1e-4:1]
    .venv/bin/python bench/dpo_control.py runs/seed0 --sources oracle-big --errors \
        --variants "1e-5:0,5e-5:0,5e-5:0:apo_zero,1e-4:0:sigmoid:--lora,2e-5:0:sigmoid:--epochs 3 --warmup 0.3"
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from demo_seeds import correct_by_id, paired_gain, world_correct  # noqa: E402  (bench/ is the script's folder)

SOURCES = {
    "self": "ppd_m1.jsonl",
    "oracle": "ppd_m1_oracle.jsonl",
    "oracle-right": "ppd_m1_oracle_right.jsonl",
    "oracle-big": "ppd_m1_oracle_big.jsonl",
}


def big_pairs(run: str, n: int, width: int, temperature: float, source: str | None = None) -> str:
    """An oracle-judged search from M1 over the first ``n`` problems of ``source`` (default: the run's
    world/search.jsonl, questions SFT did not train on, or train.jsonl in runs made before it existed)."""
    out = os.path.join(run, SOURCES["oracle-big"])
    problems = os.path.join(run, "dpo_control", "big_problems.jsonl")
    os.makedirs(os.path.dirname(problems), exist_ok=True)
    if source is None:
        source = os.path.join(run, "world", "search.jsonl")
        source = source if os.path.exists(source) else os.path.join(run, "world", "train.jsonl")
    with open(source) as src, open(problems, "w") as dst:
        dst.writelines(line for _, line in zip(range(n), src, strict=False))
    psr(
        "search",
        "-i",
        problems,
        "--model",
        os.path.join(run, "m1"),
        "-o",
        out,
        "--trajectories",
        os.path.join(run, "dpo_control", "big_trajectories.jsonl"),
        "--width",
        width,
        "--temperature",
        temperature,
        "--max-iterations",
        10,
        "--max-step-tokens",
        60,
        "--judge-engine",
        "oracle",
        "--judge-max-tokens",
        200,
        "--seed",
        11,
    )
    return out


def error_kinds(run: str) -> dict[str, int]:
    """M1's wrong held-out answers by the oracle's verdict on their first wrong step."""
    from psr.world.generator import parse_question
    from psr.world.oracle import check_step

    kinds: dict[str, int] = {}
    with open(os.path.join(run, "evals", "m1.jsonl")) as fh:
        for r in map(json.loads, fh):
            if r.get("benchmark") != "world" or r.get("correct"):
                continue
            meta, steps = parse_question(r["question"]), r.get("steps") or []
            bad = next((c for c in (check_step(meta, steps[:j], st) for j, st in enumerate(steps)) if not c.ok), None)
            tail = bad.text.split("which is ")[-1] if bad else ""
            kind = (
                "no wrong step (unfinished)"
                if bad is None
                else "arithmetic"
                if re.fullmatch(r"wrong: -?\d+ \S -?\d+ is -?\d+", tail)
                else re.sub(r"-?\d+", "N", tail)
            )
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


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
                if label_step(p, r["previous_steps"], r["chosen"]) and not label_step(
                    p, r["previous_steps"], r["rejected"]
                ):
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
    ap.add_argument(
        "--variants",
        default="1e-5:0,5e-5:0,5e-5:1,1e-4:1",
        help="lr:sft_weight[:loss[:more step-dpo flags]], comma-separated",
    )
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--sources", default="self,oracle,oracle-right", help=f"pair sources, of {', '.join(SOURCES)}")
    ap.add_argument("--big-problems", type=int, default=400)
    ap.add_argument("--big-width", type=int, default=6)
    ap.add_argument("--big-temperature", type=float, default=1.0)
    ap.add_argument(
        "--big-from", help="problems file for oracle-big (default: the run's world/search.jsonl, else its train.jsonl)"
    )
    ap.add_argument("--errors", action="store_true", help="also print the kinds of M1's held-out errors")
    a = ap.parse_args(argv)
    variants = []
    for v in a.variants.split(","):
        lr, w, *rest = v.split(":", 3)
        variants.append((float(lr), float(w), rest[0] if rest else "sigmoid", rest[1].split() if len(rest) > 1 else []))
    sources = a.sources.split(",")
    rows = []
    for run in a.runs:
        if "oracle-right" in sources:
            right_pairs(run)
        if "oracle-big" in sources and not os.path.exists(os.path.join(run, SOURCES["oracle-big"] + ".done")):
            big_pairs(run, a.big_problems, a.big_width, a.big_temperature, a.big_from)
    for source in sources:
        ppd = SOURCES[source]
        for lr, w, loss, more in variants:
            diffs, accs, pairs, fixed, broken = [], [], [], 0, 0
            for run in a.runs:
                slug = "".join(c if c.isalnum() or c in ".-" else "_" for c in " ".join(more)).strip("_")
                name = (
                    f"{source}_lr{lr:g}_sft{w:g}"
                    + (f"_{loss}" if loss != "sigmoid" else "")
                    + (f"_{slug}" if slug else "")
                )
                out = os.path.join(run, "dpo_control", name)
                preds = os.path.join(out, "eval.jsonl")
                if not os.path.exists(os.path.join(out, "summary.json")):
                    psr(
                        "step-dpo",
                        "-i",
                        os.path.join(run, ppd),
                        "--model",
                        os.path.join(run, "m1"),
                        "-o",
                        out,
                        "--lr",
                        lr,
                        "--beta",
                        a.beta,
                        "--sft-weight",
                        w,
                        "--loss",
                        loss,
                        *more,
                        "--batch-size",
                        16,
                        "--per-device-batch-size",
                        16,
                        "--seed",
                        0,
                        "--overwrite",
                    )
                    psr(
                        "eval",
                        "-i",
                        f"world={os.path.join(run, 'world', 'test.jsonl')}",
                        "--model",
                        out,
                        "-o",
                        preds,
                        "--summary",
                        os.path.join(out, "summary.json"),
                        "--max-tokens",
                        200,
                        "--overwrite",
                    )
                base, new = correct_by_id(run, "m1"), world_correct(preds)
                ids = sorted(set(base) & set(new))
                diffs += [int(new[i]) - int(base[i]) for i in ids]
                fixed += sum(new[i] and not base[i] for i in ids)
                broken += sum(base[i] and not new[i] for i in ids)
                accs.append(100 * sum(new[i] for i in ids) / len(ids))
                pairs.append(sum(1 for _ in open(os.path.join(run, ppd))))
            rows.append((source, lr, w, " ".join([loss, *more]), pairs, accs, fixed, broken, *paired_gain(diffs)))
    print(f"\nstep-DPO of M1, beta {a.beta:g}, batch 16; runs: {', '.join(a.runs)}\n")
    print(
        "| pairs judged by | lr | sft weight | loss and flags | pairs per run | accuracy per run | fixed / broken "
        "| gain over M1 | 95% CI (problems) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for source, lr, w, how, pairs, accs, fixed, broken, mean, lo, hi in rows:
        print(
            f"| {source} | {lr:g} | {w:g} | {how} | {', '.join(map(str, pairs))} | "
            f"{', '.join(f'{x:.1f}' for x in accs)} | {fixed} / {broken} | {mean:+.1f} | {lo:+.1f} to {hi:+.1f} |"
        )
    if a.errors:
        for run in a.runs:
            kinds = sorted(error_kinds(run).items(), key=lambda kv: -kv[1])
            print(f"\nM1's held-out errors in {run}: " + "; ".join(f"{k}: {n}" for k, n in kinds))


if __name__ == "__main__":
    main()
