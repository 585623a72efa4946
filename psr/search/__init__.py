"""The search methods, one signature and a registry (as huggingface/search-and-learn's ``APPROACHES``).

Every method is ``method(engine, problems, cfg, scorer) -> Iterator[list[dict]]``: it searches ``problems``
(dicts with ``id`` and ``question``, a lazy iterable is fine) with the policy ``engine`` and yields the results of
the problems that finished in each round, one dict per problem with its ``id``. ``cfg`` is the method's config
(``APPROACHES[name].config``); ``scorer`` is what judges the candidates: for ``psr``, ``tts`` and ``srlm`` an
``Engine`` as judge (None: the policy judges itself, the method), for ``mcts`` the ``PRMScorer`` used as value.
Stages (psr.stages.search, psr.stages.mine_pairs, psr.stages.eval) read records, call a method, write and resume;
the methods know nothing of files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from psr.core.errors import InputError
from psr.search.config import MODES, MCTSConfig, SearchConfig
from psr.search.judging import judge_plan, pick, tally
from psr.search.mcts import Miner, Stats, Tree, iter_mcts
from psr.search.srlm import iter_srlm
from psr.search.step import iter_search, iter_tts, solve_tts


@dataclass(frozen=True)
class Approach:
    search: Callable[..., Iterator[list[dict]]]
    config: type  # the dataclass its cfg is
    scorer: str  # what the 4th argument is: "judge" (an Engine, or None for self-judging) | "prm" (a PRMScorer)
    yields: str  # what each result is: "trajectory" (psr.stages.search's record) | "tree" (id, pairs, iterations)


APPROACHES: dict[str, Approach] = {
    "psr": Approach(iter_search, SearchConfig, "judge", "trajectory"),  # step search, pairs (§3.3)
    "tts": Approach(iter_tts, SearchConfig, "judge", "trajectory"),  # the same search answering (Tables 5, 9)
    "srlm": Approach(iter_srlm, SearchConfig, "judge", "trajectory"),  # whole solutions scored 0-5 (Yuan et al.)
    "mcts": Approach(iter_mcts, MCTSConfig, "prm", "tree"),  # MCTS with a PRM as value (§3.2)
}


def search(
    name: str, engine: Any, problems: Iterable[dict], cfg: Any, scorer: Any = None, **extra: Any
) -> Iterator[list[dict]]:
    """Run the method registered as ``name``; ``extra`` are that method's own keywords (mcts: ``stats``)."""
    approach = APPROACHES.get(name)
    if approach is None:
        raise InputError(f"no search method {name!r}; known: {', '.join(APPROACHES)}")
    if not isinstance(cfg, approach.config):
        raise TypeError(f"search method {name!r} takes a {approach.config.__name__}, got {type(cfg).__name__}")
    if approach.scorer == "prm" and scorer is None:
        raise InputError(f"search method {name!r} needs a PRM as its scorer")
    return approach.search(engine, problems, cfg, scorer, **extra)


def approach_name(cfg: SearchConfig) -> str:
    """The method a ``psr search`` config asks for: ``tts`` when it answers, else its ``mode``."""
    return "tts" if cfg.tts else cfg.mode


__all__ = [
    "APPROACHES",
    "Approach",
    "MODES",
    "MCTSConfig",
    "Miner",
    "SearchConfig",
    "Stats",
    "Tree",
    "approach_name",
    "iter_mcts",
    "iter_search",
    "iter_srlm",
    "iter_tts",
    "judge_plan",
    "pick",
    "search",
    "solve_tts",
    "tally",
]
