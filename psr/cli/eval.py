"""``psr eval``: benchmark accuracy, judge accuracy, test-time scaling, step statistics, iteration comparison."""

from __future__ import annotations

from typing import Annotated

import typer

from psr.cli import options as O
from psr.cli.root import app
from psr.core.errors import InputError
from psr.core.paths import check_outputs
from psr.engines.base import EngineConfig

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

Task = Annotated[str, typer.Option("--task", help="math (benchmark accuracy) | judge (step-wise judge on EFT records).")]
Prompt = Annotated[str, typer.Option("--prompt", help="step (Figure 4) | qwen-cot (Qwen2.5-Math CoT system prompt).")]
Grader = Annotated[str, typer.Option("--grader", help="default (math-verify + normalization) | qwen (Qwen2.5-Math "
                                     "evaluator) | math-verify.")]
GradeTimeout = Annotated[float, typer.Option("--grade-timeout", help="Seconds to grade one answer; a slower one is "
                                             "graded wrong (grade_failure: timeout).")]
MaxTokens = Annotated[int, typer.Option("--max-tokens", help="Most new tokens per answer, judgment or step.")]
ChunkSize = Annotated[int, typer.Option("--chunk-size", help="Prompts per engine call; results are written after "
                                        "each call.")]
Tts = Annotated[bool, typer.Option("--tts", help="Test-time scaling: answer with the self-judged step search.")]
Width = Annotated[int, typer.Option("--width", help="--tts: candidates a step.")]
Temperature = Annotated[float, typer.Option("--temperature", help="--tts: sampling temperature of the candidates.")]
TopP = Annotated[float, typer.Option("--top-p", help="--tts: nucleus sampling of the candidates.")]
MaxIterations = Annotated[int, typer.Option("--max-iterations", help="--tts: generation rounds per problem, "
                                            "rollbacks included.")]
Limit = Annotated[int | None, typer.Option("--limit", help="math: the first N problems of each benchmark; judge: "
                                           "at most N records (after --shard).")]
Name = Annotated[str | None, typer.Option("--name", help="Label of this run in --compare (default: the summary's "
                                          "file name).")]
Summary = Annotated[str | None, typer.Option("--summary", help="Write the summary JSON here.")]
SummaryMd = Annotated[str | None, typer.Option("--summary-md", help="Write the Markdown table here (default: beside "
                                               "--summary, .md).")]
Compare = Annotated[bool, typer.Option("--compare", help="Compare the summary JSON files given as arguments.")]
Summarize = Annotated[bool, typer.Option("--summarize", help="Summarize the prediction files given with -i; no "
                                         "model.")]
Plot = Annotated[str | None, typer.Option("--plot", help="--compare: write a PNG of accuracy by iteration.")]
FewShot = Annotated[int, typer.Option("--few-shot", help="judge: K worked examples (Figure 5 prompts with their "
                                      "judgments) before each prompt, for a base model (Table 3: M0 3-shot).")]
FewShotExamples = Annotated[str | None, typer.Option("--few-shot-examples", help="judge: pairwise EFT records the "
                                                     "--few-shot examples are drawn from (the EFT training split), "
                                                     "none of them a judged record.")]
Summaries = Annotated[list[str] | None, typer.Argument(help="--compare: summary JSON files, M0 first.",
                                                       show_default=False)]


@app.command("eval", help=HELP)
@O.with_options(O.engine_config, "engine_cfg")
def eval_cmd(
    summaries: Summaries = None,
    inputs: O.Inputs = None,
    output: O.Output = "-",
    overwrite: O.Overwrite = False,
    limit: Limit = None,
    shard: O.Shard = None,
    task: Task = "math",
    prompt: Prompt = "step",
    grader: Grader = "default",
    grade_timeout: GradeTimeout = 3.0,
    max_tokens: MaxTokens = 2048,
    chunk_size: ChunkSize = 512,
    tts: Tts = False,
    width: Width = 6,
    temperature: Temperature = 0.5,
    top_p: TopP = 0.95,
    max_iterations: MaxIterations = 20,
    few_shot: FewShot = 0,
    few_shot_examples: FewShotExamples = None,
    name: Name = None,
    summary: Summary = None,
    summary_md: SummaryMd = None,
    compare: Compare = False,
    summarize: Summarize = False,
    plot: Plot = None,
    *,
    engine_cfg: EngineConfig,
) -> None:
    from psr.stages import eval as stage

    if compare:
        if inputs:
            raise InputError("--compare takes summary JSON files as arguments, not -i")
        check_outputs(summaries or [], {"--summary": summary, "--summary-md": summary_md, "--plot": plot})
        stage.compare(summaries or [], plot=plot, markdown=summary_md, output_json=summary)
        return
    if summaries:
        raise InputError(f"unexpected argument {summaries[0]!r} (summaries are compared with --compare)")
    if plot:
        raise InputError("--plot goes with --compare")
    cfg = stage.EvalConfig(task=task, prompt=prompt, grader=grader, grade_timeout=grade_timeout, max_tokens=max_tokens, chunk_size=chunk_size,
                           tts=tts, width=width, temperature=temperature, top_p=top_p,
                           max_iterations=max_iterations, few_shot=few_shot,
                           few_shot_examples=few_shot_examples, name=name, summary=summary, summary_md=summary_md)
    outputs = stage.summary_outputs(summary, summary_md)
    if summarize:
        check_outputs(inputs or ["-"], outputs)
        stage.summarize_file(inputs or ["-"], cfg)
        return
    # benchmarks may come as NAME=PATH: the paths are what an output must not overwrite
    examples = [few_shot_examples] if few_shot_examples else []
    check_outputs([stage.benchmark_name(s)[1] for s in inputs or ["-"]] + examples, {"-o": output, **outputs})
    stage.run(O.io_config(inputs, output, overwrite, limit, shard, outputs), engine_cfg, cfg)
