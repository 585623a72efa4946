"""Small helpers the test modules share (imported as ``from helpers import ...``, like servers.py)."""

from __future__ import annotations

import json
import os
import sys

PSR = [os.path.join(os.path.dirname(sys.executable), "psr")]  # the console script of this venv


def write_jsonl(path, recs):
    with open(path, "w", encoding="utf-8") as fh:
        for r in recs:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(x) for x in fh if x.strip()]
