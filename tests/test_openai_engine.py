"""The openai engine against a real OpenAI-protocol HTTP server on 127.0.0.1 (tests/servers.py): retries, keys,
errors, the request's parameters, n, continuing a partial answer, finish reasons and stop strings."""

import asyncio
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import engine_for  # noqa: E402
from servers import ChatServer  # noqa: E402

from psr.core.errors import PsrError  # noqa: E402
from psr.core.steps import STEP_STOP  # noqa: E402
from psr.engines import Chat, EngineConfig, Sampling  # noqa: E402
from psr.engines.openai import INLINE_CONTINUE, OpenAIEngine  # noqa: E402
from psr.engines.openai_wire import retry_after_seconds  # noqa: E402


def test_faults_are_retried_and_nothing_is_lost():
    faults = {
        "p1": ["429", "500"],
        "p2": ["garbage", "nochoices"],
        "p3": ["slow"],
        "p4": ["drop", "503"],
        "p6": ["500", "500", "500"],
    }
    with ChatServer(faults=faults, retry_after="0", slow_s=3.0) as server:
        engine = engine_for(server, timeout=0.5, concurrency=4)
        prompts = [f"p{i}" for i in range(8)]
        out = engine.generate([Chat(p) for p in prompts], Sampling(n=3, temperature=0.7, seed=5))
    n_faults = sum(len(v) for v in faults.values())
    assert [[c.text for c in outs] for outs in out] == [
        [f"answer to {p} #{i} seed=5" for i in range(3)] for p in prompts
    ]
    assert engine.counters.retries == n_faults
    assert engine.counters.requests == len(prompts) + n_faults
    assert engine.counters.failures == 0
    assert all(c.prompt_tokens == 1 and c.completion_tokens == 5 for outs in out for c in outs)


def test_retry_after_is_honoured():
    with ChatServer(faults={"q": ["429"]}, retry_after="1") as server:
        engine = engine_for(server)
        engine.backoff_base = 0.0  # without the header the retry would be immediate
        [[c]] = engine.generate([Chat("q")], Sampling())
        gap = server.times["q"][1] - server.times["q"][0]
    assert c.text.startswith("answer to q")
    assert engine.counters.retries == 1
    assert gap >= 1.0


def test_retry_after_header_forms():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_gives_up_after_max_retries():
    with ChatServer(faults={"p": ["500"] * 5}) as server:
        engine = engine_for(server, max_retries=2)
        with pytest.raises(PsrError, match=r"no answer after 2 retries \(last: HTTP 500\)") as err:
            engine.generate([Chat("p")], Sampling())
    assert server.base_url in str(err.value) and "'m'" in str(err.value)
    assert (engine.counters.requests, engine.counters.retries, engine.counters.failures) == (3, 2, 1)


def test_401_names_url_and_model_never_the_key(monkeypatch):
    monkeypatch.setenv("PSR_TEST_KEY", "sk-secret-123")
    with ChatServer(api_key="sk-right") as server:
        engine = engine_for(server, api_key_env="PSR_TEST_KEY")
        with pytest.raises(PsrError) as err:
            engine.generate([Chat("a"), Chat("b")], Sampling())
    msg = str(err.value)
    assert server.base_url in msg and "'m'" in msg and "401" in msg and "$PSR_TEST_KEY" in msg
    assert "sk-secret-123" not in msg  # the server echoed it; the engine scrubs it
    assert engine.counters.retries == 0


def test_a_plain_400_is_not_retried():
    with ChatServer(faults={"bad": ["400"]}) as server:
        engine = engine_for(server)
        with pytest.raises(PsrError, match=r"rejected the request \(400\): .*expected a string") as err:
            engine.generate([Chat("bad")], Sampling())
    assert server.base_url in str(err.value)
    assert (engine.counters.requests, engine.counters.retries, engine.counters.failures) == (1, 0, 1)


def test_generate_works_inside_a_running_event_loop():
    async def notebook_cell(engine, prompt):
        return engine.generate([Chat(prompt)], Sampling())

    with ChatServer(faults={"bad": ["400"]}) as server:
        engine = engine_for(server)
        [[c]] = asyncio.run(notebook_cell(engine, "nb"))
        with pytest.raises(PsrError, match="expected a string"):  # errors come through too
            asyncio.run(notebook_cell(engine, "bad"))
    assert c.text == "answer to nb #0 seed=None"


def test_key_comes_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("PSR_TEST_KEY", "sk-right")
    with ChatServer(api_key="sk-right") as server:
        [[c]] = engine_for(server, api_key_env="PSR_TEST_KEY").generate([Chat("a")], Sampling())
    assert c.text.startswith("answer to a")


def test_no_key_and_no_base_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("PSR_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(PsrError, match="PSR_TEST_NO_SUCH_KEY"):
        OpenAIEngine(EngineConfig(engine="openai", model="gpt-x", api_key_env="PSR_TEST_NO_SUCH_KEY"))


def test_404_unknown_model():
    with ChatServer(models=("served",)) as server:
        engine = engine_for(server, model="not-served")
        with pytest.raises(PsrError, match="404") as err:
            engine.generate([Chat("a")], Sampling())
    assert server.base_url in str(err.value) and "not-served" in str(err.value)


def test_reasoning_model_parameters_are_learned_once():
    with ChatServer(reasoning=True) as server:
        engine = engine_for(server, concurrency=1)
        out = engine.generate([Chat(f"r{i}") for i in range(5)], Sampling(temperature=0.0, top_p=0.9, max_tokens=50))
        bodies = server.bodies
    assert [outs[0].text for outs in out] == [f"answer to r{i} #0 seed=None" for i in range(5)]
    # one rejection per parameter, then every request goes through as the server wants it
    assert server.statuses.count(400) == 3 and len(bodies) == 8
    assert all("max_tokens" not in b and "temperature" not in b and "top_p" not in b for b in bodies[3:])
    assert all(b["max_completion_tokens"] == 50 for b in bodies[3:])


def test_n_is_used_when_supported():
    with ChatServer() as server:
        out = engine_for(server).generate([Chat("a"), Chat("b")], Sampling(n=4, temperature=1.0, seed=7))
    assert len(server.bodies) == 2 and all(b["n"] == 4 for b in server.bodies)
    assert [len(o) for o in out] == [4, 4] and out[1][3].text == "answer to b #3 seed=7"


def test_server_without_n_gets_one_request_per_sample():
    with ChatServer(supports_n=False) as server:
        engine = engine_for(server, concurrency=1)
        out = engine.generate([Chat("a"), Chat("b")], Sampling(n=3, temperature=1.0, seed=10))
    # the first answer shows the server ignores n; after that every sample is its own request, own seed
    assert [[c.text for c in o] for o in out] == [
        ["answer to a #0 seed=10", "answer to a #0 seed=11", "answer to a #0 seed=12"],
        ["answer to b #0 seed=10", "answer to b #0 seed=11", "answer to b #0 seed=12"],
    ]
    assert [b.get("n") for b in server.bodies] == [3, None, None, None, None, None]


def test_greedy_asks_once_and_copies():
    with ChatServer() as server:
        [outs] = engine_for(server).generate([Chat("g")], Sampling(n=3, temperature=0.0))
    assert len(server.bodies) == 1 and "n" not in server.bodies[0]
    assert [c.text for c in outs] == ["answer to g #0 seed=None"] * 3 and outs[0] is not outs[1]


def test_concurrency_limit_holds():
    with ChatServer(delay=0.05) as server:
        engine = engine_for(server, concurrency=3)
        out = engine.generate([Chat(f"c{i}") for i in range(15)], Sampling())
    assert len(out) == 15 and server.max_in_flight <= 3
    assert engine.counters.requests == 15


def test_continue_vllm_mode_sends_the_partial_answer_as_assistant_turn():
    with ChatServer() as server:
        engine = engine_for(server)
        assert engine.continue_mode == "vllm"
        engine.generate([Chat("question", "Step 1: a\n", system="sys")], Sampling())
    [body] = server.bodies
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "Step 1: a\n"},
    ]
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False


def test_continue_inline_mode_puts_the_partial_answer_in_the_user_turn():
    with ChatServer() as server:
        engine = engine_for(server, continue_mode="inline")
        engine.generate([Chat("question", "Step 1: a\n"), Chat("plain")], Sampling())
    first, second = sorted(server.bodies, key=lambda b: b["messages"][0]["content"] == "plain")
    assert first["messages"] == [
        {"role": "user", "content": "question\n\n" + INLINE_CONTINUE.format(prefix="Step 1: a\n")}
    ]
    assert "continue_final_message" not in first
    assert second["messages"] == [{"role": "user", "content": "plain"}]


def test_finish_reasons_from_a_vllm_server():
    with ChatServer(reply="one two three four five six") as server:
        engine = engine_for(server)
        [[stop]] = engine.generate([Chat("s")], Sampling(stop=[" four"]))
        [[eos]] = engine.generate([Chat("e")], Sampling())
        [[length]] = engine.generate([Chat("l")], Sampling(max_tokens=2))
    assert (stop.text, stop.finish_reason) == ("one two three", "stop")
    assert (eos.text, eos.finish_reason) == ("one two three four five six", "eos")
    assert (length.text, length.finish_reason) == ("one two", "length")


def test_finish_reason_without_vllm_stop_reason():
    # OpenAI says "stop" for a stop string and for end of turn alike
    with ChatServer(reply="one two", vllm_like=False) as server:
        engine = engine_for(server)
        [[a]] = engine.generate([Chat("x")], Sampling(stop=["zzz"]))
        [[b]] = engine.generate([Chat("x")], Sampling())
    assert (a.finish_reason, b.finish_reason) == ("stop", "eos")


def test_stop_strings_cut_even_when_the_server_ignores_them():
    with ChatServer(reply="Step 2: x = 3\nStep 3: so the answer is 3", honour_stop=False) as server:
        [[step]] = engine_for(server).next_steps([("Solve x + 1 = 4.", ["Subtract 1."])], Sampling())
        [body] = server.bodies
    assert step.content == "x = 3" and step.completion.finish_reason == "stop" and not step.is_final
    assert body["stop"] == [STEP_STOP]
    assert body["messages"][-1] == {"role": "assistant", "content": "Step 1: Subtract 1.\n"}
