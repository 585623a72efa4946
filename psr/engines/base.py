"""The one engine interface every stage uses: batched chat sampling, step generation, PRM scoring.

Engines: ``hf`` (transformers, the embedded default), ``vllm`` (offline LLM), ``openai`` (any
OpenAI-compatible endpoint), plus ``oracle`` from the offline world (psr.world). Pick one with
:func:`psr.engines.load_engine`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Literal

from psr.core import log
from psr.core.errors import InputError, OptionError, PsrError
from psr.core.options import option
from psr.core.prompts import step_prompt
from psr.core.steps import STEP_STOP, assistant_prefix, has_final_answer, strip_step_prefix


@dataclass(frozen=True)
class Chat:
    """One conversation to continue: a user turn, optionally a partial assistant answer to extend.

    Frozen, so a chat is its own key: engines memoize prompt ids by chat and ask a greedy judge each
    distinct chat once."""

    user: str
    assistant_prefix: str = ""
    system: str | None = None


@dataclass
class Sampling:
    n: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_tokens: int = 512
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    # One seed per chat of the call (overrides ``seed``): each chat's samples then depend on its own seed and
    # prompt only, not on the other chats of the batch, so a resumed, sharded or reordered run samples the
    # same (stages derive them from the run seed and the problem id: derive_seed).
    seeds: list[int] | None = None

    def for_chats(self, keep: list[int]) -> Sampling:
        """This sampling for the chats at indices ``keep`` of the call (their per-chat seeds, if any)."""
        return self if self.seeds is None else replace(self, seeds=[self.seeds[i] for i in keep])


def derive_seed(*parts) -> int:
    """A 31-bit seed from its parts (run seed, problem id, round, ...): the same parts give the same seed in
    every run, shard and order, unlike a counter of engine calls."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# The finish reason of a prompt the model could not take (longer than its context): an empty answer that a
# stage counts as its own outcome. A rerun would meet the same prompt again, so it is no failure to retry.
TOO_LONG = "prompt_too_long"


class RequestsFailed(PsrError):
    """Some chats of a ``generate`` call got no answer (their requests failed on every retry). ``results``
    holds the answers of the others, None where a chat failed, so a stage can write what finished, leave
    the rest undone for the rerun, and exit 1 (``Engine.generate_partial``)."""

    def __init__(self, message: str, results: list):
        super().__init__(message)
        self.results = results


@dataclass
class Completion:
    text: str  # without the stop string that ended it
    finish_reason: str  # "stop" (a stop string), "eos" (end of turn), "length" (max_tokens), TOO_LONG
    prompt_tokens: int = 0
    completion_tokens: int = 0


# The engine registry: --engine NAME -> "module:class", imported when that engine is first loaded (vLLM, torch and
# the world are heavy or optional). The oracle engine is world code (it reads the world's problems): the table
# names where it lives, as a package's entry points would, so this layer imports nothing of psr.world.
REGISTRY: dict[str, str] = {
    "hf": "psr.engines.hf:HFEngine",
    "vllm": "psr.engines.vllm:VLLMEngine",
    "openai": "psr.engines.openai:OpenAIEngine",
    "oracle": "psr.world.oracle:OracleEngine",
}
ENGINES = tuple(REGISTRY)
CONTINUE_MODES = ("vllm", "inline")


@dataclass
class EngineConfig:
    """Options shared by every engine; each engine reads the ones it understands. The fields declared with
    ``option`` are every generation command's engine options (in this order in --help)."""

    # A Literal is a typed choice: an unknown engine is a usage error before anything loads.
    engine: Literal[ENGINES] = option(
        "hf", "--engine", help="hf (transformers) | vllm | openai | oracle (the offline world)."
    )
    model: str | None = option(
        None, "--model", "-m", help="Model directory or hub name (openai: the served model name)."
    )
    base_url: str | None = option(
        None,
        "--base-url",
        help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1; "
        "several comma-separated (one vLLM server per GPU): each request goes to the least "
        "busy, a failing server's requests to the others.",
    )
    # the *name* of the variable; keys never travel in flags
    api_key_env: str = option(
        "OPENAI_API_KEY", "--api-key-env", help="Name of the environment variable holding the API key."
    )
    seed: int = option(0, "--seed", help="Random seed (sampling, shuffles, training).")
    trust_remote_code: bool = option(
        False, "--trust-remote-code", help="Allow model repos to run their own code (off by default)."
    )
    tensor_parallel_size: int = option(
        1,
        "--tensor-parallel-size",
        help="vllm: GPUs per model (tensor parallel); the engine uses the first N GPUs CUDA_VISIBLE_DEVICES shows.",
    )
    concurrency: int = option(32, "--concurrency", help="openai: requests in flight.")
    batch_size: int = option(64, "--batch-size", help="hf: sequences per generation batch.")
    dtype: str = option("auto", "--dtype", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16.")
    prefix_sharing: bool = option(
        True,
        "--prefix-sharing/--no-prefix-sharing",
        help="hf: prefill a prompt prefix "
        "that several prompts of a batch share once (search's judge prompts, sampled "
        "copies). vllm has its own prefix caching.",
    )
    timeout: float = option(
        120.0,
        "--request-timeout",
        param="request_timeout",
        help="openai: seconds to wait for one answer before the request is retried.",
    )
    max_retries: int = option(
        4,
        "--max-retries",
        help="openai: retries of a failed request (429, 5xx, timeout, empty "
        "answer) before its record is left undone; the stage then exits 1 and a rerun retries "
        "it.",
    )
    gpu_memory_utilization: float = option(
        0.9,
        "--gpu-memory-utilization",
        help="vllm: share (0-1] of each GPU's "
        "memory this engine may take (weights + KV cache); lower it when a second "
        "model (the PRM, a judge) shares the GPUs.",
    )
    max_model_len: int | None = option(
        None,
        "--max-model-len",
        help="vllm, hf: context length in tokens (prompt + "
        "answer; longer prompts are refused or skipped as too long). Default: the "
        "model's own.",
    )
    enforce_eager: bool = option(
        False,
        "--enforce-eager",
        help="vllm: no CUDA graphs / torch.compile (less memory and a faster start, slower decoding).",
    )
    device: str = "auto"
    # openai: "vllm" (continue_final_message) | "inline"; None: by --base-url
    continue_mode: Literal[CONTINUE_MODES] | None = None

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise OptionError(f"must be > 0, got {self.timeout:g}", "--request-timeout")
        if self.max_retries < 0:
            raise OptionError(f"must be >= 0, got {self.max_retries}", "--max-retries")
        if self.concurrency < 1 or self.batch_size < 1:
            raise OptionError("--concurrency and --batch-size must be >= 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise OptionError(f"must be in (0, 1], got {self.gpu_memory_utilization:g}", "--gpu-memory-utilization")
        if self.tensor_parallel_size < 1 or (self.max_model_len is not None and self.max_model_len < 1):
            raise OptionError("--tensor-parallel-size and --max-model-len must be >= 1")


def prefix_groups(
    prompts: list[list[int]], min_share: float = 0.5, min_tokens: int = 16
) -> list[tuple[int, list[int]]]:
    """Group token prompts by a common prefix: ``(prefix length, row indices)`` for every group.

    Sorting puts prompts with a common prefix next to each other; a row joins the group before it
    while the group's common prefix stays at least ``min_share`` of the row and ``min_tokens`` long.
    The Figure 5 prompts of one problem (equal up to the two candidate steps) form one group, the
    prompts of different problems (equal only in the instructions) do not: sharing the instructions
    alone would leave every row's whole question to be prefilled anyway.
    """
    order = sorted(range(len(prompts)), key=lambda r: prompts[r])
    groups: list[tuple[int, list[int]]] = []
    for r in order:
        if groups:
            share, rows = groups[-1]
            first, p = prompts[rows[0]], prompts[r]
            n = 0
            limit = min(share, len(p))
            while n < limit and first[n] == p[n]:
                n += 1
            if n >= min_tokens and n >= min_share * len(p):
                groups[-1] = (n, rows + [r])
                continue
        groups.append((len(prompts[r]), [r]))
    return groups


@dataclass
class Step:
    """One sampled next step."""

    content: str  # without the "Step n: " prefix
    completion: Completion

    @property
    def is_final(self) -> bool:
        """Ends the solution: states the final answer, or the model ended its turn."""
        return has_final_answer(self.content) or self.completion.finish_reason == "eos"


class Engine(ABC):
    name = "engine"

    @abstractmethod
    def generate(self, chats: list[Chat], sampling: Sampling) -> list[list[Completion]]:
        """``sampling.n`` completions for every chat, in input order."""

    def generate_partial(self, chats: list[Chat], sampling: Sampling) -> list[list[Completion] | None]:
        """``generate``, except that a chat whose requests failed for good gets None instead of failing the
        whole call (engines with nothing to fail that way answer every chat). A stage that calls this writes
        the records that got answers, leaves the others undone for the rerun, and fails (exit 1) at its end."""
        try:
            return self.generate(chats, sampling)
        except RequestsFailed as e:
            return e.results

    def score_steps(self, question: str, solutions: list[list[str]]) -> list[list[float]]:
        """PRM: P("+") after each step of each partial solution (engines that load a PRM)."""
        raise PsrError(f"the {self.name} engine cannot score steps with a process reward model")

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text under this engine's tokenizer (characters/4 where there is none)."""
        return [max(1, len(t) // 4) for t in texts]

    max_len: int | None = None  # the model's context in tokens, where the engine knows it

    def fits(self, chats: list[Chat]) -> list[bool]:
        """Whether each chat's prompt fits the model's context (True where the engine cannot tell).

        The hf and vllm engines' ``generate`` refuses a batch with an over-long prompt (InputError); stages
        that build prompts from model output (search's judge prompts) ask first, so one long sample does not
        stop a run. The openai engine has no tokenizer: it learns from the server's context-length 400, answers
        such a prompt with finish reason TOO_LONG, and from then on says it does not fit."""
        return [True] * len(chats)

    def close(self) -> None:  # noqa: B027 - engines without resources need no cleanup
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- helpers built on generate() ---------------------------------------------------------

    def next_steps(self, problems: list[tuple[str, list[str]]], sampling: Sampling) -> list[list[Step]]:
        """Sample ``sampling.n`` candidate next steps for each (question, previous steps).

        The model continues its own partial answer (Figure 4 prompt, previous steps as the start of
        the assistant turn) and stops before it would begin the following step.
        """
        chats = [step_chat(q, prev) for q, prev in problems]
        s = replace(sampling, stop=list(dict.fromkeys([*sampling.stop, STEP_STOP])))
        return [[Step(strip_step_prefix(c.text), c) for c in outs] for outs in self.generate(chats, s)]


class TokenizerEngine(Engine):
    """An engine with the model's tokenizer at hand (hf, vllm): it renders prompts itself and sends token ids.

    Prompt ids are memoized for the most recent chats: search asks ``fits`` about a round's prompts and
    then generates from the same ones, and under vLLM encoding every ~500-token judge prompt twice, one
    at a time, was a fifth of a batched round's time (bench/bench_search.py, profiled).
    """

    tokenizer = None
    _PROMPT_CACHE = 8192  # chats; a round of search at working set 256 and width 6 has ~4,000 judge prompts

    def render(self, chat: Chat) -> str:
        return render_chat(self, chat)

    def count_tokens(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def prompt_ids(self, chats: list[Chat]) -> list[list[int]]:
        """Each chat's prompt as token ids (fresh lists: callers may keep or change them)."""
        cache = self.__dict__.setdefault("_prompt_cache", OrderedDict())
        found = {c: cache[c] for c in chats if c in cache}
        todo = [c for c in dict.fromkeys(chats) if c not in found]
        if todo:
            # one tokenizer call for the batch: the fast tokenizers encode a list in parallel
            texts = [self.render(c) for c in todo]
            found.update(zip(todo, self.tokenizer(texts, add_special_tokens=False)["input_ids"], strict=True))
            for c in todo:
                cache[c] = found[c]
            while len(cache) > self._PROMPT_CACHE:
                cache.popitem(last=False)
        return [list(found[c]) for c in chats]

    def fits(self, chats: list[Chat]) -> list[bool]:
        if not self.max_len:
            return [True] * len(chats)
        return [len(ids) < self.max_len for ids in self.prompt_ids(chats)]

    def _checked_prompt_ids(self, chats: list[Chat]) -> list[list[int]]:
        prompts = self.prompt_ids(chats)
        if self.max_len:
            for i, p in enumerate(prompts):
                if len(p) >= self.max_len:
                    raise InputError(f"prompt {i} has {len(p)} tokens; the model takes at most {self.max_len}")
        return prompts


def judge_fitting(
    judge: Engine, chats: list[Chat], sampling: Sampling, partial: bool = False
) -> list[list[Completion] | None]:
    """``judge.generate``, except that a prompt longer than the judge's context gets one empty answer (no
    verdict or score: a judge failure, counted by the caller) with a warning, instead of stopping the whole
    run. Judge prompts embed model output (candidate steps, whole solutions), so their length is not the
    user's input to fix, and a rerun would meet the same prompt again. With ``partial``, a prompt whose
    requests failed for good gets None (``Engine.generate_partial``) instead of failing the call."""
    if not chats:
        return []
    fits = judge.fits(chats)
    keep = [i for i, ok in enumerate(fits) if ok]
    todo = [chats[i] for i in keep]
    sampling = sampling.for_chats(keep)
    if len(todo) < len(chats):
        log.warn(
            f"{len(chats) - len(todo)} judge prompt(s) longer than the judge's context ({judge.max_len} "
            "tokens) were not judged; they count as judge failures"
        )
    # A greedy judge answers the same prompt the same way, so each distinct prompt is asked once: when a
    # policy samples the same step several times, several of a step's pairs are the same prompt.
    greedy = sampling.temperature <= 0
    asked = list(dict.fromkeys(todo)) if greedy else todo
    if greedy:
        sampling = replace(sampling, seeds=None)  # greedy needs no seed, and the chats were deduplicated
    answers = (judge.generate_partial if partial else judge.generate)(asked, sampling) if asked else []
    if len(answers) != len(asked):
        raise PsrError(f"engine {judge.name} returned {len(answers)} judgments for {len(asked)} prompts")
    if greedy:
        answer_of = dict(zip(asked, answers, strict=True))
        answers = [None if answer_of[c] is None else [replace(a) for a in answer_of[c]] for c in todo]
    it = iter(answers)
    return [next(it) if ok else [Completion("", "length", 0, 0)] for ok in fits]


def step_chat(question: str, previous_steps: list[str]) -> Chat:
    """The chat that asks for the next step: Figure 4 prompt, the previous steps as the start of the answer."""
    return Chat(step_prompt(question), assistant_prefix(previous_steps))


def render_chat(engine: Engine, chat: Chat) -> str:
    """The prompt text of an engine with a local tokenizer (hf, vllm): the chat template with the generation
    prompt, then the partial answer verbatim. A model without a template gets plain text (warned once per engine)."""
    messages = ([{"role": "system", "content": chat.system}] if chat.system else []) + [
        {"role": "user", "content": chat.user}
    ]
    if getattr(engine.tokenizer, "chat_template", None):
        prompt = engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        if not getattr(engine, "_warned_template", False):
            log.warn(f"{engine.cfg.model} has no chat template; prompting with plain text")
            engine._warned_template = True
        prompt = "".join(m["content"] + "\n\n" for m in messages)
    return prompt + chat.assistant_prefix
