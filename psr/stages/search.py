"""`psr search`: read problems, run a search method of psr.search (``psr`` step search, ``srlm``, or ``tts``
answering), write PPD records and trajectories, resume. The methods and the choices they make are documented in
psr.search.step and psr.search.srlm.

Resume: PPD records go out per problem with ``RecordWriter(group_field="problem_id")``. A problem's
trajectory (which also holds its pairs) is written first and marks the problem done; if a kill lands
between the two writes, the next run rebuilds the missing PPD group from the trajectory.
"""

from __future__ import annotations

import contextlib
import json

from psr.core.errors import InputError
from psr.core.grading import grade_many
from psr.core.log import info, progress, warn
from psr.core.records import IOConfig, RecordWriter, skip_done
from psr.engines import Engine, EngineConfig, open_engine
from psr.search import SearchConfig, approach_name, search


def ppd_records(traj: dict) -> list[dict]:
    """The PPD records (design.md) of one problem's trajectory."""
    return [
        {"id": f"{traj['id']}/{p['step_index']}", "problem_id": traj["id"], "question": traj["question"], **p}
        for p in traj.get("pairs", [])
    ]


def _grade(trajs: list[dict]) -> None:
    """Add ``correct`` to trajectories that carry a gold answer (psr.core.grading's default grader)."""
    gold = [t for t in trajs if t.get("answer") is not None]
    if not gold:
        return
    for t, g in zip(gold, grade_many(["\n".join(t["steps"]) for t in gold], [t["answer"] for t in gold]), strict=True):
        t["pred"], t["correct"] = g.pred, g.correct


def _read_trajectories(path: str, ids: set[str]) -> dict[str, dict]:
    found = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                if rec.get("id") in ids:
                    found[rec["id"]] = rec
    return found


def run(
    io: IOConfig,
    cfg: SearchConfig | None = None,
    engine: EngineConfig | Engine | None = None,
    *,
    trajectories: str | None = None,
    judge: EngineConfig | Engine | None = None,
) -> dict:
    """Read problems, search, write PPD records to ``io.output`` and trajectories to ``trajectories``.

    With ``cfg.tts`` the trajectories themselves go to ``io.output``. ``engine`` (an ``EngineConfig`` or a ready
    ``Engine``, psr.engines.open_engine) is the policy; ``judge`` an external judge (default: the policy judges
    itself).
    Returns the summary it also logs.
    """
    cfg = cfg or SearchConfig()
    if cfg.tts and trajectories:
        raise InputError("with --tts the trajectories are the output (-o); drop --trajectories")
    if trajectories and trajectories == io.output:
        raise InputError("--trajectories must differ from -o")

    if cfg.tts:
        main = RecordWriter(io.output, overwrite=io.overwrite)
        traj = None
    else:
        main = RecordWriter(io.output, overwrite=io.overwrite, group_field="problem_id")
        traj = RecordWriter(trajectories, overwrite=io.overwrite) if trajectories else None
    try:
        problems = io.todo("problem")
        done = set(main.done)
        if traj is not None:
            # (records already sent to stdout cannot be checked, so nothing is rebuilt there)
            orphans = (traj.done - main.done) & {p["id"] for p in problems} if io.output != "-" else set()
            if orphans:  # killed between a trajectory and its PPD group: rebuild the group from the trajectory
                for pid, t in _read_trajectories(trajectories, orphans).items():
                    main.write_group(pid, ppd_records(t))
                info(f"rebuilt the PPD records of {len(orphans)} problem(s) from {trajectories}")
            missing = main.done - traj.done
            if missing & {p["id"] for p in problems}:
                warn(
                    f"{len(missing)} problem(s) already in {io.output} have no trajectory in {trajectories}; "
                    "they are not searched again (use --overwrite to redo everything)"
                )
            done = main.done | traj.done
        problems = skip_done(problems, done, io.output)
        summary = {
            "problems": 0,
            "pairs": 0,
            "finished": 0,
            "judge_calls": 0,
            "judge_failures": 0,
            "rollbacks": 0,
            "unanimous": 0,
            "iterations": 0,
            "generated_tokens": 0,
            "graded": 0,
            "correct": 0,
        }
        if not problems:
            info("nothing to do")
            return summary
        judging = open_engine(judge) if judge is not None else contextlib.nullcontext(None)
        with open_engine(engine) as policy, judging as judge_engine:
            batches = search(approach_name(cfg), policy, problems, cfg, judge_engine)
            with progress("search (tts)" if cfg.tts else f"search ({cfg.mode})", len(problems)) as advance:
                for batch in batches:
                    _grade(batch)
                    for t in batch:
                        if cfg.tts:
                            main.write(t)
                        else:
                            recs = ppd_records(t)
                            if traj is not None:
                                traj.write(t)
                            main.write_group(t["id"], recs)
                            summary["pairs"] += len(recs)
                        _add(summary, t)
                    advance(len(batch))
    finally:
        main.close()
        if traj is not None:
            traj.close()
    _report(summary, cfg)
    return summary


def _add(summary: dict, t: dict) -> None:
    summary["problems"] += 1
    summary["finished"] += bool(t.get("finished", True))
    for k in ("judge_calls", "judge_failures", "rollbacks", "unanimous", "iterations", "generated_tokens"):
        summary[k] += t.get(k, 0)
    if "correct" in t:
        summary["graded"] += 1
        summary["correct"] += bool(t["correct"])


def _report(s: dict, cfg: SearchConfig) -> None:
    parts = [f"{s['problems']} problems"]
    if not cfg.tts:
        parts.append(f"{s['pairs']} pairs")
    if cfg.mode == "psr":
        parts.append(
            f"{s['finished']} reached a final answer, {s['rollbacks']} rollbacks, {s['iterations']} rounds, "
            f"{s['unanimous']} steps taken unanimously (no pair)"
        )
    parts.append(f"{s['judge_calls']} judge calls ({s['judge_failures']} without a verdict)")
    if s["graded"]:
        parts.append(f"accuracy {s['correct']}/{s['graded']} = {s['correct'] / s['graded']:.1%}")
    info("search: " + ", ".join(parts))


__all__ = ["SearchConfig", "ppd_records", "run"]
