"""``psr paper RECIPE.yaml`` (``just paper``): the paper's whole pipeline from one recipe file (configs/paper/).

The config-driven counterpart of ``psr demo`` (psr/world/demo.py) for real data: it only launches ``psr``
commands, each printed before it runs exactly as a user would type it. A recipe names per-stage option blocks,
each exactly what ``psr COMMAND --config`` reads; the runner writes each block to RUN/configs/NAME.yaml and adds
the paths (-i, -o, --model, ...) as flags. Order:

    segment -> train-prm -> mine-pairs -> annotate-eft -> sft (M1) -> (search -> step-dpo) x rounds (M2..)
    -> eval of M0..Mn (+ judge accuracy, M0 few-shot; + TTS) -> eval --compare (Table 1)

RUN/run.jsonl logs every stage launched or skipped (command, resolved options, wall time, exit code, records,
pairs, accuracy: psr/cli/run_log.py); the run ends with it as a table. A finished model directory (psr_config.json) is skipped without launching anything; every other stage is
rerun and its own resume makes a finished one a no-op. The first failing command stops the recipe with its
exit code.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Literal

import typer

from psr.cli import run_log
from psr.cli.paper_recipe import TRAINING, RecipeFailed, Runner, load_recipe  # noqa: F401 (TRAINING is re-exported)
from psr.cli.root import app
from psr.core.errors import InputError

# stages --until accepts, in the order they run (srlm-* and eval-* are all of their kind)
UNTIL = ("world", "segment", "train-prm", "mine-pairs", "annotate-eft", "sft", "rounds", "eval", "compare")


class Recipe(Runner):
    """The paper's stages, each launched with ``Runner.psr``."""

    def world(self) -> None:
        if "world" in self.r.get("stages", {}):  # the tiny override builds its data first
            # psr world writes its files afresh each run (the same ones, by seed): a finished world is kept
            self.psr("world", "world", "-o", self.p("world"), done=self.p("world", "psr_options.yaml"))

    def initial(self, until: str) -> None:
        base = self.r["base_model"]
        self.psr(
            "segment",
            "segment",
            "-i",
            self.d("numina"),
            "-o",
            self.p("ift.jsonl"),
            "--rejects",
            self.p("ift_rejects.jsonl"),
        )
        if until == "segment":
            return
        self.psr(
            "train-prm",
            "train-prm",
            "-i",
            self.d("prm800k"),
            "--model",
            base,
            "-o",
            self.p("prm"),
            done=self.p("prm", "psr_config.json"),
        )
        if until == "train-prm":
            return
        self.psr(
            "mine-pairs",
            "mine-pairs",
            "-i",
            self.d("numina"),
            "--model",
            self.r.get("policy_model") or base,
            "--prm",
            self.p("prm"),
            "-o",
            self.p("pairs.jsonl"),
            "--stats",
            self.p("mine_stats.json"),
        )
        if until == "mine-pairs":
            return
        self.psr(
            "annotate-eft",
            "annotate-eft",
            "-i",
            self.p("pairs.jsonl"),
            "-o",
            self.p("eft.jsonl"),
            "--test-output",
            self.p("eft_test.jsonl"),
        )
        if self.r.get("srlm"):
            self.psr(
                "annotate-eft",
                "annotate-eft-scoring",
                "-i",
                self.p("pairs.jsonl"),
                "-o",
                self.p("eft_scoring.jsonl"),
                "--test-output",
                self.p("eft_scoring_test.jsonl"),
            )
        if until == "annotate-eft":
            return
        self.psr(
            "sft",
            "sft",
            "-i",
            self.p("ift.jsonl"),
            "-i",
            self.p("eft.jsonl"),
            "--model",
            base,
            "-o",
            self.p("m1"),
            done=self.p("m1", "psr_config.json"),
        )
        if self.r.get("srlm"):
            self.psr(
                "sft",
                "sft",
                "-i",
                self.p("ift.jsonl"),
                "-i",
                self.p("eft_scoring.jsonl"),
                "--model",
                base,
                "-o",
                self.p("s1"),
                done=self.p("s1", "psr_config.json"),
            )

    def rounds_of(self, branch: str) -> None:
        """M1 -> M2 -> ... (branch "m"), or the SRLM baseline S1 -> S2 -> ... ("s"), each round on its own new
        questions: the same files and sizes for both branches."""
        search = "search" if branch == "m" else "search-srlm"
        for i in range(1, self.rounds + 1):
            src, dst = self.p(f"{branch}{i}"), self.p(f"{branch}{i + 1}")
            ppd = self.p(f"ppd_{branch}{i}.jsonl")
            questions = self.data["questions"][i - 1].replace("{run}", self.run)
            per_round = (self.r.get("round_options") or [{}] * self.rounds)[i - 1] or {}
            self.psr(
                "search",
                search,
                "-i",
                questions,
                "--limit",
                self.r["new_questions"][i - 1],
                *[a for k, v in per_round.items() for a in (f"--{k}", v)],
                "--model",
                src,
                "-o",
                ppd,
                "--trajectories",
                self.p(f"trajectories_{branch}{i}.jsonl"),
                "--seed",
                i,
            )
            self.psr(
                "step-dpo", "step-dpo", "-i", ppd, "--model", src, "-o", dst, done=os.path.join(dst, "psr_config.json")
            )

    def models(self) -> list[str]:
        names = [f"m{i}" for i in range(self.rounds + 2)]
        if self.r.get("srlm"):
            names += [f"s{i}" for i in range(1, self.rounds + 2)]
        return names

    def model_path(self, name: str) -> str:
        return self.r["base_model"] if name == "m0" else self.p(name)

    def evaluate(self) -> None:
        benchmarks = [f"{b}={os.path.join(self.d('benchmarks_dir'), f)}" for b, f in self.d("benchmarks").items()]
        inputs = [a for b in benchmarks for a in ("-i", b)]
        ev = self.p("evals")
        for name in self.models():
            self.psr(
                "eval",
                "eval",
                *inputs,
                "--model",
                self.model_path(name),
                "-o",
                f"{ev}/{name}.jsonl",
                "--summary",
                f"{ev}/{name}.json",
                "--name",
                name.upper(),
            )
        for name in self.models():
            srlm = name.startswith("s")
            test = self.p("eft_scoring_test.jsonl" if srlm else "eft_test.jsonl")
            shots = []
            if name == "m0" and self.r.get("judge_few_shot"):  # Table 3: M0 (3-shot)
                shots = ["--few-shot", self.r["judge_few_shot"], "--few-shot-examples", self.p("eft.jsonl")]
            self.psr(
                "eval",
                "eval-judge",
                "-i",
                test,
                "--model",
                self.model_path(name),
                *shots,
                "-o",
                f"{ev}/judge_{name}.jsonl",
                "--summary",
                f"{ev}/judge_{name}.json",
                "--name",
                name.upper(),
            )
        for name in self.r.get("tts_models") or []:
            self.psr(
                "eval",
                "eval-tts",
                *inputs,
                "--model",
                self.model_path(name),
                "-o",
                f"{ev}/tts_{name}.jsonl",
                "--summary",
                f"{ev}/tts_{name}.json",
                "--name",
                f"{name.upper()} (TTS)",
            )

    def compare(self) -> None:
        """Table 1 (accuracy by model and benchmark), Table 3 (judge accuracy; the SRLM rows score 0-5, a
        comparison of their own), and the TTS rows."""
        ev, models = self.p("evals"), self.models()
        tables = [
            ("table1", [f"{ev}/{m}.json" for m in models]),
            ("table3", [f"{ev}/judge_{m}.json" for m in models if m.startswith("m")]),
            ("table3_srlm", [f"{ev}/judge_{m}.json" for m in models if m.startswith("s")]),
            ("tts", [f"{ev}/tts_{m}.json" for m in self.r.get("tts_models") or []]),
        ]
        for name, summaries in tables:
            if summaries:
                plot = ["--plot", self.p("table1.png")] if name == "table1" else []
                self.psr(
                    "eval",
                    "compare",
                    "--compare",
                    *summaries,
                    *plot,
                    "--summary",
                    self.p(f"{name}.json"),
                    "--summary-md",
                    self.p(f"{name}.md"),
                )


def run(path: str, overrides: list[str] = (), dry_run: bool = False, until: str | None = None) -> Recipe:
    """Run (or, with dry_run, print) the recipe at ``path``; main() says what each option means."""
    r = Recipe(load_recipe(path, overrides), dry_run)
    validate(r)
    stop = until or UNTIL[-1]
    r.world()
    if stop == "world":
        return r
    r.initial(stop)
    if stop in UNTIL[1:6]:
        return r
    _rounds(r)
    if stop != "rounds":
        r.evaluate()
        if stop != "eval":
            r.compare()
    return r


def _rounds(r: Recipe) -> None:
    r.rounds_of("m")
    if r.r.get("srlm"):
        r.rounds_of("s")


def validate(r: Recipe) -> None:
    """Every stage block is checked by the --config reader of its command before anything runs (a bad key or
    value stops the recipe with exit 2, naming the block's file and the key)."""
    import typer.main

    from psr.cli import config

    commands = {
        "annotate-eft-scoring": "annotate-eft",
        "search-srlm": "search",
        "eval-judge": "eval",
        "eval-tts": "eval",
        "compare": "eval",
    }
    group = typer.main.get_command(app)
    for name in r.r.get("stages") or {}:
        command = group.commands.get(commands.get(name, name))
        if command is None:
            raise InputError(f"the recipe has a block {name!r} that names no psr command")
        ctx = command.context_class(command, info_name=command.name)
        try:
            config.load(ctx, r.block(name))
        except config.UsageError as e:
            raise InputError(f"stage {name}: {e.format_message()}") from None


@app.command(
    "paper",
    help="Run the paper's pipeline from a recipe (configs/paper/7b.yaml, 72b.yaml): segment -> "
    "train-prm -> mine-pairs -> annotate-eft -> sft -> (search -> step-dpo) x3 -> eval of M0..M4 -> the "
    "Table 1 and Table 3 comparisons, each stage printed as the psr command it runs. Rerun to resume: "
    "finished models are skipped and every other stage resumes. Edit configs/paper/data.yaml for your "
    "data; --override FILE merges another recipe file on top (configs/paper/tiny.yaml: the offline "
    "world on CPU).",
)
def paper(
    recipe: Annotated[str, typer.Argument(help="The recipe YAML (configs/paper/7b.yaml or 72b.yaml).")],
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print every command and run none (the stage blocks are still written to RUN/configs/)."
        ),
    ] = False,
    override: Annotated[
        list[str] | None, typer.Option("--override", help="A recipe file merged on top (repeatable, in order).")
    ] = None,
    until: Annotated[
        Literal[UNTIL] | None, typer.Option("--until", help=f"Stop after this stage: {' | '.join(UNTIL)}.")
    ] = None,
) -> None:
    try:
        r = run(recipe, override or [], dry_run, until)
    except RecipeFailed as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(e.code) from None
    if not dry_run and run_log.read(r.run):
        print(
            f"paper: the run so far ({os.path.join(r.run, run_log.LOG)}):\n{run_log.table(r.run)}", file=sys.stderr
        )  # click returns a typer.Exit's code instead of exiting with it
