"""Persistent embedding cache: each distinct text is encoded once per encoder, ever.

LaMP profiles repeat heavily (a user's items appear in several questions, train and dev
overlap, and every dense method re-reads them), so dense retrieval and PPlug's frozen
history encoder both go through this cache. Vectors are the encoder's raw pooled output
(unnormalised, as the official Contriever code scores them); callers normalise on read
when they want cosine. Storage is safetensors shards (never pickle), append-only, so a
crash loses at most the unflushed tail and two processes never corrupt each other.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from harness.encoders import TextEncoder
from harness.models import cache_root
from harness.store import atomic_output

#: Texts encoded (and persisted as one shard) at a time when many are missing.
PERSIST_EVERY = 2048


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class EmbeddingCache:
    """``embed(texts)`` returns ``[len(texts), dim]`` float32, encoding only the misses.

    ``directory=None`` keeps the cache in memory only (tests, throwaway runs).
    ``calls`` / ``encoded`` count encoder batches and texts actually encoded; ``lookups``
    counts every text asked for, so ``1 - encoded / lookups`` is the hit rate.
    """

    def __init__(self, encoder: TextEncoder, directory: Path | None = None, batch_size: int = 64) -> None:
        self.encoder = encoder
        self.directory = directory
        self.batch_size = batch_size
        self._index: dict[str, int] = {}
        self._rows: list[np.ndarray] = []
        self.calls = 0
        self.encoded = 0
        self.lookups = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self._load()

    def _load(self) -> None:
        assert self.directory is not None
        for shard in sorted(self.directory.glob("shard-*.safetensors")):
            with safe_open(str(shard), framework="np") as fh:
                keys = json.loads(fh.metadata()["keys"])
                vectors = fh.get_tensor("vectors")
            for key, vec in zip(keys, vectors):
                if key not in self._index:
                    self._index[key] = len(self._rows)
                    self._rows.append(vec)

    def _persist(self, keys: list[str], vectors: np.ndarray) -> None:
        if self.directory is None or not keys:
            return
        digest = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        with atomic_output(self.directory / f"shard-{digest}.safetensors") as tmp:
            save_file({"vectors": torch.from_numpy(np.ascontiguousarray(vectors))}, str(tmp),
                      metadata={"keys": json.dumps(keys), "encoder": self.encoder.name})

    def __len__(self) -> int:
        return len(self._rows)

    def embed(self, texts: Sequence[str], normalize: bool = False) -> np.ndarray:
        """Raw pooled vectors of ``texts`` (L2-normalised on read when ``normalize``).

        Misses are deduplicated and encoded together, so one call with a whole batch's
        queries and profiles costs one encoder pass over the texts never seen before.
        """
        keys = [text_key(t) for t in texts]
        self.lookups += len(keys)
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts):
            if key not in self._index and key not in missing:
                missing[key] = text
        if missing:
            new_keys = list(missing)
            # Chunks of PERSIST_EVERY texts, each persisted once encoded: a long encoding
            # shows progress and an interrupted one keeps what it finished.
            chunks = range(0, len(new_keys), PERSIST_EVERY)
            bar = tqdm(total=len(new_keys), desc=f"encode {self.encoder.name}", unit="text",
                       disable=len(new_keys) <= PERSIST_EVERY)
            for start in chunks:
                chunk = new_keys[start : start + PERSIST_EVERY]
                vectors = self.encoder.encode([missing[k] for k in chunk], batch_size=self.batch_size,
                                              normalize=False)
                self.calls += -(-len(chunk) // self.batch_size)
                self.encoded += len(chunk)
                for key, vec in zip(chunk, vectors):
                    self._index[key] = len(self._rows)
                    self._rows.append(vec)
                self._persist(chunk, vectors)
                bar.update(len(chunk))
            bar.close()
        out = np.stack([self._rows[self._index[k]] for k in keys]) if keys else np.zeros((0, self.encoder.dim),
                                                                                           np.float32)
        if normalize:
            out = out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
        return out.astype(np.float32, copy=False)


_CACHES: dict[tuple[str, str, bool], EmbeddingCache] = {}


def encoder_slug(encoder: TextEncoder) -> str:
    """What makes two encoders' vectors interchangeable: weights, pooling, truncation.

    The same weights pooled differently (a retriever may ask for CLS instead of the
    preset's mean) must never share cached vectors, so pooling and ``max_length`` are
    part of the cache's identity, in memory and on disk.
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{encoder.name}-{encoder.pooling}-{encoder.max_length}")


def shared_cache(encoder: TextEncoder, persistent: bool = True) -> EmbeddingCache:
    """The process-wide cache for an encoder, persisted under the cache root.

    Every method in a process (dense retrieval, PPlug's history encoder) gets the same
    object, so a profile item is encoded at most once per encoder across queries,
    methods and — through the shards on disk — runs.
    """
    slug = encoder_slug(encoder)
    key = (slug, encoder.device, persistent)
    if key not in _CACHES:
        directory = cache_root() / "embeddings" / slug if persistent else None
        _CACHES[key] = EmbeddingCache(encoder, directory)
    return _CACHES[key]
