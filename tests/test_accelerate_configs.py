"""The shipped accelerate configs: each resolves through accelerate's own launch-argument code as
`accelerate launch --config_file ...` would, and the multi-node ones give torchrun the documented layout."""

from __future__ import annotations

import glob
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "accelerate")
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "*.yaml")))


def resolve(path: str, *flags: str):
    """The launch arguments accelerate builds from the config file and ``flags`` (its own parser and checks)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", path, *flags, "-m", "psr.cli", "sft"])
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def torchrun_layout(path: str, *flags: str) -> dict:
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args, defaults = resolve(path, *flags)
    if defaults.distributed_type.value == "DEEPSPEED":
        # as accelerate's launch_command does before its deepspeed launcher
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        cmd, env = prepare_deepspeed_cmd_env(args)
        assert cmd is None  # the "standard" launcher: torchrun on each box, no pdsh/ssh hostfile
    else:
        env = prepare_multi_gpu_env(args)
    return {
        "nnodes": getattr(args, "nnodes", "1"),
        "node_rank": getattr(args, "node_rank", 0),
        "nproc_per_node": args.nproc_per_node,
        "env": env,
        # torchrun's rendezvous: --master_addr, or --rdzv_endpoint ADDR:PORT (accelerate picks one)
        "master": getattr(args, "master_addr", None) or getattr(args, "rdzv_endpoint", "").split(":")[0],
    }


def test_the_configs_are_all_found():
    names = {os.path.basename(p)[:-5] for p in CONFIGS}
    assert {
        "cpu_ddp",
        "ddp",
        "ddp_2x8",
        "deepspeed_zero2",
        "deepspeed_zero3",
        "deepspeed_zero3_2x8",
        "deepspeed_zero3_offload",
        "fsdp",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p))
def test_every_config_resolves_as_accelerate_launch_would(path):
    _, cfg = resolve(path, "--machine_rank", "0", "--main_process_ip", "10.0.0.1")
    assert cfg.compute_environment.value == "LOCAL_MACHINE"
    assert cfg.distributed_type.value in ("MULTI_GPU", "DEEPSPEED", "FSDP")
    assert cfg.num_processes >= 2 and cfg.num_processes % cfg.num_machines == 0
    assert cfg.mixed_precision in ("bf16", "no")
    if cfg.distributed_type.value == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] in (2, 3)
        # psr computes gradient accumulation; a value pinned in a config would silently override it.
        assert "gradient_accumulation_steps" not in cfg.deepspeed_config
    if cfg.num_machines > 1:
        assert cfg.main_process_port and cfg.same_network
        assert "--machine_rank" in open(path).read() and "--main_process_ip" in open(path).read()  # documented


@pytest.mark.parametrize("name", ["ddp_2x8", "deepspeed_zero3_2x8"])
def test_two_boxes_of_eight_give_torchrun_two_nodes(name):
    # machine rank 1: accelerate checks the port is free only on rank 0
    got = torchrun_layout(os.path.join(ROOT, name + ".yaml"), "--machine_rank", "1", "--main_process_ip", "10.0.0.1")
    assert (got["nnodes"], got["node_rank"], got["nproc_per_node"], got["master"]) == ("2", 1, "8", "10.0.0.1")


def test_the_offload_config_puts_optimizer_and_parameters_in_cpu_memory():
    got = torchrun_layout(
        os.path.join(ROOT, "deepspeed_zero3_offload.yaml"),
        "--machine_rank",
        "1",
        "--main_process_ip",
        "10.0.0.1",
        "--num_machines",
        "2",
        "--num_processes",
        "16",
    )
    env = got["env"]
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"
    assert env["ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"] == "cpu"
    assert env["ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"] == "cpu"
    assert env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"
    assert (got["nnodes"], got["nproc_per_node"]) == ("2", "8")  # the documented two-box variant
