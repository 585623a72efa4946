"""Engines behind one interface (psr.engines.base.Engine); imported lazily so psr runs without vLLM."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

from psr.core.errors import InputError
from psr.engines.base import ENGINES, REGISTRY, Chat, Completion, Engine, EngineConfig, Sampling, Step

__all__ = [
    "Chat",
    "Completion",
    "Engine",
    "EngineConfig",
    "Sampling",
    "Step",
    "ENGINES",
    "REGISTRY",
    "engine_seed",
    "load_engine",
    "open_engine",
]


def load_engine(cfg: EngineConfig) -> Engine:
    entry = REGISTRY.get(cfg.engine)
    if entry is None:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {cfg.engine!r}")
    module, cls = entry.split(":")
    return getattr(importlib.import_module(module), cls)(cfg)


@contextlib.contextmanager
def open_engine(engine: EngineConfig | Engine | None, default: EngineConfig | None = None) -> Iterator[Engine]:
    """The one way a stage gets its engine: an ``EngineConfig`` (None: ``default``, else ``EngineConfig()``) is
    loaded here and closed on the way out; a ready engine is passed through and left open, for whoever made it."""
    if engine is not None and not isinstance(engine, EngineConfig):
        yield engine
        return
    loaded = load_engine(engine or default or EngineConfig())
    try:
        yield loaded
    finally:
        loaded.close()


def engine_seed(engine: EngineConfig | Engine | None) -> int:
    """The run seed of ``--seed``: the config's, or that of the config a ready engine was made from (0 without)."""
    cfg = engine if isinstance(engine, EngineConfig) else getattr(engine, "cfg", None)
    return cfg.seed if isinstance(cfg, EngineConfig) else 0
