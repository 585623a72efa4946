import json
import os
import shutil
from dataclasses import replace

import pytest
import torch

from psr.core.errors import InputError
from psr.core.steps import STEP_STOP
from psr.engines import Chat, EngineConfig, Sampling, Step, load_engine
from psr.engines.hf import HFEngine

CHATS = [
    Chat("Solve for $x$: $3x + 4 = 19$."),
    Chat("hi"),
    Chat(
        "What is the area of a circle with radius 3? Express your answer in terms of $\\pi$.",
        assistant_prefix="Step 1: The area of a circle is $A = \\pi r^2$.\n",
    ),
    Chat("Ann has 12 apples and gives 5 to Bob. How many are left?", system="Be brief."),
    Chat("Compute $\\frac{1}{2} + \\frac{1}{3}$.", assistant_prefix="Step 1: "),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # A tiny model gains nothing from intra-op threads, and on a busy 2-core box OpenMP spinning
    # makes each decoding step ~20x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine(EngineConfig(model=tiny_model_dir, batch_size=3))


def free_run(engine, chats, max_tokens=24):
    return [outs[0] for outs in engine.generate(chats, Sampling(max_tokens=max_tokens))]


def test_load_engine_and_dtype(tiny_model_dir, engine):
    e = load_engine(EngineConfig(engine="hf", model=tiny_model_dir))
    assert isinstance(e, HFEngine) and e.model.dtype == torch.float32 and not e.model.training
    assert engine.eos_ids[:2] == [2, 0] and engine.pad_id == 0


def test_batched_greedy_equals_one_by_one(engine):
    batched = free_run(engine, CHATS)
    single = [free_run(engine, [c])[0] for c in CHATS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [(c.prompt_tokens, c.completion_tokens) for c in batched] == [
        (c.prompt_tokens, c.completion_tokens) for c in single
    ]
    assert len({c.text for c in batched}) == len(CHATS)  # the prompts matter: no degenerate output
    # the batch is independent of batch size
    wide = HFEngine(EngineConfig(model=engine.cfg.model, batch_size=64))
    assert [c.text for c in free_run(wide, CHATS)] == [c.text for c in batched]


def test_token_counts_and_length(engine):
    [out] = free_run(engine, [CHATS[0]], max_tokens=7)
    assert out.finish_reason == "length" and out.completion_tokens == 7
    rendered = engine.render(CHATS[0])
    assert out.prompt_tokens == engine.count_tokens([rendered])[0]
    assert engine.count_tokens(["", "Step 1: \\boxed{4}"]) == [
        0,
        len(engine.tokenizer("Step 1: \\boxed{4}")["input_ids"]),
    ]


def test_prompt_ids_are_memoized_fresh_and_bounded(tiny_model_dir):
    e = HFEngine(EngineConfig(model=tiny_model_dir))
    e._PROMPT_CACHE = 3
    direct = [e.tokenizer(e.render(c), add_special_tokens=False)["input_ids"] for c in CHATS]
    assert e.fits(CHATS[:2] + CHATS[:2]) == [True] * 4  # fits encodes, and remembers, each chat once
    assert list(e._prompt_cache.values()) == direct[:2]
    ids = e.prompt_ids(CHATS)
    assert ids == direct and len(e._prompt_cache) == 3  # the oldest two were let go
    ids[0].append(99)  # a caller's change does not reach the memo
    assert e.prompt_ids(CHATS[4:]) == direct[4:] and e.prompt_ids(CHATS[:1]) == direct[:1]
    # generate counts the same prompt tokens from memoized ids as from a fresh encoding
    fresh = HFEngine(EngineConfig(model=tiny_model_dir))
    assert (
        [o.prompt_tokens for o in free_run(e, CHATS, 2)]
        == [o.prompt_tokens for o in free_run(fresh, CHATS, 2)]
        == [len(d) for d in direct]
    )


def pick_stop(text):
    """A 3-character piece of ``text`` that first occurs after its start: a stop the model really produces."""
    return next(
        text[i : i + 3]
        for i in range(4, len(text) - 3)
        if text[i : i + 3].strip() and text[i : i + 3] not in text[: i + 2]
    )


def test_stop_strings_cut_exactly_per_sequence(engine):
    free = free_run(engine, CHATS, max_tokens=30)
    stops = ["@@never@@", pick_stop(free[0].text), pick_stop(free[3].text)]
    outs = [o[0] for o in engine.generate(CHATS, Sampling(max_tokens=30, stop=stops))]
    for chat, f, o in zip(CHATS, free, outs, strict=True):
        found = [f.text.index(s) for s in stops if s in f.text]
        if found:
            assert o.finish_reason == "stop"
            assert o.text == f.text[: min(found)]
            assert o.completion_tokens < f.completion_tokens
            # the count is the fewest generated tokens whose text holds a stop string
            assert any(s in free_run(engine, [chat], max_tokens=o.completion_tokens)[0].text for s in stops)
            assert not any(s in free_run(engine, [chat], max_tokens=o.completion_tokens - 1)[0].text for s in stops)
        else:  # the other sequences of the batch ran on untouched
            assert (o.text, o.finish_reason) == (f.text, "length")
    assert outs[0].finish_reason == outs[3].finish_reason == "stop"


def test_stop_does_not_match_across_the_prompt(engine):
    # The prompt ends with "\n"; a stop starting with "\n" must be found in the completion, never
    # by joining the prompt's last newline with generated text.
    chat = Chat("Solve for $x$: $3x + 4 = 19$.", assistant_prefix="Step 1: x\n")
    free = free_run(engine, [chat], max_tokens=20)[0]
    first = free.text[:2]
    [[out]] = engine.generate([chat], Sampling(max_tokens=20, stop=["\n" + first]))
    if ("\n" + first) in free.text:
        assert out.text == free.text[: free.text.index("\n" + first)]
    else:
        assert out.text == free.text and out.finish_reason == "length"


def test_continuation_of_partial_answer(engine, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    chat = CHATS[2]
    prompt = engine.render(chat)
    assert prompt.endswith("<|im_start|>assistant\n" + chat.assistant_prefix)
    [[out]] = engine.generate([chat], Sampling(max_tokens=16))
    # the engine continues exactly the rendered prompt: same tokens as a raw model.generate on it
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = engine.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        raw = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=16,
            do_sample=False,
            eos_token_id=[2, 0],
            pad_token_id=0,
        )
    assert out.text == engine.tokenizer.decode(raw[0, ids.shape[1] :], skip_special_tokens=True)
    # and the prefix changes what comes next
    [[plain]] = engine.generate([Chat(chat.user)], Sampling(max_tokens=16))
    assert plain.text != out.text


def test_samples_and_seed(engine):
    s = Sampling(n=4, temperature=1.0, top_p=0.95, max_tokens=12, seed=7)
    a = engine.generate(CHATS[:2], s)
    b = engine.generate(CHATS[:2], s)
    assert [len(x) for x in a] == [4, 4]
    assert [[c.text for c in x] for x in a] == [[c.text for c in x] for x in b]
    assert len({c.text for c in a[0]}) > 1  # n distinct samples, not one copied
    s.seed = 8
    assert [[c.text for c in x] for x in engine.generate(CHATS[:2], s)] != [[c.text for c in x] for x in a]
    # no sampling seed: the engine's seed decides, deterministically
    s.seed = None
    assert [c.text for c in engine.generate(CHATS[:1], s)[0]] == [c.text for c in engine.generate(CHATS[:1], s)[0]]
    greedy = engine.generate(CHATS[:1], Sampling(n=3, max_tokens=8))[0]
    assert len(greedy) == 3 and len({c.text for c in greedy}) == 1 and greedy[0] is not greedy[1]


def test_eos_finish_reason(engine, tiny_model_dir, tmp_path):
    # A model whose generation_config lists an extra end token (as Llama 3 does): pick one the tiny
    # model really emits greedily, at its 5th step.
    ids = engine.tokenizer(engine.render(CHATS[0]), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        raw = engine.model.generate(
            torch.tensor([ids]), max_new_tokens=8, do_sample=False, eos_token_id=[2, 0], pad_token_id=0
        )[0, len(ids) :].tolist()
    j = next(j for j in range(4, 8) if raw[j] not in raw[:j])
    model_dir = str(tmp_path / "m")
    shutil.copytree(tiny_model_dir, model_dir)
    path = os.path.join(model_dir, "generation_config.json")
    gen = json.load(open(path))
    gen["eos_token_id"] = [2, 0, raw[j]]
    json.dump(gen, open(path, "w"))
    e = HFEngine(EngineConfig(model=model_dir))
    [[out]] = e.generate([CHATS[0]], Sampling(max_tokens=20))
    assert out.finish_reason == "eos" and out.completion_tokens == j + 1
    assert out.text == e.tokenizer.decode(raw[:j])


def test_next_steps_returns_steps(engine):
    steps = engine.next_steps(
        [("What is 2 + 2?", []), ("What is 3 + 5?", ["3 + 5 = 8."])],
        Sampling(n=2, temperature=1.0, max_tokens=10, seed=1),
    )
    assert [len(s) for s in steps] == [2, 2]
    for s in (x for group in steps for x in group):
        assert isinstance(s, Step) and s.content == s.content.strip()
        assert STEP_STOP not in s.completion.text
        assert s.completion.finish_reason in ("stop", "eos", "length")
        assert isinstance(s.is_final, bool)


def test_bad_model_and_options(tmp_path, tiny_model_dir):
    with pytest.raises(InputError, match="--model"):
        HFEngine(EngineConfig(model=None))
    with pytest.raises(InputError, match="no such directory"):
        HFEngine(EngineConfig(model=str(tmp_path / "missing")))
    with pytest.raises(InputError, match="--dtype"):
        HFEngine(EngineConfig(model=tiny_model_dir, dtype="int3"))
    with pytest.raises(InputError, match="cannot load"):  # a hub name; tests run with HF_HUB_OFFLINE=1
        HFEngine(EngineConfig(model="psr-no-such-org/no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="cannot load"):
        HFEngine(EngineConfig(model=str(tmp_path / "empty")))


# -- shared prompt prefixes ----------------------------------------------------------------


def test_prefix_groups_join_prompts_that_share_most_of_their_tokens():
    from psr.engines.base import prefix_groups

    head = list(range(100, 140))  # 40 shared tokens, like one problem's judge prompts
    prompts = [head + [1, 2], list(range(500, 540)), head + [3], head + [1, 2], head[:20] + [9] * 30]
    groups = prefix_groups(prompts)
    assert sorted(r for _, rows in groups for r in rows) == list(range(len(prompts)))
    by_row = {r: (n, rows) for n, rows in groups for r in rows}
    assert sorted(by_row[0][1]) == [0, 2, 3] and by_row[0][0] == 40
    assert by_row[1][1] == [1] and by_row[4][1] == [4]  # 20 of 50 tokens shared: not worth a group
    assert prefix_groups([[5] * 30, [5] * 30])[0] == (30, [0, 1])  # copies of one prompt


def test_shared_prefixes_give_the_same_text_as_plain_batches(tiny_model_dir):
    # Judge-like prompts: one long question, several different partial answers; plus copies (n > 1).
    question = "A farmer has 17 cows and buys 5 more, then sells 8. " * 4 + "How many cows now?"
    chats = [Chat(question, assistant_prefix=p) for p in ("Step 1: ", "Step 1: 17 + 5", "Step 1: He", "")]
    chats += CHATS
    shared = HFEngine(EngineConfig(model=tiny_model_dir, batch_size=64))
    plain = HFEngine(EngineConfig(model=tiny_model_dir, batch_size=64, prefix_sharing=False))
    assert [c.text for c in free_run(shared, chats)] == [c.text for c in free_run(plain, chats)]
    # the shared run really started from a prefilled cache (the question was computed once)
    prompts = shared.tokenizer([shared.render(c) for c in chats[:4]], add_special_tokens=False)["input_ids"]
    width = max(len(p) for p in prompts)
    assert shared._prefilled_cache(prompts, width, 8).get_seq_length() > 0.5 * width
    # sampled copies of one prompt: seeded, reproducible, and as many distinct draws as without sharing
    s = Sampling(n=6, temperature=1.0, max_tokens=12, seed=1)
    a, b = shared.generate(chats[:1], s)[0], shared.generate(chats[:1], s)[0]
    assert [x.text for x in a] == [x.text for x in b] and len({x.text for x in a}) > 1


def test_per_chat_seeds_make_a_chat_s_samples_independent_of_its_batch(engine):
    chats = [Chat(f"Question {i}: what is {i} + {i}?") for i in range(5)]
    s = Sampling(n=3, temperature=1.0, top_p=0.9, max_tokens=12)
    seeds = [11, 22, 33, 44, 55]
    together = engine.generate(chats, replace(s, seeds=seeds))
    # alone, reordered, or with other batch mates: the same samples for the same (chat, seed)
    alone = engine.generate([chats[3]], replace(s, seeds=[44]))
    reordered = engine.generate(chats[::-1], replace(s, seeds=seeds[::-1]))
    texts = [[c.text for c in outs] for outs in together]
    assert [c.text for c in alone[0]] == texts[3]
    assert [[c.text for c in outs] for outs in reordered][::-1] == texts
    assert len(set(texts[0])) > 1  # the n samples of a chat differ from each other
    other = engine.generate([chats[3]], replace(s, seeds=[45]))
    assert [c.text for c in other[0]] != texts[3]  # and the seed matters
