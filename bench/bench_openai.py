"""The openai engine's concurrency: 256 requests to a local server that answers each after 100 ms.

    .venv/bin/python bench/bench_openai.py [--requests 256] [--delay 0.1] [--concurrency 64]

Prints a table: wall time and requests/s at concurrency 1 and at --concurrency, and the speedup
(target >= 30x at 64). Both runs happen here, in one process, against the same server.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
os.environ.setdefault("PSR_QUIET", "1")

from servers import ChatServer  # noqa: E402

from psr.engines.base import Chat, EngineConfig, Sampling  # noqa: E402
from psr.engines.openai import OpenAIEngine  # noqa: E402


def run(base_url: str, concurrency: int, requests: int) -> tuple[float, float]:
    engine = OpenAIEngine(
        EngineConfig(
            engine="openai", model="m", base_url=base_url, concurrency=concurrency, api_key_env="PSR_BENCH_NO_KEY"
        )
    )
    chats = [Chat(f"prompt {i}") for i in range(requests)]
    t, cpu = time.perf_counter(), time.process_time()
    out = engine.generate(chats, Sampling(max_tokens=16))
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert len(out) == requests and all(len(o) == 1 for o in out)
    if engine.counters.retries:
        print(f"note: {engine.counters.retries} retries at concurrency {concurrency}", file=sys.stderr)
    return wall, cpu


def serve(delay: float, conn) -> None:
    with ChatServer(delay=delay) as server:
        conn.send(server.base_url)
        conn.recv()  # until the benchmark is done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--delay", type=float, default=0.1, help="seconds the server takes to answer each request")
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    # The server runs in a process of its own, so its threads do not compete with the engine for the GIL.
    here, there = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=serve, args=(args.delay, there), daemon=True)
    proc.start()
    try:
        base_url = here.recv()
        run(base_url, args.concurrency, 8)  # warm-up: imports, first connections
        walls = {c: run(base_url, c, args.requests) for c in (1, args.concurrency)}
    finally:
        here.send("done")
        proc.join(10)
    print(f"openai engine: {args.requests} requests, server answers after {args.delay * 1000:.0f} ms")
    # engine CPU s: the client's own CPU time; near the wall time, the run was bound by a busy CPU
    print(f"{'concurrency':>11}  {'wall s':>8}  {'engine CPU s':>12}  {'req/s':>8}  {'speedup':>8}")
    base = walls[1][0]
    for c, (wall, cpu) in walls.items():
        print(f"{c:>11}  {wall:>8.2f}  {cpu:>12.2f}  {args.requests / wall:>8.1f}  {base / wall:>7.1f}x")
    ideal = min(args.concurrency, args.requests)
    print(
        f"speedup {base / walls[args.concurrency][0]:.1f}x at concurrency {args.concurrency} "
        f"(ideal {ideal}x; target >= 30x); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
