"""Several OpenAI-compatible servers of one model (one ``vllm serve`` per GPU or GPU group) behind one engine.

``--base-url URL1,URL2,...``: each request goes to the live server with the fewest of this engine's requests in
flight (ties: the one sent fewest, so equal servers take turns), which keeps a slow server from holding up its
share of a batch. A server that fails to answer (connection refused or dropped, timeout, 5xx) is set aside for
``rest_s`` seconds and the request is sent at once to another one; only when every server has failed it does the
request wait out the usual backoff (and count a retry).
"""

from __future__ import annotations

import time


def split_urls(base_url: str | None) -> list[str | None]:
    """The base URLs of ``--base-url`` (comma-separated; repeated ones once); [None] for the OpenAI API."""
    if not base_url:
        return [None]
    urls = [u.strip().rstrip("/") for u in base_url.split(",") if u.strip()]
    return list(dict.fromkeys(urls)) or [None]


class ServerPool:
    rest_s = 10.0  # seconds a failed server gets no new request while others are live

    def __init__(self, urls: list[str | None]):
        self.urls = urls
        self.in_flight = [0] * len(urls)
        self.sent = [0] * len(urls)
        self.failed_at = [-float("inf")] * len(urls)

    def pick(self, avoid: set[int] = frozenset()) -> int:
        """The server for the next request (``avoid``: those this request failed on already)."""
        now = time.monotonic()
        everyone = range(len(self.urls))
        candidates = (
            [i for i in everyone if i not in avoid and now - self.failed_at[i] >= self.rest_s]
            or [i for i in everyone if i not in avoid]
            or list(everyone)
        )
        k = min(candidates, key=lambda i: (self.in_flight[i], self.sent[i]))
        self.sent[k] += 1
        return k

    def failed(self, k: int) -> None:
        self.failed_at[k] = time.monotonic()
