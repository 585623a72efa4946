"""Is the oracle's judge explanation learnable by the embedded world's tiny model? (issue 9)

For each explanation style of psr.world.oracle.judge, SFT the same base model (M0) on the same
IFT steps and the same EFT pairs, which differ only in the judgment's wording, then judge held-out
pairs in both orders (greedy) and print accuracy with a Wilson 95% interval, per style.

Pairs: a world problem's reference step k against a corrupted step k (oracle.corrupt_step, every
kind in turn), after the reference prefix; the right step is shown as A for half the pairs. Train
pairs come from the train split, test pairs from the test split.

The SFT loop is plain PyTorch on the examples ``psr sft`` builds (psr.training.sft.build_examples:
the same chat template and assistant-only loss mask); the Trainer's overhead per step is a large
share of a step this small on 2 CPU cores. Every style runs with the same seed, steps and batches.

``--probe N`` first lets the base model grade steps in its own pretraining formats: review lines, bare
arithmetic checks, and comparisons of two answers (``python -m psr.world.pretrain --comparisons``).

The events world (``--world events --model data/m0-events``, D = 2, 800 IFT + 800 EFT, 300 steps, 100 held-out
pairs in both orders, seed 0; issue 18): lookup-first 122/200 = 61.0% (95% CI 54.1-67.5), picks A 76% at step
100, 87% at 200 and 20% at the end. In the 4 outputs it keeps, the lookup line names a wrong operand once and
slips on the sum once, and a step identical to the lookup line is called Wrong: the Right/Wrong after each
copied step follows the position more than a compare of the two lines. verdict-first was stopped unfinished
to give the seeds the CPU.

At D = 0 (``--distractors 0``, same sizes, seed 0): lookup-first 126/200 = 63.0% (56.1-69.4), picks A 28%; with
``--both-orders`` (every train pair also swapped, JudgeLM's swap augmentation; same 300 steps) 124/200 = 62.0%
(55.1-68.4), picks A 33%. Both get every early_box pair (46/46: the box is visible without a lookup) and about
half of the rest (skipped 33/64, repeated_event 21-23/44, wrong_sum 24/46): the judge sees the surface, not the
lookup, and seeing each pair in both orders does not change that. SmolLM2-135M-Instruct (``--model
models/smollm2-135m-instruct``) costs about 10 s an example here (4 steps x 4 examples: 165 s on the shared
cores), so the same 300 x 16 would take about 13 hours: not run.

Measured results are in psr.world.oracle.judge's docstring (earlier M0: 50-54.5%; current M0: 58-60%) and
the README ("The arithmetic world: the null result"; the per-variant tables are in its git history before issue 18).

    .venv/bin/python bench/judge_learnability.py --model data/m0 [--styles verdict-first,recompute-first]
        [--ift 2000 --eft 2000 --steps 400 --test 200 --threads 1] [--probe 300]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from psr.core.stats import wilson  # noqa: E402


def make_pairs(n: int, seed: int, split: str, world: dict | None = None) -> list[dict]:
    """``n`` (right step, corrupted step) pairs with their context; every kind in turn; A/B alternating.
    ``world``: generate_problems' world keywords (default: the arithmetic world)."""
    from psr.world.generator import generate_problems
    from psr.world.oracle import corrupt_step, corruptions, label_step

    rng = random.Random(seed)
    out = []
    for p in generate_problems(3 * n, seed=seed, split=split, **(world or {})):
        if len(out) == n:
            break
        k = rng.randrange(len(p["steps"]))
        kinds = corruptions(p)
        kinds = kinds[len(out) % len(kinds) :] + kinds[: len(out) % len(kinds)]
        for kind in kinds:
            bad = corrupt_step(p, k, kind, rng)
            if bad is not None and not label_step(p, p["steps"][:k], bad):
                break
        else:
            continue
        good_is_a = len(out) % 2 == 0
        a, b = (p["steps"][k], bad) if good_is_a else (bad, p["steps"][k])
        out.append(
            {
                "id": f"{p['id']}/eft",
                "question": p["question"],
                "previous_steps": p["steps"][:k],
                "step_a": a,
                "step_b": b,
                "label": "A" if good_is_a else "B",
                "kind": kind,
                "world": p["world"],
            }
        )
    return out


def swapped(pairs: list[dict]) -> list[dict]:
    """Each pair, then the same pair with A and B swapped (its label too)."""
    out = []
    for p in pairs:
        flip = {"A": "B", "B": "A"}[p["label"]]
        out += [p, {**p, "id": p["id"] + "/swapped", "step_a": p["step_b"], "step_b": p["step_a"], "label": flip}]
    return out


def train(
    model_dir: str,
    records: list[dict],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    max_length: int = 1024,
    at_step=None,
):
    """SFT ``model_dir`` on ``records``; ``at_step(step, model, tok)`` is called after every optimizer step."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from psr.training.sft import build_examples

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    examples, too_long = build_examples(tok, records, max_length)
    if too_long:
        print(f"  {len(too_long)} records longer than {max_length} tokens left out", file=sys.stderr)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    order: list[int] = []
    model.train()
    t0, losses = time.time(), []
    for step in range(steps):
        # Linear warmup over 5% of steps, then linear decay to 10%.
        frac = step / steps
        scale = min(1.0, frac / 0.05) if frac < 0.05 else 1.0 - 0.9 * (frac - 0.05) / 0.95
        for g in opt.param_groups:
            g["lr"] = lr * scale
        if len(order) < batch_size:
            order += rng.sample(range(len(examples)), len(examples))
        batch = [examples[i] for i in order[:batch_size]]
        del order[:batch_size]
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[j, :n] = torch.tensor(e["input_ids"])
            mask[j, :n] = 1
            keep = torch.tensor(e["completion_mask"]) == 1
            labels[j, :n] = torch.where(keep, torch.tensor(e["input_ids"]), torch.tensor(-100))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 25 == 0:
            print(
                f"  step {step + 1}/{steps} loss {sum(losses[-25:]) / 25:.3f} {time.time() - t0:.0f}s",
                file=sys.stderr,
                flush=True,
            )
        if at_step is not None:
            at_step(step + 1, model, tok)
            model.train()
    model.eval()
    return model, tok, len(examples), time.time() - t0


def judge_accuracy(model, tok, pairs: list[dict], max_new_tokens: int, batch_size: int = 32) -> dict:
    """Each pair judged greedily in both orders: right, parsable and [[A]] counts, and right per corruption kind
    (the truth is A in exactly half the judgments, so "picks A" far from 50% is position bias)."""
    import torch

    from psr.core.prompts import judge_prompt, parse_verdict

    jobs = []
    for p in pairs:
        jobs.append((p, judge_prompt(p["question"], p["previous_steps"], p["step_a"], p["step_b"]), p["label"]))
        swapped = "B" if p["label"] == "A" else "A"
        jobs.append((p, judge_prompt(p["question"], p["previous_steps"], p["step_b"], p["step_a"]), swapped))
    tok.padding_side = "left"
    right, parsed, picks_a, by_kind, samples = 0, 0, 0, {}, []
    for i in range(0, len(jobs), batch_size):
        chunk = jobs[i : i + batch_size]
        texts = [
            tok.apply_chat_template([{"role": "user", "content": u}], tokenize=False, add_generation_prompt=True)
            for _, u, _ in chunk
        ]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            )
        for (p, _, truth), seq in zip(chunk, out[:, enc["input_ids"].shape[1] :], strict=True):
            text = tok.decode(seq, skip_special_tokens=True)
            v = parse_verdict(text)
            parsed += v is not None
            picks_a += v == "A"
            right += v == truth
            k = by_kind.setdefault(p["kind"], [0, 0])
            k[0] += v == truth
            k[1] += 1
            if len(samples) < 4:
                samples.append(text)
    return {
        "right": right,
        "n": len(jobs),
        "parsed": parsed,
        "picks_a": picks_a,
        "by_kind": by_kind,
        "samples": samples,
    }


def review_probe(model_dir: str, n: int, seed: int, batch_size: int = 32) -> dict:
    """Does the base model check a step in its own pretraining format (psr.world.pretrain.review_document)?

    For ``n`` held-out problems, a solution with one step wrong about half the time (the work carried on
    after it, so the step under review is wherever the error fell), its review up to that step, then
    "Step k computes a op b = c, which is": the model's next word, "correct" or "wrong", is its grade.
    Half the probes ask about the wrong step, half about a right one; a model that only knows where a
    wrong step usually sits in a document scores near 50% balanced accuracy.
    """
    from psr.world.generator import generate_problems
    from psr.world.pretrain import review_document

    rng = random.Random(seed)
    probes = []  # (prompt, truth)
    for p in generate_problems(4 * n, seed=seed + 11, split="test"):
        if len(probes) == n:
            break
        head, review = review_document(p, rng, "continue").split("\nReview:\n")
        lines = review.split("\n")
        wrong = [j for j, line in enumerate(lines) if not line.endswith("which is correct.")]
        want_wrong = len(probes) % 2 == 0
        rights = [j for j in range(len(lines)) if j not in wrong]
        if not (wrong if want_wrong else rights) or any(" which is " not in line for line in lines):
            continue
        j = wrong[0] if want_wrong else rng.choice(rights)
        cue = lines[j][: lines[j].index(" which is ") + len(" which is")]
        probes.append((f"{head}\nReview:\n" + "".join(line + "\n" for line in lines[:j]) + cue, not want_wrong))
    return _grade(model_dir, probes, ("correct", "wrong"), max_new_tokens=3, batch_size=batch_size)


def check_probe(model_dir: str, n: int, seed: int, batch_size: int = 50) -> dict:
    """Does the base model verify an equation in its pretraining's own check format (psr.world.pretrain)?

    "Check: a op b = c." with c right for half the probes and off by a small amount otherwise (as the
    pretraining's wrong checks are); the next word, "Correct" or "Wrong", is its grade. The check is
    local (no question, no context), so this isolates verifying arithmetic from reading a long prompt.
    """
    from psr.world.generator import generate_problems, parse_equation

    rng = random.Random(seed)
    probes = []
    for p in generate_problems(n, seed=seed + 13, split="test"):
        a, op, b, c = parse_equation(rng.choice(p["steps"]))
        right = len(probes) % 2 == 0
        probes.append((f"Check: {a} {op} {b} = {c if right else c + rng.choice([-3, -2, -1, 1, 2, 3, 10])}.", right))
    return _grade(model_dir, probes, ("Correct", "Wrong"), max_new_tokens=2, batch_size=batch_size)


def comparison_probe(model_dir: str, n: int, seed: int, batch_size: int = 32) -> dict:
    """Does the base model pick the better of two answers in its pretraining's comparison format
    (psr.world.pretrain.comparison_document, ``--comparisons``)?

    ``n`` held-out pairs (a right step against a corrupted one), each shown in both orders, cut after the
    two answers; the model writes both grades and "The first/second answer is better." greedily. Right
    when it names the right step; "picks first" far from 50% is position bias. Answers the model was
    never taught to compare (data/m0) say nothing parsable, which counts as wrong.
    """
    import re

    from psr.world.pretrain import comparison_head

    probes = []  # (prompt, the better answer is the first)
    for pair in make_pairs(n, seed + 17, "test"):
        good, bad = (pair["step_a"], pair["step_b"]) if pair["label"] == "A" else (pair["step_b"], pair["step_a"])
        for first, second in ((good, bad), (bad, good)):
            probes.append(
                (
                    comparison_head(pair["question"], pair["previous_steps"], first, second) + "The first answer",
                    first is good,
                )
            )
    said = {"right": 0, "parsed": 0, "picks_first": 0}
    texts = _continue(model_dir, [q for q, _ in probes], max_new_tokens=96, batch_size=batch_size)
    samples = []
    for (_, first_better), text in zip(probes, texts, strict=True):
        m = re.search(r"The (first|second) answer is better", text)
        if len(samples) < 4:
            samples.append("The first answer" + text)
        if m:
            said["parsed"] += 1
            said["picks_first"] += m[1] == "first"
            said["right"] += (m[1] == "first") == first_better
    return {"probes": len(probes), **said, "accuracy": 100 * said["right"] / max(1, len(probes)), "samples": samples}


def _continue(model_dir: str, prompts: list[str], *, max_new_tokens: int, batch_size: int) -> list[str]:
    """The base model's greedy continuation of each prompt (plain text, no chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok.padding_side = "left"
    texts = []
    for i in range(0, len(prompts), batch_size):
        enc = tok(prompts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        texts += [tok.decode(seq, skip_special_tokens=True) for seq in out[:, enc["input_ids"].shape[1] :]]
    return texts


def _grade(
    model_dir: str, probes: list[tuple[str, bool]], words: tuple[str, str], *, max_new_tokens: int, batch_size: int
) -> dict:
    """The base model continues each (prompt, step is right) probe greedily; its grade is right when the
    continuation starts with ``words[0]`` for a right step, ``words[1]`` for a wrong one."""
    said = {True: [0, 0], False: [0, 0]}  # truth -> [graded right, n]
    texts = _continue(model_dir, [q for q, _ in probes], max_new_tokens=max_new_tokens, batch_size=batch_size)
    for (_, truth), text in zip(probes, texts, strict=True):
        word = text.strip()
        said[truth][0] += word.startswith(words[0] if truth else words[1])
        said[truth][1] += 1
    right_ok, wrong_ok = (100 * said[t][0] / max(1, said[t][1]) for t in (True, False))
    return {
        "probes": len(probes),
        "right_steps_called_correct": right_ok,
        "wrong_steps_called_wrong": wrong_ok,
        "balanced_accuracy": (right_ok + wrong_ok) / 2,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="data/m0", help="base model directory (default data/m0)")
    ap.add_argument("--styles", default="verdict-first,recompute-first")
    ap.add_argument("--ift", type=int, default=2000, help="IFT records (reference solutions)")
    ap.add_argument("--eft", type=int, default=2000, help="EFT train pairs")
    ap.add_argument("--test", type=int, default=200, help="held-out pairs (each judged in both orders)")
    ap.add_argument("--steps", type=int, default=400, help="optimizer steps per style")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--world",
        choices=["arith", "events"],
        default="arith",
        help="events: psr/world/events.py's problems and corruptions (use --model data/m0-events)",
    )
    ap.add_argument("--distractors", type=int, default=2, help="events world: the other person's events")
    ap.add_argument(
        "--both-orders",
        action="store_true",
        help="train on every EFT pair in both orders (JudgeLM's swap augmentation: the same two steps with the "
        "verdict flipped), twice the records for the same pairs and steps",
    )
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument(
        "--probe",
        type=int,
        default=0,
        metavar="N",
        help="first let the base model itself grade N steps in its pretraining's review and check "
        "formats (review_probe, check_probe) and compare N/2 pairs of steps in both orders "
        "(comparison_probe); --styles '' stops there",
    )
    ap.add_argument(
        "--eval-at",
        default="",
        metavar="STEPS",
        help="also judge the first 50 test pairs at these optimizer steps (comma-separated)",
    )
    a = ap.parse_args()
    eval_at = {int(x) for x in a.eval_at.split(",") if x}

    import torch

    from psr.world.generator import generate_problems
    from psr.world.oracle import judge

    torch.set_num_threads(a.threads)
    if a.probe:
        for name, probe in (("review", review_probe), ("check", check_probe)):
            r = probe(a.model, a.probe, a.seed)
            print(
                f"{name} probe, {a.model}: {r['probes']} steps; right steps called correct "
                f"{r['right_steps_called_correct']:.1f}%, wrong steps called wrong "
                f"{r['wrong_steps_called_wrong']:.1f}%, balanced accuracy {r['balanced_accuracy']:.1f}%",
                flush=True,
            )
        r = comparison_probe(a.model, a.probe // 2, a.seed)
        lo, hi = wilson(r["right"], r["probes"])
        print(
            f"comparison probe, {a.model}: {r['probes'] // 2} pairs in both orders; better answer named "
            f"{r['right']}/{r['probes']} = {r['accuracy']:.1f}% ({lo:.1f}-{hi:.1f}), parsable {r['parsed']}, "
            f"picks first {r['picks_first']}",
            flush=True,
        )
        for text in r["samples"][:2]:
            print("  " + text.replace("\n", " | "), flush=True)
        if not a.styles:
            return
    world = {} if a.world == "arith" else {"world": "events", "distractors": a.distractors}
    ift = [
        {"id": p["id"], "question": p["question"], "steps": p["steps"]}
        for p in generate_problems(a.ift, seed=a.seed + 7, split="train", **world)
    ]
    train_pairs = make_pairs(a.eft, a.seed, "train", world)
    test_pairs = make_pairs(a.test, a.seed, "test", world)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(a.model)
    rows = []
    for style in a.styles.split(","):
        eft = [
            {k: p[k] for k in ("id", "question", "previous_steps", "step_a", "step_b")}
            | {"judgment": judge(p["world"], p["previous_steps"], p["step_a"], p["step_b"], style=style)}
            for p in (swapped(train_pairs) if a.both_orders else train_pairs)
        ]
        mean_chars = sum(len(r["judgment"]) for r in eft) / len(eft)
        print(f"[{style}] training on {len(ift)} IFT + {len(eft)} EFT, {a.steps} steps", file=sys.stderr)
        max_new = max(len(tokenizer(r["judgment"])["input_ids"]) for r in eft[:200]) + 20

        def at_step(step, model, tok, max_new=max_new, style=style):
            # a learning curve on the first 50 test pairs: does judging appear late and abruptly, as checks do?
            if step in eval_at:
                model.eval()
                res = judge_accuracy(model, tok, test_pairs[:50], max_new)
                print(f"  [{style}] step {step}: {res['right']}/{res['n']} right, picks A {res['picks_a']}", flush=True)

        model, tok, n_ex, secs = train(
            a.model, ift + eft, steps=a.steps, batch_size=a.batch_size, lr=a.lr, seed=a.seed, at_step=at_step
        )
        res = judge_accuracy(model, tok, test_pairs, max_new)
        lo, hi = wilson(res["right"], res["n"])
        rows.append(
            {
                "style": style,
                "right": res["right"],
                "n": res["n"],
                "acc": 100 * res["right"] / res["n"],
                "lo": lo,
                "hi": hi,
                "parsed": 100 * res["parsed"] / res["n"],
                "picks_a": 100 * res["picks_a"] / res["n"],
                "train_s": secs,
                "judgment_chars": mean_chars,
                "by_kind": res["by_kind"],
                "samples": res["samples"],
            }
        )
        print(json.dumps(rows[-1], indent=1), file=sys.stderr, flush=True)
    print(
        f"\nmodel {a.model}, world {a.world}{f' (D = {a.distractors})' if world else ''}; {a.ift} IFT + {a.eft} EFT"
        f"{' pairs in both orders' if a.both_orders else ''}, {a.steps} steps x {a.batch_size}, lr {a.lr:g}, "
        f"seed {a.seed}; {a.test} held-out pairs judged in both orders (greedy)"
    )
    print(
        f"{'style':<16} {'right/n':>9} {'accuracy':>9} {'95% CI':>14} {'parsable':>9} {'picks A':>8} {'chars':>6} "
        f"{'train s':>8}  per corruption kind"
    )
    for r in rows:
        kinds = " ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(r["by_kind"].items()))
        print(
            f"{r['style']:<16} {r['right']:>4}/{r['n']:<4} {r['acc']:>8.1f}% {r['lo']:>6.1f}-{r['hi']:<5.1f}% "
            f"{r['parsed']:>8.1f}% {r['picks_a']:>7.1f}% {r['judgment_chars']:>6.0f} {r['train_s']:>8.0f}  {kinds}"
        )
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
