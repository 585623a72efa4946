"""The control that should fail (issue 18): a PPD file with every pair's chosen and rejected swapped.

Step-DPO on the reversed pairs teaches the policy the oracle's worse step; if that does not cost accuracy, the
gain from the right pairs was not from their preferences. ``is_final`` and ``rejected_is_final`` swap with
their steps, so each step still ends (or not) as it did.

    .venv/bin/python bench/reverse_pairs.py runs/events-seed0/ppd_m1_oracle.jsonl runs/events-seed0/ppd_reversed.jsonl
"""

from __future__ import annotations

import json
import os
import sys


def reverse(record: dict) -> dict:
    out = dict(record)
    out["chosen"], out["rejected"] = record["rejected"], record["chosen"]
    out["is_final"], out["rejected_is_final"] = record.get("rejected_is_final", False), record.get("is_final", False)
    return out


def main(argv: list[str] | None = None) -> None:
    src, dst = argv if argv is not None else sys.argv[1:]
    tmp = dst + ".tmp"
    with open(src) as fh, open(tmp, "w") as out:
        for line in fh:
            if line.strip():
                out.write(json.dumps(reverse(json.loads(line))) + "\n")
    os.replace(tmp, dst)  # a killed run leaves no half-written file for the next run's `test -e` to trust


if __name__ == "__main__":
    main()
