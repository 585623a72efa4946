"""The record contracts (design.md): the fields each record type needs, and the check every read applies.

A field spec is (kind, required); extra fields are kept as-is. ``psr.core.records`` reads and writes records
against these and re-exports ``validate`` and ``eft_kind``.
"""

from __future__ import annotations

import math
from typing import Any

STR, STR_LIST, BOOL, NUMBER, NUMBER_LIST, BOOL_LIST, INT = (
    "string",
    "list of strings",
    "boolean",
    "number",
    "list of numbers",
    "list of booleans",
    "integer",
)

SCHEMAS: dict[str, dict[str, tuple[str, bool]]] = {
    "problem": {"id": (STR, True), "question": (STR, True), "answer": (STR, False), "solution": (STR, False)},
    "solution": {"id": (STR, True), "question": (STR, True), "solution": (STR, True), "answer": (STR, False)},
    "ift": {
        "id": (STR, True),
        "question": (STR, True),
        "steps": (STR_LIST, True),
        "answer": (STR, False),
        "solution": (STR, False),
    },
    "prm": {"prompt": (STR, True), "completions": (STR_LIST, True), "labels": (BOOL_LIST, True)},
    "pair": {
        "id": (STR, True),
        "question": (STR, True),
        "previous_steps": (STR_LIST, True),
        "chosen": (STR, True),
        "rejected": (STR, True),
        "chosen_score": (NUMBER, True),
        "rejected_score": (NUMBER, True),
    },
    "eft": {
        "id": (STR, True),
        "question": (STR, True),
        "previous_steps": (STR_LIST, True),
        "step_a": (STR, True),
        "step_b": (STR, True),
        "judgment": (STR, True),
        "label": (STR, True),
    },
    # annotate-eft --format scoring: one record a scored response (Yuan et al.'s 0-5 prompt); the two
    # responses of a pair share ``pair_id``.
    "eft_scoring": {
        "id": (STR, True),
        "question": (STR, True),
        "response": (STR, True),
        "judgment": (STR, True),
        "score": (INT, True),
        "format": (STR, True),
        "pair_id": (STR, False),
    },
    "ppd": {
        "id": (STR, True),
        "question": (STR, True),
        "previous_steps": (STR_LIST, True),
        "chosen": (STR, True),
        "rejected": (STR, True),
        "scores": (NUMBER_LIST, False),
        "step_index": (INT, False),
        "is_final": (BOOL, True),
    },
    "prediction": {"id": (STR, True), "question": (STR, True), "output": (STR, True), "answer": (STR, False)},
    "gradable": {"id": (STR, True), "output": (STR, True), "answer": (STR, True)},  # psr grade
}
# Fields that must not be empty strings: an empty question or id is never usable.
NON_EMPTY = {"id", "question", "prompt", "chosen", "step_a", "step_b", "response"}


def _kind_ok(kind: str, v: Any) -> bool:
    is_num = lambda x: isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)  # noqa: E731
    return {
        STR: lambda: isinstance(v, str),
        BOOL: lambda: isinstance(v, bool),
        INT: lambda: isinstance(v, int) and not isinstance(v, bool),
        NUMBER: lambda: is_num(v),
        STR_LIST: lambda: isinstance(v, list) and all(isinstance(x, str) for x in v),
        BOOL_LIST: lambda: isinstance(v, list) and all(isinstance(x, bool) for x in v),
        NUMBER_LIST: lambda: isinstance(v, list) and all(is_num(x) for x in v),
    }[kind]()


def validate(rec: Any, kind: str | None) -> str | None:
    """Return what is wrong with ``rec`` for record type ``kind``, or None if it is fine."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    if kind is None:
        return None
    for name, (fkind, required) in SCHEMAS[kind].items():
        if name not in rec or rec[name] is None:
            if required:
                return f"missing field '{name}' ({kind} record)"
            continue
        if not _kind_ok(fkind, rec[name]):
            return f"field '{name}' must be {'an' if fkind[0] in 'aeiou' else 'a'} {fkind}, got {type(rec[name]).__name__} ({kind} record)"
        if name in NON_EMPTY and isinstance(rec[name], str) and not rec[name].strip():
            return f"field '{name}' is empty ({kind} record)"
    if kind == "prm" and len(rec["completions"]) != len(rec["labels"]):
        return "'completions' and 'labels' differ in length (prm record)"
    if kind == "eft" and rec["label"] not in ("A", "B"):
        return f'field \'label\' must be "A" or "B", got {rec["label"]!r} (eft record)'
    if kind == "eft_scoring" and rec["format"] != "scoring":
        return f"field 'format' must be \"scoring\", got {rec['format']!r} (eft_scoring record)"
    if kind == "eft_scoring" and not 0 <= rec["score"] <= 5:
        return f"field 'score' must be 0 to 5, got {rec['score']} (eft_scoring record)"
    return None


def eft_kind(rec: Any) -> str:
    """The record type of an EFT record: ``eft_scoring`` when it says ``"format": "scoring"``, else ``eft``
    (pairwise records carry no format field)."""
    return "eft_scoring" if isinstance(rec, dict) and rec.get("format") == "scoring" else "eft"
