"""The real tier: psr train-prm on SmolLM2-135M-Instruct's tokenizer, where the step tag is not one token.

Math-Shepherd's tag " ки" is two tokens here (" к", "и"), the case where PRM code that searches the
tokenized text for a tag token id reads the wrong position or none. psr appends the tag's ids after each
step's own ids and reads the label logits at the tag's last token (psr/engines/prm.py); this checks those
positions on the real tokenizer, trains a few steps, and scores with the saved PRM.
"""

from __future__ import annotations

import json

import pytest
from helpers import read_jsonl
from real_data import WORLD, psr_ok, require_real_model

pytestmark = pytest.mark.real


def test_the_tag_and_labels_tokenize_to_the_positions_scoring_reads(tmp_path):
    from transformers import AutoTokenizer

    from psr.engines.prm import PRMFormat, PRMScorer, PRMTokens, encode

    model = require_real_model()
    tok = AutoTokenizer.from_pretrained(model)
    fmt = PRMFormat()
    tokens = PRMTokens(tok, fmt)
    assert [tok.decode([i]) for i in tokens.tag_ids] == [" к", "и"]  # a split tag on this tokenizer
    assert tok.decode([tokens.good_id]) == "+" and tok.decode([tokens.bad_id]) == "-"
    recs = read_jsonl(WORLD / "prm.jsonl")[:12]
    for r in recs:
        ids, positions = encode(tokens, r["prompt"], r["completions"])
        assert len(positions) == len(r["completions"])
        n = len(tokens.tag_ids)
        for pos, step in zip(positions, r["completions"], strict=True):
            assert ids[pos - n + 1 : pos + 1] == tokens.tag_ids  # the read position is the tag's last token
            assert tok.decode(ids[: pos + 1]).endswith(step.strip() + fmt.step_tag)
        # the same text tokenized whole keeps the tag tokens where encode put them (no merge across a step)
        text = r["prompt"] + "".join("\n" + s.strip() + fmt.step_tag for s in r["completions"])
        assert tok(text, add_special_tokens=False)["input_ids"] == ids
        # and a label written after the tag stays its own token, the one the logits at the tag predict
        labelled = tok(text + fmt.good, add_special_tokens=False)["input_ids"]
        assert labelled == ids + [tokens.good_id]

    train = tmp_path / "prm.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in read_jsonl(WORLD / "prm.jsonl")[:20]))
    out = tmp_path / "prm"
    psr_ok(
        "train-prm",
        "-i",
        str(train),
        "--model",
        model,
        "-o",
        str(out),
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--per-device-batch-size",
        "4",
        "--lr",
        "1e-5",
        "--eval-fraction",
        "0.2",
        "--max-length",
        "512",
    )
    done = json.loads((out / "psr_config.json").read_text())
    assert done["complete"] and done["global_steps"] == 2 and done["prm_format"] == fmt.to_config()
    scorer = PRMScorer.load(str(out), batch_size=4)
    scores = scorer.score([(r["prompt"], r["completions"]) for r in recs[:4]])
    assert [len(s) for s in scores] == [len(r["completions"]) for r in recs[:4]]
    assert all(0.0 < p < 1.0 for s in scores for p in s)
    print(
        f"real tier: PRM after 2 steps: held-out step accuracy {done.get('eval_accuracy')}, "
        f"AUC {done.get('eval_auc')} over {done.get('eval_steps')} steps"
    )
