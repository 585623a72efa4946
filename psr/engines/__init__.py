"""Engines behind one interface (psr.engines.base.Engine); imported lazily so psr runs without vLLM."""

from __future__ import annotations

import importlib

from psr.core.errors import InputError
from psr.engines.base import Chat, Completion, Engine, EngineConfig, Sampling, Step

# The engine registry: --engine NAME -> "module:class", imported when that engine is first loaded (vLLM, torch and
# the world are heavy or optional). The oracle engine is world code (it reads the world's problems): the table
# names where it lives, as a package's entry points would, so this layer imports nothing of psr.world.
REGISTRY: dict[str, str] = {
    "hf": "psr.engines.hf:HFEngine",
    "vllm": "psr.engines.vllm:VLLMEngine",
    "openai": "psr.engines.openai:OpenAIEngine",
    "oracle": "psr.world.oracle:OracleEngine",
}
ENGINES = tuple(REGISTRY)

__all__ = ["Chat", "Completion", "Engine", "EngineConfig", "Sampling", "Step", "ENGINES", "REGISTRY", "load_engine"]


def load_engine(cfg: EngineConfig) -> Engine:
    entry = REGISTRY.get(cfg.engine)
    if entry is None:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {cfg.engine!r}")
    module, cls = entry.split(":")
    return getattr(importlib.import_module(module), cls)(cfg)
