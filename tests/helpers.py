"""Small helpers the test modules share (imported as ``from helpers import ...``, like servers.py)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from psr.core.prompts import JUDGE_PROMPT, SRLM_SCORE_PROMPT
from psr.core.steps import parse_steps
from psr.engines import Completion, Engine, EngineConfig, load_engine
from psr.engines.openai import OpenAIEngine

PSR = [os.path.join(os.path.dirname(sys.executable), "psr")]  # the console script of this venv
REPO = Path(__file__).resolve().parents[1]
VLLM_PY = Path(os.environ.get("PSR_VLLM_PYTHON", REPO / ".venv-vllm" / "bin" / "python"))  # the vLLM env


def write_jsonl(path, recs):
    with open(path, "w", encoding="utf-8") as fh:
        for r in recs:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(x) for x in fh if x.strip()]


# -- the scripted engine of the search tests (tests/test_search*.py) ----------------------------------

_A = re.compile(r"A’s Next Reasoning Step\]\nStep \d+: (.*?)\n\[The End of Assistant A", re.S)
_B = re.compile(r"B’s Next Reasoning Step\]\nStep \d+: (.*?)\n\[The End of Assistant B", re.S)


class Scripted(Engine):
    """A deterministic engine for the algorithm tests: the test gives the candidates and the verdicts.

    ``steps(question, previous_steps, times_asked) -> [texts]``: candidate step contents; a text ending in
    "<eos>" ends the turn. ``judge(a, b) -> judgment text``. ``score(response) -> judgment text`` (srlm).
    Every call is logged so tests can check the batching.
    """

    name = "scripted"

    def __init__(self, steps=None, judge=None, score=None):
        self.steps, self.judge, self.score = steps, judge, score
        self.asked = Counter()
        self.calls = []  # (kind, number of chats)
        self.judged = []  # (a, b) of every judge prompt

    def generate(self, chats, sampling):
        kinds = set()
        out = []
        for c in chats:
            if c.user.startswith(JUDGE_PROMPT[:60]):
                kinds.add("judge")
                a, b = _A.search(c.user).group(1), _B.search(c.user).group(1)
                self.judged.append((a, b))
                out.append([Completion(self.judge(a, b), "eos", 10, 5)])
            elif c.user.startswith(SRLM_SCORE_PROMPT[:60]):
                kinds.add("score")
                resp = c.user.split("<response>")[1].split("</response>")[0]
                out.append([Completion(self.score(resp), "eos", 10, 5)])
            else:
                kind = "step" if sampling.stop else "solution"  # next_steps always stops at the next step
                kinds.add(kind)
                q = c.user.split("Problem: ", 1)[1]
                prev = parse_steps(c.assistant_prefix)
                key = (q, len(prev))
                texts = self.steps(q, prev, self.asked[key])
                self.asked[key] += 1
                assert len(texts) == sampling.n
                head = f"Step {len(prev) + 1}: " if kind == "step" else ""
                out.append(
                    [
                        Completion(head + t.removesuffix("<eos>"), "eos" if t.endswith("<eos>") else "stop", 10, 3)
                        for t in texts
                    ]
                )
        assert len(kinds) == 1, "one engine call serves one kind of prompt"
        self.calls.append((kinds.pop(), len(chats)))
        return out


def ranked(*order):
    """A judge preferring texts earlier in ``order`` (texts not listed rank last)."""
    rank = {t: i for i, t in enumerate(order)}
    return lambda a, b: "A is right. [[A]]" if rank.get(a, 99) < rank.get(b, 99) else "B is right. [[B]]"


def search_cli(*args):
    """``python -m psr.cli search ARGS`` with this venv's python (tests/test_search_tiny.py, test_search_cli.py)."""
    return [sys.executable, "-m", "psr.cli", "search", *args]


# -- psr eval's scripted engine and EFT records (tests/test_eval*.py) ---------------------------------


class ScriptedEngine(Engine):
    """Answers each chat with ``respond(chat)``; counts tokens as whitespace-separated words."""

    name = "scripted"

    def __init__(self, respond):
        self.respond = respond
        self.calls: list[int] = []

    def generate(self, chats, sampling):
        self.calls.append(len(chats))
        return [[Completion(self.respond(c), "eos", 0, 5)] for c in chats]

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]


def eft_records(n):
    """n EFT records e0, e1, ...: "good step i" against "bad step i", labelled A and B in turn."""
    out = []
    for i in range(n):
        good, bad = f"good step {i}", f"bad step {i}"
        label = "A" if i % 2 == 0 else "B"
        a, b = (good, bad) if label == "A" else (bad, good)
        out.append(
            {
                "id": f"e{i}",
                "question": f"Q{i}",
                "previous_steps": ["x = 1"] * (i % 3),
                "step_a": a,
                "step_b": b,
                "judgment": "ref [[" + label + "]]",
                "label": label,
            }
        )
    return out


def shown_a(chat):
    """The step a judge prompt shows as Assistant A's."""
    return chat.user.split("Next Reasoning Step]\n")[1].split("\n")[0]


# -- train-prm's learnable task (tests/test_prm*.py, tests/test_lora_sharded.py) ----------------------


def doubling_examples(n: int, seed: int) -> list[dict]:
    """Steps "a + a = c": right when c = 2a, wrong when off by one (then c is odd, a learnable cue)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        steps, labels = [], []
        for _ in range(4):
            a = rng.randint(1, 49)
            ok = rng.random() < 0.5
            steps.append(f"{a} + {a} = {2 * a + (0 if ok else rng.choice([-1, 1]))}")
            labels.append(ok)
        out.append({"prompt": f"Double the numbers ({i}).", "completions": steps, "labels": labels})
    return out


# -- a refused command, run in this process (tests/test_hostile*.py) ----------------------------------


def _snapshot(root) -> dict[str, bytes | None]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = None if os.path.isdir(p) or os.path.islink(p) else open(p, "rb").read()
    return out


def run_psr(argv, monkeypatch, capsys) -> tuple[int, str]:
    """``psr ARGV`` through ``psr.cli.main`` in this process; (exit code, stderr)."""
    from psr.cli import main
    from psr.core import log

    monkeypatch.setattr(sys, "argv", ["psr", *argv])
    monkeypatch.setattr(log, "_QUIET", True)
    code = 0
    try:
        main()  # any exception but SystemExit (a traceback for the user) fails the test here
    except SystemExit as done:
        code = 0 if done.code is None else done.code
    return code, capsys.readouterr().err


def check_refused(argv, needle, root, monkeypatch, capsys, code=2):
    """``psr ARGV`` ends with ``code``, one error line holding ``needle``, no traceback, and nothing under ``root``
    changed (at most an empty output created)."""
    before = _snapshot(root)
    rc, err = run_psr(argv, monkeypatch, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert needle in " ".join(err.split()), err
    after = _snapshot(root)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing there before was touched
    assert all(v == b"" for k, v in after.items() if k not in before)  # at most an empty output was created


# -- mine-pairs: its problems, a small MCTS, its pairs (tests/test_mine_pairs*.py, tiny_prm) ----------

MINE_QUESTIONS = [
    "What is 2 + 3?",
    "Solve for $x$: $2x + 1 = 7$.",
    "What is the area of a circle with radius 2?",
    "Ann has 5 apples and gets 7 more. How many now?",
    "What is 9 - 4?",
    "What is 6 * 7?",
]


def problems_file(path, n=None):
    """Problem records p0, p1, ... of the first ``n`` MINE_QUESTIONS (all by default); the file's path."""
    with open(path, "w") as fh:
        for i, q in enumerate(MINE_QUESTIONS[: n or len(MINE_QUESTIONS)]):
            fh.write(json.dumps({"id": f"p{i}", "question": q}) + "\n")
    return str(path)


SMALL_MCTS = dict(  # a small tree, quick on the tiny models
    num_iterations=6,
    width=3,
    simulation_depth=1,
    max_step_tokens=8,
    max_depth=3,
    temperature=1.0,
    top_p=1.0,
    working_set=4,
    margin=0.01,
)


def read_pairs(path) -> list[dict]:
    """The pair records of a mine-pairs output, by id."""
    return sorted((json.loads(x) for x in open(path) if x.strip()), key=lambda r: r["id"])


def same_pairs(a: list[dict], b: list[dict]) -> bool:
    """The same pairs, the PRM's scores to 1e-5: the PRM scores the working set in one batch, and other
    batch mates change its float sums in the last bits (the sampled steps themselves are identical)."""
    scores = ("chosen_score", "rejected_score")
    strip = lambda recs: [{k: v for k, v in r.items() if k not in scores} for r in recs]  # noqa: E731
    return strip(a) == strip(b) and [r[k] for r in a for k in scores] == pytest.approx(
        [r[k] for r in b for k in scores], abs=1e-5
    )


# -- the openai engine on a local server (tests/test_openai_engine*.py) -------------------------------


def engine_for(server, **kw) -> OpenAIEngine:
    """The openai engine on ``server`` (model "m", no API key unless ``api_key_env`` names one), retrying fast."""
    cfg = EngineConfig(
        engine="openai",
        model=kw.pop("model", "m"),
        base_url=kw.pop("base_url", server.base_url),
        api_key_env=kw.pop("api_key_env", "PSR_TEST_NO_SUCH_KEY"),
        **kw,
    )
    engine = load_engine(cfg)
    engine.backoff_base = 0.01  # keep retries quick; Retry-After still rules when the server sends it
    return engine


# -- subprocesses of the vLLM environment (tests/test_vllm_engine.py, tests/test_real_*.py) -----------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # vLLM's own workers are in the same new session
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def vllm_env(**extra) -> dict:
    """The environment of a vLLM subprocess: psr importable, a small fixed KV cache, the engine core
    in-process (one process less to start, same engine)."""
    return dict(
        os.environ, PYTHONPATH=str(REPO), VLLM_CPU_KVCACHE_SPACE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0", **extra
    )


def start_vllm_server(model: str, name: str, log: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``vllm serve`` (its OpenAI-compatible api_server) of ``model`` as ``name`` on 127.0.0.1; (process, base URL)."""
    port = free_port()
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [
                str(VLLM_PY),
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                model,
                "--served-model-name",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--seed",
                "0",
                "--dtype",
                "float32",
                "--enforce-eager",
                *extra,
            ],
            cwd=REPO,
            env=vllm_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, f"http://127.0.0.1:{port}/v1"


def wait_for_server(proc: subprocess.Popen, url: str, log: Path, timeout: float) -> str | None:
    """Poll ``url``/models until it answers; None when up, else what went wrong (with the log's tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"the vLLM server exited ({proc.returncode}):\n{tail(log)}"
        try:
            with urllib.request.urlopen(url + "/models", timeout=5) as r:
                if r.status == 200:
                    return None
        except OSError:
            time.sleep(2)
    return f"the vLLM server was not up within {timeout}s:\n{tail(log)}"
