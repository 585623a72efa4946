import json
import os

import pytest

os.environ.setdefault("PSR_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from a second thread, and on a busy 2-core machine two threads per process
# made each decoding step ~20x slower (measured). Subprocesses (the psr CLI under test) inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "benchmarks")


@pytest.fixture(scope="session")
def bench_dir():
    path = os.path.abspath(BENCH)
    if not os.path.isdir(path):
        pytest.skip("../shared/benchmarks is not beside this checkout")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Qwen2-architecture causal LM with a locally trained tokenizer, built once per session."""
    from psr.core.tiny import build_tiny_model

    return build_tiny_model(str(tmp_path_factory.mktemp("tiny") / "model"), seed=0)


@pytest.fixture
def one_torch_thread():
    """Tiny models train faster on one thread; on a busy box two threads spin-wait on each other.
    Training test modules use it for every test: pytestmark = pytest.mark.usefixtures("one_torch_thread")."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_prm(tiny_model_dir, tmp_path_factory):
    """A tiny PRM: the tiny model briefly trained by train-prm (its scores differ between steps), on the
    mine-pairs questions. Module-scoped, as it was in tests/test_mine_pairs.py: each module trains its own."""
    from helpers import MINE_QUESTIONS as QUESTIONS

    from psr.stages import train_prm

    d = tmp_path_factory.mktemp("prm")
    data = d / "data.jsonl"
    with open(data, "w") as fh:
        for i in range(16):
            fh.write(
                json.dumps(
                    {
                        "prompt": QUESTIONS[i % len(QUESTIONS)],
                        "completions": [f"{i} + {i} = {2 * i}", f"{i} + 1 = {i}"],
                        "labels": [True, False],
                    }
                )
                + "\n"
            )
    out = str(d / "prm")
    train_prm.run(
        [str(data)],
        train_prm.PRMTrainConfig(
            model=tiny_model_dir,
            output=out,
            max_steps=10,
            learning_rate=1e-3,
            batch_size=4,
            per_device_batch_size=4,
            save_steps=1000,
            eval_fraction=0.0,
        ),
    )
    return out
