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
