"""What the openai engine reads from a server's answers: the kinds of failure (worth a retry or not), the
server's Retry-After, a prompt refused as longer than the context, and the usage of a response."""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass

from psr.engines.base import TOO_LONG, Completion

RETRY_STATUS = {408, 409, 425, 429}  # client-side codes worth a retry (besides 5xx)


@dataclass
class Counters:
    requests: int = 0  # HTTP requests sent, retries included
    retries: int = 0  # requests re-sent after a transient failure
    failures: int = 0  # requests given up on after the last retry, or rejected for good
    empty: int = 0  # answers without any content (content null, no message), each retried like a failure
    too_long: int = 0  # prompts the server refused as longer than the model's context
    in_flight: int = 0  # requests sent and not answered yet


class GaveUp(Exception):
    """A request that failed on every retry: its chat gets no answer (RequestsFailed), the others go on."""


class Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, what: str, retry_after: float | None = None, server_ok: bool = True):
        super().__init__(what)
        self.retry_after = retry_after
        self.server_ok = server_ok  # False: the server itself failed (down, 5xx, no answer): try another one


class Malformed(Exception):
    """A 200 answer whose body is not a chat completion."""


class Empty(Malformed):
    """A 200 answer that holds no text where the model generated nothing either: a server fault, not an answer."""


# How servers word a prompt longer than the model's context (OpenAI, vLLM, SGLang, llama.cpp, TGI).
CONTEXT_400 = re.compile(
    r"context[ _-]length|context window|maximum context|too many tokens|prompt is too long|"
    r"exceeds? the (?:model'?s? )?(?:maximum|context)",
    re.I,
)
CONTEXT_LIMIT = re.compile(r"maximum context length is (\d+)", re.I)
# How many of those tokens the prompt takes (OpenAI and older vLLM; newer vLLM).
_PROMPT_TOKENS = re.compile(r"(\d+) in the messages|messages resulted in (\d+) tokens|has (\d+) input tokens", re.I)


def completion_room(message: str, max_tokens: int) -> int | None:
    """When a context-length 400 says the prompt fits and only ``max_tokens`` is too many, the tokens the
    context leaves for the completion; None when the prompt itself is too long (or the message does not say)."""
    limit, prompt = CONTEXT_LIMIT.search(message), _PROMPT_TOKENS.search(message)
    if limit is None or prompt is None:
        return None
    room = int(limit.group(1)) - int(next(g for g in prompt.groups() if g is not None))
    return room if 0 < room < max_tokens else None


def too_long_answers(n: int) -> list[Completion]:
    return [Completion("", TOO_LONG, 0, 0) for _ in range(n)]


def nth_seed(seed: int | None, i: int) -> int | None:
    """Distinct, reproducible seeds for the i-th of n separate requests (same seed = same sample)."""
    return None if seed is None else seed + i


def split_usage(total: int, weights: list[int]) -> list[int]:
    """Share a response's completion tokens among its choices (usage is per response, not per choice)."""
    if not any(weights):
        weights = [1] * len(weights)
    parts = [total * w // sum(weights) for w in weights]
    parts[-1] += total - sum(parts)
    return parts


def retry_after_seconds(headers) -> float | None:
    """Seconds from Retry-After-Ms / Retry-After (seconds or an HTTP date); None when absent or unreadable."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return float(ms) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None
