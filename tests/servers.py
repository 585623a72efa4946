"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests and benchmarks.

It answers deterministically (the text says which prompt, sample and seed it came from), and misbehaves on
request: ``faults[user_text]`` lists what the 1st, 2nd, ... request carrying that user message gets before
it is answered normally. Faults: "429", "500", "503" (with ``retry_after`` as a Retry-After header when
set), "slow" (answers after ``slow_s``), "garbage" (200 with a body that is not JSON), "nochoices" (200,
JSON without choices), "drop" (closes the connection without answering), "400" (a request the server cannot
take: not worth retrying), "context" (400: the prompt is longer than the model's context), "maxtokens" (400: the
prompt fits, max_tokens does not), "null" (200, the
message's content is null), "nomessage" (200, a choice without a message), "empty" (200, empty content and no
completion tokens), "hang" (answers after ``hang_s``, longer than any test's request timeout), "trickle" (200,
then the body one byte every 50 ms, so that no single read waits long).
``failure_rate`` makes that share of all other requests answer 500, drawn from a seeded generator.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 refuses connections when 64 arrive at once
    daemon_threads = True
    block_on_close = False  # a "slow" answer still sleeping must not hold up the test


class ChatServer:
    def __init__(
        self,
        *,
        faults: dict[str, list[str]] | None = None,
        delay: float = 0.0,
        slow_s: float = 2.0,
        retry_after: str | None = None,
        api_key: str | None = None,
        models: tuple[str, ...] = ("m",),
        supports_n: bool = True,
        reasoning: bool = False,
        vllm_like: bool = True,
        reply: str | None = None,
        honour_stop: bool = True,
        failure_rate: float = 0.0,
        hang_s: float = 30.0,
    ):
        self.faults = faults or {}
        self.failure_rate = failure_rate
        self._rng = random.Random(0)
        self.hang_s = hang_s
        self.delay = delay  # seconds before every normal answer
        self.slow_s = slow_s
        self.retry_after = retry_after
        self.api_key = api_key  # None: any key is accepted
        self.models = models
        self.supports_n = supports_n
        self.reasoning = reasoning  # o1-style: rejects max_tokens, temperature != 1, top_p
        self.vllm_like = vllm_like  # adds vLLM's stop_reason to each choice
        self.honour_stop = honour_stop
        self.reply = reply  # fixed answer text (before stop strings cut it); default echoes the prompt
        self.bodies: list[dict] = []  # every parsed request body, in arrival order
        self.times: dict[str, list[float]] = defaultdict(list)  # arrival times per user text
        self.statuses: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._seen: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- what the server answers -----------------------------------------------------------

    def answer(self, body: dict, auth: str | None) -> tuple[int, dict | bytes | None, dict]:
        """(status, JSON body or raw bytes or None to drop the connection, extra headers)."""
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            key = (auth or "").removeprefix("Bearer ")
            return 401, _error(f"Incorrect API key provided: {key}.", "invalid_api_key"), {}
        if body.get("model") not in self.models:
            return 404, _error(f"The model `{body.get('model')}` does not exist.", "model_not_found"), {}
        user = _user_text(body)
        with self._lock:
            k = self._seen[user]
            self._seen[user] += 1
            self.times[user].append(time.monotonic())
        plan = self.faults.get(user, [])
        fault = plan[k] if k < len(plan) else None
        if fault is None and self.failure_rate:
            with self._lock:
                fault = "500" if self._rng.random() < self.failure_rate else None
        if fault in ("429", "500", "503"):
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            return int(fault), _error(f"fault {fault}", None), headers
        if fault == "400":
            return 400, _error("Invalid 'messages[0].content': expected a string.", "invalid_value"), {}
        if fault == "context":
            return (
                400,
                _error(
                    "This model's maximum context length is 10 tokens. However, you requested 4106 "
                    "tokens (10 in the messages, 4096 in the completion).",
                    "context_length_exceeded",
                ),
                {},
            )
        if fault == "maxtokens":  # newer vLLM: the prompt fits, max_tokens does not
            return (
                400,
                _error(
                    f"'max_tokens' or 'max_completion_tokens' is too large: {body.get('max_tokens')}. This "
                    "model's maximum context length is 100 tokens and your request has 30 input tokens "
                    f"({body.get('max_tokens')} > 100 - 30).",
                    None,
                ),
                {},
            )
        if fault in ("null", "nomessage", "empty"):
            choice = {"index": 0, "finish_reason": "stop"}
            if fault != "nomessage":
                choice["message"] = {"role": "assistant", "content": None if fault == "null" else ""}
            return (
                200,
                {
                    "id": "x",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [choice],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1},
                },
                {},
            )
        if fault == "slow":
            time.sleep(self.slow_s)
        if fault == "hang":
            time.sleep(self.hang_s)
        if fault == "trickle":
            return 200, ("trickle", self._completion(body, user)), {}
        if fault == "garbage":
            return 200, b'{"id": "x", "choices": [{"message": ', {}
        if fault == "nochoices":
            return 200, {"id": "x", "object": "chat.completion"}, {}
        if fault == "drop":
            return 0, None, {}
        if self.reasoning:
            for param, msg in (
                (
                    "max_tokens",
                    "Unsupported parameter: 'max_tokens' is not supported with this "
                    "model. Use 'max_completion_tokens' instead.",
                ),
                (
                    "temperature",
                    "Unsupported value: 'temperature' does not support 0 with this "
                    "model. Only the default (1) value is supported.",
                ),
                ("top_p", "Unsupported parameter: 'top_p' is not supported with this model."),
            ):
                if param in body and not (param == "temperature" and body[param] == 1):
                    return 400, _error(msg, "unsupported_parameter", param), {}
        if self.delay:
            time.sleep(self.delay)
        return 200, self._completion(body, user), {}

    def _completion(self, body: dict, user: str) -> dict:
        n = int(body.get("n", 1)) if self.supports_n else 1
        limit = body.get("max_tokens", body.get("max_completion_tokens", 10**6))
        choices = []
        for i in range(n):
            text = self.reply if self.reply is not None else f"answer to {user} #{i} seed={body.get('seed')}"
            words = text.split(" ")
            finish, stop_reason = "stop", None
            for s in (body.get("stop") or []) if self.honour_stop else []:
                if s in text:
                    text, finish, stop_reason = text[: text.index(s)], "stop", s
            if len(words) > limit:
                text, finish, stop_reason = " ".join(words[:limit]), "length", None
            choice = {"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            if self.vllm_like:
                choice["stop_reason"] = stop_reason
            choices.append(choice)
        usage = {
            "prompt_tokens": len(user.split()),
            "completion_tokens": sum(len(c["message"]["content"].split()) for c in choices),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": choices,
            "usage": usage,
        }

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(400, _error("invalid JSON body", None), {})
                with server._lock:
                    server.bodies.append(body)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, payload, headers = server.answer(body, self.headers.get("Authorization"))
                finally:
                    with server._lock:
                        server.in_flight -= 1
                with server._lock:
                    server.statuses.append(status)
                if payload is None:
                    self.close_connection = True
                    self.connection.close()
                    return
                self._send(status, payload, headers)

            def _send(self, status, payload, headers):
                trickle = isinstance(payload, tuple)
                if trickle:
                    payload = payload[1]
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    if trickle:
                        for k in range(len(data)):
                            self.wfile.write(data[k : k + 1])
                            self.wfile.flush()
                            time.sleep(0.05)
                    else:
                        self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout) before the answer came

        return Handler


def _error(message: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


def _user_text(body: dict) -> str:
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    return users[-1] if users else ""
