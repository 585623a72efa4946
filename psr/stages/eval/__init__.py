"""``psr eval``: benchmark accuracy (paper Table 1), step statistics (Tables 4, 7, 8), test-time scaling
(Tables 5, 9), step-wise judge accuracy (Table 3), and the comparison of iterations M0..Mn (Table 2).

Math: every problem of every benchmark is answered (greedy decoding, or the self-judged step search
with ``tts``), graded against its gold answer and written as one ``prediction`` record whose id is
``<benchmark>/<problem id>``, so several benchmarks share one output file, one engine and one resume.

Judge: every EFT record is judged twice with the Figure 5 prompt, once as stored (step_a shown as A)
and once swapped, which measures accuracy, position bias and the agreement of the two orders.
Scoring-format EFT records (the SRLM baseline's judge data) are scored once each with Yuan et al.'s
0-5 prompt: exact score agreement, and, for the two responses of a pair, whether the better one
scores higher.
"""

from __future__ import annotations

from psr.core.errors import InputError
from psr.core.records import IOConfig, read_records
from psr.engines import Engine, EngineConfig, engine_seed, open_engine
from psr.stages.eval.common import PROMPTS, TASKS, EvalConfig
from psr.stages.eval.compare import compare, load_summary, plot_accuracy
from psr.stages.eval.judge import load_eft, run_judge, summarize_judge, summarize_scoring
from psr.stages.eval.math import benchmark_name, grade_outputs, load_problems, run_math, summarize_math
from psr.stages.eval.report import summary_markdown, summary_outputs, write_summary


def run(io: IOConfig, cfg: EvalConfig, engine: EngineConfig | Engine) -> dict:
    """Evaluate and write predictions to ``io.output``; return (and write) the summary.

    ``engine``: an ``EngineConfig`` to load (and close), or a ready ``Engine`` (tests inject a scripted one); the
    summary's model and the run seed are those of the config (a ready engine's own, when it has one).
    """
    # Read and check every input before a (possibly large) model is loaded.
    items = load_problems(io) if cfg.task == "math" else load_eft(io)
    if not items:
        raise InputError("nothing to evaluate (check --limit and --shard)")
    stage = run_math if cfg.task == "math" else run_judge
    engine_cfg = engine if isinstance(engine, EngineConfig) else getattr(engine, "cfg", None)
    model = engine_cfg.model if isinstance(engine_cfg, EngineConfig) else None
    if isinstance(engine, EngineConfig) and not engine.model and engine.engine != "oracle":
        raise InputError("--model is required")
    with open_engine(engine) as eng:
        summary = stage(io, eng, cfg, items, model, engine_seed(engine))
    write_summary(summary, cfg)
    return summary


def summarize_file(paths: list[str], cfg: EvalConfig) -> dict:
    """Recompute the summary of existing predictions (e.g. the concatenated shards of a run)."""
    preds = read_records(paths, "prediction")
    task = "judge" if preds and preds[0].get("task") == "judge" else "math"
    if task == "math":
        bad = [p["id"] for p in preds if not isinstance(p.get("steps"), list) or "benchmark" not in p]
        if bad:
            raise InputError(f"not psr eval predictions (no 'benchmark'/'steps'): {bad[0]!r}", paths[0])
    if task == "math":
        summary = summarize_math(preds)
    else:
        summary = summarize_scoring(preds) if preds[0].get("format") == "scoring" else summarize_judge(preds)
    summary["name"] = cfg.name
    write_summary(summary, cfg)
    return summary


__all__ = [
    "PROMPTS",
    "TASKS",
    "EvalConfig",
    "benchmark_name",
    "compare",
    "grade_outputs",
    "load_eft",
    "load_problems",
    "load_summary",
    "plot_accuracy",
    "run",
    "run_judge",
    "run_math",
    "summarize_file",
    "summarize_judge",
    "summarize_math",
    "summarize_scoring",
    "summary_markdown",
    "summary_outputs",
    "write_summary",
]
