import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from psr.core.tiny import EOS_TOKEN, PAD_TOKEN, build_tiny_model, main, train_tokenizer

TEXTS = [
    "Step 1: $x = \\frac{3}{4}$\nStep 2: The answer is \\boxed{42}.",
    "Ünïcödé α≤β ∑ 数学 ½ “quoted” — done",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|>",
    "  1234567890  multiple   spaces\n\n\ttabs\r\n",
    "don't I'll WE'RE \\sqrt{2}^{10} 3.14159 -17",
]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_reload_keeps_token_ids(tok):
    raw = train_tokenizer()
    for text in TEXTS:
        ids = raw.encode(text).ids
        assert tok(text)["input_ids"] == ids, text
        assert tok.decode(ids) == text  # all TEXTS are NFC already
    # special tokens are single ids, not split into bytes
    assert tok("<|im_start|>x<|im_end|>")["input_ids"][0] == tok.convert_tokens_to_ids("<|im_start|>")
    assert tok.convert_tokens_to_ids(EOS_TOKEN) == tok.eos_token_id == 2
    assert tok.convert_tokens_to_ids(PAD_TOKEN) == tok.pad_token_id == 0
    assert len(tok) == 1024


def test_config_and_files(tiny_model_dir):
    cfg = AutoConfig.from_pretrained(tiny_model_dir)
    assert cfg.model_type == "qwen2"
    assert cfg.hidden_size // cfg.num_attention_heads >= 32
    assert cfg.tie_word_embeddings and cfg.eos_token_id == 2 and cfg.pad_token_id == 0
    gen = json.load(open(os.path.join(tiny_model_dir, "generation_config.json")))
    assert gen["eos_token_id"] == [2, 0]
    tok_cfg = json.load(open(os.path.join(tiny_model_dir, "tokenizer_config.json")))
    assert tok_cfg["tokenizer_class"] == "Qwen2Tokenizer"  # what transformers loads for qwen2 anyway
    assert type(AutoTokenizer.from_pretrained(tiny_model_dir)).__name__ == "Qwen2Tokenizer"


def test_chat_template(tok):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]
    assert (
        tok.apply_chat_template(msgs, tokenize=False)
        == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
    )
    assert (
        tok.apply_chat_template(msgs[1:2], tokenize=False, add_generation_prompt=True)
        == "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
    )


def test_generate_varied_text(tiny_model_dir, tok):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "Solve 2x + 3 = 7."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    new = out[0, enc["input_ids"].shape[1] :].tolist()
    assert 1 <= len(new) <= 12
    # greedy text that is not one token repeated: batching/stop-string tests rely on varied output
    assert len(set(new)) > 3


def test_same_seed_same_weights_other_seed_differs(tmp_path, tiny_model_dir):
    a = build_tiny_model(str(tmp_path / "a"), seed=0)
    b = build_tiny_model(str(tmp_path / "b"), seed=1)
    wa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    w0 = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    key = "model.embed_tokens.weight"
    assert torch.equal(wa[key], w0[key]) and not torch.equal(wa[key], wb[key])
    # the tokenizer does not depend on the weights seed
    assert open(os.path.join(a, "tokenizer.json")).read() == open(os.path.join(b, "tokenizer.json")).read()


def test_custom_sizes_and_corpus(tmp_path):
    corpus = ["Step 1: 2 + 2 = 4\nStep 2: \\boxed{4}"] * 50 + ["The quick brown fox jumps over the lazy dog."] * 50
    out = build_tiny_model(
        str(tmp_path / "m"), corpus=corpus, vocab_size=300, hidden_size=96, num_heads=3, num_layers=1
    )
    cfg = AutoConfig.from_pretrained(out)
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers) == (96, 3, 1)
    tok = AutoTokenizer.from_pretrained(out)
    assert cfg.vocab_size == len(tok) <= 300
    assert tok.decode(tok("Step 1: \\boxed{4}")["input_ids"]) == "Step 1: \\boxed{4}"
    with pytest.raises(ValueError, match="head_dim"):
        build_tiny_model(str(tmp_path / "bad"), hidden_size=64, num_heads=4)


def test_script_entry(tmp_path, capsys):
    # the module runs as a script (argument parsing needs no torch, so this subprocess is quick)
    r = subprocess.run([sys.executable, "-m", "psr.core.tiny", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "OUT_DIR" in r.stdout.upper() and "--seed" in r.stdout
    out = tmp_path / "cli"
    main([str(out), "--seed", "3"])
    assert capsys.readouterr().out.strip() == str(out)
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "x"), "--num-heads", "4"])
    assert exc.value.code == 2 and "head_dim" in capsys.readouterr().err


def test_named_size_sets_the_shape_and_flags_override_its_parts(tmp_path):
    main([str(tmp_path / "m"), "--size", "50m", "--num-layers", "1"])  # the GPU smoke's width, one layer
    conf = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (conf["hidden_size"], conf["num_attention_heads"], conf["num_hidden_layers"]) == (512, 8, 1)
    assert conf["intermediate_size"] == 4 * 512
