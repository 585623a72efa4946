"""Saving a LoRA run whose parameters are sharded over the processes (DeepSpeed ZeRO-3, FSDP).

Unsharded, psr merges the adapter into the wrapped model and saves that (psr.training.common.finish). Under
ZeRO-3 or FSDP each process holds only a slice of every parameter (under ZeRO-3 the local tensors are empty
placeholders), so ``merge_and_unload`` there would fold the adapter into slices and save a broken model. Here
every process takes part in gathering the full state dict (``accelerator.get_state_dict``: ZeRO-3's 16-bit
consolidation, FSDP's full state dict), the main process saves the adapter from it, then loads the base model
afresh on the CPU, applies the adapter and merges there. A 72B base needs ~145 GB of host RAM for that merge
(bf16); the adapter alone is saved first, so a merge that fails still leaves the trained adapter behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable

ADAPTER_DIR = "adapter"  # the LoRA adapter alone, beside the merged model (sharded runs)


def params_sharded(trainer) -> bool:
    """Whether each process holds only a slice of every parameter: FSDP, or DeepSpeed ZeRO stage 3."""
    if getattr(trainer, "is_fsdp_enabled", False):
        return True
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", None) == 3


def save_gathered_lora(trainer, load_base: Callable[[], object], tmp: str):
    """Gather the sharded LoRA model (every process must call this), save its adapter to ``tmp/adapter`` and the
    base model with the adapter merged to ``tmp``; returns the merged model on the main process, else None.
    ``load_base()`` loads the base model on the CPU."""
    from peft import PeftModel

    state = trainer.accelerator.get_state_dict(trainer.model)  # a collective: every process, the same order
    if not trainer.accelerator.is_main_process:
        return None
    adapter = os.path.join(tmp, ADAPTER_DIR)
    # peft keeps only the adapter's entries of the full state dict
    trainer.accelerator.unwrap_model(trainer.model).save_pretrained(adapter, state_dict=state)
    merged = PeftModel.from_pretrained(load_base(), adapter).merge_and_unload()
    merged.save_pretrained(tmp)
    return merged
