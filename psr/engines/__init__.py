"""Engines behind one interface (psr.engines.base.Engine); imported lazily so psr runs without vLLM."""

from __future__ import annotations

from psr.core.errors import InputError
from psr.engines.base import Chat, Completion, Engine, EngineConfig, Sampling, Step

ENGINES = ("hf", "vllm", "openai", "oracle")

__all__ = ["Chat", "Completion", "Engine", "EngineConfig", "Sampling", "Step", "ENGINES", "load_engine"]


def load_engine(cfg: EngineConfig) -> Engine:
    if cfg.engine == "hf":
        from psr.engines.hf import HFEngine

        return HFEngine(cfg)
    if cfg.engine == "vllm":
        from psr.engines.vllm import VLLMEngine

        return VLLMEngine(cfg)
    if cfg.engine == "openai":
        from psr.engines.openai import OpenAIEngine

        return OpenAIEngine(cfg)
    if cfg.engine == "oracle":
        from psr.world.oracle import OracleEngine

        return OracleEngine(cfg)
    raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {cfg.engine!r}")
