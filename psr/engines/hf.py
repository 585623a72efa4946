"""The transformers engine: any local or hub causal LM, batched ``model.generate`` with a KV cache.

Prompts are rendered with the model's chat template; a partial assistant answer is appended verbatim
after the generation prompt, so the model continues its own words (step-wise generation).

Batching: every (chat, sample) pair is one sequence; sequences are sorted by their tokens (so prompts
that share a prefix share a batch; by length, for less padding, with ``prefix_sharing`` off), left-padded,
and run ``cfg.batch_size`` at a time; a prefix shared within a batch is prefilled once (_prefilled_cache). Greedy requests run once per chat and are
copied ``n`` times, as vLLM does. The model's own generation_config (top_k, repetition_penalty, ...)
is not applied: the Sampling fields are the whole recipe, so hf, vllm and openai sample alike.

Stop strings are matched on the decoded *completion* only. transformers' StopStringCriteria also looks
at prompt tokens, so a prompt ending in "\\n" followed by a generated "Step 2:" would match the step
stop "\\nStep " at once; a small criterion here checks the tail of the completion instead, and the final
cut is made on the full decoded text, so it is exact whatever stopped the model.
"""

from __future__ import annotations

import os
from dataclasses import replace

import torch
from safetensors import SafetensorError

from psr.core import log
from psr.core.errors import InputError
from psr.engines.base import Chat, Completion, EngineConfig, Sampling, TokenizerEngine, derive_seed, prefix_groups

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


class _CompletionStop:
    """Stopping criterion: the decoded tail of each row's completion holds a stop string."""

    def __init__(self, tokenizer, stops: list[str], prompt_len: int):
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len
        # every token is at least one byte; a few extra tokens cover decoders that drop a leading space
        self.window = max(len(s.encode("utf-8")) for s in stops) + 3

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        gen = input_ids[:, self.prompt_len :]
        tails = self.tokenizer.batch_decode(
            gen[:, -self.window :].tolist(), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return torch.tensor([any(s in t for s in self.stops) for t in tails], device=input_ids.device)


class _SeededSampling:
    """Logits processor that samples each row from its own generator (Gumbel-max: the argmax of the warped
    log-probabilities plus Gumbel noise is an exact draw from them), so that with ``Sampling.seeds`` a row's
    tokens depend on its seed and prompt only, not on its batch mates. ``generate`` runs greedy on its
    output. transformers samples the whole batch from one global generator, where a row's draw depends on
    every other row of the batch."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        self.seeds = seeds
        self.gens: list[torch.Generator] | None = None
        self.warpers = [TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        for w in self.warpers:
            scores = w(input_ids, scores)
        if self.gens is None:  # on the logits' device: no vocabulary-sized copy per row and step
            self.gens = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        u = torch.stack([torch.rand(scores.shape[-1], generator=g, device=scores.device) for g in self.gens])
        gumbel = -torch.log(-torch.log(u.clamp(min=1e-20, max=1 - 1e-7)))
        return torch.log_softmax(scores, dim=-1) + gumbel


class HFEngine(TokenizerEngine):
    name = "hf"

    def __init__(self, cfg: EngineConfig):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not cfg.model:
            raise InputError("the hf engine needs --model (a local model directory or a hub name)")
        # "org/name" may be a hub name; anything else with a path look must exist here
        if not os.path.exists(cfg.model) and (cfg.model.startswith((".", "/", "~")) or cfg.model.count("/") > 1):
            raise InputError(f"--model {cfg.model}: no such directory")
        self.cfg = cfg
        cuda = torch.cuda.is_available()
        device = cfg.device if cfg.device != "auto" else ("cuda" if cuda else "cpu")
        if cfg.dtype == "auto":
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        elif cfg.dtype in _DTYPES:
            dtype = _DTYPES[cfg.dtype]
        else:
            raise InputError(f"--dtype must be auto, float32, bfloat16 or float16, got {cfg.dtype!r}")
        trust = bool(cfg.trust_remote_code)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=trust)
            # device_map "auto" spreads a model too big for one GPU over all of them (accelerate)
            self.model = AutoModelForCausalLM.from_pretrained(
                cfg.model,
                dtype=dtype,
                trust_remote_code=trust,
                device_map="auto" if cfg.device == "auto" and cuda else device,
            )
        except (OSError, ValueError, SafetensorError) as e:  # SafetensorError: a truncated or corrupt weights file
            raise InputError(f"--model {cfg.model}: cannot load it with transformers: {e}") from None
        self.model.eval()
        self.device = self.model.device
        self.tokenizer.padding_side = "left"
        gen_cfg = self.model.generation_config
        eos = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else self.tokenizer.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(self.tokenizer.eos_token_id)
        if not eos:
            raise InputError(f"--model {cfg.model}: neither its tokenizer nor its generation_config names an eos token")
        self.eos_ids = eos
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else eos[0]
        self.max_len = cfg.max_model_len or getattr(self.model.config, "max_position_embeddings", None)
        self._prefix_sharing = cfg.prefix_sharing
        log.info(f"hf engine: {cfg.model} on {self.device} ({str(dtype).removeprefix('torch.')})")

    def score_steps(self, question: str, solutions: list[list[str]]) -> list[list[float]]:
        """PRM P("+") after every step, one batched pass (psr.engines.prm; tag and labels from config.json)."""
        from psr.engines.prm import PRMFormat, PRMScorer

        if getattr(self, "_prm", None) is None:
            self._prm = PRMScorer(
                self.model,
                self.tokenizer,
                PRMFormat.from_model_dir(self.cfg.model),
                batch_size=self.cfg.batch_size,
                max_length=self.max_len,
            )
        return self._prm.score_steps(question, solutions)

    # -- generation -------------------------------------------------------------------------

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[list[Completion]]:
        if not chats:
            return []
        if sampling.n < 1 or sampling.max_tokens < 1:
            raise InputError(f"n and max_tokens must be >= 1, got n={sampling.n}, max_tokens={sampling.max_tokens}")
        greedy = sampling.temperature <= 0
        # the template writes its own special tokens (BOS included, where the model has one) as text
        prompts = self._checked_prompt_ids(chats)
        copies = 1 if greedy else sampling.n
        rows = [(i, k) for i in range(len(chats)) for k in range(copies)]
        if self._prefix_sharing:
            rows.sort(key=lambda r: prompts[r[0]])  # rows sharing a prefix land in the same batch
        else:
            rows.sort(key=lambda r: -len(prompts[r[0]]))  # stable: equal lengths keep input order
        stops = [s for s in dict.fromkeys(sampling.stop) if s]
        seed = sampling.seed if sampling.seed is not None else self.cfg.seed
        row_seed = (
            None if greedy or sampling.seeds is None else {(i, k): derive_seed(sampling.seeds[i], k) for i, k in rows}
        )
        out: dict[tuple[int, int], Completion] = {}
        fork = list(range(torch.cuda.device_count())) if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=fork), torch.inference_mode():
            torch.manual_seed(seed)
            bs = max(1, self.cfg.batch_size)
            for start in range(0, len(rows), bs):
                batch = rows[start : start + bs]
                done = self._generate_batch(
                    [prompts[i] for i, _ in batch],
                    sampling,
                    stops,
                    greedy,
                    None if row_seed is None else [row_seed[r] for r in batch],
                )
                out.update(zip(batch, done, strict=True))
        return [
            [out[(i, k)] if not greedy else replace(out[(i, 0)]) for k in range(sampling.n)] for i in range(len(chats))
        ]

    def _generate_batch(
        self,
        prompts: list[list[int]],
        sampling: Sampling,
        stops: list[str],
        greedy: bool,
        row_seeds: list[int] | None = None,
    ) -> list[Completion]:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        seeded = [_SeededSampling(row_seeds, sampling.temperature, sampling.top_p)] if row_seeds else []
        greedy = greedy or bool(seeded)  # the seeded processor has drawn the token; generate takes its argmax

        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        # Every knob set explicitly, so the model's generation_config adds nothing unasked.
        gen = GenerationConfig(
            max_new_tokens=sampling.max_tokens,
            do_sample=not greedy,
            num_beams=1,
            temperature=1.0 if greedy else sampling.temperature,
            top_p=1.0 if greedy else sampling.top_p,
            top_k=None if greedy else 0,
            min_p=None,
            repetition_penalty=1.0,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            disable_compile=True,  # a static cache would compile the forward on GPU for every new batch shape
        )
        criteria = StoppingCriteriaList([_CompletionStop(self.tokenizer, stops, width)] if stops else [])
        cache = self._prefilled_cache(prompts, width, sampling.max_tokens) if self._prefix_sharing else None
        seqs = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            generation_config=gen,
            stopping_criteria=criteria,
            past_key_values=cache,
            logits_processor=LogitsProcessorList(seeded),
        )
        return [self._completion(p, seqs[r, width:].tolist(), stops) for r, p in enumerate(prompts)]

    def _prefilled_cache(self, prompts: list[list[int]], width: int, max_new: int):
        """A static KV cache for the batch, holding every row's shared prompt prefix, computed once.

        Search sends prompts that repeat themselves: the n copies of a sampled prompt, and the judge
        prompts of one problem, equal up to the two candidate steps. Rows are grouped by their common
        token prefix (psr.engines.base.prefix_groups); one left-padded forward computes each group's
        prefix once, and the cache of the left-padded batch is gathered from it, so ``generate`` only
        prefills the columns after the shortest cached prefix. Positions are the same either way
        (generate derives them from the attention mask; every prefix starts at position 0).
        Static rather than dynamic: a dynamic cache grows by concatenation, copying the whole cache at
        every decoding step, which on CPU cost more than the attention itself at a few hundred rows.
        Returns None (plain generate) where the model's cache layers are not plain full attention
        (sliding-window or recurrent layers cannot be spliced like this).
        """
        from transformers import StaticCache
        from transformers.cache_utils import DynamicLayer, StaticLayer

        cache = StaticCache(config=self.model.config, max_cache_len=width + max_new)
        if any(type(layer) is not StaticLayer for layer in cache.layers):
            return self._no_sharing("its KV cache has sliding-window or non-attention layers")
        groups = prefix_groups(prompts)
        keep = [min(p, min(len(prompts[r]) for r in rows) - 1) for p, rows in groups]  # >= 1 token left to run
        group_of = {r: g for g, (_, rows) in enumerate(groups) for r in rows}
        # The cache covers columns [0, start) of the left-padded batch: up to the earliest suffix.
        start = min(width - len(prompts[r]) + keep[group_of[r]] for r in range(len(prompts)))
        if start < 16 or sum(keep) >= 0.8 * sum(len(p) for p in prompts):
            return cache  # too little shared: an empty static cache, generate prefills everything
        heads = [prompts[rows[0]][:k] for k, (_, rows) in zip(keep, groups, strict=True)]
        plen = max(len(h) for h in heads)
        ids = torch.tensor([[self.pad_id] * (plen - len(h)) + h for h in heads], device=self.device)
        hmask = torch.tensor([[0] * (plen - len(h)) + [1] * len(h) for h in heads], device=self.device)
        pos = (hmask.cumsum(-1) - 1).clamp(min=0)
        prefix = self.model(
            input_ids=ids, attention_mask=hmask, position_ids=pos, use_cache=True, logits_to_keep=1
        ).past_key_values
        if any(type(layer) is not DynamicLayer for layer in prefix.layers):
            return self._no_sharing("its KV cache has non-standard layers")
        # Row r, column t < start holds its group's prefix token t - pad_r (pad columns: any value, masked).
        g = torch.tensor([group_of[r] for r in range(len(prompts))], device=self.device)
        col = torch.arange(start, device=self.device)
        pad = torch.tensor([width - len(p) for p in prompts], device=self.device)
        src = ((plen - torch.tensor(keep, device=self.device)[g])[:, None] + (col[None, :] - pad[:, None])).clamp(min=0)
        for have, layer in zip(prefix.layers, cache.layers, strict=True):
            # (with device_map="auto" each layer's cache lives on its layer's GPU)
            gi, si = g.to(have.keys.device), src.to(have.keys.device)
            keys, values = (t.transpose(1, 2)[gi[:, None], si].transpose(1, 2) for t in (have.keys, have.values))
            layer.lazy_initialization(keys, values)
            layer.keys[:, :, :start] = keys
            layer.values[:, :, :start] = values
            layer.cumulative_length.fill_(start)
        return cache

    def _no_sharing(self, why: str) -> None:
        self._prefix_sharing = False
        log.info(f"hf engine: {why}; prompt prefixes are not shared")
        return None

    def _decode(self, context: list[int], tokens: list[int]) -> str:
        # Decoding the completion after a few prompt tokens keeps a leading space that sentencepiece
        # decoders drop at the start of a string.
        ctx = context[-4:]
        head = self.tokenizer.decode(ctx, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        full = self.tokenizer.decode(ctx + tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if full.startswith(head):
            return full[len(head) :]
        return self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _completion(self, prompt: list[int], tokens: list[int], stops: list[str]) -> Completion:
        end = next((j for j, t in enumerate(tokens) if t in self.eos_ids), None)
        body = tokens if end is None else tokens[:end]
        if end is None and self.pad_id not in self.eos_ids:
            while body and body[-1] == self.pad_id:  # filler after a row stopped while others went on
                body = body[:-1]
        text = self._decode(prompt, body)
        cut = _first_stop(text, stops)
        if cut is not None:
            # the fewest tokens whose text already holds the stop: what the model generated up to it
            lo, hi = 1, len(body)
            while lo < hi:
                mid = (lo + hi) // 2
                if _first_stop(self._decode(prompt, body[:mid]), stops) is None:
                    lo = mid + 1
                else:
                    hi = mid
            return Completion(text[:cut], "stop", len(prompt), lo)
        if end is not None:
            return Completion(text, "eos", len(prompt), end + 1)
        return Completion(text, "length", len(prompt), len(body))


def _first_stop(text: str, stops: list[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None
