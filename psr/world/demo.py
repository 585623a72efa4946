"""`just demo`: the whole method, offline, on 2 CPU cores, through the real `psr` commands.

    world -> segment (IFT) -> train-prm -> mine-pairs -> annotate-eft (EFT) -> sft (M1)
          -> search (PPD(M1)) -> step-dpo (M2) -> search (PPD(M2)) -> step-dpo (M3)
          -> eval M0..M3 (held-out world problems + a GSM8K sample) + judge accuracy -> table + plot

With ``--srlm`` the SRLM baseline (paper Table 1) gets its own M1, as in the paper: the same candidate
pairs are annotated in Yuan et al.'s scoring format (annotate-eft --format scoring), M0 + the same IFT +
that scoring EFT -> S1 (same SFT settings as M1), and its rounds run from S1:

    pairs -> annotate-eft --format scoring -> sft (S1) -> search --mode srlm -> step-dpo (S2) -> ... (S3)

Each stage runs as the command a user would type (printed before it runs), so the demo is also a
worked example of the CLI. The oracle engine plays the paper's external roles: o1 for segmentation
and EFT judgments, PRM800K's labels for the PRM. Rerunning the same command resumes.

The paper's learning rates (1e-6 SFT, 5e-7 DPO) are for 7B-72B models; a 0.9M model trained
from scratch needs far larger ones, so the demo's are its own (see SIZES) and printed. DPO at 5e-5
cost 17-19 points of held-out accuracy in a measured run (seed 0: M1 62.7% -> M2 45.3% -> M3 43.3%),
as earlier measurements on these machines predicted (issue 9), hence 1e-5.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from rich.console import Console

from psr.core.errors import InputError, PsrError
from psr.core.stats import wilson
from psr.world.demo_report import report
from psr.world.oracle import JUDGE_STYLES

console = Console(stderr=True, highlight=False)
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_M0 = os.path.join(REPO, "data", "m0")
EVENTS_M0 = os.path.join(REPO, "data", "m0-events")  # the events world's M0 (python -m psr.world.pretrain --world events)
GSM8K_SAMPLE = os.path.join(REPO, "data", "gsm8k_test_sample.jsonl")

# full: `just demo` (target < 15 min on 2 cores); ci: the reduced pipeline the slow test tier runs.
SIZES = {
    "full": dict(train=1200, test=200, prm=1000, search=800, gsm8k=30, mine_problems=400, mine_iterations=6, mine_width=6,
                 mine_temperature=1.0, eft_test=100,
                 eft_scoring_test=30,
                 sft_epochs=3, sft_batch=16, sft_lr=1e-3, search_problems=[80, 80], width=4, search_temperature=0.8,
                 max_iterations=10, dpo_lr=1e-5, dpo_beta=0.1,
                 prm_epochs=2, prm_lr=1e-3, max_tokens=200, margin=0.0),
    "ci": dict(train=120, test=40, prm=150, search=60, gsm8k=5, mine_problems=80, mine_iterations=3, mine_width=6,
               mine_temperature=1.0, eft_test=10,
               eft_scoring_test=10,
               sft_epochs=8, sft_batch=8, sft_lr=1e-3, search_problems=[12, 12], width=3, search_temperature=0.8,
               max_iterations=8, dpo_lr=1e-5, dpo_beta=0.1,
               prm_epochs=3, prm_lr=1e-3, max_tokens=160, margin=0.0),
}
# The events world's research size (--world events): 500 held-out problems, so that a 5-point difference has a
# 95% interval narrower than itself, and search rounds of 200 problems (2.5x the arithmetic world's) for hundreds of pairs; no GSM8K column
# (a model trained on the world alone scores 0-3% there: noise, not a measurement). The rest is smaller than full
# (800 IFT, a 300-example PRM, 300 mined problems, 2 SFT epochs) so that a seed ran in ~40 min on 2 cores shared
# with other jobs (load 5-7).
SIZES["events"] = {**SIZES["full"], "train": 800, "prm": 300, "prm_epochs": 1, "mine_problems": 300,
                   "mine_iterations": 4, "eft_test": 60, "sft_epochs": 2, "test": 500, "search": 400,
                   "search_problems": [200, 200], "gsm8k": 0, "max_tokens": 160}
SIZES["events-ci"] = {**SIZES["ci"], "gsm8k": 0}


GENERATION_STAGES = {"mine-pairs", "search", "eval", "segment", "annotate-eft"}


class Demo:
    def __init__(self, out: str, size: str, seed: int, m0: str, world: dict | None = None,
                 judge_style: str = "verdict-first"):
        self.out, self.cfg, self.seed, self.m0 = out, dict(SIZES[size]), seed, m0
        self.judge_style = judge_style  # the oracle's explanation style in the EFT data (psr.world.oracle.judge)
        self.cfg["search_problems"] = list(self.cfg["search_problems"])  # rounds beyond the list append to it
        # psr world's options for the events world ({"events": N, "distractors": D}); None: the arithmetic world
        self.world = world
        if world:
            # A solution takes ~24 tokens a step here; the size's 160 would cut off stories of seven or more events.
            self.cfg["max_tokens"] = max(self.cfg["max_tokens"], 32 + 24 * int(world["events"]))
        self.timings: list[tuple[str, float]] = []
        self.made: dict[str, tuple[str, str]] = {}  # model -> (the pairs it was trained on, their trajectories)
        # SFT leaves out (and counts) records longer than M0's positions rather than train past them:
        # Yuan et al.'s scoring prompt alone takes ~900 of M0's 1024.
        with open(os.path.join(m0, "config.json")) as fh:
            self.max_length = json.load(fh).get("max_position_embeddings") or 4096
        os.makedirs(out, exist_ok=True)

    def p(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    def psr(self, title: str, *args, done: str | None = None) -> None:
        """Run one `psr` command (skipped when `done` exists: a finished model directory)."""
        if done and os.path.exists(done):
            console.print(f"[dim]skip[/dim] {title}: {done} exists")
            return
        cmd = ["psr", *[str(a) for a in args]]
        console.rule(f"[bold]{title}")
        console.print("$ " + shlex.join(cmd), style="cyan", soft_wrap=True)
        t0 = time.time()
        env = dict(os.environ)
        if args[0] in GENERATION_STAGES:
            # Decoding a tiny model is a stream of small ops: one thread is as fast as two on an idle
            # machine and many times faster on a busy one (measured here: 10-30x for sampling ops).
            env.setdefault("OMP_NUM_THREADS", "1")
        rc = subprocess.call([sys.executable, "-m", "psr.cli", *cmd[1:]], env=env)
        self.timings.append((title, time.time() - t0))
        if rc != 0:
            raise SystemExit(f"demo: `{shlex.join(cmd)}` failed with exit code {rc}")

    # -- the loop --------------------------------------------------------------------------

    def data(self) -> None:
        c = self.cfg
        self.psr("world: problems, unsegmented solutions, PRM step labels", "world", "-o", self.p("world"),
                 "--train", c["train"], "--test", c["test"], "--prm", c["prm"], "--search", c["search"],
                 "--seed", self.seed, *self.world_args(), done=self.p("world", "prm.jsonl"))
        self.psr("segment: IFT data (Figure 3 prompt; the oracle plays o1)", "segment", "--method", "llm",
                 "--engine", "oracle", "-i", self.p("world", "train_solutions.jsonl"), "-o", self.p("ift.jsonl"),
                 "--rejects", self.p("ift_rejects.jsonl"))
        self.psr("train-prm: a process reward model on step labels (PRM800K's role)", "train-prm",
                 "-i", self.p("world", "prm.jsonl"), "--model", self.m0, "-o", self.p("prm"),
                 "--epochs", c["prm_epochs"], "--lr", c["prm_lr"], "--batch-size", 16, "--seed", self.seed,
                 done=self.p("prm", "config.json"))
        self.psr("mine-pairs: MCTS on the policy, PRM as value -> candidate step pairs", "mine-pairs",
                 "-i", self.p("world", "train.jsonl"), "--limit", c["mine_problems"], "--engine", "hf",
                 "--model", self.m0, "--prm", self.p("prm"), "--num-iterations", c["mine_iterations"],
                 "--width", c["mine_width"], "--temperature", c["mine_temperature"], "--margin", c["margin"],
                 "--working-set", 256, "--max-step-tokens", 60, "-o", self.p("pairs.jsonl"),
                 "--stats", self.p("mine_stats.json"), "--seed", self.seed)
        self.psr("annotate-eft: judge each pair twice (A/B swapped), keep the consistent ones", "annotate-eft",
                 "-i", self.p("pairs.jsonl"), "--engine", "oracle", "--model", self.judge_style, "-o", self.p("eft.jsonl"),
                 "--test-size", c["eft_test"], "--test-output", self.p("eft_test.jsonl"), "--seed", self.seed)

    def world_args(self) -> list:
        if not self.world:
            return []
        return ["--world", "events", "--events", self.world["events"], "--distractors", self.world["distractors"],
                "--other-first", self.world.get("other_first", 0.0)]

    def srlm_data(self) -> None:
        """The SRLM baseline's judge data: the same candidate pairs, each response scored 0-5 by the oracle."""
        c = self.cfg
        # Its own, smaller held-out size: a 0-5 score cannot rank most mined step pairs (both candidates wrong,
        # or a wrong step before them, score alike), so far fewer pairs are kept than in the pairwise format
        # (seed 0, full size: 52 of 721 vs 345) and the pairwise split's 150 would leave nothing to train on.
        self.psr("annotate-eft --format scoring: the same pairs as two responses each, scored 0-5 (SRLM's EFT)",
                 "annotate-eft", "--format", "scoring", "-i", self.p("pairs.jsonl"), "--engine", "oracle",
                 "-o", self.p("eft_scoring.jsonl"), "--test-size", c["eft_scoring_test"],
                 "--test-output", self.p("eft_scoring_test.jsonl"), "--seed", self.seed)

    def sft(self, name: str = "m1") -> None:
        """M0 + IFT + EFT -> M1; ``name`` "s1": M0 + the same IFT + scoring EFT -> S1, the same settings."""
        c = self.cfg
        eft, what = ("eft.jsonl", "EFT") if name == "m1" else ("eft_scoring.jsonl", "scoring EFT (SRLM baseline)")
        inputs = ["-i", self.p("ift.jsonl"), "-i", self.p(eft)]
        if not os.path.exists(self.p(name, "config.json")) and os.path.getsize(self.p(eft)) == 0:
            # Too few kept pairs for a train split is a result to show (the judge gate reads it), not a crash.
            console.print(f"[yellow]{eft} is empty (every kept pair went to the held-out split): "
                          f"{name.upper()} is trained on IFT alone[/yellow]")
            inputs = inputs[:2]
        self.psr(f"sft: M0 + IFT + {what} -> {name.upper()}", "sft", *inputs,
                 "--model", self.m0, "-o", self.p(name), "--epochs", c["sft_epochs"], "--lr", c["sft_lr"],
                 "--batch-size", c["sft_batch"], "--per-device-batch-size", c["sft_batch"], "--warmup", 0.05,
                 "--lr-scheduler", "cosine", "--max-length", self.max_length,
                 "--seed", self.seed, done=self.p(name, "config.json"))

    BRANCHES = {"psr": "m", "srlm": "s", "oracle": "o"}

    @classmethod
    def name(cls, i: int, mode: str) -> str:
        """M_i of a branch: m1, m2, ... (PSRLM); the SRLM baseline has its own s1 (scoring EFT), s2, s3, ...;
        the oracle-judged control branches off M1 as o2, o3, ..."""
        if i == 1 and mode != "srlm":
            return "m1"
        return f"{cls.BRANCHES[mode]}{i}"

    def iteration(self, i: int, n_problems: int, mode: str = "psr") -> None:
        """Search with M_i (it judges its own steps) -> PPD(M_i) -> step-dpo -> M_{i+1}.

        mode "srlm" is the paper's baseline on the same problems and width: whole solutions scored 0-5 by
        the model (Yuan et al.'s prompt), best vs worst, trained with the same step-dpo. Mode "oracle" is a
        control, not the method: the same step search, but the oracle judges the candidates, so it shows
        what step-DPO does with right preferences, apart from how well the model judges."""
        c = self.cfg
        src, dst = self.name(i, mode), self.name(i + 1, mode)
        # Each iteration searches new questions, as the paper samples new prompts per round, and questions
        # SFT did not train on: M1 answers 96% of its IFT problems and 86% of unseen ones (seed 0), so
        # searching the IFT problems met few of its errors (389 oracle-judged pairs from 400 of them vs 522
        # from 400 unseen, width 6). Runs made before world/search.jsonl existed search train.jsonl.
        start = sum(c["search_problems"][: i - 1])
        problems = self.p(f"search_problems_m{i}.jsonl")
        if not os.path.exists(problems):
            pool = self.p("world", "search.jsonl")
            with open(pool if os.path.exists(pool) else self.p("world", "train.jsonl")) as fh:
                lines = fh.readlines()
            with open(problems, "w") as fh:
                fh.writelines(lines[(start + k) % len(lines)] for k in range(n_problems))
        tag = "" if mode == "psr" else f"_{mode}"
        ppd, traj = self.p(f"ppd_{src}{tag}.jsonl"), self.p(f"trajectories_{src}{tag}.jsonl")
        self.made[dst] = (ppd, traj)
        self.made.setdefault(src, (None, None))
        src_name = src.upper()
        what = {"psr": f"{src_name} samples {c['width']} candidates a step and judges them pairwise",
                "srlm": f"{src_name} samples {c['width']} whole solutions and scores each 0-5 (SRLM baseline)",
                "oracle": f"{src_name} samples {c['width']} candidates a step, the oracle judges them (control)"}[mode]
        step_search = ["--temperature", c["search_temperature"], "--max-iterations", c["max_iterations"],
                       "--max-step-tokens", 60]
        # Yuan et al.'s scoring prompt takes ~900 of M0's 1024 positions: a world solution (~100 tokens) must fit.
        extra = {"psr": step_search, "srlm": ["--mode", "srlm", "--max-solution-tokens", 96],
                 "oracle": [*step_search, "--judge-engine", "oracle"]}[mode]
        self.psr(f"search: {what} -> PPD", "search", "-i", problems, "--model", self.p(src), "-o", ppd,
                 "--trajectories", traj, "--width", c["width"], *extra, "--judge-max-tokens", c["max_tokens"],
                 "--seed", self.seed + i)
        if not os.path.exists(self.p(dst, "config.json")) and os.path.getsize(ppd) == 0:
            # The loop goes on, so the table shows it; nothing to train on is a result, not a crash.
            console.print(f"[yellow]{src.upper()} made no preference pairs (every step tied or had no "
                          f"verdict): {dst.upper()} = {src.upper()}[/yellow]")
            shutil.copytree(self.p(src), self.p(dst), dirs_exist_ok=True)
            return
        self.psr(f"step-dpo: {src.upper()} + its pairs -> {dst.upper()}", "step-dpo", "-i", ppd,
                 "--model", self.p(src), "-o", self.p(dst), "--lr", c["dpo_lr"], "--beta", c["dpo_beta"],
                 "--batch-size", 16, "--per-device-batch-size", 16, "--seed", self.seed,
                 done=self.p(dst, "config.json"))

    def judge_gate(self, name: str = "m1") -> dict:
        """The measurement that gates self-rewarding: is M1 a better-than-chance judge of its steps?

        M1 judges the held-out EFT split in both orders. The 95% interval (Wilson, counted over records,
        not judgments, since a record's two orders are not independent) must lie above 50%; otherwise the
        pairs its search makes rank steps no better than a coin, and step-DPO trains on noise."""
        self.judge_eval(name, " (the gate)")
        j = json.load(open(self.p("evals", f"judge_{name}.json")))
        n, acc = j.get("n") or 0, j.get("accuracy") or 0.0
        lo, hi = wilson(acc / 100 * n, n)
        gate = {"model": name.upper(), "accuracy": acc, "ci95": [round(lo, 1), round(hi, 1)], "records": n,
                "no_verdict_rate": j.get("no_verdict_rate"), "passed": lo > 50.0}
        style = "green" if gate["passed"] else "yellow"
        console.print(f"[{style}]judge gate: {name.upper()} judges {acc:.1f}% right (95% CI {lo:.1f}-{hi:.1f}, "
                      f"{n} records, both orders); {'passed' if gate['passed'] else 'NOT above chance: the pairs its search makes are noise'}[/{style}]")
        json.dump(gate, open(self.p("judge_gate.json"), "w"), indent=2)
        return gate

    def judge_eval(self, name: str, note: str = "") -> None:
        """``name`` judges the held-out EFT split in both orders -> evals/judge_<name>.json; the SRLM branch
        (s1, s2, ...) was trained to score solutions, so it scores the held-out scoring EFT split instead."""
        os.makedirs(self.p("evals"), exist_ok=True)
        scoring = name.startswith(self.BRANCHES["srlm"])
        what = "a 0-5 solution scorer on the held-out scoring EFT split" if scoring else \
            "a step-wise judge on the held-out EFT split"
        self.psr(f"eval: {name.upper()} as {what}{note}", "eval", "--task", "judge",
                 "-i", self.p("eft_scoring_test.jsonl" if scoring else "eft_test.jsonl"), "--model", self.p(name),
                 "-o", self.p("evals", f"judge_{name}.jsonl"), "--summary", self.p("evals", f"judge_{name}.json"),
                 "--name", name.upper(), "--max-tokens", self.cfg["max_tokens"], "--seed", self.seed)

    def evaluate(self, models: list[str]) -> None:
        c = self.cfg
        os.makedirs(self.p("evals"), exist_ok=True)
        gsm = self.p("gsm8k_sample.jsonl")
        with open(GSM8K_SAMPLE) as src, open(gsm, "w") as dst:
            dst.writelines(src.readlines()[: c["gsm8k"]])
        gsm_in = ["-i", f"gsm8k={gsm}"] if c["gsm8k"] else []
        for name in models:
            model = self.m0 if name == "m0" else self.p(name)
            self.psr(f"eval: {name.upper()} on held-out world problems" + (" and a GSM8K sample" if gsm_in else ""),
                     "eval", "-i", f"world={self.p('world', 'test.jsonl')}", *gsm_in, "--model", model,
                     "-o", self.p("evals", f"{name}.jsonl"), "--summary", self.p("evals", f"{name}.json"),
                     "--name", name.upper(), "--max-tokens", c["max_tokens"], "--seed", self.seed)
        for name in [m for m in models if m != "m0"]:
            self.judge_eval(name)
        self.psr("compare: accuracy by iteration", "eval", "--compare",
                 *[self.p("evals", f"{m}.json") for m in models], "--plot", self.p("accuracy.png"),
                 "--summary-md", self.p("accuracy.md"))

    def report(self, models: list[str]) -> dict:
        return report(self, models)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m psr.world.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/demo", help="run directory (default runs/demo); rerun to resume")
    ap.add_argument("--size", choices=sorted(SIZES), default=None,
                    help="full (default), ci (minutes), events (the events world's default) or events-ci")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--m0", default=None, help="base model directory (default data/m0; data/m0-events with --world events)")
    ap.add_argument("--iterations", type=int, default=2, help="search -> step-dpo rounds after M1 (default 2)")
    ap.add_argument("--iterate", type=int, default=0, help="n more rounds on top of an existing run")
    ap.add_argument("--gate", choices=["warn", "stop"], default="warn",
                    help="when M1 does not judge above chance on the EFT test split: warn and go on (default), "
                    "or stop before the self-rewarding rounds")
    ap.add_argument("--srlm", action="store_true", help="also run the SRLM baseline: its own S1 (M0 + the same IFT "
                    "+ the same pairs annotated in the 0-5 scoring format, writes eft_scoring.jsonl, "
                    "eft_scoring_test.jsonl, s1/), then S2, S3, ... on the same problems and width, and evaluate it")
    ap.add_argument("--oracle-judge", action="store_true", help="also run a control branch (O2, O3, ...) from M1: "
                    "the same step search with the oracle as the judge, i.e. step-DPO on right preferences")
    ap.add_argument("--world", choices=["arith", "events"], default="arith",
                    help="arith: the arithmetic world (default; data/m0); events: psr/world/events.py, with data/m0-events "
                    "and the events size unless --m0/--size say otherwise")
    ap.add_argument("--events", type=int, default=4, help="events world: events of the asked-about person (default 4)")
    ap.add_argument("--distractors", type=int, default=2,
                    help="events world: events of someone else, the difficulty knob (default 2)")
    ap.add_argument("--other-first", type=float, default=0.0,
                    help="events world: fraction of questions introducing the other person first (default 0)")
    ap.add_argument("--judge-style", choices=list(JUDGE_STYLES), default="verdict-first",
                    help="how the oracle words the EFT judgments M1 learns to judge from (default verdict-first)")
    a = ap.parse_args(argv)
    world = dict(events=a.events, distractors=a.distractors, other_first=a.other_first) if a.world == "events" else None
    try:
        run(a.out, a.size, a.seed, a.m0, a.iterations, a.iterate, a.gate, a.srlm, a.oracle_judge, world, a.judge_style)
    except PsrError as e:
        raise SystemExit(f"demo: {e}") from None


def run(out: str = "runs/demo", size: str | None = None, seed: int = 0, m0: str | None = None, iterations: int = 2,
        iterate: int = 0, gate_mode: str = "warn", srlm: bool = False, oracle_judge: bool = False,
        world: dict | None = None, judge_style: str = "verdict-first") -> None:
    """The whole demo (`psr demo`, `python -m psr.world.demo`); main() says what each option means. ``size`` and
    ``m0`` default to the world's: full and data/m0, or events and data/m0-events."""
    size = size or ("events" if world else "full")
    m0 = m0 or (EVENTS_M0 if world else DEFAULT_M0)
    if not os.path.exists(os.path.join(m0, "config.json")):
        raise InputError(f"no base model at {m0}; build it with `python -m psr.world.pretrain --out {m0}`")
    d = Demo(out, size, seed, m0, world, judge_style)
    if srlm and os.path.exists(d.p("s2", "config.json")) and not os.path.exists(d.p("s1", "config.json")):
        # Runs made before S1 existed branched the SRLM baseline off M1; resuming would keep those S2, S3.
        raise InputError(f"{d.p('s2')} was made by the old SRLM branch from M1 (there is no s1); "
                         "remove s2, s3, ..., *_srlm.jsonl and evals/s* there, or use a new --out")
    t0 = time.time()
    d.data()
    d.sft()
    gate = d.judge_gate()
    if not gate["passed"] and gate_mode == "stop":
        raise SystemExit(1)
    if srlm:
        d.srlm_data()
        d.sft("s1")
    rounds = iterations
    if iterate:
        done = 1
        while os.path.exists(d.p(f"m{done + 1}", "config.json")):
            done += 1
        rounds = done - 1 + iterate
    while len(d.cfg["search_problems"]) < rounds:
        d.cfg["search_problems"].append(d.cfg["search_problems"][-1])
    for i in range(1, rounds + 1):
        d.iteration(i, d.cfg["search_problems"][i - 1])
    models = ["m0", *[f"m{i}" for i in range(1, rounds + 2)]]
    for mode in [m for m, on in (("srlm", srlm), ("oracle", oracle_judge)) if on]:
        for i in range(1, rounds + 1):
            d.iteration(i, d.cfg["search_problems"][i - 1], mode=mode)
        models += [d.name(i, mode) for i in range(1 if mode == "srlm" else 2, rounds + 2)]
    d.evaluate(models)
    d.report(models)
    console.print(f"demo finished in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
