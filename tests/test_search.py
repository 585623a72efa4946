"""psr search: the step search on a scripted engine (ties, rollbacks, batching, judges, tts, srlm), and the
stage's records and resume."""

import json
from collections import Counter

import pytest
from helpers import Scripted, ranked

from psr.core.errors import InputError
from psr.core.records import IOConfig, read_records
from psr.search import SearchConfig, iter_search, solve_tts
from psr.stages.search import ppd_records, run


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
