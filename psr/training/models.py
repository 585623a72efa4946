"""Loading the model and tokenizer a training stage starts from, and the chat's end-of-turn token it must stop at.

Split from psr.training.common (what sft, step-dpo and the PRM share) so that each module stays one job. ``cfg`` is
a ``psr.training.config.TrainConfig``.
"""

from __future__ import annotations

import os

from psr.core.errors import InputError


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_dtype(cfg):
    import torch

    if cfg.dtype == "auto":
        return torch.bfloat16 if on_gpu() else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]
    except KeyError:
        raise InputError(f"--dtype must be auto, float32, bfloat16 or float16, got {cfg.dtype!r}") from None


# ---------------------------------------------------------------------------------------------
# Model and tokenizer


def _hub_name(name: str) -> bool:
    """``org/name`` as on the Hugging Face hub (and not an existing relative path)."""
    parts = name.split("/")
    return len(parts) == 2 and all(p and not p.startswith((".", "~")) for p in parts)


def check_model(name: str) -> None:
    """A missing local model directory is bad input (exit 2), not a traceback from transformers."""
    if not name:
        raise InputError("--model is required: the starting model directory")
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise InputError("not a model directory (no config.json)", name)
        return
    if os.path.exists(name):
        raise InputError("--model must be a model directory, not a file", name)
    if not _hub_name(name):
        raise InputError("model directory not found", name)


def load_tokenizer(cfg):
    check_model(cfg.model)
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    except OSError as e:
        raise InputError(f"cannot load the tokenizer: {e}", cfg.model) from None
    if tok.chat_template is None:
        raise InputError("the tokenizer has no chat template (psr trains chat models)", cfg.model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg):
    check_model(cfg.model)
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            cfg.model, dtype=torch_dtype(cfg), trust_remote_code=cfg.trust_remote_code
        )
    except OSError as e:
        raise InputError(f"cannot load the model: {e}", cfg.model) from None
    # The KV cache is useless in training and warns with gradient checkpointing.
    model.config.use_cache = False
    return model


def end_of_turn_id(tokenizer) -> int:
    """The token the chat template closes an assistant turn with (``<|im_end|>`` for ChatML).

    Not always ``eos_token``: Qwen2.5 base models, for one, have ``<|endoftext|>`` as EOS but
    close chat turns with ``<|im_end|>``, which is what a finished answer must end with.
    """
    probe = "PSR-END-OF-TURN-PROBE"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": probe}], tokenize=False
    )
    after = tokenizer(text[text.rindex(probe) + len(probe) :], add_special_tokens=False)["input_ids"]
    added = tokenizer.added_tokens_decoder
    if after and (after[0] in tokenizer.all_special_ids or (after[0] in added and added[after[0]].special)):
        return after[0]
    return tokenizer.eos_token_id


def stop_at_end_of_turn(model, tokenizer) -> list[int]:
    """Make the model's generation_config stop at the chat's end-of-turn token; returns its eos ids.

    The model was trained to close every answer with that token, but what the engines stop at is the
    saved generation_config's eos (vLLM and ``generate`` both read it), which the Trainer aligns with the
    tokenizer's ``eos_token``: for a base model whose EOS is ``<|endoftext|>`` an M1 would then run on
    past its answers to the token limit. The end-of-turn token goes first, the other eos ids stay.
    """
    gen = model.generation_config
    old = gen.eos_token_id
    old = [] if old is None else [old] if isinstance(old, int) else list(old)
    ids = list(dict.fromkeys([end_of_turn_id(tokenizer), *old]))
    gen.eos_token_id = ids
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    return ids


def lora_config(cfg):
    if not cfg.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
