"""psr sft on the tiny model: the loss mask, learning the step format, too-long records, resume, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers import write_jsonl

from psr.core.errors import InputError
from psr.core.prompts import judge_prompt, srlm_score_prompt, step_prompt
from psr.core.steps import format_steps
from psr.stages import sft
from psr.training import sft as sft_training
from psr.training.common import TrainConfig

QUESTIONS = [f"What is {a} + {b}?" for a, b in [(2, 3), (7, 5), (11, 4), (6, 9), (13, 8), (3, 3), (9, 12), (4, 15)]]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ift_records():
    out = []
    for i, q in enumerate(QUESTIONS):
        a, b = (int(x) for x in q[8:-1].split(" + "))
        out.append(
            {
                "id": f"ift-{i}",
                "question": q,
                "steps": [f"Add the numbers: {a} + {b} = {a + b}.", f"The answer is $\\boxed{{{a + b}}}$."],
            }
        )
    return out


EFT = {
    "id": "eft-0",
    "question": "What is 2 + 3?",
    "previous_steps": [],
    "step_a": "2 + 3 = 5.",
    "step_b": "2 + 3 = 6.",
    "judgment": "Assistant A adds correctly. [[A]]",
    "label": "A",
}


def test_labels_cover_only_the_assistant_turn(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    recs = [ift_records()[0], EFT]
    examples, too_long = sft_training.build_examples(tok, recs, max_length=4096)
    assert too_long == []
    # The labels TRL builds from our completion mask, as the trainer will use them.
    cfg = TrainConfig(model=tiny_model_dir, output=str(tmp_path / "out"), batch_size=1)
    trainer = sft_training.make_trainer(cfg, examples, tok)
    for row, (user, assistant) in zip(
        trainer.train_dataset, [sft_training.ift_chat(recs[0]), sft_training.eft_chat(recs[1])], strict=True
    ):
        ids, labels = row["input_ids"], row["labels"]
        first = next(i for i, x in enumerate(labels) if x != -100)
        assert all(x == -100 for x in labels[:first])
        assert labels[first:] == ids[first:]
        prompt = tok.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        assert tok.decode(ids[:first]) == prompt
        assert tok.decode(ids[first:]) == assistant + tok.eos_token + "\n"
    assert sft_training.ift_chat(recs[0]) == (step_prompt(recs[0]["question"]), format_steps(recs[0]["steps"]))
    assert sft_training.eft_chat(EFT)[0] == judge_prompt(EFT["question"], [], EFT["step_a"], EFT["step_b"])


# annotate-eft --format scoring: the SRLM baseline's judge data
SCORING = {
    "id": "p0/chosen",
    "pair_id": "p0",
    "question": "What is 2 + 3?",
    "response": "Step 1: 2 + 3 = 5.",
    "judgment": "All 1 steps are right. Score: 5",
    "score": 5,
    "role": "chosen",
    "format": "scoring",
}


def test_scoring_eft_record_trains_the_scoring_prompt(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    path = write_jsonl(tmp_path / "mixed.jsonl", [ift_records()[0], EFT, SCORING])
    recs = sft.read_sft_records([path])  # IFT, pairwise and scoring EFT may share a file
    assert sft_training.eft_chat(recs[2]) == (
        srlm_score_prompt(SCORING["question"], SCORING["response"]),
        SCORING["judgment"],
    )
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples, too_long = sft_training.build_examples(tok, recs, max_length=4096)
    assert too_long == [] and len(examples) == 3
    ex = examples[2]
    first = ex["completion_mask"].index(1)
    assert tok.decode(ex["input_ids"][first:]) == SCORING["judgment"] + tok.eos_token + "\n"
    # Longer than --max-length: left out and named, as any record.
    assert sft_training.build_examples(tok, [SCORING], max_length=len(ex["input_ids"]) - 1)[1] == ["p0/chosen"]


@pytest.mark.parametrize(
    "change,message",
    [
        ({"response": None}, "missing field 'response' (eft_scoring record)"),
        ({"response": "  "}, "field 'response' is empty (eft_scoring record)"),
        ({"score": 7}, "field 'score' must be 0 to 5"),
        ({"score": "5"}, "field 'score' must be an integer"),
    ],
)
def test_malformed_scoring_record_names_file_and_line(tmp_path, change, message):
    bad = {k: v for k, v in {**SCORING, **change}.items() if v is not None}
    path = write_jsonl(tmp_path / "eft_scoring.jsonl", [EFT, bad])
    with pytest.raises(InputError) as e:
        sft.read_sft_records([path])
    assert (e.value.path, e.value.line) == (path, 2) and message in str(e.value)


def test_short_run_learns_the_step_format_and_counts_long_records(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    long_rec = {"id": "too-long", "question": "What is 1 + 1? " * 200, "steps": ["2"]}
    data = write_jsonl(tmp_path / "ift.jsonl", [*ift_records()[:4], long_rec])
    eft = write_jsonl(tmp_path / "eft.jsonl", [EFT])
    out = str(tmp_path / "m1")
    # A learning rate far above the paper's 1e-6, so that a few steps suffice.
    cfg = TrainConfig(
        model=tiny_model_dir,
        output=out,
        epochs=8,
        learning_rate=3e-3,
        batch_size=5,
        per_device_batch_size=5,
        max_length=400,
        save_steps=1000,
    )
    summary = sft.run([data, eft], cfg)

    assert summary["too_long"] == 1 and summary["too_long_ids"] == ["too-long"]
    assert summary["examples"] == 5 and summary["ift_records"] == 5 and summary["eft_records"] == 1
    with open(os.path.join(out, "psr_config.json")) as fh:
        assert json.load(fh)["complete"] is True
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        steps = [json.loads(x)["step"] for x in fh if "loss" in json.loads(x)]
    assert steps == list(range(1, summary["global_steps"] + 1))
    assert not os.path.exists(os.path.join(out, "checkpoints"))

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": step_prompt(QUESTIONS[1])}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=6, do_sample=False)
    text = tok.decode(gen[0, ids["input_ids"].shape[1] :])
    assert text.startswith("Step 1:"), text

    # A finished output is left alone by a rerun.
    again = sft.run([data, eft], cfg)
    assert again["global_steps"] == summary["global_steps"]


@pytest.fixture(scope="module")
def base_like_model(tiny_model_dir, tmp_path_factory):
    """The tiny model as a base model is set up (Qwen2.5-Math-7B, for one): its tokenizer's EOS and its
    generation_config's eos are <|endoftext|>, while its chat template closes turns with <|im_end|>."""
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    d = str(tmp_path_factory.mktemp("base") / "m0")
    shutil.copytree(tiny_model_dir, d)
    tok = AutoTokenizer.from_pretrained(d)
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(d)
    GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id).save_pretrained(d)
    return d


@pytest.mark.parametrize("stage", ["sft", "sft-lora", "step-dpo"])
def test_the_saved_model_stops_at_the_chats_end_of_turn(base_like_model, tmp_path, stage):
    """The trained model closes its answers with <|im_end|>; the engines stop at what generation_config
    names, so it must name that token (the Trainer aligns it with the tokenizer's EOS, <|endoftext|>)."""
    from transformers import AutoTokenizer, GenerationConfig

    from psr.stages import step_dpo

    out = str(tmp_path / "out")
    cfg = TrainConfig(
        model=base_like_model,
        output=out,
        max_steps=1,
        batch_size=2,
        per_device_batch_size=2,
        lora=stage == "sft-lora",
        save_steps=1000,
    )
    if stage == "step-dpo":
        ppd = {
            "id": "p",
            "question": "What is 2 + 3?",
            "previous_steps": [],
            "chosen": "2 + 3 = 5.",
            "rejected": "2 + 3 = 6.",
            "is_final": True,
            "rejected_is_final": True,
        }
        summary = step_dpo.run([write_jsonl(tmp_path / "ppd.jsonl", [ppd, {**ppd, "id": "q"}])], cfg)
    else:
        summary = sft.run([write_jsonl(tmp_path / "ift.jsonl", ift_records()[:2])], cfg)
    tok = AutoTokenizer.from_pretrained(base_like_model)
    eot, eos = tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id
    assert eot != eos
    saved = GenerationConfig.from_pretrained(out).eos_token_id
    assert saved == summary["eos_token_ids"] == [eot, eos], saved


class StopAfterFirstSave(Exception):
    pass


def test_interrupted_run_resumes_from_its_checkpoint(tiny_model_dir, tmp_path):
    from transformers import TrainerCallback

    class Interrupt(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            raise StopAfterFirstSave(state.global_step)

    data = write_jsonl(tmp_path / "ift.jsonl", ift_records()[:4])
    out = str(tmp_path / "m1")
    cfg = TrainConfig(model=tiny_model_dir, output=out, epochs=1, learning_rate=1e-4, batch_size=1, save_steps=2)
    with pytest.raises(StopAfterFirstSave):
        sft.run([data], cfg, callbacks=[Interrupt()])
    assert os.path.isdir(os.path.join(out, "checkpoints", "checkpoint-2"))
    assert not os.path.exists(os.path.join(out, "psr_config.json"))

    # A kill while saving the next checkpoint leaves it without trainer_state.json: it is skipped.
    partial = os.path.join(out, "checkpoints", "checkpoint-3")
    os.makedirs(partial)
    open(os.path.join(partial, "model.safetensors"), "wb").close()

    summary = sft.run([data], cfg)
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert summary["global_steps"] == 4
    with open(os.path.join(out, "metrics.jsonl")) as fh:
        steps = [json.loads(x)["step"] for x in fh if "loss" in json.loads(x)]
    assert steps == [1, 2, 3, 4]  # steps 1-2 from the first run, 3-4 from the resumed one, none twice

    fresh = sft.run([data], TrainConfig(**{**cfg.__dict__, "overwrite": True, "max_steps": 1}))
    assert fresh["resumed_from"] is None and fresh["global_steps"] == 1


def test_bad_input_is_an_input_error(tiny_model_dir, tmp_path):
    out = str(tmp_path / "out")
    good = write_jsonl(tmp_path / "ok.jsonl", ift_records()[:1])
    with pytest.raises(InputError, match="model directory not found"):
        sft.run([good], TrainConfig(model=str(tmp_path / "no-such-model"), output=out))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty"):
        sft.run([str(empty)], TrainConfig(model=tiny_model_dir, output=out))
    bad = write_jsonl(tmp_path / "bad.jsonl", [*ift_records()[:2], {"id": "x", "question": "q"}])
    with pytest.raises(InputError) as e:
        sft.run([bad], TrainConfig(model=tiny_model_dir, output=out))
    assert e.value.line == 3
    with pytest.raises(InputError, match="longer than --max-length"):
        sft.run([good], TrainConfig(model=tiny_model_dir, output=out, max_length=10))
    not_ours = tmp_path / "notes"
    not_ours.mkdir()
    (not_ours / "thesis.tex").write_text("keep me")
    with pytest.raises(InputError, match="not a psr training output"):
        sft.run([good], TrainConfig(model=tiny_model_dir, output=str(not_ours), overwrite=True))
    assert (not_ours / "thesis.tex").exists()


def test_cli_help_and_exit_code_for_a_missing_model(tmp_path):
    env = {**os.environ, "PSR_QUIET": "1"}
    helped = subprocess.run(
        [sys.executable, "-m", "psr.cli", "sft", "--help"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
    )
    assert helped.returncode == 0
    flat = " ".join(helped.stdout.split())
    for words in (
        "Reads IFT records",
        "3 epochs",
        "lr 1e-6",
        "effective batch 32",
        "accelerate launch",
        "psr_config.json",
        "resumes",
    ):
        assert words in flat, words
    data = write_jsonl(tmp_path / "ift.jsonl", ift_records()[:1])
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "psr.cli",
            "sft",
            "-i",
            data,
            "-o",
            str(tmp_path / "o"),
            "--model",
            str(tmp_path / "missing"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 2
    assert "model directory not found" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_resumes(tiny_model_dir, tmp_path):
    import signal
    import time

    data = write_jsonl(tmp_path / "ift.jsonl", ift_records())
    out = tmp_path / "m1"
    cmd = [
        sys.executable,
        "-m",
        "psr.cli",
        "sft",
        "-i",
        data,
        "-o",
        str(out),
        "--model",
        tiny_model_dir,
        "--batch-size",
        "1",
        "--epochs",
        "2",
        "--lr",
        "1e-4",
        "--save-steps",
        "3",
    ]
    env = {**os.environ, "PSR_QUIET": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoints" / "checkpoint-3" / "trainer_state.json"
    while not state.exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (out / "psr_config.json").exists():
        pytest.skip("the run finished before it could be killed")

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    done = json.loads((out / "psr_config.json").read_text())
    assert done["resumed_from"] is not None and done["global_steps"] == 16
    steps = [m["step"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert steps == list(range(1, 17))
