"""The "Step n: ..." format: render steps, parse model text back into steps, spot the final answer.

Steps are stored without their "Step n: " prefix (records hold the content; numbering is derived
from position), and rendered with it.
"""

from __future__ import annotations

import re

STEP_STOP = "\nStep "  # the stop string that ends one step before the next begins

# A step marker at the start of a line: "Step 3:", "Step 3.", "**Step 3:**", "### Step 3:".
_MARKER = re.compile(r"(?m)^[ \t>#*_]*Step[ \t]*(\d+)[ \t]*[:.)][ \t]*(?:\*\*|__)?[ \t]*")
_FINAL = re.compile(r"\\boxed\s*\{|\\fbox\s*\{|[Tt]he (?:final )?answer is")


def step_prefix(n: int) -> str:
    return f"Step {n}: "


def format_steps(steps: list[str], start: int = 1) -> str:
    """``["a", "b"]`` -> ``"Step 1: a\\nStep 2: b"``."""
    return "\n".join(step_prefix(i) + s for i, s in enumerate(steps, start))


def assistant_prefix(previous_steps: list[str]) -> str:
    """The partial assistant answer that the next step continues (empty before step 1)."""
    return format_steps(previous_steps) + "\n" if previous_steps else ""


def strip_step_prefix(text: str) -> str:
    """``"Step 4: x = 2"`` -> ``"x = 2"``; text without a leading marker comes back stripped."""
    m = _MARKER.match(text.lstrip("\n"))
    return (text.lstrip("\n")[m.end() :] if m else text).strip()


def parse_steps(text: str) -> list[str]:
    """Split model output into step contents.

    Numbering gaps or repeats are tolerated (a marker is a marker), whitespace is trimmed, text
    before "Step 1" is dropped when markers exist (it is chatter, not a step), and text after the
    last marker, a final answer line included, belongs to the last step. Text with no markers at all
    is one step.
    """
    marks = list(_MARKER.finditer(text))
    if not marks:
        return [text.strip()] if text.strip() else []
    out = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[m.end() : end].strip()
        if body:
            out.append(body)
    return out


def has_final_answer(step: str) -> bool:
    """Whether a step states the final answer (a \\boxed{...} or "The answer is")."""
    return bool(_FINAL.search(step))
