"""``psr mine-pairs``: MCTS on a policy with a PRM as value -> candidate step pairs (paper §3.2).

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
across them); a finished problem's pairs are written as one group (RecordWriter group_field
"problem_id"), so a killed run resumes with the unfinished problems and never duplicates pairs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace

from psr.core.errors import InputError
from psr.core.log import info, progress
from psr.core.paths import write_json
from psr.core.records import IOConfig, RecordWriter
from psr.engines import EngineConfig, Sampling, load_engine
from psr.engines.base import derive_seed
from psr.engines.prm import CONFIG_KEY, PRMScorer, is_prm_dir


@dataclass
class MCTSConfig:
    """Paper §4: simulation_depth=3, num_iterations=100, T=0.7, top_p=0.95; the rest are psr's choices."""

    num_iterations: int = 100
    simulation_depth: int = 3
    temperature: float = 0.7
    top_p: float = 0.95
    width: int = 6  # candidates per expansion (the paper's search width, §4; its MCTS width is not given)
    exploration: float = 1.0  # UCT exploration constant c
    margin: float = 0.0  # a pair needs chosen_score > rejected_score + margin
    max_depth: int = 20  # steps in a solution before a node is terminal
    max_step_tokens: int = 512
    working_set: int = 32  # problems advanced together
    prm_batch_size: int = 16
    seed: int = 0
    # Where the PRM runs (a 72B PRM fits no single GPU): "hf" on one device, or sharded over the visible GPUs
    # with prm_device_map; "vllm" its own vLLM engine with its own tensor parallelism and memory share.
    prm_engine: str = "hf"
    prm_device_map: str | None = None  # hf: auto | balanced | sequential (accelerate)
    prm_tensor_parallel_size: int = 1
    prm_gpu_memory_utilization: float = 0.4  # vllm: leaves room for a vllm policy on the same GPUs
    prm_max_model_len: int | None = None

    def check(self) -> None:
        for name in ("num_iterations", "width", "max_depth", "max_step_tokens", "working_set", "prm_batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.simulation_depth < 0 or self.margin < 0 or self.exploration < 0:
            raise InputError("--simulation-depth, --margin and --exploration must be >= 0")
        if self.width < 2:
            raise InputError(f"--width must be >= 2 to compare candidates, got {self.width}")
        if self.prm_engine not in ("hf", "vllm"):
            raise InputError(f"--prm-engine must be hf or vllm, got {self.prm_engine!r}")
        if self.prm_device_map is not None and self.prm_engine != "hf":
            raise InputError("--prm-device-map is for --prm-engine hf (vLLM shards with --prm-tensor-parallel-size)")
        if self.prm_device_map not in (None, "auto", "balanced", "balanced_low_0", "sequential"):
            raise InputError(f"--prm-device-map must be auto, balanced, balanced_low_0 or sequential, got "
                             f"{self.prm_device_map!r}")
        if not 0 < self.prm_gpu_memory_utilization <= 1 or self.prm_tensor_parallel_size < 1:
            raise InputError("--prm-gpu-memory-utilization must be in (0, 1] and --prm-tensor-parallel-size >= 1")
        if not self.temperature >= 0 or not 0 < self.top_p <= 1:
            raise InputError(f"--temperature must be >= 0 and --top-p in (0, 1], got {self.temperature:g} and "
                             f"{self.top_p:g}")


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
                path.append(max(parent.children, key=lambda ch: (ch.uct(parent.visits, self.cfg.exploration),
                                                                 ch.score or 0.0)))
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
            self.pairs.append({
                "id": f"{pid}/{leaf.index}", "problem_id": pid, "question": self.problem["question"],
                "previous_steps": list(leaf.steps), "chosen": best.steps[-1], "rejected": worst.steps[-1],
                "chosen_score": best.score, "rejected_score": worst.score,
            })


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

    def __init__(self, policy, prm: PRMScorer, cfg: MCTSConfig):
        self.policy, self.prm, self.cfg = policy, prm, cfg
        self.stats = Stats()

    def _sampling(self, n: int, trees: list[Tree]) -> Sampling:
        # Each tree's own seed for each of its model calls, from the run seed and the problem id (never from a
        # count of engine calls), so a resumed, sharded or reordered run grows every tree the same.
        seeds = []
        for t in trees:
            t.calls += 1
            seeds.append(derive_seed(self.cfg.seed, t.problem["id"], t.calls))
        return Sampling(n=n, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                        max_tokens=self.cfg.max_step_tokens, seeds=seeds)

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
        cands = self._generate([(trees[i].problem["question"], paths[i][-1].steps) for i in order], self.cfg.width,
                               [trees[i] for i in order])
        cands = [_unique_steps(c) for c in cands]
        flat = [(i, s) for i, cs in zip(order, cands, strict=True) for s in cs]
        scores = iter(self._score([(trees[i].problem["question"], paths[i][-1].steps + [s.content])
                                   for i, s in flat]))
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
        rollouts = {i: list(node.steps) for i, node in start.items()
                    if not trees[i].terminal(node) and self.cfg.simulation_depth > 0}
        live = dict(rollouts)
        for _ in range(self.cfg.simulation_depth):
            if not live:
                break
            order = sorted(live)
            outs = self._generate([(trees[i].problem["question"], live[i]) for i in order], 1, [trees[i] for i in order])
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


def run(io: IOConfig, engine_cfg: EngineConfig, prm_path: str, cfg: MCTSConfig, *, stats_path: str | None = None,
        prm_device: str = "auto", prm_dtype: str = "auto", prm_scorer=None) -> dict:
    """Mine candidate pairs for every problem of ``io.inputs``; returns the stats (also on stderr / ``stats_path``).
    ``prm_scorer``: an already loaded scorer (``load_prm``'s result), used instead of loading ``prm_path``, not closed."""
    cfg.check()
    if not prm_path:
        raise InputError("--prm is required: a PRM directory written by `psr train-prm`")
    if not os.path.isdir(prm_path):
        raise InputError("--prm: no such model directory", prm_path)
    if not is_prm_dir(prm_path):
        # A base model loads as a PRM just as well and scores every step near 0.5: the pairs would be noise.
        raise InputError(f"--prm: not a process reward model written by `psr train-prm` (its config.json has no "
                         f"'{CONFIG_KEY}' entry); train one with `psr train-prm -o DIR` first", prm_path)
    start = time.perf_counter()
    with RecordWriter(io.output, overwrite=io.overwrite, group_field="problem_id") as writer:
        todo = io.todo("problem", writer)
        miner_stats = Stats()
        if todo:
            own = prm_scorer is None
            prm = load_prm(prm_path, engine_cfg, cfg, prm_device, prm_dtype) if own else prm_scorer
            try:
                with load_engine(engine_cfg) as policy:
                    miner = Miner(policy, prm, cfg)
                    _mine(miner, todo, writer, cfg)
            finally:
                if own and hasattr(prm, "close"):
                    prm.close()
            miner_stats = miner.stats
    miner_stats.total_s = time.perf_counter() - start
    summary = miner_stats.summary()
    info("mine-pairs: " + ", ".join(f"{k} {v}" for k, v in summary.items()))
    # A rerun with nothing left to do keeps the stats of the run that did the work instead of writing zeros
    if stats_path and (todo or not os.path.exists(stats_path)):
        write_json(stats_path, summary)
    return summary


def load_prm(prm_path: str, engine_cfg: EngineConfig, cfg: MCTSConfig, device: str = "auto", dtype: str = "auto"):
    """The PRM as an object with ``score(items)``: transformers on one device or sharded by ``prm_device_map``,
    or a vLLM engine of its own (``VLLMEngine.score``: the same P(+), read from prompt log-probabilities)."""
    if cfg.prm_engine == "vllm":
        return load_engine(replace(engine_cfg, engine="vllm", model=prm_path, dtype=dtype,
                                   tensor_parallel_size=cfg.prm_tensor_parallel_size,
                                   gpu_memory_utilization=cfg.prm_gpu_memory_utilization,
                                   max_model_len=cfg.prm_max_model_len))
    return PRMScorer.load(prm_path, device=device, dtype=dtype, batch_size=cfg.prm_batch_size,
                          trust_remote_code=engine_cfg.trust_remote_code, device_map=cfg.prm_device_map)


def _mine(miner: Miner, todo: list[dict], writer: RecordWriter, cfg: MCTSConfig) -> None:
    queue = list(reversed(todo))
    active: list[Tree] = []
    with progress("mine-pairs", len(todo)) as advance:
        while queue or active:
            while queue and len(active) < cfg.working_set:
                active.append(Tree(queue.pop(), cfg))
            miner.step(active)
            for t in [t for t in active if t.done]:
                writer.write_group(t.problem["id"], t.pairs)
                miner.stats.problems += 1
                miner.stats.iterations += t.iterations
                miner.stats.pairs += len(t.pairs)
                advance()
            active = [t for t in active if not t.done]
