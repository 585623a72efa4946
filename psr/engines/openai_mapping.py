"""The openai engine's request and response mapping: a Chat and a Sampling -> a chat-completions request body
(the partial answer continued by ``continue_mode``), and a response -> Completions (stop strings applied here, the
finish reason read from what the server says). A mixin of ``OpenAIEngine``, which holds the state it reads: the
served ``model``, ``continue_mode``, and the parameters the server rejected (``_dropped``, ``_max_tokens_key``)."""

from __future__ import annotations

from psr.engines.base import Chat, Completion, Sampling
from psr.engines.openai_wire import Empty, Malformed, split_usage

INLINE_CONTINUE = (
    "Here is the beginning of a solution:\n\n{prefix}\n"
    "Continue this solution from the next step, in the same format. "
    "Do not repeat the steps above."
)


class OpenAIMapping:
    model: str
    continue_mode: str
    _dropped: set[str]
    _max_tokens_key: str

    def _messages(self, chat: Chat) -> tuple[list[dict], dict]:
        msgs = [{"role": "system", "content": chat.system}] if chat.system else []
        if not chat.assistant_prefix:
            return msgs + [{"role": "user", "content": chat.user}], {}
        if self.continue_mode == "inline":
            user = chat.user + "\n\n" + INLINE_CONTINUE.format(prefix=chat.assistant_prefix)
            return msgs + [{"role": "user", "content": user}], {}
        msgs += [{"role": "user", "content": chat.user}, {"role": "assistant", "content": chat.assistant_prefix}]
        return msgs, {"continue_final_message": True, "add_generation_prompt": False}

    def _body(self, chat: Chat, sampling: Sampling, n: int, seed: int | None) -> dict:
        messages, extra = self._messages(chat)
        dropped = self._dropped
        body = {"model": self.model, "messages": messages, self._max_tokens_key: sampling.max_tokens}
        if n > 1:
            body["n"] = n
        if "temperature" not in dropped:
            body["temperature"] = sampling.temperature
        if "top_p" not in dropped and sampling.top_p < 1.0:
            body["top_p"] = sampling.top_p
        if "stop" not in dropped and sampling.stop:
            body["stop"] = list(sampling.stop)
        if "seed" not in dropped and seed is not None:
            body["seed"] = seed
        if extra:
            body["extra_body"] = extra
        return body

    def _completions(self, resp, sampling: Sampling) -> list[Completion]:
        choices = getattr(resp, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise Malformed("no choices")
        choices = sorted(choices, key=lambda c: getattr(c, "index", 0) or 0)
        usage = getattr(resp, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        total = int(getattr(usage, "completion_tokens", 0) or 0)
        texts, reasons = [], []
        for c in choices:
            msg = getattr(c, "message", None)
            text = getattr(msg, "content", None)
            # No content at all (null, or no message) is never an answer; an empty text is one only when the
            # model generated tokens (an end of turn at once, or hidden reasoning that used up max_tokens).
            if text is None:
                raise Empty("no message content" if msg is not None else "no message")
            if not isinstance(text, str):
                raise Malformed("message content is not text")
            if not text and (total == 0 or getattr(c, "finish_reason", None) not in ("stop", "length")):
                raise Empty("empty content, and no tokens generated or no finish reason")
            text, reason = self._finish(text, c, sampling)
            texts.append(text)
            reasons.append(reason)
        counts = split_usage(total, [len(t) for t in texts])
        return [Completion(t, r, prompt_tokens, k) for t, r, k in zip(texts, reasons, counts, strict=True)]

    def _finish(self, text: str, choice, sampling: Sampling) -> tuple[str, str]:
        # A server that ignored stop strings (or had them dropped) still gives one step.
        cut = min((i for i in (text.find(s) for s in sampling.stop if s) if i >= 0), default=-1)
        if cut >= 0:
            return text[:cut], "stop"
        reason = getattr(choice, "finish_reason", None)
        if reason == "length":
            return text, "length"
        extra = getattr(choice, "model_extra", None) or {}
        if "stop_reason" in extra:
            # vLLM: the matched stop string, or None / a token id when the model ended its turn.
            return text, "stop" if isinstance(extra["stop_reason"], str) else "eos"
        # OpenAI says "stop" for both a stop string and end of turn; with stop strings sent, a stop string
        # is the likelier cause, and calling it "stop" never ends a solution early.
        return text, "stop" if sampling.stop and "stop" not in self._dropped else "eos"
