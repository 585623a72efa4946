"""``psr segment``: reference solutions -> IFT records (steps)."""

from __future__ import annotations

from psr.cli import options as O
from psr.cli.root import app
from psr.core.records import IOConfig
from psr.engines.base import EngineConfig
from psr.stages.segment import SegmentConfig

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
@O.with_options(O.engine_options(), "engine_cfg", engine="openai", omit=("tensor_parallel_size",))
@O.with_options(O.dataclass_options(SegmentConfig), "cfg")
@O.with_options(O.io_options(), "io")
def segment(*, io: IOConfig, cfg: SegmentConfig, engine_cfg: EngineConfig) -> None:
    from psr.stages import segment as stage

    stage.run(io.writing({"--rejects": cfg.rejects}), cfg, engine_cfg)
