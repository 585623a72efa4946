"""psr step-dpo on the tiny model: EOS only after final steps, left truncation, the DPO margin grows,
precomputed reference log-probs, LoRA, and a 2-process DDP run under accelerate launch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from helpers import write_jsonl

from psr.core.errors import InputError
from psr.core.prompts import step_prompt
from psr.stages import step_dpo
from psr.training import step_dpo as dpo_training
from psr.training.common import TrainConfig
from psr.training.step_dpo import DPOOptions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ppd_records():
    """Inner-step pairs, final-step pairs and whole-solution pairs (SRLM: no previous steps, final)."""
    recs = []
    for i, (a, b) in enumerate([(2, 3), (7, 5), (11, 4), (6, 9)]):
        q = f"What is {a} + {b}?"
        recs.append(
            {
                "id": f"inner-{i}",
                "question": q,
                "previous_steps": [],
                "is_final": False,
                "chosen": f"Add the numbers: {a} + {b} = {a + b}.",
                "rejected": f"Subtract: {a} - {b} = {a - b}.",
            }
        )
        recs.append(
            {
                "id": f"final-{i}",
                "question": q,
                "previous_steps": [f"Add the numbers: {a} + {b} = {a + b}."],
                "is_final": True,
                "chosen": f"The answer is $\\boxed{{{a + b}}}$.",
                "rejected": f"The answer is $\\boxed{{{a + b + 1}}}$.",
            }
        )
    recs.append(
        {
            "id": "whole-0",
            "question": "What is 3 + 4?",
            "previous_steps": [],
            "is_final": True,
            "chosen": "3 + 4 = 7, so the answer is $\\boxed{7}$.",
            "rejected": "The answer is $\\boxed{8}$.",
        }
    )
    return recs


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_eos_only_after_a_final_step_even_inside_the_trainer(tiny_model_dir, tok, tmp_path):
    inner, final = ppd_records()[2:4]  # same problem: step 1 (inner) ... step 2 (final)
    inner = {**inner, "previous_steps": ["Read the problem."]}
    ex_inner, _ = dpo_training.tokenize_pair(tok, inner)
    ex_final, _ = dpo_training.tokenize_pair(tok, final)
    eos = tok.eos_token_id
    for key in ("chosen_ids", "rejected_ids"):
        assert eos not in ex_inner[key]
        assert ex_final[key][-1] == eos and eos not in ex_final[key][:-1]
    assert tok.decode(ex_inner["chosen_ids"]) == f"Step 2: {inner['chosen']}\n"
    assert tok.decode(ex_final["chosen_ids"]) == f"Step 2: {final['chosen']}{tok.eos_token}"
    chat = tok.apply_chat_template(
        [{"role": "user", "content": step_prompt(final["question"])}], tokenize=False, add_generation_prompt=True
    )
    assert tok.decode(ex_final["prompt_ids"]) == chat + f"Step 1: {final['previous_steps'][0]}\n"

    # TRL's DPOTrainer would append EOS to every completion; ours keeps the tokens as built.
    cfg = TrainConfig(model=tiny_model_dir, output=str(tmp_path / "out"), batch_size=1)
    trainer = dpo_training.make_trainer(cfg, DPOOptions(precompute_ref_log_probs=True), [ex_inner, ex_final], tok)
    rows = list(trainer.train_dataset)
    assert [r["chosen_ids"] for r in rows] == [ex_inner["chosen_ids"], ex_final["chosen_ids"]]
    assert [r["rejected_ids"] for r in rows] == [ex_inner["rejected_ids"], ex_final["rejected_ids"]]


def test_a_final_step_ends_with_the_end_of_turn_token_even_when_eos_differs(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.eos_token = "<|endoftext|>"  # as in Qwen2.5 base models; turns still close with <|im_end|>
    ex, _ = dpo_training.tokenize_pair(tok, ppd_records()[1])
    assert ex["chosen_ids"][-1] == tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token_id not in ex["chosen_ids"]


@pytest.mark.parametrize("chosen_final,rejected_final", [(True, False), (False, True), (True, True), (False, False)])
def test_each_step_ends_by_its_own_is_final(tok, chosen_final, rejected_final):
    """Search writes is_final for the chosen step and rejected_is_final for the rejected one: a final
    chosen step against an inner rejected one (or the reverse) ends only the final one with end-of-turn."""
    rec = {**ppd_records()[0], "is_final": chosen_final, "rejected_is_final": rejected_final}
    ex, _ = dpo_training.tokenize_pair(tok, rec)
    for key, final, content in (
        ("chosen_ids", chosen_final, rec["chosen"]),
        ("rejected_ids", rejected_final, rec["rejected"]),
    ):
        ending = tok.eos_token if final else "\n"
        assert tok.decode(ex[key]) == f"Step 1: {content}{ending}", key
    # A record without rejected_is_final (older files) has one is_final for both steps.
    old = {k: v for k, v in rec.items() if k != "rejected_is_final"}
    ex_old, _ = dpo_training.tokenize_pair(tok, old)
    assert (ex_old["rejected_ids"][-1] == tok.eos_token_id) == chosen_final


def test_long_prompts_lose_their_start_and_overlong_steps_are_counted(tok):
    rec = {**ppd_records()[1], "question": "What is 2 + 3? " * 40}
    full, cut = dpo_training.tokenize_pair(tok, rec)
    assert not cut
    limit = len(full["prompt_ids"]) // 2 + len(full["chosen_ids"])
    short, cut = dpo_training.tokenize_pair(tok, rec, max_length=limit)
    assert cut
    room = limit - max(len(full["chosen_ids"]), len(full["rejected_ids"]))
    assert short["prompt_ids"] == full["prompt_ids"][-room:]  # the end (the previous steps) is kept
    assert short["chosen_ids"] == full["chosen_ids"] and short["rejected_ids"] == full["rejected_ids"]
    examples, too_long, truncated = dpo_training.build_examples(tok, [rec, ppd_records()[0]], max_length=12)
    assert too_long == [rec["id"], ppd_records()[0]["id"]] and examples == [] and truncated == 0


def sequence_logps(model, examples, key):
    """Sum of log-probs of each example's completion tokens given its prompt."""
    import torch

    out = []
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex["prompt_ids"] + ex[key]])
            logp = model(ids).logits[0, :-1].float().log_softmax(-1).gather(-1, ids[0, 1:, None])[:, 0]
            out.append(logp[len(ex["prompt_ids"]) - 1 :].sum().item())
    return out


def mean_margin(model, examples):
    chosen = sequence_logps(model, examples, "chosen_ids")
    rejected = sequence_logps(model, examples, "rejected_ids")
    return sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(examples)


@pytest.mark.parametrize("precompute", [False, True], ids=["ref-model", "precomputed-ref"])
def test_training_widens_the_margin_over_the_reference(tiny_model_dir, tok, tmp_path, precompute):
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "ppd.jsonl", ppd_records())
    out = str(tmp_path / "m2")
    # A learning rate far above the paper's 5e-7, so that a few steps move the tiny model.
    cfg = TrainConfig(
        model=tiny_model_dir,
        output=out,
        epochs=2,
        learning_rate=2e-3,
        batch_size=3,
        per_device_batch_size=3,
        save_steps=1000,
    )
    summary = step_dpo.run([data], step_dpo.StepDPOConfig(**vars(cfg), beta=0.1, precompute_ref_log_probs=precompute))
    assert summary["pairs"] == 9 and summary["global_steps"] == 6 and summary["beta"] == 0.1

    examples, _, _ = dpo_training.build_examples(tok, ppd_records(), cfg.max_length)
    ref = mean_margin(AutoModelForCausalLM.from_pretrained(tiny_model_dir), examples)
    policy = mean_margin(AutoModelForCausalLM.from_pretrained(out), examples)
    assert policy - ref > 0.5, (policy, ref)
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        logged = [json.loads(x) for x in fh if "loss" in json.loads(x)]
    assert [m["step"] for m in logged] == list(range(1, 7)) and "rewards/margins" in logged[-1]


def test_an_sft_weight_raises_the_chosen_steps_likelihood(tiny_model_dir, tok, tmp_path):
    # DPO alone may push chosen and rejected down together; the NLL term (RPO) must keep the chosen ones up.
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "ppd.jsonl", ppd_records())
    examples, _, _ = dpo_training.build_examples(tok, ppd_records(), 512)
    chosen = {}
    for name, opts in (
        ("dpo", dict(beta=0.1)),
        ("rpo", dict(beta=0.1, sft_weight=1.0)),
        ("apo", dict(beta=0.1, loss="apo_zero")),
    ):
        out = str(tmp_path / name)
        cfg = TrainConfig(
            model=tiny_model_dir,
            output=out,
            epochs=2,
            learning_rate=2e-3,
            batch_size=3,
            per_device_batch_size=3,
            save_steps=1000,
        )
        opts = step_dpo.StepDPOConfig(**vars(cfg), **opts)
        summary = step_dpo.run([data], opts)
        assert (summary["sft_weight"], summary["loss"]) == (opts.sft_weight, opts.loss)
        chosen[name] = sum(sequence_logps(AutoModelForCausalLM.from_pretrained(out), examples, "chosen_ids"))
    base = sum(sequence_logps(AutoModelForCausalLM.from_pretrained(tiny_model_dir), examples, "chosen_ids"))
    # the NLL term (RPO) lifts the chosen steps above DPO's; APO-zero's anchored loss lifts them above the start
    assert chosen["rpo"] > max(chosen["dpo"], base) and chosen["apo"] > base + 50, (base, chosen)


def test_lora_trains_and_saves_a_merged_model(tiny_model_dir, tok, tmp_path):
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "ppd.jsonl", ppd_records())
    out = str(tmp_path / "lora")
    cfg = TrainConfig(
        model=tiny_model_dir,
        output=out,
        epochs=1,
        learning_rate=5e-3,
        batch_size=9,
        per_device_batch_size=9,
        lora=True,
        lora_r=8,
        lora_alpha=16,
        max_steps=2,
    )
    step_dpo.run([data], cfg)
    assert not os.path.exists(os.path.join(out, "adapter_config.json"))  # merged: a plain model directory
    examples, _, _ = dpo_training.build_examples(tok, ppd_records(), cfg.max_length)
    ref = mean_margin(AutoModelForCausalLM.from_pretrained(tiny_model_dir), examples)
    assert mean_margin(AutoModelForCausalLM.from_pretrained(out), examples) > ref


def test_bad_input_is_an_input_error(tiny_model_dir, tmp_path):
    out = str(tmp_path / "out")
    bad = write_jsonl(tmp_path / "bad.jsonl", [ppd_records()[0], {**ppd_records()[1], "is_final": "yes"}])
    with pytest.raises(InputError) as e:
        step_dpo.run([bad], TrainConfig(model=tiny_model_dir, output=out))
    assert e.value.line == 2 and "is_final" in e.value.message
    good = write_jsonl(tmp_path / "ok.jsonl", ppd_records()[:1])
    with pytest.raises(InputError, match="model directory not found"):
        step_dpo.run([good], TrainConfig(model=str(tmp_path / "nowhere"), output=out))
    with pytest.raises(InputError, match="longer than --max-length"):
        step_dpo.run([good], TrainConfig(model=tiny_model_dir, output=out, max_length=8))


@pytest.mark.slow
def test_two_process_ddp_under_accelerate_launch(tiny_model_dir, tmp_path):
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    data = write_jsonl(tmp_path / "ppd.jsonl", ppd_records()[:8])
    out = tmp_path / "m2"
    config = os.path.join(os.path.dirname(__file__), "..", "configs", "accelerate", "cpu_ddp.yaml")
    env = {**os.environ, "PSR_QUIET": "0", "OMP_NUM_THREADS": "1"}
    # cpu_ddp.yaml, not `--cpu`: accelerate 1.x starts a single process when told --cpu (see the yaml).
    run = subprocess.run(
        [
            accelerate,
            "launch",
            "--config_file",
            config,
            "--num_processes",
            "2",
            "-m",
            "psr.cli",
            "step-dpo",
            "-i",
            data,
            "-o",
            str(out),
            "--model",
            tiny_model_dir,
            "--batch-size",
            "4",
            "--per-device-batch-size",
            "1",
            "--lr",
            "1e-4",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # Both ranks trained the same optimizer steps: 8 pairs / effective batch 4 = 2, accumulation 2 each.
    assert "rank 0 of 2 (MULTI_CPU, gloo): trained to optimizer step 2" in run.stderr
    assert "rank 1 of 2 (MULTI_CPU, gloo): trained to optimizer step 2" in run.stderr
    assert run.stderr.count("step-dpo: wrote") == 1  # one writer
    assert run.stdout.strip() == ""  # logs go to stderr
    done = json.loads((out / "psr_config.json").read_text())
    assert done["world_size"] == 2 and done["gradient_accumulation_steps"] == 2 and done["effective_batch_size"] == 4
    logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m["step"] for m in logged if "loss" in m]
    assert steps == [1, 2]
    assert not (out / ".final.tmp").exists() and not (out / "checkpoints").exists()


def test_help_says_what_it_reads_writes_and_its_defaults():
    from typer.testing import CliRunner

    from psr.cli import app

    res = CliRunner().invoke(app, ["step-dpo", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    flat = " ".join(res.output.split())
    for words in (
        "Reads PPD records",
        "1 epoch",
        "lr 5e-7",
        "effective batch 32",
        "beta 0.1",
        "--precompute-ref-log-probs",
        "--lora",
        "accelerate launch",
        "metrics.jsonl",
        "apo_zero",
    ):
        assert words in flat, words
    bad = CliRunner().invoke(app, ["step-dpo", "-i", "x.jsonl", "--model", "m", "-o", "out", "--loss", "kto"])
    assert bad.exit_code == 2 and "--loss" in bad.output


def test_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    root = os.path.join(os.path.dirname(__file__), "..", "configs", "accelerate")
    want = {
        "ddp": ("MULTI_GPU", "bf16"),
        "cpu_ddp": ("MULTI_GPU", "no"),
        "deepspeed_zero2": ("DEEPSPEED", "bf16"),
        "deepspeed_zero3": ("DEEPSPEED", "bf16"),
        "fsdp": ("FSDP", "bf16"),
    }
    for name, (kind, precision) in want.items():
        cfg = load_config_from_file(os.path.join(root, name + ".yaml"))
        assert (cfg.distributed_type.value, cfg.mixed_precision) == (kind, precision), name
        # psr computes gradient accumulation; a value pinned in a config would silently override it.
        assert "gradient_accumulation_steps" not in (cfg.deepspeed_config or {}), name
    assert load_config_from_file(os.path.join(root, "deepspeed_zero3.yaml")).deepspeed_config["zero_stage"] == 3
