"""psr.search: the registry of search methods and its one signature (engine, problems, cfg, scorer)."""

from __future__ import annotations

import pytest
from helpers import Scripted, ranked

from psr.core.errors import InputError
from psr.search import APPROACHES, MCTSConfig, SearchConfig, approach_name, iter_search, iter_srlm, search


def _steps(q, prev, asked):
    # three different candidates a step; the third step is final
    n = len(prev) + 1
    return [f"s{n}a" + ("<eos>" if n == 3 else ""), f"s{n}b", f"s{n}c"]


PROBLEMS = [{"id": f"p{i}", "question": f"{i}+1?"} for i in range(3)]


def _flat(batches):
    return sorted((t for b in batches for t in b), key=lambda t: t["id"])


def test_the_registry_names_every_method_with_its_config_and_scorer():
    assert set(APPROACHES) == {"psr", "tts", "srlm", "mcts"}
    assert {n: a.config for n, a in APPROACHES.items()} == {
        "psr": SearchConfig,
        "tts": SearchConfig,
        "srlm": SearchConfig,
        "mcts": MCTSConfig,
    }
    assert APPROACHES["mcts"].scorer == "prm" and APPROACHES["psr"].scorer == "judge"
    assert approach_name(SearchConfig()) == "psr" and approach_name(SearchConfig(tts=True)) == "tts"
    assert approach_name(SearchConfig(mode="srlm")) == "srlm"


def test_a_method_run_through_the_registry_is_the_method_itself():
    cfg = SearchConfig(width=3, seed=5)
    direct = _flat(iter_search(Scripted(_steps, ranked("s1c", "s2b", "s3a<eos>", "s3a")), PROBLEMS, cfg))
    via = _flat(search("psr", Scripted(_steps, ranked("s1c", "s2b", "s3a<eos>", "s3a")), PROBLEMS, cfg))
    assert via == direct and all(t["pairs"] for t in via)
    # tts is the same search answering: no pairs, and a config without tts set is taken as one
    tts = _flat(search("tts", Scripted(_steps, ranked("s1c", "s2b", "s3a")), PROBLEMS, cfg))
    assert [t["id"] for t in tts] == ["p0", "p1", "p2"] and not any("pairs" in t for t in tts)
    assert cfg.tts is False  # the caller's config is not changed
    srlm_cfg = SearchConfig(mode="srlm", width=3)

    def scorer():
        return Scripted(lambda q, p, k: ["Step 1: 2 <eos>"] * 3, score=lambda r: "Score: 3")

    assert _flat(search("srlm", scorer(), PROBLEMS, srlm_cfg)) == _flat(iter_srlm(scorer(), PROBLEMS, srlm_cfg))


def test_the_scorer_argument_is_the_judge():
    policy = Scripted(_steps, judge=lambda a, b: pytest.fail("the policy was asked to judge"))
    judge = Scripted(judge=ranked("s1a", "s2a", "s3a"))
    out = _flat(search("psr", policy, PROBLEMS[:1], SearchConfig(width=3), judge))
    assert out[0]["steps"] == ["s1a", "s2a", "s3a"] and judge.judged


def test_unknown_methods_wrong_configs_and_a_missing_prm_are_refused():
    with pytest.raises(InputError, match="no search method 'beam'.*psr, tts, srlm, mcts"):
        search("beam", Scripted(_steps), PROBLEMS, SearchConfig())
    with pytest.raises(TypeError, match="takes a MCTSConfig"):
        search("mcts", Scripted(_steps), PROBLEMS, SearchConfig())
    with pytest.raises(InputError, match="needs a PRM"):
        search("mcts", Scripted(_steps), PROBLEMS, MCTSConfig())
