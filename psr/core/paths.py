"""Output files. Their paths are checked before any work: an output that is an input (or another output), or
that cannot be written, is a usage error found at the start, not after hours of work, nor after the input was
emptied. Whole files (summaries, stats, splits) are written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from psr.core.errors import InputError


def check_writable(path: str) -> None:
    """InputError unless ``path`` can be created or appended to as a file (its folders made as needed)."""
    if path == "-":
        return
    if os.path.isdir(path):
        raise InputError("is a directory; the output must be a file path", path)
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise InputError("the output is not writable", path)
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InputError(f"cannot create the output: {parent} is a file, not a directory", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot create the output: {parent} is not writable", path)


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same path after resolving symlinks, or one inode (hard links)."""
    if a == "-" or b == "-":
        return False
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def check_outputs(inputs: Iterable[str], outputs: dict[str, str | None], *, files: bool = True) -> None:
    """Refuse (InputError, naming both paths) an output that is one of the inputs or another output, and
    with ``files`` an output file that cannot be written. ``outputs`` maps option names (``-o``,
    ``--summary``) to paths; None means the option was not given."""
    given = [(opt, p) for opt, p in outputs.items() if p is not None and p != "-"]
    for opt, p in given:
        for i in inputs:
            # the companions a writer keeps beside an output: the list of finished work, the file being renamed
            if any(same_file(q, i) for q in (p, p + ".done", p + ".tmp")):
                raise InputError(
                    f"{opt} {p} is the same file as the input -i {i}; writing it would destroy the "
                    "input: choose another output path"
                )
    for k, (opt, p) in enumerate(given):
        for opt2, p2 in given[k + 1 :]:
            if same_file(p, p2):
                raise InputError(f"{opt} {p} and {opt2} {p2} are the same file; give them different paths")
    if files:
        for _, p in given:
            check_writable(p)


def write_json(path: str, value) -> None:
    """Write one JSON document (a summary, stats) atomically: tmp file + rename."""
    replace_file(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_text(path: str, text: str) -> None:
    """Write a whole text file (a Markdown table) atomically: tmp file + rename."""
    replace_file(path, text.encode("utf-8"))


def replace_file(path: str, data: bytes) -> None:
    """Write a whole file at once: a tmp file renamed over it, so a kill never leaves it half-written."""
    check_writable(path)
    tmp = path + ".tmp"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if os.path.exists(path) and not os.path.isfile(path):  # /dev/null, a pipe: a rename would replace it
            with open(path, "wb") as fh:
                fh.write(data)
            return
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise InputError(f"cannot write output: {e.strerror}", e.filename or path) from None
