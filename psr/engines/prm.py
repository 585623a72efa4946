"""Process reward model (PRM) text format and batched P("+") scoring on a transformers causal LM.

The PRM follows Math-Shepherd / OpenR: the input is the question, then every step followed by a
step tag; the model's next token after each tag is the label token, "+" (good) or "-" (bad), and
P(+) is the softmax over just those two logits at that position.

The read position is where public PRM code slips by one: Hugging Face shifts labels inside the
model, so a label placed *on* the tag token trains the logits one position *before* the tag, while
scoring reads the logits *at* the tag. Here the input ids and the read positions come from one
function, :func:`encode`, and the logits at those positions from one function,
:func:`label_logits`; training (psr.training.prm) computes its loss from exactly these, so the
position trained is the position scored.

Each step is tokenized on its own and the tag ids are appended after it, rather than searching the
tokenized text for a tag token: BPE may merge a tag with its neighbours, which would move or lose
positions. The tag and label strings are saved in the model's config.json under ``psr_prm``, so a
trained PRM scores with no flags.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from psr.core.errors import InputError

CONFIG_KEY = "psr_prm"


@dataclass(frozen=True)
class PRMFormat:
    """How steps are tagged and labelled. Defaults: Math-Shepherd / OpenR's tag and labels."""

    step_tag: str = " ки"
    good: str = "+"
    bad: str = "-"

    @classmethod
    def from_model_dir(cls, path: str) -> PRMFormat:
        """The format recorded in ``path/config.json`` by train-prm, or the defaults when none is recorded."""
        cfg = os.path.join(path, "config.json")
        if os.path.isfile(cfg):
            with open(cfg, encoding="utf-8") as fh:
                rec = json.load(fh).get(CONFIG_KEY)
            if isinstance(rec, dict):
                return cls(**{k: rec[k] for k in ("step_tag", "good", "bad") if k in rec})
        return cls()

    def to_config(self) -> dict:
        return asdict(self)


def is_prm_dir(path: str) -> bool:
    """Whether ``path/config.json`` records a PRM format (train-prm writes it; a base model has none)."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            return isinstance(json.load(fh).get(CONFIG_KEY), dict)
    except (OSError, ValueError, AttributeError):
        return False


class PRMTokens:
    """The token ids of a format under one tokenizer (tag ids, the two label ids, the step separator)."""

    def __init__(self, tokenizer, fmt: PRMFormat):
        self.fmt = fmt
        self.tokenizer = tokenizer
        self.tag_ids = _ids(tokenizer, fmt.step_tag)
        self.sep_ids = _ids(tokenizer, "\n")
        if not self.tag_ids:
            raise InputError(f"the step tag {fmt.step_tag!r} tokenizes to nothing")
        label_ids = []
        for name, text in (("good", fmt.good), ("bad", fmt.bad)):
            ids = _ids(tokenizer, text)
            if len(ids) != 1:
                raise InputError(f"the {name} label {text!r} must be one token under this tokenizer, got {len(ids)}")
            label_ids.append(ids[0])
        if label_ids[0] == label_ids[1]:
            raise InputError(f"the good and bad labels {fmt.good!r} and {fmt.bad!r} are the same token")
        self.good_id, self.bad_id = label_ids


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode(
    tokens: PRMTokens, question: str, steps: list[str], max_length: int | None = None
) -> tuple[list[int], list[int]]:
    """Input ids for ``question`` + ``steps``, and the read position of every step.

    Layout: ``question \\n step1 TAG \\n step2 TAG ...``. The read position of a step is the index
    of its tag's last token: the logits there predict the token after the tag, i.e. the label.
    With ``max_length``, steps whose tag would fall beyond it are left out (fewer positions come back).
    """
    ids = _ids(tokens.tokenizer, question)
    positions: list[int] = []
    for step in steps:
        piece = tokens.sep_ids + _ids(tokens.tokenizer, step.strip()) + tokens.tag_ids
        if max_length is not None and len(ids) + len(piece) > max_length:
            break
        ids += piece
        positions.append(len(ids) - 1)
    return ids, positions


def pad_batch(seqs: list[list[int]], pad_id: int):
    """Right-padded ``input_ids`` and ``attention_mask`` tensors (right padding keeps positions of real tokens)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def label_logits(model, input_ids, attention_mask, positions: list[list[int]]):
    """Full-vocabulary logits at every read position, in order: a ``[total positions, vocab]`` tensor.

    Only the rows at read positions go through the LM head (``logits_to_keep`` with the positions
    used in this batch), so a 150k-token vocabulary is not materialised for every token.
    """
    import torch

    flat_rows = [(b, p) for b, ps in enumerate(positions) for p in ps]
    if not flat_rows:
        return torch.zeros((0, model.config.get_text_config().vocab_size), device=input_ids.device)
    keep = sorted({p for _, p in flat_rows})
    col = {p: i for i, p in enumerate(keep)}
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=torch.tensor(keep, device=input_ids.device)
    )
    rows = torch.tensor([b for b, _ in flat_rows], device=input_ids.device)
    cols = torch.tensor([col[p] for _, p in flat_rows], device=input_ids.device)
    return out.logits[rows, cols]


def p_good(logits, tokens: PRMTokens):
    """P(+) from full-vocabulary logits: softmax over the good and bad label logits only."""
    pair = logits[:, [tokens.good_id, tokens.bad_id]].float()
    return pair.softmax(-1)[:, 0]


class PRMScorer:
    """Batched P(+) for every step of many (question, steps) items on a loaded transformers model."""

    def __init__(self, model, tokenizer, fmt: PRMFormat, batch_size: int = 16, max_length: int | None = None):
        self.model = model
        self.tokens = PRMTokens(tokenizer, fmt)
        self.batch_size = max(1, batch_size)
        self.max_length = max_length
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)

    @classmethod
    def load(
        cls,
        path: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 16,
        trust_remote_code: bool = False,
        device_map: str | dict | None = None,
        **load_kwargs,
    ) -> PRMScorer:
        """Load a PRM directory (as written by ``psr train-prm``) for scoring.

        ``device_map`` (``auto``, ``balanced``, ``sequential`` or a module -> device mapping) shards the layers
        over every visible GPU with accelerate's hooks, then CPU memory and disk, instead of putting the whole
        model on ``device``: a 72B PRM (~145 GB in bf16) fits no single GPU. ``load_kwargs`` go to
        ``from_pretrained`` (``max_memory``, ``offload_folder``)."""
        import torch
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        gpu = device.startswith("cuda") or (device_map is not None and torch.cuda.is_available())
        torch_dtype = (torch.bfloat16 if gpu else torch.float32) if dtype == "auto" else getattr(torch, dtype)
        if device_map is not None:
            load_kwargs["device_map"] = device_map
        try:
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=torch_dtype, trust_remote_code=trust_remote_code, **load_kwargs
            )
        except (OSError, ValueError, SafetensorError) as e:  # SafetensorError: a truncated or corrupt weights file
            raise InputError(f"cannot load the PRM: {e}", path) from None
        if device_map is None:
            model.to(device)
        model.eval()
        return cls(model, tok, PRMFormat.from_model_dir(path), batch_size=batch_size)

    def score(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        """P(+) after each step of each (question, steps), in input order.

        Sequences are sorted by length before batching so that padding stays small.
        """
        import torch

        encoded = [encode(self.tokens, q, steps, self.max_length) for q, steps in items]
        for (q, steps), (_, pos) in zip(items, encoded, strict=True):
            if len(pos) != len(steps):
                raise InputError(
                    f"a solution of {len(steps)} steps does not fit in {self.max_length} tokens "
                    f"(question starts {q[:40]!r})"
                )
        order = sorted(range(len(items)), key=lambda i: len(encoded[i][0]))
        out: list[list[float]] = [[] for _ in items]
        # the embedding's device: under a device_map the first parameter may sit on another GPU (or be offloaded)
        device = _input_device(self.model)
        was_training = self.model.training
        self.model.eval()
        try:
            # no_grad, not inference_mode: train-prm scores its held-out split between training steps, and
            # under ZeRO-3 the parameters gathered in an inference-mode forward become inference tensors that
            # the next training step cannot save for backward (DeepSpeed + Trainer: "Inference tensors cannot be
            # saved for backward").
            with torch.no_grad():
                for start in range(0, len(order), self.batch_size):
                    idx = [i for i in order[start : start + self.batch_size] if encoded[i][1]]
                    if not idx:
                        continue
                    ids, mask = pad_batch([encoded[i][0] for i in idx], self.pad_id)
                    logits = label_logits(self.model, ids.to(device), mask.to(device), [encoded[i][1] for i in idx])
                    probs = p_good(logits, self.tokens).tolist()
                    k = 0
                    for i in idx:
                        n = len(encoded[i][1])
                        out[i] = probs[k : k + n]
                        k += n
        finally:
            self.model.train(was_training)
        return out

    def score_steps(self, question: str, solutions: list[list[str]]) -> list[list[float]]:
        """The Engine.score_steps shape: one question, many partial solutions."""
        return self.score([(question, s) for s in solutions])


def _input_device(model):
    import torch

    weight = model.get_input_embeddings().weight
    if weight.device.type == "meta":  # offloaded by accelerate: its hook brings it to the execution device
        hook = getattr(model.get_input_embeddings(), "_hf_hook", None)
        return torch.device(getattr(hook, "execution_device", None) or "cpu")
    return weight.device
