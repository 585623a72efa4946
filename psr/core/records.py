"""JSONL records: validated reading, crash-safe resumable writing, sharding.

Every stage reads and writes through this module so that bad input always fails the same way
(``FILE:LINE: what is wrong``, exit code 2) and every output file can be resumed after a kill -9.

Written by hand rather than with ``jsonlines``: we need line numbers on raw bytes (to report
non-UTF-8 input), one ``os.write`` per record on an O_APPEND descriptor (so a kill leaves at most
one torn line, which the next run cuts), and resume bookkeeping, none of which it offers.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from psr.core.errors import InputError, PsrError
from psr.core.log import warn
from psr.core.options import option
from psr.core.paths import check_outputs, check_writable, replace_file

# The record contracts (SCHEMAS) live in psr.core.schemas; stages and tests import these two from here.
from psr.core.schemas import eft_kind, validate  # noqa: F401

TOO_DEEP = "JSON nested too deeply to read (thousands of levels of [ or {)"


# ---------------------------------------------------------------------------------------------
# Reading


def iter_lines(path: str) -> Iterator[tuple[int, dict]]:
    """Yield (line number, parsed JSON value) for every non-blank line; raise InputError on bad lines."""
    name = "<stdin>" if path == "-" else path
    try:
        fh = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot open input: {e.strerror}", name) from None
    seen_any = False
    try:
        for lineno, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"not valid UTF-8 (byte {e.start})", name, lineno) from None
            if not text.strip():
                continue
            seen_any = True
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                torn = "" if raw.endswith(b"\n") else " (the last line is torn: no newline at its end)"
                raise InputError(f"invalid JSON: {e.msg} at column {e.colno}{torn}", name, lineno) from None
            except RecursionError:  # json's decoder recurses once per nesting level
                raise InputError(TOO_DEEP, name, lineno) from None
            yield lineno, value
    finally:
        if path != "-":
            fh.close()
    if not seen_any:
        raise InputError("input is empty (no records)", name, 1)


def read_records(paths: str | Iterable[str], kind=None, *, unique_ids: bool = True, convert=None) -> list[dict]:
    """Read and validate every record of every path (``-`` is stdin).

    ``kind`` is a record type of SCHEMAS, None (any JSON object), or a function of the record that
    names its type (e.g. :func:`eft_kind`, for files that may hold either EFT format).

    ``convert(rec) -> rec | list[rec]`` may turn a foreign format (e.g. PRM800K) into the contract
    before validation; it raises ValueError for a record it cannot convert.
    """
    if isinstance(paths, str):
        paths = [paths]
    out: list[dict] = []
    first_seen: dict[str, tuple[str, int]] = {}
    for path in paths:
        name = "<stdin>" if path == "-" else path
        for lineno, value in iter_lines(path):
            recs = [value]
            if convert is not None:
                try:
                    got = convert(value)
                except (ValueError, KeyError, TypeError) as e:
                    raise InputError(f"cannot convert record: {e}", name, lineno) from None
                recs = got if isinstance(got, list) else [got]
            for rec in recs:
                problem = validate(rec, kind(rec) if callable(kind) else kind)
                if problem:
                    raise InputError(problem, name, lineno)
                if unique_ids and "id" in rec:
                    rid = rec["id"]
                    if rid in first_seen:
                        p, ln = first_seen[rid]
                        raise InputError(f"duplicate id {rid!r} (first at {p}:{ln})", name, lineno)
                    first_seen[rid] = (name, lineno)
                out.append(rec)
    return out


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"K/N"`` -> (K, N) with 0 <= K < N; None passes through."""
    if spec is None:
        return None
    try:
        k, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like K/N (e.g. 0/4), got {spec!r}") from None
    if n < 1 or not 0 <= k < n:
        raise InputError(f"--shard K/N needs 0 <= K < N, got {spec!r}")
    return k, n


def select(records: list[dict], shard: tuple[int, int] | None = None, limit: int | None = None) -> list[dict]:
    """The K-th of N contiguous slices (so the N outputs concatenate, in order, to the full job), then --limit."""
    if shard is not None:
        k, n = shard
        records = records[k * len(records) // n : (k + 1) * len(records) // n]
    if limit is not None:
        if limit < 0:
            raise InputError(f"--limit must be >= 0, got {limit}")
        records = records[:limit]
    return records


# ---------------------------------------------------------------------------------------------
# Writing


def _line_value(raw: bytes, path: str, lineno: int, ok, what: str):
    """One line of an existing output (or of its ``.done`` file), parsed; InputError unless ``ok(value)``."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = None
    if value is None or not ok(value):
        raise InputError(
            f"existing output: this line is not {what}; fix or remove it, or use --overwrite to start afresh",
            path,
            lineno,
        )
    return value


def _dumps(rec: dict) -> bytes:
    return (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")


class RecordWriter:
    """Append-only JSONL output that survives kill -9 and resumes.

    Every record (or group of records) goes out in one ``os.write`` on an O_APPEND descriptor, so
    a kill leaves whole lines plus at most one torn tail, which the next open cuts with a warning.

    ``done`` holds the keys already finished. Without ``group_field`` the key is each record's
    ``id``. With it (stages that write several records per input, or none), a sidecar file
    ``<path>.done`` lists the finished groups, and records of an unfinished group are dropped on
    open, so a group is never half-written nor written twice.
    """

    def __init__(self, path: str, *, overwrite: bool = False, group_field: str | None = None):
        self.path = path
        self.group_field = group_field
        self.done: set[str] = set()
        self.count = 0
        self._done_fd: int | None = None
        if path == "-":
            self._fd = sys.stdout.fileno()
            sys.stdout.flush()
            return
        check_writable(path)
        sidecar = path + ".done"
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            # A device or a pipe (-o /dev/null, /dev/stdout) is only written to: never read back, never removed.
            if overwrite:
                for p in (path, sidecar):
                    if os.path.islink(p) or os.path.isfile(p):
                        os.remove(p)
            elif os.path.isfile(path):
                self._recover(sidecar)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if group_field is not None:
                self._done_fd = os.open(sidecar, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise InputError(f"cannot write output: {e.strerror}", e.filename or path) from None

    def _recover(self, sidecar: str) -> None:
        with open(self.path, "rb") as fh:
            data = fh.read()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            warn(f"{self.path}: cut a torn last line ({len(data) - cut} bytes) left by an interrupted run")
            data = data[:cut]
            with open(self.path, "r+b") as fh:
                fh.truncate(cut)
        lines = [(i, ln) for i, ln in enumerate(data.split(b"\n"), 1) if ln.strip()]
        if self.group_field is None:
            id_ok = lambda v: isinstance(v, dict) and isinstance(v.get("id"), str)  # noqa: E731
            for i, ln in lines:
                self.done.add(_line_value(ln, self.path, i, id_ok, "a psr record with 'id'")["id"])
            return
        if os.path.exists(sidecar):
            with open(sidecar, "rb") as fh:
                raw = fh.read()
            if raw and not raw.endswith(b"\n"):
                raw = raw[: raw.rfind(b"\n") + 1]
                with open(sidecar, "r+b") as fh:
                    fh.truncate(len(raw))
            for i, x in enumerate(raw.split(b"\n"), 1):
                if x.strip():
                    self.done.add(
                        _line_value(x, sidecar, i, lambda v: isinstance(v, str), "a finished key (a JSON string)")
                    )
        field_ok = lambda v: isinstance(v, dict) and isinstance(v.get(self.group_field), str)  # noqa: E731
        # A record without its group field cannot be told finished or not: refuse it rather than delete it.
        keys = [
            _line_value(ln, self.path, i, field_ok, f"a psr record with '{self.group_field}'")[self.group_field]
            for i, ln in lines
        ]
        keep = [ln for (_, ln), k in zip(lines, keys, strict=True) if k in self.done]
        if len(keep) != len(lines):
            warn(f"{self.path}: dropped {len(lines) - len(keep)} record(s) of unfinished work; it will be redone")
            tmp = self.path + ".tmp"
            with open(tmp, "wb") as fh:
                fh.write(b"".join(ln + b"\n" for ln in keep))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)

    def write(self, rec: dict) -> None:
        """Write one record (its ``id`` becomes done). Not for grouped writers."""
        assert self.group_field is None, "grouped writers take write_group()"
        self._write(self._fd, _dumps(rec))
        self.done.add(rec["id"])
        self.count += 1

    def write_group(self, key: str, recs: list[dict]) -> None:
        """Write all records of one unit of work, then mark it done (even when ``recs`` is empty)."""
        assert self.group_field is not None, "write_group() needs group_field"
        for r in recs:
            if r.get(self.group_field) != key:
                raise ValueError(
                    f"record {r.get('id')!r} has {self.group_field}={r.get(self.group_field)!r}, not {key!r}"
                )
        if recs:
            self._write(self._fd, b"".join(_dumps(r) for r in recs))
        if self._done_fd is not None:
            self._write(self._done_fd, (json.dumps(key) + "\n").encode())
        self.done.add(key)
        self.count += len(recs)

    def _write(self, fd: int, data: bytes) -> None:
        # os.write may write less than asked (a full disk): the rest follows, or the run stops, and what
        # it left torn is cut by the next run.
        try:
            while data:
                data = data[os.write(fd, data) :]
        except BrokenPipeError:
            raise  # stdout closed by its reader (`| head`): typer exits quietly (1)
        except OSError as e:
            raise PsrError(
                f"{self.path}: cannot write: {e.strerror}; rerun the same command once it is fixed (the output resumes)"
            ) from None

    def close(self) -> None:
        if self.path != "-":
            os.close(self._fd)
            if self._done_fd is not None:
                os.close(self._done_fd)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_records(path: str, recs: Iterable[dict]) -> int:
    """Write a whole file at once, atomically (tmp file + rename). For summaries and splits."""
    recs = list(recs)
    if path == "-":
        sys.stdout.write("".join(_dumps(r).decode() for r in recs))
        sys.stdout.flush()
    else:
        replace_file(path, b"".join(_dumps(r) for r in recs))
    return len(recs)


@dataclass
class IOConfig:
    """The shared I/O options of every stage (design.md); the CLI builds them from these fields."""

    inputs: list[str] = option(None, "--input", "-i", help="Input JSONL path, or - for stdin; repeat for several.")
    output: str = option("-", "--output", "-o", help="Output JSONL path, or - for stdout. Resumed if it exists.")
    overwrite: bool = option(False, "--overwrite", help="Start afresh instead of resuming an existing output.")
    limit: int | None = option(None, "--limit", help="Process at most N records (after --shard).")
    shard: str | None = option(
        None,
        "--shard",
        help="K/N: process the K-th (0-based) of N contiguous slices; the N outputs concatenate to the full job.",
    )
    # The stage's other output files, by option name ({"--rejects": path}); checked with -o at once.
    also_writes: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inputs:  # no -i: stdin
            self.inputs = ["-"]
        check_outputs(self.inputs, {"-o": self.output, **self.also_writes})

    def writing(self, also_writes: dict[str, str | None]) -> IOConfig:
        """This I/O with the stage's other output files ({"--summary": path}), so that an output that is an
        input, or cannot be written, is refused before any work (psr.core.paths)."""
        return replace(self, also_writes={**self.also_writes, **also_writes})

    def todo(self, kind: str | None, writer: RecordWriter | None = None, key: str = "id", **kw) -> list[dict]:
        """Read, validate, shard and limit the inputs, then drop what ``writer`` already finished."""
        recs = select(read_records(self.inputs, kind, **kw), parse_shard(self.shard), self.limit)
        return skip_done(recs, writer.done, writer.path, key) if writer is not None else recs


def skip_done(recs: list[dict], done: set[str], where: str, key: str = "id") -> list[dict]:
    """The records whose ``key`` is not in ``done`` (finished in ``where``): the one resume filter of every stage."""
    todo = [r for r in recs if r[key] not in done] if done else recs
    if len(todo) != len(recs):
        from psr.core.log import info

        info(f"resuming: {len(recs) - len(todo)} of {len(recs)} already in {where}")
    return todo
