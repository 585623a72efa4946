"""LoRA under ZeRO-3 / FSDP (psr.training.lora): the adapter is saved from the gathered state dict and merged into
a freshly loaded base model, instead of merging into parameter slices.

No ZeRO-3 or FSDP runs on this CPU box (DeepSpeed is not installed; torch's FSDP wants accelerators), so what
is proven here is the save path itself, on one process where ``accelerator.get_state_dict`` gathers nothing:
forced onto the sharded path, the same training run must write the same merged model as the plain merge, plus
the adapter alone. That the gather works under real ZeRO-3 / FSDP is for the first GPU box."""

from __future__ import annotations

import os

import pytest
from helpers import doubling_examples, write_jsonl

from psr.stages import train_prm
from psr.training import common
from psr.training.common import TrainConfig
from psr.training.lora import ADAPTER_DIR

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weights(path):
    from safetensors.torch import load_file

    return load_file(os.path.join(path, "model.safetensors"))


def test_the_sharded_lora_save_writes_the_adapter_and_the_same_merged_model(tiny_model_dir, tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "train.jsonl", doubling_examples(24, seed=2))

    def train(name):
        cfg = TrainConfig(
            model=tiny_model_dir,
            output=str(tmp_path / name),
            max_steps=3,
            learning_rate=1e-2,
            batch_size=8,
            per_device_batch_size=8,
            save_steps=1000,
            lora=True,
            lora_r=4,
            lora_alpha=8,
        )
        train_prm.run([data], train_prm.PRMTrainConfig(**vars(cfg), eval_fraction=0.0))
        return cfg.output

    plain = train("plain")
    assert not os.path.exists(os.path.join(plain, ADAPTER_DIR))  # one process, unsharded: the plain merge
    monkeypatch.setattr(common, "params_sharded", lambda trainer: True)  # the path ZeRO-3 / FSDP take
    sharded = train("sharded")
    assert os.path.isfile(os.path.join(sharded, ADAPTER_DIR, "adapter_config.json"))
    assert not any(n.startswith("adapter_") for n in os.listdir(sharded))  # the merged model is a plain one
    a, b = _weights(plain), _weights(sharded)
    assert set(a) == set(b) and not any("lora" in k for k in b)
    base = _weights(tiny_model_dir) if os.path.exists(os.path.join(tiny_model_dir, "model.safetensors")) else None
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-5, k
    if base is not None:  # the adapter really was merged, not dropped
        assert any((b[k] - base[k]).abs().max().item() > 1e-4 for k in b if k in base)
    with (
        open(os.path.join(sharded, "generation_config.json")) as fh,
        open(os.path.join(plain, "generation_config.json")) as gh,
    ):
        assert fh.read() == gh.read()  # the end-of-turn stop survives the second save
