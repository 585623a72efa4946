"""GPU smoke: psr's own training and search code on a from-scratch ~51M-parameter model, one table.

Rows: build the model (psr.core.tiny, size "50m"; nothing from a hub), bf16 SFT steps and step-DPO steps
through psr.stages.sft / psr.stages.step_dpo (TRL; skipped, and said so, when trl or datasets is not
importable), then the hf engine's search one problem at a time and batched (bench/bench_search.py's
``measure``) on the SFT model (or the random-init one without TRL). Each row records its peak GPU memory
(torch.cuda.max_memory_allocated since the row began); on CPU, the process's peak RSS so far.

    bench/gpu_smoke.sh                       # on a GPU box; see the comment at its top
    python bench/gpu_smoke.py --device cpu --tiny [--json rows.json]   # the same path at a tiny size
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

# Model size, optimizer steps, per-device batch, and the search: problems, width, rounds, step / judgment tokens.
PLANS = {
    "gpu": dict(
        size="50m",
        sft_steps=60,
        dpo_steps=30,
        batch=16,
        problems=32,
        width=6,
        rounds=3,
        step_tokens=40,
        judge_tokens=16,
        max_length=512,
    ),
    "tiny": dict(
        size="tiny",
        sft_steps=3,
        dpo_steps=2,
        batch=2,
        problems=4,
        width=2,
        rounds=2,
        step_tokens=12,
        judge_tokens=4,
        max_length=512,
    ),
}


def training_data(folder: str, n: int, seed: int) -> tuple[str, str]:
    """World problems as IFT + EFT records (for sft) and PPD records (for step-dpo); returns the two paths.

    The EFT verdicts and PPD pairs set the reference step against a corrupted copy (oracle.corrupt_step),
    so the records have the shapes and lengths of real ones."""
    from psr.core.records import write_records
    from psr.world.generator import generate_problems
    from psr.world.oracle import corrupt_step

    rng = random.Random(seed)
    sft, ppd = [], []
    for p in generate_problems(n, seed):
        st = p["steps"]
        k = rng.randrange(len(st))
        bad = corrupt_step(p, k, "wrong_sum", rng)
        a_good = rng.random() < 0.5
        a, b = (st[k], bad) if a_good else (bad, st[k])
        label = "A" if a_good else "B"
        sft.append({"id": p["id"], "question": p["question"], "steps": st, "answer": p["answer"]})
        sft.append(
            {
                "id": p["id"] + "/eft",
                "question": p["question"],
                "previous_steps": st[:k],
                "step_a": a,
                "step_b": b,
                "judgment": f"Step {label} computes the result correctly. [[{label}]]",
                "label": label,
            }
        )
        ppd.append(
            {
                "id": p["id"],
                "question": p["question"],
                "previous_steps": st[:k],
                "chosen": st[k],
                "rejected": bad,
                "step_index": k,
                "is_final": k == len(st) - 1,
            }
        )
    paths = os.path.join(folder, "sft.jsonl"), os.path.join(folder, "ppd.jsonl")
    write_records(paths[0], sft)
    write_records(paths[1], ppd)
    return paths


class Rows:
    """The table's rows; each one measures wall time and peak memory of its own block."""

    def __init__(self, cuda: bool):
        self.cuda, self.rows = cuda, []

    def start(self):
        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        return time.perf_counter()

    def add(self, name: str, began: float | None, **cells) -> dict:
        row = {"row": name, **cells}
        if began is not None:
            import torch

            if self.cuda:
                torch.cuda.synchronize()
            row["seconds"] = time.perf_counter() - began
            row["peak_mib"] = (torch.cuda.max_memory_allocated() if self.cuda else _rss_bytes()) / 2**20
        self.rows.append(row)
        return row

    def print(self, header: str) -> None:
        cols = ["seconds", "peak_mib", "steps", "loss", "problems", "pairs", "tokens", "tokens_per_s"]
        print(header)
        print("| row | " + " | ".join(cols) + " | note |")
        print("|" + "---|" * (len(cols) + 2))
        for r in self.rows:
            cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
            print(f"| {r['row']} | " + " | ".join(cells) + f" | {r.get('note', '')} |")


def _rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _trl_missing() -> str | None:
    for name in ("trl", "datasets"):
        try:
            __import__(name)
        except ImportError as e:
            return f"{name} is not importable ({e}); carry its wheels (see gpu_smoke.sh)"
    return None


def _last_loss(out: str) -> float | None:
    losses = [m["loss"] for m in map(json.loads, open(os.path.join(out, "metrics.jsonl"))) if "loss" in m]
    return float(losses[-1]) if losses else None


def train_rows(rows: Rows, plan: dict, model: str, work: str, seed: int) -> str:
    """SFT then step-DPO through psr's stages; returns the SFT model (the one search runs on)."""
    from psr.stages import sft, step_dpo
    from psr.training.config import TrainConfig

    sft_data, ppd_data = training_data(work, max(plan["sft_steps"], plan["dpo_steps"]) * plan["batch"], seed)
    common = dict(
        per_device_batch_size=plan["batch"],
        batch_size=plan["batch"],
        max_length=plan["max_length"],
        save_steps=10**6,
        seed=seed,
        overwrite=True,
        logging_steps=1,
    )
    m1 = os.path.join(work, "m1")
    t = rows.start()
    done = sft.run(
        [sft_data],
        TrainConfig(model=model, output=m1, max_steps=plan["sft_steps"], epochs=1, learning_rate=1e-3, **common),
    )
    rows.add("sft", t, steps=done["global_steps"], loss=_last_loss(m1), note=_dtype_note(m1))
    m2 = os.path.join(work, "m2")
    t = rows.start()
    done = step_dpo.run(
        [ppd_data],
        TrainConfig(model=m1, output=m2, max_steps=plan["dpo_steps"], epochs=1, learning_rate=1e-5, **common),
    )
    rows.add("step-dpo", t, steps=done["global_steps"], loss=_last_loss(m2), note=_dtype_note(m2))
    return m1


def _dtype_note(out: str) -> str:
    with open(os.path.join(out, "config.json")) as fh:
        conf = json.load(fh)
    return f"saved {conf.get('dtype') or conf.get('torch_dtype')}"


def search_rows(rows: Rows, plan: dict, model: str, seed: int) -> None:
    from bench_search import measure

    from psr.engines import EngineConfig, load_engine
    from psr.search import SearchConfig
    from psr.world.generator import generate_problems

    t = rows.start()
    engine = load_engine(EngineConfig(engine="hf", model=model, seed=seed, batch_size=256))
    problems = generate_problems(plan["problems"], seed=seed + 1, split="test")
    base = dict(
        width=plan["width"],
        max_iterations=plan["rounds"],
        max_step_tokens=plan["step_tokens"],
        judge_max_tokens=plan["judge_tokens"],
        seed=seed,
    )
    measure(engine, problems[:1], SearchConfig(**base, working_set=1))  # warm-up: kernels, allocator
    dtype = str(engine.model.dtype).removeprefix("torch.")
    rows.add("search warm-up", t, problems=1, note=f"hf engine on {engine.device}, {dtype}")
    results = {}
    for name, ws in (("search, one problem at a time", 1), ("search, batched", len(problems))):
        t = rows.start()
        r = results[name] = measure(engine, problems, SearchConfig(**base, working_set=ws))
        rows.add(
            name,
            t,
            problems=r["problems"],
            pairs=r["pairs"],
            tokens=r["tokens"],
            tokens_per_s=r["tokens_per_s"],
            note=f"working set {ws}",
        )
    one, bat = results.values()
    rows.rows[-1]["note"] += f"; x{bat['tokens_per_s'] / one['tokens_per_s']:.1f} tokens/s over one at a time"


def main(argv: list[str] | None = None) -> None:
    from psr.core.tiny import MODEL_SIZES, build_tiny_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--tiny", action="store_true", help="the tiny plan (CPU tests): 0.2M model, a few steps")
    ap.add_argument(
        "--size",
        choices=sorted(MODEL_SIZES),
        help="model size instead of the plan's (--tiny --size 50m: the GPU model through the tiny plan's few steps)",
    )
    ap.add_argument("--work", help="working folder (default: a temporary one, removed)")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported: the whole run stays on CPU
    os.environ.setdefault("PSR_QUIET", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()

    if a.device == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device visible; pass --device cpu (with --tiny for a quick run)")
    plan = dict(PLANS["tiny" if a.tiny else "gpu"], **({"size": a.size} if a.size else {}))

    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or tmp
        rows = Rows(a.device == "cuda")
        t = rows.start()
        m0 = build_tiny_model(os.path.join(work, "m0"), seed=a.seed, **MODEL_SIZES[plan["size"]])
        from transformers import AutoConfig

        conf = AutoConfig.from_pretrained(m0)
        with torch.device("meta"):
            from transformers import AutoModelForCausalLM

            params = sum(p.numel() for p in AutoModelForCausalLM.from_config(conf).parameters())
        rows.add(
            "build m0",
            t,
            note=f"{params / 1e6:.1f}M parameters, {conf.num_hidden_layers} layers x {conf.hidden_size}, from scratch",
        )
        missing = _trl_missing()
        if missing:
            for name in ("sft", "step-dpo"):
                rows.add(name, None, note=f"skipped: {missing}")
            search_model = m0
        else:
            search_model = train_rows(rows, plan, m0, work, a.seed)
        search_rows(rows, plan, search_model, a.seed)
    dev = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    trl = "absent" if missing else __import__("trl").__version__
    rows.print(
        f"psr GPU smoke on {dev}: torch {torch.__version__}, transformers {transformers.__version__}, "
        f"trl {trl}, plan {'tiny' if a.tiny else 'gpu'} "
        f"({plan['size']} model); peak_mib: "
        + ("torch.cuda.max_memory_allocated per row" if rows.cuda else "process peak RSS so far")
    )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"device": dev, "plan": plan, "rows": rows.rows}, fh, indent=1)


if __name__ == "__main__":
    main()
