"""Tiny local causal LMs for tests and the demo: Qwen2 architecture, a tokenizer trained here, offline.

``build_tiny_model(out_dir)`` trains a byte-level BPE tokenizer on a built-in math corpus and saves it
with a random-init ``Qwen2ForCausalLM``; both load back with ``AutoTokenizer`` / ``AutoModelForCausalLM``.

Why the tokenizer is assembled the way it is: transformers 5.x loads any ``model_type == "qwen2"``
tokenizer as ``Qwen2Tokenizer``, which rebuilds the pipeline from vocab + merges with Qwen2's own
normalizer (NFC), pre-tokenizer (the Qwen split regex, then ByteLevel without its own regex) and
ByteLevel decoder. Training with exactly that pipeline keeps token ids identical after a reload.

Script: ``python -m psr.core.tiny OUT_DIR [--seed N] [--size tiny|50m] [--hidden-size 64] ...``
"""

from __future__ import annotations

import argparse
import json
import os
import random

from psr.core.prompts import JUDGE_PROMPT, QWEN_COT_SYSTEM, SEGMENT_PROMPT, STEP_PROMPT, judge_prompt, step_prompt
from psr.core.steps import format_steps

PAD_TOKEN = "<|endoftext|>"
BOS_CHAT = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_CHAT, EOS_TOKEN]  # ids 0, 1, 2

# Qwen2's regex (transformers.models.qwen2.tokenization_qwen2.PRETOKENIZE_REGEX), copied so the
# tokenizer trained here splits text exactly as the Qwen2Tokenizer that reloads it.
QWEN2_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# ChatML as Qwen2 renders it (without Qwen's default system turn, to keep tiny prompts short).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Named shapes for ``build_tiny_model(out, **MODEL_SIZES[name])`` and ``--size``. "tiny" (~0.2M parameters)
# is the tests' default; "50m" (~51M: 12 layers of width 512) is the GPU smoke's (bench/gpu_smoke.py),
# big enough that a GPU step is bound by its matrix products rather than Python.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=2),
    "50m": dict(hidden_size=512, num_layers=12, num_heads=8),
}

_NAMES = [
    "Ann",
    "Bob",
    "Chen",
    "Dana",
    "Eli",
    "Fatima",
    "Goro",
    "Hana",
    "Ivan",
    "Jia",
    "Kofi",
    "Lena",
    "Maria",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Ravi",
    "Sofia",
    "Tom",
]
_ITEMS = [
    "apples",
    "books",
    "coins",
    "marbles",
    "pencils",
    "stickers",
    "cookies",
    "cards",
    "oranges",
    "stamps",
    "tickets",
    "shells",
    "bottles",
    "flowers",
    "puzzles",
    "candies",
]


def _word_problem(rng: random.Random) -> tuple[str, list[str]]:
    name, other, item = rng.choice(_NAMES), rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
    q = (
        f"{name} has {a} {item}. {other} gives {name} {b} more, then {name} shares them equally among {c} friends. "
        f"How many {item} does each friend get?"
    )
    total = a + b
    steps = [
        f"{name} starts with {a} {item} and receives {b} more, so {a} + {b} = {total}.",
        f"Dividing {total} among {c} friends gives $\\frac{{{total}}}{{{c}}} = {total / c:.4g}$.",
        f"The answer is $\\boxed{{{total // c}}}$ with remainder {total % c}.",
    ]
    return q, steps


def _algebra_problem(rng: random.Random) -> tuple[str, list[str]]:
    x, m, k = rng.randint(-20, 20), rng.randint(2, 12), rng.randint(-50, 50)
    rhs = m * x + k
    q = f"Solve for $x$: ${m}x + {k} = {rhs}$."
    steps = [
        f"Subtract {k} from both sides: ${m}x = {rhs} - ({k}) = {rhs - k}$.",
        f"Divide both sides by {m}: $x = \\frac{{{rhs - k}}}{{{m}}}$.",
        f"Therefore $x = \\boxed{{{x}}}$.",
    ]
    return q, steps


def _geometry_problem(rng: random.Random) -> tuple[str, list[str]]:
    r = rng.randint(1, 30)
    q = f"What is the area of a circle with radius {r}? Express your answer in terms of $\\pi$."
    steps = [
        "The area of a circle is $A = \\pi r^2$.",
        f"With $r = {r}$, $A = \\pi \\cdot {r}^2 = {r * r}\\pi$.",
        f"The final answer is $\\boxed{{{r * r}\\pi}}$.",
    ]
    return q, steps


def _rate_problem(rng: random.Random) -> tuple[str, list[str]]:
    name, speed, hours = rng.choice(_NAMES), rng.randint(3, 90), rng.randint(2, 12)
    pct = rng.choice([10, 20, 25, 50, 75])
    q = (
        f"A train travels at {speed} kilometers per hour for {hours} hours. {name} says the distance is "
        f"{pct}% longer on the return journey. What is the total distance traveled, in kilometers?"
    )
    there = speed * hours
    back = there * (100 + pct) / 100
    steps = [
        f"Distance equals speed times time: ${speed} \\times {hours} = {there}$ kilometers.",
        f"The return trip is {pct}% longer: ${there} \\cdot {1 + pct / 100} = {back:g}$ kilometers.",
        f"Adding both parts, the total is $\\boxed{{{there + back:g}}}$.",
    ]
    return q, steps


def default_corpus(n_problems: int = 400, seed: int = 0) -> list[str]:
    """The built-in training text: the psr prompts, word problems solved in "Step n:" lines, LaTeX, digits, unicode."""
    rng = random.Random(seed)
    makers = [_word_problem, _algebra_problem, _geometry_problem, _rate_problem]
    texts = [
        SEGMENT_PROMPT,
        STEP_PROMPT,
        JUDGE_PROMPT,
        QWEN_COT_SYSTEM,
        "0123456789 " * 20,
        "\\boxed{} \\frac{}{} \\sqrt{} \\cdot \\pi \\le \\ge \\neq \\infty ^{2} _{n}",
        "Ünïcödé: α β γ δ π θ ∑ ∫ √ ≤ ≥ ≠ ∞ × ÷ ° — “quotes” ‘single’ 数学 問題 ½ ²",
    ]
    for i in range(n_problems):
        q, steps = makers[i % len(makers)](rng)
        solution = format_steps(steps)
        texts += [
            q,
            solution,
            step_prompt(q) + "\n" + solution,
            judge_prompt(q, steps[:1], steps[1], steps[2]) + "\n[[A]]" if i % 10 == 0 else solution,
        ]
    return texts


def train_tokenizer(corpus: list[str] | None = None, vocab_size: int = 1024):
    """A ``tokenizers.Tokenizer`` with Qwen2's pre-tokenization, trained on ``corpus`` (default: the built-in one)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(
        models.BPE(
            unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False
        )
    )
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(default_corpus() if corpus is None else corpus, trainer=trainer)
    return tok


def build_tiny_model(
    out_dir: str,
    *,
    seed: int = 0,
    corpus: list[str] | None = None,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 2048,
) -> str:
    """Build and save a tiny random-init Qwen2 chat model with a locally trained tokenizer; returns ``out_dir``.

    ``seed`` sets the weights only: every build from the same corpus shares one tokenizer, so tiny
    policies and PRMs built with different seeds can exchange token ids.
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    if hidden_size % num_heads or hidden_size // num_heads < 32:
        raise ValueError(
            f"head_dim = hidden_size / num_heads must be a whole number >= 32 (vLLM needs it), "
            f"got {hidden_size} / {num_heads}"
        )
    raw = train_tokenizer(corpus, vocab_size)
    # Saved as the class that loads it (tokenizer_class "Qwen2Tokenizer", as Qwen's own models), from
    # the trained vocab and merges; tests check the ids match the trained tokenizer's.
    bpe = json.loads(raw.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=bpe["vocab"],
        merges=[tuple(m) for m in bpe["merges"]],
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[BOS_CHAT],
        chat_template=CHAT_TEMPLATE,
        model_max_length=max_position_embeddings,
    )
    pad_id, eos_id = raw.token_to_id(PAD_TOKEN), raw.token_to_id(EOS_TOKEN)
    config = Qwen2Config(
        vocab_size=raw.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        # With the usual 0.02, tied embeddings dominate the residual stream and greedy decoding repeats
        # one token forever; 0.2 gives varied text, which tests of batching and stop strings need.
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    # Both end-of-turn and end-of-text end a generation, as in Qwen2.5's instruct models.
    model.generation_config = GenerationConfig(
        eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, bos_token_id=None, do_sample=False
    )
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m psr.core.tiny",
        description=(
            "Build a tiny random-init Qwen2 chat model with a locally trained BPE tokenizer into OUT_DIR "
            "(offline, seconds). Loadable with AutoModelForCausalLM / AutoTokenizer and by vLLM."
        ),
    )
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    p.add_argument("--vocab-size", type=int, default=1024, help="default 1024")
    p.add_argument(
        "--size",
        choices=sorted(MODEL_SIZES),
        default="tiny",
        help="named shape (default tiny); the three flags below override its parts",
    )
    p.add_argument("--hidden-size", type=int, help="default: the size's (tiny: 64)")
    p.add_argument("--num-layers", type=int, help="default: the size's (tiny: 2)")
    p.add_argument("--num-heads", type=int, help="default: the size's (tiny: 2); head_dim = hidden/heads must be >= 32")
    p.add_argument("--intermediate-size", type=int, default=None, help="default 4 x hidden")
    p.add_argument("--max-position-embeddings", type=int, default=2048, help="default 2048")
    a = p.parse_args(argv)
    shape = {
        **MODEL_SIZES[a.size],
        **{k: v for k in ("hidden_size", "num_layers", "num_heads") if (v := getattr(a, k)) is not None},
    }
    try:
        out = build_tiny_model(
            a.out_dir,
            seed=a.seed,
            vocab_size=a.vocab_size,
            **shape,
            intermediate_size=a.intermediate_size,
            max_position_embeddings=a.max_position_embeddings,
        )
    except ValueError as e:
        p.error(str(e))
    print(out)


if __name__ == "__main__":
    main()
