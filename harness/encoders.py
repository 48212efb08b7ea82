"""Sentence encoders: one home for dense retrieval and PPlug's history/input encoders.

A :class:`TextEncoder` wraps a transformer with its pooling (mean or CLS, from the
preset) and optional L2 normalisation. ``encode`` is the frozen, batched, no-grad path
(retrievers, PPlug's history encoder); ``forward`` keeps the graph so a trainable copy
(PPlug's input encoder) can be fine-tuned.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from harness.models import ModelPreset, resolve_preset


class TextEncoder:
    def __init__(self, preset: ModelPreset, model: Any, tokenizer: Any, device: str = "cpu",
                 max_length: int = 256) -> None:
        self.preset = preset
        self.name = preset.name
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.max_length = max_length
        self.pooling = preset.pooling

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        mask_f = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask_f).sum(1) / mask_f.sum(1).clamp(min=1e-9)

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


@functools.lru_cache(maxsize=4)
def load_encoder(name: str, device: str = "cpu") -> TextEncoder:
    """Load a sentence encoder once per process."""
    preset = resolve_preset(name, "encoder")
    model, tokenizer = preset.build()
    for p in model.parameters():
        p.requires_grad_(False)
    return TextEncoder(preset, model, tokenizer, device=device)
