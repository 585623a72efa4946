"""``psr segment``: reference solutions -> IFT records (paper §3.2, Figure 3).

``llm`` (the paper): an engine splits each solution into "Step n:" lines. Its output is accepted
only if it keeps the content: with the prefixes removed and whitespace normalized, the steps must
equal the solution (so the boxed answer is kept too), and a solution of several sentences must come
back as more than one step. Failures are retried, then written to the
rejects file with the reason. ``rules``: deterministic offline splitting into lines, then
sentences, never inside math or ``\\boxed{}``.

GSM8K's ``<<48/2=24>>`` calculator annotations are removed first. A solution without ``\\boxed{}``
gets a last sentence "The answer is \\boxed{ANSWER}." when the record has an ``answer``, so the
policy learns to box its answer as Figure 4 asks (``--no-box-answer`` turns this off); the ``solution``
field of the output keeps the original text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Literal

from psr.core.errors import InputError, PsrError
from psr.core.log import info, progress, warn
from psr.core.options import option
from psr.core.prompts import segment_prompt
from psr.core.records import IOConfig, RecordWriter, skip_done
from psr.core.steps import parse_steps
from psr.engines import Engine, engine_seed, open_engine
from psr.engines.base import TOO_LONG, Chat, EngineConfig, Sampling

METHODS = ("rules", "llm")
_CALCULATOR = re.compile(r"<<[^<>]*>>")
_HAS_MARKER = re.compile(r"(?m)^[ \t>#*_]*Step[ \t]*\d+[ \t]*[:.)]")


@dataclass
class SegmentConfig:
    method: Literal[METHODS] = option(
        "llm", "--method", help="llm (Figure 3 prompt through --engine) | rules (offline)."
    )
    max_retries: int = option(
        2,
        "--content-retries",
        param="content_retries",
        help="llm: retries of an output that changed the content (--max-retries: of a failed request).",
    )
    rejects: str | None = option(
        None, "--rejects", help="llm: JSONL path for records that failed every attempt, with reject_reason."
    )
    box_answer: bool = option(
        True,
        "--box-answer/--no-box-answer",
        help='Append "The answer is \\boxed{ANSWER}." to solutions that box nothing.',
    )
    # first attempt; retries sample at RETRY_TEMPERATURE when this is 0
    temperature: float = option(0.0, "--temperature", help="llm: sampling temperature of the first attempt.")
    max_tokens: int = option(4096, "--max-tokens", help="llm: most new tokens per answer.")
    chunk_size: int = option(
        256,
        "--chunk-size",
        help="llm: records per engine call (the openai engine sends a call's requests concurrently).",
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:  # typed on the CLI (a Literal); this guards a config made in Python
            raise InputError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.max_retries < 0:
            raise InputError(f"--content-retries must be >= 0, got {self.max_retries}")
        if self.max_tokens < 1 or self.chunk_size < 1 or not self.temperature >= 0:
            raise InputError(
                f"--max-tokens and --chunk-size must be >= 1 and --temperature >= 0, got "
                f"{self.max_tokens}, {self.chunk_size} and {self.temperature:g}"
            )


RETRY_TEMPERATURE = 0.7


# ---------------------------------------------------------------------------------------------
# Text


def normalize(text: str) -> str:
    return " ".join(text.split())


def prepare(rec: dict, box_answer: bool = True) -> str:
    """The text to segment: calculator annotations removed, a boxed answer added if missing."""
    text = _CALCULATOR.sub("", rec["solution"]).strip()
    answer = rec.get("answer")
    if box_answer and answer and "\\boxed" not in text:
        text += f"\nThe answer is \\boxed{{{answer}}}."
    return text


# Spans inside which nothing is split: display and inline math, \boxed{...}, environments.
_OPENERS = re.compile(r"\$\$|\\\[|\\\(|\\begin\{([^{}]*)\}|\\boxed\s*\{|\\fbox\s*\{|(?<!\\)\$")
_CLOSERS = {"$$": "$$", "\\[": "\\]", "\\(": "\\)", "$": "$"}
# Sentence end: . ! ? (optionally closing quote/bracket), whitespace, then something that starts a sentence.
_SENTENCE_END = re.compile(r"[.!?](?:\$|\\\])?[\"')\]]*(?=\s+[A-Z$\\(\"'0-9])")
_PROSE = re.compile(r"[A-Za-z]{3,}\s+[A-Za-z]{3,}")
_TEXT_CMD = re.compile(r"\\(?:text|mbox|textbf|textit|mathrm|operatorname)\s*\{[^{}]*\}|\\[A-Za-z]+")
_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|vs|etc|e\.g|i\.e|approx|No|Fig|Eq)|\b[A-Z])\.$")


def _protected(text: str) -> list[tuple[int, int]]:
    """Character spans of math and boxed content, which a split must never cut."""
    spans, i = [], 0
    while True:
        m = _OPENERS.search(text, i)
        if not m:
            return spans
        tok = m.group(0)
        if tok.endswith("{"):  # \boxed{ ... } with nested braces
            depth, j = 1, m.end()
            while j < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0) if text[j - 1] != "\\" else 0
                j += 1
            end = j
        elif m.group(1) is not None:
            close = f"\\end{{{m.group(1)}}}"
            k = text.find(close, m.end())
            end = len(text) if k < 0 else k + len(close)
        else:
            close = _CLOSERS[tok]
            k = m.end()
            while True:
                k = text.find(close, k)
                if k < 0 or close != "$" or text[k - 1] != "\\":
                    break
                k += 1
            # An unmatched "$", or one whose "math" reads as prose, is a currency sign ("$12"), not math.
            if tok == "$" and (k < 0 or _PROSE.search(_TEXT_CMD.sub("", text[m.end() : k]))):
                i = m.end()
                continue
            end = len(text) if k < 0 else k + len(close)
        spans.append((m.start(), end))
        i = end


def split_rules(text: str) -> list[str]:
    """Lines, then sentences; never inside ``$...$``, ``$$...$$``, ``\\[...\\]``, ``\\(...\\)``,
    ``\\begin{..}...\\end{..}`` or ``\\boxed{}``. Joining the steps with spaces gives back the text
    up to whitespace."""
    spans = _protected(text)

    def inside(pos: int) -> bool:
        return any(a < pos < b for a, b in spans)

    cuts = [m.start() for m in re.finditer(r"\n", text) if not inside(m.start())]
    for m in _SENTENCE_END.finditer(text):
        # The cut goes after the mark, so a sentence may end inside math ("... of $x.$ Then").
        if not inside(m.end()) and not _ABBREV.search(text[max(0, m.start() - 8) : m.start() + 1]):
            cuts.append(m.end())
    pieces, last = [], 0
    for c in sorted(set(cuts)):
        pieces.append(text[last:c])
        last = c
    pieces.append(text[last:])
    return [normalize(p) for p in pieces if p.strip()]


def check_segmentation(output: str, original: str) -> tuple[list[str] | None, str | None]:
    """(steps, None) if the engine's output keeps ``original`` exactly, else (None, reason)."""
    if not _HAS_MARKER.search(output):
        return None, "no 'Step n:' markers in the output"
    steps = parse_steps(output)
    if not steps:
        return None, "no steps in the output"
    got, want = normalize(" ".join(steps)), normalize(original)
    if got != want:
        i = len(os.path.commonprefix([got, want]))
        return None, (
            f"content changed at character {i}: expected {want[max(0, i - 20) : i + 30]!r}, "
            f"got {got[max(0, i - 20) : i + 30]!r}"
        )
    if len(steps) == 1:
        # The whole solution under one "Step 1:" keeps the content but is no segmentation: trained on it,
        # the policy would write solutions as one step and search would have no steps to compare.
        sentences = len(split_rules(want))
        if sentences > 1:
            return None, f"one step for a solution of {sentences} sentences (not segmented)"
    return steps, None


# ---------------------------------------------------------------------------------------------
# The stage


def _ift(rec: dict, steps: list[str]) -> dict:
    out = {k: v for k, v in rec.items() if k != "steps"}
    out["steps"] = steps
    return out


def run(io: IOConfig, cfg: SegmentConfig, engine: EngineConfig | Engine | None = None) -> dict[str, int]:
    """Segment every input solution; returns counts ``ok``, ``retried`` (ok after a retry), ``rejected``."""
    if cfg.rejects is not None and cfg.rejects == io.output and io.output != "-":
        raise InputError("--rejects must differ from --output")
    counts = {"ok": 0, "retried": 0, "rejected": 0}
    writer = RecordWriter(io.output, overwrite=io.overwrite)
    rejects = RecordWriter(cfg.rejects, overwrite=io.overwrite) if cfg.rejects else None
    try:
        done = writer.done | (rejects.done if rejects else set())
        todo = skip_done(io.todo("solution"), done, io.output)
        for rec in todo:
            if not prepare(rec, box_answer=False):
                _reject(rec, "the solution is empty", rejects, counts)
        todo = [r for r in todo if prepare(r, box_answer=False)]
        if cfg.method == "rules":
            for rec in todo:
                writer.write(_ift(rec, split_rules(prepare(rec, cfg.box_answer))))
                counts["ok"] += 1
        else:
            _run_llm(todo, cfg, engine, writer, rejects, counts)
    finally:
        writer.close()
        if rejects:
            rejects.close()
    info(
        f"segment: {counts['ok']} ok ({counts['retried']} of them after a retry), {counts['rejected']} rejected"
        + (f" -> {cfg.rejects}" if counts["rejected"] and cfg.rejects else "")
    )
    return counts


def _reject(rec: dict, why: str, rejects: RecordWriter | None, counts: dict) -> None:
    counts["rejected"] += 1
    if rejects:
        rejects.write({**rec, "reject_reason": why})
    else:
        warn(f"rejected {rec['id']}: {why} (use --rejects PATH to keep them)")


def _run_llm(todo, cfg: SegmentConfig, engine, writer, rejects, counts) -> None:
    seed = engine_seed(engine)
    unanswered = 0  # records whose requests failed on every retry: neither written nor rejected
    with open_engine(engine, EngineConfig(engine="openai")) as engine:
        with progress("segment", len(todo)) as advance:
            for start in range(0, len(todo), cfg.chunk_size):
                chunk = todo[start : start + cfg.chunk_size]
                texts = {r["id"]: prepare(r, cfg.box_answer) for r in chunk}
                pending, reasons = list(chunk), {}
                for attempt in range(cfg.max_retries + 1):
                    if not pending:
                        break
                    temp = cfg.temperature if attempt == 0 or cfg.temperature > 0 else RETRY_TEMPERATURE
                    sampling = Sampling(n=1, temperature=temp, max_tokens=cfg.max_tokens, seed=seed + attempt)
                    outs = engine.generate_partial(
                        [Chat(segment_prompt(r["question"], texts[r["id"]])) for r in pending], sampling
                    )
                    still = []
                    for rec, out in zip(pending, outs, strict=True):
                        if out is None:  # left undone: the rerun asks again
                            unanswered += 1
                            advance()
                            continue
                        if out and out[0].finish_reason == TOO_LONG:  # a rerun would meet the same prompt
                            _reject(rec, "the prompt is longer than the model's context", rejects, counts)
                            advance()
                            continue
                        steps, why = check_segmentation(out[0].text if out else "", texts[rec["id"]])
                        if steps is None:
                            reasons[rec["id"]] = why
                            still.append(rec)
                            continue
                        writer.write(_ift(rec, steps))
                        counts["ok"] += 1
                        counts["retried"] += attempt > 0
                        advance()
                    pending = still
                for rec in pending:
                    _reject(rec, f"after {cfg.max_retries + 1} attempt(s): {reasons[rec['id']]}", rejects, counts)
                    advance()
    if unanswered:
        raise PsrError(
            f"{unanswered} record(s) got no answer: the engine's requests failed on every retry; the "
            f"others are written to {writer.path}; rerun the same command to segment the rest"
        )
