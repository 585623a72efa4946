"""Small helpers the test modules share (imported as ``from helpers import ...``, like servers.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
