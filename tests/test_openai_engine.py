"""The openai engine against a real OpenAI-protocol HTTP server on 127.0.0.1 (tests/servers.py)."""

import asyncio
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from servers import ChatServer  # noqa: E402

from psr.core.errors import PsrError  # noqa: E402
from psr.core.steps import STEP_STOP  # noqa: E402
from psr.engines import Chat, EngineConfig, Sampling, load_engine  # noqa: E402
from psr.engines.base import TOO_LONG, RequestsFailed  # noqa: E402
from psr.engines.openai import INLINE_CONTINUE, OpenAIEngine  # noqa: E402
from psr.engines.openai_wire import retry_after_seconds  # noqa: E402


def engine_for(server, **kw) -> OpenAIEngine:
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


# -- misbehaving servers: empty answers, a failing share of requests, a hung server, a too-long prompt -----


@pytest.mark.parametrize("fault", ["null", "nomessage", "empty"])
def test_an_empty_answer_is_a_failed_request_and_is_retried(fault):
    with ChatServer(faults={"e": [fault, fault]}) as server:
        engine = engine_for(server)
        [[c]] = engine.generate([Chat("e")], Sampling())
    assert c.text == "answer to e #0 seed=None"
    assert (engine.counters.empty, engine.counters.retries, engine.counters.failures) == (2, 2, 0)


def test_an_answer_that_stays_empty_fails_only_its_own_chat():
    with ChatServer(faults={"e": ["null"] * 3}) as server:
        engine = engine_for(server, max_retries=2)
        with pytest.raises(RequestsFailed, match=r"1 of 3 requests got no answer after 2 retries") as err:
            engine.generate([Chat("a"), Chat("e"), Chat("b")], Sampling())
        partial = engine.generate_partial([Chat("a"), Chat("e"), Chat("b")], Sampling())
    a, e, b = err.value.results
    assert e is None and a[0].text == "answer to a #0 seed=None" and b[0].text == "answer to b #0 seed=None"
    # the second call: "e" is answered now (its fault list ran out), everything comes back
    assert [o[0].text for o in partial] == [f"answer to {p} #0 seed=None" for p in "aeb"]


def test_a_share_of_failing_requests_loses_only_the_requests_out_of_retries():
    prompts = [f"q{i}" for i in range(40)]
    with ChatServer(failure_rate=0.45) as server:
        engine = engine_for(server, max_retries=1, concurrency=8)
        outs = engine.generate_partial([Chat(p) for p in prompts], Sampling())
    lost = [p for p, o in zip(prompts, outs, strict=True) if o is None]
    assert 0 < len(lost) < len(prompts)  # 0.45^2 of 40: some, not all (the server's generator is seeded)
    assert all(o[0].text == f"answer to {p} #0 seed=None" for p, o in zip(prompts, outs, strict=True) if o)
    assert engine.counters.failures == len(lost)


def test_a_hung_server_is_bounded_by_the_request_timeout():
    with ChatServer(faults={"h": ["hang"] * 3}, hang_s=20.0) as server:
        engine = engine_for(server, timeout=0.3, max_retries=1)
        outs = engine.generate_partial([Chat("h"), Chat("ok")], Sampling())
    assert outs[0] is None and outs[1][0].text.startswith("answer to ok")
    assert engine.counters.requests == 3 and engine.counters.retries == 1


def test_a_server_trickling_its_answer_is_bounded_by_the_request_timeout():
    with ChatServer(faults={"t": ["trickle", "trickle"]}) as server:
        engine = engine_for(server, timeout=0.5, max_retries=1)
        outs = engine.generate_partial([Chat("t"), Chat("ok")], Sampling())  # each read is quick, the whole not
    assert outs[0] is None and outs[1][0].text.startswith("answer to ok")
    assert (engine.counters.requests, engine.counters.failures) == (3, 1)


def test_retries_are_logged_with_a_running_count_at_a_low_rate(capsys):
    with ChatServer(faults={"p": ["500"] * 3, "q": ["500"] * 3, "s": ["500"] * 2}) as server:
        engine = engine_for(server, concurrency=1)
        engine.generate([Chat("p"), Chat("q")], Sampling())  # 6 retries within the default 10 s
        rare = capsys.readouterr().err
        every = engine_for(server)
        every.retry_log_every = 0.0
        every.generate([Chat("s")], Sampling())
        each = capsys.readouterr().err
    assert rare.count("retrying") == 1 and "1 retries so far" in rare
    assert each.count("retrying") == 2 and "1 retries so far" in each and "2 retries so far" in each


def test_in_flight_requests_show_in_the_progress_bar():
    from psr.core import log

    with ChatServer(delay=0.2) as server, log.progress("test", 1):
        engine = engine_for(server, concurrency=4)
        seen = []

        async def watch():
            while len(seen) < 50:
                bar, task = log._bars[-1]
                seen.append(bar.tasks[0].fields["status"])
                await asyncio.sleep(0.01)

        async def both():
            import threading

            t = threading.Thread(target=engine.generate, args=([Chat(f"p{i}") for i in range(4)], Sampling()))
            t.start()
            await watch()
            t.join()

        asyncio.run(both())
    assert "4 in flight" in seen


def test_a_prompt_longer_than_the_context_is_an_outcome_not_a_crash():
    with ChatServer(faults={"long": ["context"]}) as server:
        engine = engine_for(server)
        outs = engine.generate([Chat("long"), Chat("short")], Sampling(n=2, temperature=0.5))
        assert [c.finish_reason for c in outs[0]] == [TOO_LONG, TOO_LONG] and outs[0][0].text == ""
        assert outs[1][0].text.startswith("answer to short")
        assert engine.fits([Chat("long"), Chat("short")]) == [False, True]
        assert engine.max_len == 10  # read from the server's message
        sent = len(server.bodies)
        again = engine.generate([Chat("long")], Sampling())  # known too long: not sent again
    assert again[0][0].finish_reason == TOO_LONG and len(server.bodies) == sent
    assert (engine.counters.too_long, engine.counters.failures) == (1, 0)


def test_a_max_tokens_beyond_the_context_is_capped_not_counted_too_long():
    with ChatServer(faults={"p": ["maxtokens"]}) as server:
        engine = engine_for(server)
        [[c]] = engine.generate([Chat("p")], Sampling(max_tokens=4096))
    assert c.text.startswith("answer to p") and c.finish_reason != TOO_LONG
    assert [b["max_tokens"] for b in server.bodies] == [4096, 70]  # 100 tokens of context, 30 of them prompt
    assert engine.counters.too_long == 0 and engine.fits([Chat("p")]) == [True]


class EndsAtOnce(ChatServer):
    """A model that ends its turn at once: empty text, one generated token (the end of turn), as vLLM reports."""

    def _completion(self, body, user):
        return {
            "id": "x",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ""},
                    "finish_reason": "stop",
                    "stop_reason": None,
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }


def test_an_empty_answer_the_model_generated_is_an_answer_not_a_failure():
    with EndsAtOnce() as server:
        engine = engine_for(server)
        [[c]] = engine.generate([Chat("p")], Sampling())
    assert (c.text, c.finish_reason) == ("", "eos") and engine.counters.retries == 0


def test_several_base_urls_share_the_requests_and_a_dead_one_is_skipped():
    """--base-url A,B: both servers answer (least in flight first), the answers are one server's answers; with a
    dead server (nothing listening) and a server that drops connections in the list, every request still gets
    its answer from the live one, with no retries counted."""
    import socket

    chats = [Chat(f"q{i}") for i in range(12)]
    sampling = Sampling(n=2, temperature=0.7, seed=3)
    with ChatServer(delay=0.05) as one:
        want = [[c.text for c in outs] for outs in engine_for(one).generate(chats, sampling)]
    with ChatServer(delay=0.05) as a, ChatServer(delay=0.05) as b:
        engine = engine_for(a, base_url=f"{a.base_url},{b.base_url}", concurrency=4)
        got = engine.generate(chats, sampling)
        assert [[c.text for c in outs] for outs in got] == want
        assert len(a.bodies) >= 3 and len(b.bodies) >= 3 and len(a.bodies) + len(b.bodies) == len(chats)
    with socket.socket() as s:  # a port nothing listens on: a server that is down
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    faults = {c.user: ["drop"] * 50 for c in chats}  # answers nothing: every connection closed unanswered
    with ChatServer(faults=faults) as dropping, ChatServer() as live:
        engine = engine_for(live, base_url=f"{dead},{dropping.base_url},{live.base_url}", concurrency=4, max_retries=0)
        got = engine.generate(chats, sampling)
        assert [[c.text for c in outs] for outs in got] == want
        assert engine.counters.retries == 0 and len(live.bodies) == len(chats)
    assert "3 servers" in engine.where
