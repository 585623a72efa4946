"""MCTS on a policy with a PRM as value -> candidate step pairs (paper §3.2), the ``mcts`` method of psr.search.

One tree per problem; its nodes are partial solutions (lists of steps). One iteration:

1. **select**: from the root, follow the child with the highest UCT score
   ``Q + c * sqrt(ln N_parent / N_child)`` (an unvisited child first, the one the PRM likes best)
   down to a node that is not expanded yet;
2. **expand**: sample ``width`` candidate next steps for it (one batched ``Engine.next_steps`` call
   for the whole working set of problems), score all of them with the PRM in one batched call,
   and compare them: the best and the worst child become a candidate pair when their P(+)
   differ by more than ``margin``;
3. **simulate**: from the best new child, roll out up to ``simulation_depth`` more steps (one
   sample a step, batched over problems); the value is the PRM's P(+) of the last step reached;
4. **backpropagate** the value (visit count +1, value sum +value) along the selected path.

A node whose step states the final answer (or ends the model's turn) or that is ``max_depth``
steps deep is terminal: selecting it backs up its own P(+) without calling a model. Every iteration
ends at one node (the simulated child, or a terminal node), so visits add up:
``N(node) == ended_here(node) + sum(N(child))``, and ``N(root)`` is the number of iterations.

Problems run in a working set (``working_set`` trees advance together, so each model call batches
across them); a finished problem is yielded with all its pairs (psr.stages.mine_pairs writes them as one group).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

from psr.engines import Engine, Sampling
from psr.engines.base import derive_seed
from psr.engines.prm import PRMScorer
from psr.search.config import MCTSConfig


@dataclass
class Node:
    steps: list[str]
    index: int
    score: float | None = None  # PRM P(+) of the last step (None at the root)
    final: bool = False
    children: list[Node] = field(default_factory=list)
    expanded: bool = False
    visits: int = 0
    value_sum: float = 0.0
    ended_here: int = 0  # iterations whose path ended at this node

    def uct(self, parent_visits: int, c: float) -> float:
        if self.visits == 0:
            return math.inf
        return self.value_sum / self.visits + c * math.sqrt(math.log(max(parent_visits, 1)) / self.visits)


class Tree:
    """The search state of one problem."""

    def __init__(self, problem: dict, cfg: MCTSConfig):
        self.problem = problem
        self.cfg = cfg
        self.root = Node([], 0)
        self.nodes = [self.root]
        self.iterations = 0
        self.pairs: list[dict] = []
        self.calls = 0  # model calls made for this tree: with the problem id, they seed each call

    @property
    def done(self) -> bool:
        return self.iterations >= self.cfg.num_iterations

    def terminal(self, node: Node) -> bool:
        return node.final or len(node.steps) >= self.cfg.max_depth or (node.expanded and not node.children)

    def select(self) -> list[Node] | None:
        """The path to the next node to expand; iterations that end on a terminal node are backed up here."""
        while not self.done:
            path = [self.root]
            while path[-1].expanded and path[-1].children:
                parent = path[-1]
                # unvisited children first (the PRM's favourite), then UCT; ties keep sampling order
                path.append(
                    max(parent.children, key=lambda ch: (ch.uct(parent.visits, self.cfg.exploration), ch.score or 0.0))
                )
            if not self.terminal(path[-1]):
                return path
            self.backup(path, path[-1].score or 0.0)
        return None

    def backup(self, path: list[Node], value: float) -> None:
        for node in path:
            node.visits += 1
            node.value_sum += value
        path[-1].ended_here += 1
        self.iterations += 1

    def add_children(self, leaf: Node, steps: list, scores: list[float]) -> None:
        leaf.expanded = True
        for step, score in zip(steps, scores, strict=True):
            child = Node(leaf.steps + [step.content], len(self.nodes), score, step.is_final)
            leaf.children.append(child)
            self.nodes.append(child)
        if len(leaf.children) < 2:
            return
        best = max(leaf.children, key=lambda ch: ch.score)
        worst = min(leaf.children, key=lambda ch: ch.score)
        if best.score > worst.score + self.cfg.margin:
            pid = self.problem["id"]
            self.pairs.append(
                {
                    "id": f"{pid}/{leaf.index}",
                    "problem_id": pid,
                    "question": self.problem["question"],
                    "previous_steps": list(leaf.steps),
                    "chosen": best.steps[-1],
                    "rejected": worst.steps[-1],
                    "chosen_score": best.score,
                    "rejected_score": worst.score,
                }
            )


@dataclass
class Stats:
    problems: int = 0
    iterations: int = 0
    expansions: int = 0
    nodes: int = 0
    pairs: int = 0
    rollout_steps: int = 0
    generation_calls: int = 0
    scoring_calls: int = 0
    generation_s: float = 0.0
    scoring_s: float = 0.0
    total_s: float = 0.0

    def summary(self) -> dict:
        d = asdict(self)
        d["pairs_per_problem"] = self.pairs / self.problems if self.problems else 0.0
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}


def _unique_steps(steps: list) -> list:
    """Drop empty and repeated candidates: identical steps cannot form a pair and waste PRM calls."""
    seen, out = set(), []
    for s in steps:
        if s.content and s.content not in seen:
            seen.add(s.content)
            out.append(s)
    return out


class Miner:
    """Runs many trees together so that every model call batches across problems."""

    def __init__(self, policy: Engine, prm: PRMScorer, cfg: MCTSConfig, stats: Stats | None = None):
        self.policy, self.prm, self.cfg = policy, prm, cfg
        self.stats = Stats() if stats is None else stats

    def _sampling(self, n: int, trees: list[Tree]) -> Sampling:
        # Each tree's own seed for each of its model calls, from the run seed and the problem id (never from a
        # count of engine calls), so a resumed, sharded or reordered run grows every tree the same.
        seeds = []
        for t in trees:
            t.calls += 1
            seeds.append(derive_seed(self.cfg.seed, t.problem["id"], t.calls))
        return Sampling(
            n=n,
            temperature=self.cfg.temperature,
            top_p=self.cfg.top_p,
            max_tokens=self.cfg.max_step_tokens,
            seeds=seeds,
        )

    def _generate(self, items: list[tuple[str, list[str]]], n: int, trees: list[Tree]) -> list[list]:
        t = time.perf_counter()
        out = self.policy.next_steps(items, self._sampling(n, trees))
        self.stats.generation_s += time.perf_counter() - t
        self.stats.generation_calls += 1
        return out

    def _score(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        t = time.perf_counter()
        out = self.prm.score(items)
        self.stats.scoring_s += time.perf_counter() - t
        self.stats.scoring_calls += 1
        return out

    def step(self, trees: list[Tree]) -> None:
        """One iteration of every unfinished tree."""
        paths = {i: p for i, t in enumerate(trees) if (p := t.select()) is not None}
        if not paths:
            return
        order = sorted(paths)
        cands = self._generate(
            [(trees[i].problem["question"], paths[i][-1].steps) for i in order],
            self.cfg.width,
            [trees[i] for i in order],
        )
        cands = [_unique_steps(c) for c in cands]
        flat = [(i, s) for i, cs in zip(order, cands, strict=True) for s in cs]
        scores = iter(self._score([(trees[i].problem["question"], paths[i][-1].steps + [s.content]) for i, s in flat]))
        best: dict[int, Node] = {}
        for i, cs in zip(order, cands, strict=True):
            leaf = paths[i][-1]
            trees[i].add_children(leaf, cs, [next(scores)[-1] for _ in cs])
            self.stats.expansions += 1
            self.stats.nodes += len(cs)
            if leaf.children:
                best[i] = max(leaf.children, key=lambda ch: ch.score)
        values = self._simulate(trees, best)
        for i in order:
            if i in best:
                trees[i].backup(paths[i] + [best[i]], values[i])
            else:  # the policy produced no usable step: the leaf is terminal now
                trees[i].backup(paths[i], paths[i][-1].score or 0.0)

    def _simulate(self, trees: list[Tree], start: dict[int, Node]) -> dict[int, float]:
        """Roll out up to simulation_depth steps from each start node; the value is P(+) of the last step."""
        values = {i: node.score for i, node in start.items()}
        rollouts = {
            i: list(node.steps)
            for i, node in start.items()
            if not trees[i].terminal(node) and self.cfg.simulation_depth > 0
        }
        live = dict(rollouts)
        for _ in range(self.cfg.simulation_depth):
            if not live:
                break
            order = sorted(live)
            outs = self._generate(
                [(trees[i].problem["question"], live[i]) for i in order], 1, [trees[i] for i in order]
            )
            for i, out in zip(order, outs, strict=True):
                step = out[0]
                if not step.content:
                    del live[i]
                    continue
                live[i].append(step.content)
                self.stats.rollout_steps += 1
                if step.is_final or len(live[i]) >= self.cfg.max_depth:
                    del live[i]
        order = [i for i in sorted(rollouts) if len(rollouts[i]) > len(start[i].steps)]
        if order:
            scored = self._score([(trees[i].problem["question"], rollouts[i]) for i in order])
            for i, s in zip(order, scored, strict=True):
                values[i] = s[-1]
        return values


def iter_mcts(
    engine: Engine, problems: Iterable[dict], cfg: MCTSConfig, prm: PRMScorer, *, stats: Stats | None = None
) -> Iterator[list[dict]]:
    """Grow one tree per problem, ``working_set`` trees together; yield the problems whose trees finished in each
    round, as ``{"id", "pairs", "iterations"}``, in input order. ``stats`` (a ``Stats``) gathers the counters."""
    miner = Miner(engine, prm, cfg, stats)
    pending = iter(problems)
    active: list[Tree] = []
    while True:
        while len(active) < cfg.working_set and (p := next(pending, None)) is not None:
            active.append(Tree(p, cfg))
        if not active:
            return
        miner.step(active)
        done = [t for t in active if t.done]
        active = [t for t in active if not t.done]
        for t in done:
            miner.stats.problems += 1
            miner.stats.iterations += t.iterations
            miner.stats.pairs += len(t.pairs)
        if done:
            yield [{"id": t.problem["id"], "pairs": t.pairs, "iterations": t.iterations} for t in done]
