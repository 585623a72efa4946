"""``psr launch``: one generation stage run data-parallel, one worker per GPU (group), its shards merged.

Worker K of N runs ``psr COMMAND ARGS --shard K/N`` (the stages' own sharding: contiguous slices of the input,
seeds derived from problem ids, so the shards together are the unsharded job) with ``CUDA_VISIBLE_DEVICES`` set to
its GPU group, and writes ``OUT.shards/K-of-N.jsonl`` (side outputs beside it), its stderr to
``OUT.shards/K-of-N.log``. When every worker succeeded, the shards are concatenated in order into ``OUT``
(atomically); JSONL side outputs (--trajectories, --rejects) are merged the same way. A rerun reruns every
worker, and each resumes its own shard, so only missing work is redone. ``--node B/M`` makes this box the B-th
of M: its workers take the B-th slice, so the M boxes' merged outputs concatenate, in B order, to the full job.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Annotated

import typer

from psr.cli.root import app
from psr.core.errors import InputError
from psr.core.log import info

STAGES = ("segment", "search", "mine-pairs", "annotate-eft", "eval")
MERGED_SIDE = ("--trajectories", "--rejects")  # JSONL side outputs: one record per input, merged like -o
SHARD_SIDE = ("--stats", "--summary", "--summary-md", "--plot")  # about one shard each: kept per shard
REFUSED = {
    "--shard": "the launcher gives each worker its shard",
    "--limit": "it would apply to each shard; take the first N records into a file first",
    "--test-size": "the held-out split must see every "
    "record: annotate with the launcher, then split in a run of its own",
    "--overwrite": "delete OUT and OUT.shards to start afresh",
}


def _option(args: list[str], names: tuple[str, ...]) -> tuple[int, str] | None:
    """(index of the value, value) of the last occurrence of an option in ``args`` (``-o X`` or ``--output=X``)."""
    found = None
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                found = (i + 1, args[i + 1])
            elif a.startswith(n + "=") and n.startswith("--"):
                found = (i, a[len(n) + 1 :])
    return found


def _with(args: list[str], names: tuple[str, ...], value: str) -> list[str]:
    i, _ = _option(args, names)
    out = list(args)
    out[i] = value if out[i - 1] in names else f"{names[-1]}={value}"
    return out


def _groups(gpus: str | None, per_worker: int, workers: int | None) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES of each worker (None: left as it is, CPU workers)."""
    if gpus is None:
        if not workers or workers < 1:
            raise InputError("give --gpus 0,1,... (one worker per --gpus-per-worker GPUs) or --workers N")
        return [None] * workers
    ids = [g.strip() for g in gpus.split(",") if g.strip()]
    if per_worker < 1 or not ids or len(ids) % per_worker:
        raise InputError(f"--gpus {gpus}: {len(ids)} GPUs do not split into groups of --gpus-per-worker {per_worker}")
    return [",".join(ids[k : k + per_worker]) for k in range(0, len(ids), per_worker)]


def _merge(parts: list[str], dest: str) -> int:
    """Concatenate ``parts`` into ``dest`` through a temporary file (a kill leaves the old ``dest``); lines."""
    tmp, lines = dest + ".merging", 0
    with open(tmp, "wb") as out:
        for p in parts:
            with open(p, "rb") as fh:
                for line in fh:
                    if line.strip():
                        out.write(line if line.endswith(b"\n") else line + b"\n")
                        lines += 1
    os.replace(tmp, dest)
    return lines


def launch(args: list[str], groups: list[str | None], node: tuple[int, int] = (0, 1)) -> int:
    """Run the workers, merge their shards; returns the number of records merged into the output."""
    if not args or args[0] not in STAGES:
        raise InputError(f"psr launch runs one of {', '.join(STAGES)}: psr launch --gpus 0,1 -- search -i ... -o ...")
    for name, why in REFUSED.items():
        if _option(args, (name,)) or name in args:
            raise InputError(f"psr launch: {name} is not for a launched stage ({why})")
    out = _option(args, ("-o", "--output"))
    if out is None or out[1] == "-":
        raise InputError("psr launch needs -o OUT.jsonl (a file: the shards are merged into it)")
    output = out[1]
    b, m = node
    n = len(groups)
    shards_dir = output + ".shards"
    os.makedirs(shards_dir, exist_ok=True)
    procs, merged_side = [], {}
    for k, group in enumerate(groups):
        shard = f"{b * n + k}/{m * n}"
        tag = f"{b * n + k}-of-{m * n}"
        wargs = _with(args, ("-o", "--output"), os.path.join(shards_dir, f"{tag}.jsonl"))
        for opt in MERGED_SIDE + SHARD_SIDE:
            if (found := _option(args, (opt,))) is not None:
                mine = os.path.join(shards_dir, f"{tag}.{opt[2:]}.{os.path.basename(found[1])}")
                wargs = _with(wargs, (opt,), mine)
                if opt in MERGED_SIDE:
                    merged_side.setdefault(found[1], []).append(mine)
        env = dict(os.environ) if group is None else {**os.environ, "CUDA_VISIBLE_DEVICES": group}
        argv = [sys.executable, "-m", "psr.cli", *wargs, "--shard", shard]
        log_path = os.path.join(shards_dir, f"{tag}.log")
        shown = ("" if group is None else f"CUDA_VISIBLE_DEVICES={group} ") + shlex.join(
            ["psr", *wargs, "--shard", shard]
        )
        info(f"launch: worker {k} $ {shown}  (log: {log_path})")
        with open(log_path, "ab") as log:
            procs.append((shard, log_path, subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=log)))
    failed = [(shard, log_path, p.wait()) for shard, log_path, p in procs]
    failed = [f for f in failed if f[2] != 0]
    if failed:
        for shard, log_path, rc in failed:
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                tail = fh.read()[-1500:]
            print(f"--- shard {shard} ({log_path}), exit {rc}:\n{tail}", file=sys.stderr)
        raise LaunchFailed(", ".join(f"shard {s} (exit {rc}, log {lp})" for s, lp, rc in failed))
    parts = [os.path.join(shards_dir, f"{b * n + k}-of-{m * n}.jsonl") for k in range(n)]
    records = _merge([p for p in parts if os.path.exists(p)], output)
    for dest, side in merged_side.items():
        _merge([p for p in side if os.path.exists(p)], dest)
    info(
        f"launch: {n} workers done; merged {records} records into {output}"
        + (
            f" (the per-shard {', '.join(o for o in SHARD_SIDE if _option(args, (o,)))} stay in {shards_dir})"
            if any(_option(args, (o,)) for o in SHARD_SIDE)
            else ""
        )
    )
    return records


class LaunchFailed(Exception):
    pass


def _node(value: str) -> tuple[int, int]:
    try:
        b, m = (int(x) for x in value.split("/"))
    except ValueError:
        raise typer.BadParameter(f"--node must be B/M, got {value!r}") from None
    if not 0 <= b < m:
        raise typer.BadParameter(f"--node {value}: need 0 <= B < M")
    return b, m


@app.command(
    "launch",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    help="Run a generation stage (segment, search, mine-pairs, annotate-eft, eval) data-parallel: "
    "`psr launch --gpus 0,1,2,3 [--gpus-per-worker 1] -- search -i Q.jsonl -o OUT.jsonl ...` starts one "
    "worker per GPU group (CUDA_VISIBLE_DEVICES set, --shard K/N added, -o OUT.shards/K-of-N.jsonl, stderr "
    "to OUT.shards/K-of-N.log) and, when all succeeded, merges the shards in input order into OUT (and "
    "--trajectories/--rejects likewise; --stats/--summary stay per shard). A worker that fails makes it "
    "exit 1 naming its shard and log, merging nothing. Rerun to resume: each worker resumes its shard. "
    "--workers N: N workers without GPUs. Several boxes: --node B/M on box B of M, then concatenate the "
    "boxes' outputs in B order.",
)
def launch_command(
    ctx: typer.Context,
    gpus: Annotated[str | None, typer.Option("--gpus", help="GPU ids of this box to use, e.g. 0,1,2,3.")] = None,
    gpus_per_worker: Annotated[
        int, typer.Option("--gpus-per-worker", help="GPUs of one worker (its engine's --tensor-parallel-size).")
    ] = 1,
    workers: Annotated[int | None, typer.Option("--workers", help="Workers without GPUs (CPU).")] = None,
    node: Annotated[str, typer.Option("--node", help="B/M: this box is box B (0-based) of M.")] = "0/1",
) -> None:
    args = list(ctx.args)
    if args[:1] == ["--"]:
        args = args[1:]
    try:
        launch(args, _groups(gpus, gpus_per_worker, workers), _node(node))
    except LaunchFailed as e:
        print(f"error: psr launch: failed: {e}; nothing merged, rerun to resume", file=sys.stderr)
        raise SystemExit(1) from None
