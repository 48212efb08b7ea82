"""Sentence encoders: one home for dense retrieval and PPlug's history/input encoders.

A :class:`TextEncoder` wraps a transformer with its pooling and optional L2
normalisation. ``encode`` is the frozen, batched, no-grad path (retrievers, PPlug's
history encoder); ``forward`` keeps the graph so a trainable copy (PPlug's input encoder)
can be fine-tuned.

What an encoder *is* comes from the encoder itself wherever it says so, the way
sentence-transformers reads it (:func:`sentence_transformers_config`): a folder in
sentence-transformers format declares its pooling (``1_Pooling/config.json``), its
maximum sequence length (``sentence_bert_config.json``) and possibly a query prompt
(``config_sentence_transformers.json``). Pooling runs through sentence-transformers' own
``Pooling`` module, so our vectors are the ones ``SentenceTransformer.encode`` gives for
the same model (``tests/test_retrieval.py`` compares them on all-MiniLM-L6-v2). Two
things stay ours, on purpose:

* Weights load through the model presets (:mod:`harness.models`), not through
  ``SentenceTransformer(path)``: the offline presets build models without a folder (the
  random test encoders), and PPlug fine-tunes a copy of the raw transformer.
* A trailing ``Normalize`` module is not applied: the embedding cache stores raw pooled
  vectors, which the official Contriever recipe scores by dot product; callers ask for
  L2 normalisation when they want it (``normalize=True``).

Truncation is at the encoder's own maximum: the sentence-transformers ``max_seq_length``
when the folder declares one (256 for all-MiniLM-L6-v2, 512 for bge), otherwise the
tokenizer's ``model_max_length`` within the position embeddings (512 for Contriever),
as LaMP's ``tokenizer(..., truncation=True)`` does.

A bge model keeps its query instruction wherever it comes from (a preset, a local folder,
a hub id): :func:`query_instruction` recognises bge by the name it was loaded under or by
the name recorded in its config.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.models import ModelPreset, resolve_preset
from harness.registries import MODELS

#: bge's retrieval instruction for queries (BAAI's model cards; English and Chinese v1/v1.5).
BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "
BGE_QUERY_INSTRUCTION_ZH = "为这个句子生成表示以用于检索相关文章："
#: Position-embedding sizes above this are not a text length limit worth trusting.
_UNSET_MODEL_MAX_LENGTH = 1_000_000


@dataclass(frozen=True)
class SentenceTransformersConfig:
    """What a sentence-transformers folder declares about its encoder (``None``: silent)."""

    pooling: str | None = None
    max_seq_length: int | None = None
    query_prompt: str | None = None


def _read_json(folder: str, filename: str) -> Any:
    from transformers.utils import cached_file

    try:
        path = cached_file(folder, filename, local_files_only=True, _raise_exceptions_for_missing_entries=False,
                           _raise_exceptions_for_connection_errors=False)
    except (OSError, ValueError):
        return None
    if path is None:
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _pooling_mode(config: dict[str, Any]) -> str | None:
    """The pooling of a ``Pooling`` config, in its current or its legacy (boolean) form."""
    mode = config.get("pooling_mode")
    if isinstance(mode, str):
        return mode
    legacy = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
              "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
              "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
    modes = [name for key, name in legacy.items() if config.get(key)]
    return modes[0] if len(modes) == 1 else None


def sentence_transformers_config(folder: str) -> SentenceTransformersConfig:
    """Read the sentence-transformers files of a local folder or a cached hub model.

    Nothing is downloaded; a folder without these files gives an empty config.
    """
    if not folder:
        return SentenceTransformersConfig()
    pooling = None
    for module in _read_json(folder, "modules.json") or []:
        if str(module.get("type", "")).endswith("Pooling"):
            sub = module.get("path", "")
            config = _read_json(folder, f"{sub}/config.json" if sub else "config.json") or {}
            pooling = _pooling_mode(config)
    bert_config = _read_json(folder, "sentence_bert_config.json") or {}
    st_config = _read_json(folder, "config_sentence_transformers.json") or {}
    prompts = st_config.get("prompts") or {}
    return SentenceTransformersConfig(pooling=pooling, max_seq_length=bert_config.get("max_seq_length"),
                                      query_prompt=prompts.get("query") or None)


def query_instruction(names: Sequence[str], declared: str = "", st_prompt: str | None = None) -> str:
    """The text put before every query: the preset's, the folder's, or bge's by name.

    ``names`` are what the model is known as (the name it was loaded under, the name in
    its config); bge is recognised in any of them. bge-m3 needs no instruction.
    """
    if declared:
        return declared
    if st_prompt:
        return st_prompt
    lowered = [n.lower() for n in names if n]
    if any("bge" in n and "m3" not in n and "reranker" not in n for n in lowered):
        return BGE_QUERY_INSTRUCTION_ZH if any("bge" in n and "zh" in n for n in lowered) else BGE_QUERY_INSTRUCTION
    return ""


def own_max_length(model: Any, tokenizer: Any, declared: int | None = None) -> int:
    """The encoder's own maximum input length (see the module docstring)."""
    if declared:
        return int(declared)
    positions = getattr(model.config, "max_position_embeddings", None) or 512
    if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # two positions are reserved by the padding offset
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < _UNSET_MODEL_MAX_LENGTH:
        return min(model_max, positions)
    return positions


def pooling_module(dim: int, mode: str) -> torch.nn.Module:
    """sentence-transformers' ``Pooling`` module (its module path moved in version 5)."""
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling
    except ImportError:  # sentence-transformers < 5
        from sentence_transformers.models import Pooling
    return Pooling(dim, pooling_mode=mode)


class TextEncoder:
    """A frozen sentence encoder: tokenizer, transformer, sentence-transformers pooling.

    ``max_length=None`` truncates at the encoder's own maximum (:func:`own_max_length`).
    """

    def __init__(self, preset: ModelPreset, model: Any, tokenizer: Any, device: str = "cpu",
                 max_length: int | None = None) -> None:
        self.preset = preset
        self.name = preset.name
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length if max_length is not None else own_max_length(model, tokenizer)
        self.pooling = preset.pooling
        self.pooler = pooling_module(self.dim, self.pooling)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.pooler({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]

    def forward(self, texts: Sequence[str], normalize: bool = True, model: Any | None = None) -> torch.Tensor:
        """Pooled embeddings with gradients; ``model`` lets a trainable copy share the tokenizer."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.device)
        hidden = (model or self.model)(**batch).last_hidden_state
        pooled = self._pool(hidden, batch["attention_mask"])
        return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """Frozen embeddings as float32 ``[len(texts), dim]``; sorted by length for speed."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.forward([texts[i] for i in idx], normalize=normalize).float().cpu().numpy()
        return out

    def trainable_copy(self) -> torch.nn.Module:
        """A deep copy of the weights with gradients on (PPlug's input encoder)."""
        clone = copy.deepcopy(self.model).train()
        for p in clone.parameters():
            p.requires_grad_(True)
        return clone


def describe(preset: ModelPreset, model: Any, tokenizer: Any) -> tuple[ModelPreset, int]:
    """The preset completed from what the encoder declares, and its own maximum length.

    A registered preset's declared pooling and instruction stand (they say what the paper
    uses); a folder's sentence-transformers files fill in an ad-hoc path or hub id, whose
    preset only guessed its pooling from the name.
    """
    recorded = str(getattr(model.config, "_name_or_path", "") or getattr(model, "name_or_path", "") or "")
    st = sentence_transformers_config(recorded)
    ad_hoc = preset.name not in MODELS
    pooling = st.pooling if (ad_hoc and st.pooling) else preset.pooling
    instruction = query_instruction([preset.name, recorded], preset.query_instruction, st.query_prompt)
    max_length = own_max_length(model, tokenizer, st.max_seq_length)
    return dataclasses.replace(preset, pooling=pooling, query_instruction=instruction), max_length


@functools.lru_cache(maxsize=4)
def load_encoder(name: str, device: str = "cpu") -> TextEncoder:
    """Load a sentence encoder once per process."""
    preset = resolve_preset(name, "encoder")
    model, tokenizer = preset.build()
    for p in model.parameters():
        p.requires_grad_(False)
    preset, max_length = describe(preset, model, tokenizer)
    return TextEncoder(preset, model, tokenizer, device=device, max_length=max_length)
