"""``psr segment``: reference solutions -> IFT records (steps)."""

from __future__ import annotations

from typing import Annotated

import typer

from psr.cli import options as O
from psr.cli.root import app
from psr.engines.base import EngineConfig

HELP = """\
Split reference solutions into steps (IFT data, paper §3.2). Reads problem records with a reference
solution (id, question, solution, optional answer; GSM8K's <<...>> calculator annotations are removed)
and writes IFT records (id, question, steps, answer, solution = the original; other fields kept).

--method llm (default, the paper): the Figure 3 prompt through an engine (default openai; the paper used
o1). An output is accepted only if, with the "Step n:" prefixes removed and whitespace normalized, it equals
the solution (so the boxed answer is kept); otherwise it is retried (--content-retries, default 2, sampled at T=0.7
when --temperature is 0), then written with its reason to --rejects PATH (or named in a warning). Counts
ok / retried / rejected are reported at the end.

--method rules: deterministic offline splitting into lines, then sentences, never inside $...$, $$...$$,
\\[...\\], \\(...\\), environments or \\boxed{}; content is kept exactly. No engine.

A solution without \\boxed{} gets a last sentence "The answer is \\boxed{ANSWER}." when the record has an
answer (--no-box-answer: off). Resumes by id (rejected ids count as done); --shard K/N, --limit N.
"""


@app.command("segment", help=HELP)
@O.with_options(O.engine_config, "engine_cfg", engine="openai", omit=("tensor_parallel_size",))
def segment(
    inputs: O.Inputs = None,
    output: O.Output = "-",
    overwrite: O.Overwrite = False,
    limit: O.Limit = None,
    shard: O.Shard = None,
    method: Annotated[str, typer.Option("--method", help="llm (Figure 3 prompt through --engine) | rules (offline).")]
    = "llm",
    content_retries: Annotated[int, typer.Option("--content-retries", help="llm: retries of an output that "
                                                 "changed the content (--max-retries: of a failed request).")] = 2,
    rejects: Annotated[str | None, typer.Option("--rejects", help="llm: JSONL path for records that failed every "
                                                "attempt, with reject_reason.")] = None,
    box_answer: Annotated[bool, typer.Option("--box-answer/--no-box-answer", help="Append \"The answer is "
                                             "\\boxed{ANSWER}.\" to solutions that box nothing.")] = True,
    temperature: Annotated[float, typer.Option("--temperature", help="llm: sampling temperature of the first "
                                               "attempt.")] = 0.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="llm: most new tokens per answer.")] = 4096,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="llm: records per engine call (the openai "
                                            "engine sends a call's requests concurrently).")] = 256,
    *,
    engine_cfg: EngineConfig,
) -> None:
    from psr.stages import segment as stage

    cfg = stage.SegmentConfig(method=method, max_retries=content_retries, rejects=rejects, box_answer=box_answer,
                              temperature=temperature, max_tokens=max_tokens, chunk_size=chunk_size)
    stage.run(O.io_config(inputs, output, overwrite, limit, shard, {"--rejects": rejects}), cfg, engine_cfg)
