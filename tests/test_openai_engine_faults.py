"""The openai engine against misbehaving servers on 127.0.0.1 (tests/servers.py): empty answers, a failing share of
requests, a hung or trickling server, a prompt longer than the context, and several base URLs with a dead one."""

import asyncio

import pytest
from helpers import engine_for
from servers import ChatServer

from psr.engines import Chat, Sampling
from psr.engines.base import TOO_LONG, RequestsFailed


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
