"""``psr eval``: benchmark accuracy, judge accuracy, test-time scaling, step statistics, iteration comparison."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from psr.cli import options as O
from psr.cli.root import app
from psr.core.errors import InputError
from psr.core.paths import check_outputs
from psr.core.records import IOConfig
from psr.engines.base import EngineConfig
from psr.search import SearchConfig
from psr.stages.eval.common import EvalConfig

HELP = """\
Benchmark accuracy and step statistics, judge accuracy, or a comparison of iterations (paper §5).

MATH (default): reads benchmark JSONL files (-i PATH or -i NAME=PATH; the name of gsm8k_test.jsonl is
"gsm8k"; records: id, question, answer), answers every problem with greedy decoding and the Figure 4
prompt (--prompt qwen-cot: the Qwen2.5-Math CoT system prompt, for base models; --tts: the self-judged
step search, 6 candidates a step at T=0.5), grades it (--grader default|qwen) and writes one prediction
record per problem to -o (id "<benchmark>/<id>", benchmark, question, output, steps, pred, answer,
correct, step_tokens). Several benchmarks share one engine and one output; resumes by id (after a
change of model, prompt or grader, use a new -o or --overwrite); --shard K/N
splits the run and the shards' outputs concatenate to the full run; --limit N takes the first N
problems of EACH benchmark.

JUDGE (--task judge): reads EFT records (id, question, previous_steps, step_a, step_b, label), judges
each with the Figure 5 prompt in both orders, and writes one record per EFT record. Scoring-format EFT
records (annotate-eft --format scoring: id, pair_id, question, response, score) are scored once each with
Yuan et al.'s 0-5 prompt: exact score agreement, within one point, and for each pair whether the better
response scores strictly higher (pair order accuracy).

Both print a summary table on stderr: accuracy (percent) per benchmark and the average, with step
statistics (steps per solution; tokens per step in the model's tokenizer; characters per step), or the
judge's accuracy, no-verdict rate, accuracy with the better step shown as A vs as B (position bias) and
the agreement of the two orders. --summary PATH.json saves it, and its Markdown table goes to
--summary-md (default: PATH.md beside the JSON). --summarize recomputes a summary from existing
prediction files (-i) without a model, e.g. after concatenating shards.

COMPARE (--compare S0.json S1.json ...): reads saved summaries of M0..Mn and prints a Table-1-style
matrix (rows = runs, columns = benchmarks + average, deltas vs the first row); --summary-md saves the
Markdown, --summary the JSON, --plot PATH.png a plot of accuracy by iteration.
"""

# --tts: the search's own options, with help that says they serve --tts (their defaults are the search's)
_TTS = SearchConfig()
Width = Annotated[int, typer.Option("--width", help="--tts: candidates a step.")]
Temperature = Annotated[float, typer.Option("--temperature", help="--tts: sampling temperature of the candidates.")]
TopP = Annotated[float, typer.Option("--top-p", help="--tts: nucleus sampling of the candidates.")]
MaxIterations = Annotated[
    int, typer.Option("--max-iterations", help="--tts: generation rounds per problem, rollbacks included.")
]
Compare = Annotated[bool, typer.Option("--compare", help="Compare the summary JSON files given as arguments.")]
Summarize = Annotated[bool, typer.Option("--summarize", help="Summarize the prediction files given with -i; no model.")]
Plot = Annotated[str | None, typer.Option("--plot", help="--compare: write a PNG of accuracy by iteration.")]
Summaries = Annotated[
    list[str] | None, typer.Argument(help="--compare: summary JSON files, M0 first.", show_default=False)
]


@app.command("eval", help=HELP)
@O.with_options(O.engine_options(), "engine_cfg")
@O.with_options(O.dataclass_options(EvalConfig), "cfg")
@O.with_options(
    O.io_options(limit="math: the first N problems of each benchmark; judge: at most N records (after --shard)."),
    "io",
    after="shard",
)
def eval_cmd(
    summaries: Summaries = None,
    width: Width = _TTS.width,
    temperature: Temperature = _TTS.temperature,
    top_p: TopP = _TTS.top_p,
    max_iterations: MaxIterations = _TTS.max_iterations,
    compare: Compare = False,
    summarize: Summarize = False,
    plot: Plot = None,
    *,
    io: IOConfig,
    cfg: EvalConfig,
    engine_cfg: EngineConfig,
) -> None:
    from psr.stages import eval as stage

    summary, summary_md, few_shot_examples = cfg.summary, cfg.summary_md, cfg.few_shot_examples
    inputs, given = io.inputs, io.inputs != ["-"]  # no -i: stdin
    if compare:
        if given:
            raise InputError("--compare takes summary JSON files as arguments, not -i")
        check_outputs(summaries or [], {"--summary": summary, "--summary-md": summary_md, "--plot": plot})
        stage.compare(summaries or [], plot=plot, markdown=summary_md, output_json=summary)
        return
    if summaries:
        raise InputError(f"unexpected argument {summaries[0]!r} (summaries are compared with --compare)")
    if plot:
        raise InputError("--plot goes with --compare")
    cfg = replace(
        cfg,
        search=SearchConfig(tts=True, width=width, temperature=temperature, top_p=top_p, max_iterations=max_iterations),
    )
    outputs = stage.summary_outputs(summary, summary_md)
    if summarize:
        check_outputs(inputs, outputs)
        stage.summarize_file(inputs, cfg)
        return
    # benchmarks may come as NAME=PATH: the paths are what an output must not overwrite
    examples = [few_shot_examples] if few_shot_examples else []
    check_outputs([stage.benchmark_name(s)[1] for s in inputs] + examples, {"-o": io.output, **outputs})
    stage.run(io.writing(outputs), cfg, engine_cfg)
