"""The import layers of DEVELOPING.md, checked mechanically: every import of a psr module (also one inside a
function) points down the layers, and no psr modules import each other in a circle."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
# A module may import its own package and every package of a lower rank; engines and training are siblings that
# do not import each other, and the world (problems, the oracle engine, the demo) stands on core and engines. The search
# methods (psr.search) stand on engines too, below the stages that read, write and resume around them.
RANK = {"core": 0, "engines": 1, "training": 2, "world": 2, "search": 2, "stages": 3, "cli": 4}


def modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted((ROOT / "psr").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(path: pathlib.Path, known: set[str]) -> set[str]:
    """The psr modules a file imports: `from psr.a import b` is psr.a.b where that is a module, else psr.a."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "psr"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "psr":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
    return found


def package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(p, set(mods)) - {m} for m, p in mods.items()}


def test_every_import_points_down_the_layers():
    wrong = []
    for mod, targets in graph().items():
        here = package(mod)
        for t in targets:
            there = package(t)
            if here is None or there is None or there == here:
                continue
            if RANK[there] >= RANK[here]:
                wrong.append(f"{mod} imports {t} ({here} may use only lower layers)")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(g.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(path[path.index(t) :] + [m, t]) if t in path else f"{m} -> {t}")
            elif t in g and t not in state:
                visit(t, path + [m])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])
    assert not cycles, "\n".join(cycles)


def test_the_checker_sees_imports_inside_functions():
    g = graph()
    assert "psr.stages.segment" in g["psr.cli.segment"]  # imported inside the command function
    assert "psr.world.oracle" in g["psr.world.data"]
