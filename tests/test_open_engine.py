"""psr.engines.open_engine, the one way a stage gets its engine: it loads (and closes) what a config names, and
passes a ready engine through without closing it."""

from __future__ import annotations

import pytest

from psr.engines import REGISTRY, Engine, EngineConfig, engine_seed, open_engine


class Closing(Engine):
    name = "closing"
    made: list[Closing] = []

    def __init__(self, cfg: EngineConfig | None = None):
        self.cfg, self.closed = cfg, 0
        Closing.made.append(self)

    def generate(self, chats, sampling):
        return [[] for _ in chats]

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def registered(monkeypatch):
    Closing.made = []
    monkeypatch.setitem(REGISTRY, "closing", f"{__name__}:Closing")


def test_a_config_is_loaded_and_closed_on_the_way_out_also_after_an_error(registered):
    cfg = EngineConfig(engine="closing", model="m", seed=5)
    with open_engine(cfg) as engine:
        assert isinstance(engine, Closing) and engine.cfg is cfg and engine.closed == 0
    assert engine.closed == 1
    with pytest.raises(RuntimeError), open_engine(cfg):
        raise RuntimeError("the stage failed")
    assert [e.closed for e in Closing.made] == [1, 1]
    assert engine_seed(cfg) == 5 and engine_seed(engine) == 5 and engine_seed(None) == 0


def test_a_ready_engine_is_passed_through_and_left_open(registered):
    mine = Closing()
    with open_engine(mine) as engine:
        assert engine is mine
    with pytest.raises(RuntimeError), open_engine(mine):
        raise RuntimeError("the stage failed")
    assert mine.closed == 0 and Closing.made == [mine]  # nothing else was loaded
    mine.close()


def test_no_engine_loads_the_stage_default(registered):
    with open_engine(None, EngineConfig(engine="closing", model="d")) as engine:
        assert engine.cfg.model == "d"
    assert engine.closed == 1
