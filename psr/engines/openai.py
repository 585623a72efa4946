"""Any OpenAI-compatible chat endpoint (OpenAI, a vLLM or SGLang server) behind the Engine interface.

Requests run concurrently on one asyncio loop (at most ``cfg.concurrency`` in flight), each with its own
timeout. Retries are done here, not by the client (``max_retries=0``), so they can be counted and so that
Retry-After is honoured the same way for every server: 429, 5xx, timeouts, dropped connections and
unparseable bodies are retried with exponential backoff and jitter; 401/403/404 stop the run at once with
an error that names the base URL and the model, never the key.

Continuing a partial assistant answer (``Chat.assistant_prefix``, which step-wise generation needs) has two
modes, ``cfg.continue_mode``:

- ``vllm`` (default when ``--base-url`` is set): send the partial answer as the last assistant message with
  ``continue_final_message``; the server renders it with the model's chat template exactly as the hf and
  vllm engines do, so the three engines see the same tokens. Only servers that implement the flag (vLLM,
  SGLang) accept it.
- ``inline`` (default for api.openai.com, which cannot continue an assistant turn): append the partial
  answer to the user message with a sentence asking the model to go on from the next step. Works anywhere,
  but the model reads its earlier steps as quoted text rather than as its own words, so the prompt is not
  the paper's and results differ from the other engines.

Reasoning models (o1-style) that reject ``temperature``/``top_p``/``stop`` or want
``max_completion_tokens`` are handled by reading the 400 error once, dropping or renaming the parameter and
remembering that for later requests. Stop strings are also applied to the returned text here, so a server
that ignores them still yields one step. Note that for such models ``max_tokens`` also bounds their hidden
reasoning tokens.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import re
import time
from dataclasses import replace

from psr.core import log
from psr.core.errors import InputError, PsrError
from psr.engines.base import CONTINUE_MODES, Chat, Completion, Engine, EngineConfig, RequestsFailed, Sampling
from psr.engines.openai_mapping import INLINE_CONTINUE, OpenAIMapping  # noqa: F401 (INLINE_CONTINUE: its old home)
from psr.engines.openai_pool import ServerPool, split_urls
from psr.engines.openai_wire import (
    CONTEXT_400,
    CONTEXT_LIMIT,
    RETRY_STATUS,
    Counters,
    Empty,
    GaveUp,
    Malformed,
    Transient,
    completion_room,
    nth_seed,
    retry_after_seconds,
    too_long_answers,
)

# Parameters a server may reject, and what the engine does about it.
_ADAPTABLE = ("max_tokens", "temperature", "top_p", "stop", "seed", "n")


class OpenAIEngine(OpenAIMapping, Engine):
    name = "openai"
    backoff_base = 0.5  # seconds before the first retry; doubles each time, with jitter
    backoff_max = 30.0
    retry_after_max = 120.0  # a longer Retry-After is capped: waiting minutes for one request stalls a run

    def __init__(self, cfg: EngineConfig):
        if not cfg.model:
            raise InputError("the openai engine needs --model (the model name the server serves)")
        self.cfg = cfg
        self.model = cfg.model
        # --base-url URL1,URL2: one server per GPU (group), requests spread over them (psr.engines.openai_pool)
        self.base_urls = split_urls(cfg.base_url)
        self.base_url = self.base_urls[0]
        key = os.environ.get(cfg.api_key_env)
        if not key:
            if self.base_url is None:
                raise InputError(
                    f"no API key: set the environment variable {cfg.api_key_env} "
                    "(or name another one with --api-key-env)"
                )
            key = "EMPTY"  # local servers (vLLM, SGLang) accept any key
        self._key = key
        mode = cfg.continue_mode or ("vllm" if self.base_url else "inline")
        if mode not in CONTINUE_MODES:
            raise InputError(f"--continue-mode must be one of {', '.join(CONTINUE_MODES)}, got {mode!r}")
        self.continue_mode = mode
        self.counters = Counters()
        # Learned from the server's 400 answers; every later request is built with them.
        self._dropped: set[str] = set()
        self._max_tokens_key = "max_tokens"
        self._use_n = True
        self._too_long: set[Chat] = set()  # chats the server refused as longer than the context
        self._last_retry_log = -float("inf")
        self._last_failure = ""
        self.pool = ServerPool(self.base_urls)

    # -- public --------------------------------------------------------------------------------

    @property
    def where(self) -> str:
        where = self.base_url or "https://api.openai.com/v1"
        if len(self.base_urls) > 1:
            where = f"{len(self.base_urls)} servers ({', '.join(self.base_urls)})"
        return f"{where} (model {self.model!r})"

    def generate(self, chats: list[Chat], sampling: Sampling) -> list[list[Completion]]:
        """Every chat's answers; RequestsFailed (with the answers that did come) when some chat's request
        failed on every retry. A prompt the server refuses as too long gets one empty answer per sample with
        finish reason ``prompt_too_long`` (a per-record outcome, not a failure: a rerun would meet it again)."""
        results = self._run(chats, sampling)
        failed = sum(r is None for r in results)
        if failed:
            raise RequestsFailed(
                f"{self.where}: {failed} of {len(chats)} requests got no answer after "
                f"{self.cfg.max_retries} retries (last: {self._last_failure}); rerun the same "
                "command to retry them",
                results,
            )
        return results

    def fits(self, chats: list[Chat]) -> list[bool]:
        # No tokenizer here: a prompt is known too long once the server has said so.
        return [c not in self._too_long for c in chats]

    def _run(self, chats: list[Chat], sampling: Sampling) -> list[list[Completion] | None]:
        if not chats:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._generate(chats, sampling))
        # Called from inside a running loop (a notebook): run ours on a thread of its own.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._generate(chats, sampling)).result()

    # -- the request loop ----------------------------------------------------------------------

    async def _generate(self, chats: list[Chat], sampling: Sampling) -> list[list[Completion] | None]:
        from openai import AsyncOpenAI

        clients = [
            AsyncOpenAI(api_key=self._key, base_url=u, max_retries=0, timeout=self.cfg.timeout) for u in self.base_urls
        ]
        client = (clients, self.pool)
        sem = asyncio.Semaphore(max(1, self.cfg.concurrency))
        try:
            per_chat = (
                [sampling] * len(chats)
                if sampling.seeds is None
                else [replace(sampling, seed=seed, seeds=None) for seed in sampling.seeds]
            )
            tasks = [
                asyncio.ensure_future(self._one_chat(client, sem, chat, s))
                for chat, s in zip(chats, per_chat, strict=True)
            ]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
        finally:
            for c in clients:
                await c.close()

    async def _one_chat(self, client, sem, chat: Chat, sampling: Sampling) -> list[Completion] | None:
        """The chat's ``n`` answers, or None when a request for it failed on every retry."""
        n = max(1, sampling.n)
        if chat in self._too_long:
            return too_long_answers(n)
        if sampling.temperature <= 0 and n > 1:
            # Greedy samples are all the same (vLLM even rejects n > 1 when greedy): ask once, copy.
            one = await self._one_chat(client, sem, chat, replace(sampling, n=1))
            return None if one is None else [replace(one[0]) for _ in range(n)]
        outs: list[Completion] = []
        try:
            if n == 1 or self._use_n:
                outs = await self._request(client, sem, chat, sampling, n, sampling.seed) or []
                if len(outs) >= n:
                    return outs[:n]
                if self._use_n:
                    log.warn(f"{self.where} returned {len(outs)} of n={n} choices; sending one request per sample")
                    self._use_n = False
            # The server does not do n: one request per missing sample, each with its own seed.
            # (all of them run to the end: one given up must not leave the others running unawaited)
            rest = await asyncio.gather(
                *[
                    self._request(client, sem, chat, sampling, 1, nth_seed(sampling.seed, i))
                    for i in range(len(outs), n)
                ],
                return_exceptions=True,
            )
            for r in rest:
                if isinstance(r, BaseException):
                    raise r
        except GaveUp:
            return None
        return outs + [o[0] for o in rest]

    async def _request(
        self, client, sem, chat: Chat, sampling: Sampling, n: int, seed: int | None
    ) -> list[Completion] | None:
        """The choices of one request, retried as needed; None when the server turned out to reject n."""
        import openai

        clients, pool = client
        attempt = adapted = 0
        tried: set[int] = set()  # servers this request failed on since its last backoff
        while True:
            async with sem:
                if n > 1 and not self._use_n:
                    return None
                body = self._body(chat, sampling, n, seed)  # built late: uses what other requests learned
                self.counters.requests += 1
                self._in_flight(+1)
                k = pool.pick(tried)
                pool.in_flight[k] += 1
                try:
                    # The client's timeout bounds each read, so a server that trickles its answer a byte at a
                    # time never trips it: the whole request gets the same bound here.
                    resp = await asyncio.wait_for(clients[k].chat.completions.create(**body), self.cfg.timeout)
                    return self._completions(resp, sampling)
                except openai.BadRequestError as e:
                    if adapted <= len(_ADAPTABLE) and self._adapt(e, n):
                        adapted += 1
                        continue
                    if CONTEXT_400.search(e.message or ""):
                        room = completion_room(e.message or "", sampling.max_tokens)
                        if room is not None and adapted <= len(_ADAPTABLE):
                            # the prompt fits; only max_tokens overshoots the context: cap it for this prompt
                            self._warn_capped(sampling.max_tokens, room)
                            sampling = replace(sampling, max_tokens=room)
                            adapted += 1
                            continue
                        self._refused_as_too_long(chat, e.message or "")
                        return too_long_answers(n)
                    self.counters.failures += 1
                    raise PsrError(f"{self.where} rejected the request (400): {self._scrub(e.message)}") from None
                except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
                    self.counters.failures += 1
                    raise PsrError(self._fatal_message(e)) from None
                except openai.APIStatusError as e:
                    if e.status_code < 500 and e.status_code not in RETRY_STATUS:
                        self.counters.failures += 1
                        raise PsrError(f"{self.where} answered {e.status_code}: {self._scrub(e.message)}") from None
                    err = Transient(
                        f"HTTP {e.status_code}", retry_after_seconds(e.response.headers), server_ok=e.status_code < 500
                    )
                except (openai.APITimeoutError, TimeoutError):
                    err = Transient(f"no answer within {self.cfg.timeout:g}s", server_ok=False)
                except openai.APIConnectionError as e:
                    err = Transient(f"connection error: {e.__cause__ or e}", server_ok=False)
                except Empty as e:
                    self.counters.empty += 1
                    err = Transient(f"empty answer ({e})")
                except (ValueError, Malformed) as e:  # unparseable JSON, or JSON without choices
                    err = Transient(f"malformed response: {str(e)[:200]}")
                finally:
                    self._in_flight(-1)
                    pool.in_flight[k] -= 1
            if isinstance(err, Transient) and not err.server_ok:
                pool.failed(k)
                tried.add(k)
                if len(tried) < len(clients):
                    continue  # another server may answer at once: no backoff, no retry counted
            tried = set()
            if attempt >= self.cfg.max_retries:
                self.counters.failures += 1
                self._last_failure = str(err)
                log.warn(
                    f"{self.where}: a request failed after {attempt} retries ({err}); its record is left "
                    f"undone ({self.counters.failures} so far)"
                )
                raise GaveUp()
            attempt += 1
            self.counters.retries += 1
            self._log_retry(err)
            await asyncio.sleep(self._delay(attempt, err.retry_after))

    # -- what the user sees of retries and long prompts ----------------------------------------

    retry_log_every = 10.0  # seconds between retry messages: a failing server must not flood the terminal

    def _log_retry(self, err: Exception) -> None:
        now = time.monotonic()
        if now - self._last_retry_log >= self.retry_log_every:
            self._last_retry_log = now
            c = self.counters
            log.warn(
                f"{self.where}: {err}; retrying ({c.retries} retries so far, {c.failures} requests given up, "
                f"{c.in_flight} in flight)"
            )

    def _in_flight(self, k: int) -> None:
        self.counters.in_flight += k
        c = self.counters
        log.status(f"{c.in_flight} in flight" + (f", {c.retries} retries" if c.retries else ""))

    def _warn_capped(self, max_tokens: int, room: int) -> None:
        if not getattr(self, "_warned_cap", False):
            self._warned_cap = True
            log.warn(
                f"{self.where}: a prompt leaves {room} of the model's context for the answer, fewer than "
                f"--max-tokens {max_tokens}; such answers are capped at what fits"
            )

    def _refused_as_too_long(self, chat: Chat, message: str) -> None:
        self._too_long.add(chat)
        self.counters.too_long += 1
        if (m := CONTEXT_LIMIT.search(message)) and self.max_len is None:
            self.max_len = int(m.group(1))
        if self.counters.too_long == 1:
            log.warn(
                f"{self.where} refused a prompt as longer than the model's context ({self._scrub(message)}); "
                "such prompts get an empty answer and are counted, not sent again"
            )

    def _adapt(self, e, n: int) -> bool:
        """Learn from a 400 that rejects one parameter; True when the request is worth sending again."""
        msg = (e.message or "").lower()
        if not any(w in msg for w in ("unsupported", "not supported", "does not support", "only the default")):
            return False
        param = (
            e.param
            if e.param in _ADAPTABLE
            else next((p for p in _ADAPTABLE if re.search(rf"['\"`]{p}['\"`]", msg)), None)
        )
        if param is None:
            return False
        if param == "max_tokens":
            self._max_tokens_key = "max_completion_tokens"
        elif param == "n":
            if n == 1:
                return False
            self._use_n = False
        elif param not in self._dropped:
            self._dropped.add(param)
            if param == "temperature":
                log.warn(f"{self.where} does not accept temperature; sampling at the model's default")
        return True

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        if retry_after is not None:
            return max(0.0, min(retry_after, self.retry_after_max))
        return backoff

    def _fatal_message(self, e) -> str:
        what = {
            401: "rejected the API key (401)",
            403: "refused access (403)",
            404: "does not know the model or path (404)",
        }.get(e.status_code, f"answered {e.status_code}")
        hint = (
            f"; check the key in ${self.cfg.api_key_env}"
            if e.status_code in (401, 403)
            else "; check --base-url (it usually ends in /v1) and --model"
        )
        return f"{self.where} {what}: {self._scrub(e.message)}{hint}"

    def _scrub(self, text: str) -> str:
        # Some servers echo the key back in their error text.
        text = str(text)
        if self._key and self._key != "EMPTY":
            text = text.replace(self._key, "***")
        return text[:500]
