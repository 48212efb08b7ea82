"""Retrievers on crafted profiles: order, ties, dates, seeding, and the embedding cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.embedding_cache import EmbeddingCache
from harness.registries import TASKS
from harness.registry import RegistryError
from harness.retrieval import RETRIEVERS, DenseRetriever, RetrievalContext, date_key, get_retriever

LAMP2 = TASKS.get("lamp2")
PREFIX = "Which tag does this movie relate to among the following tags? tags: [comedy] description: "


def movie(i: int, description: str, date: object = "2010-01-01") -> dict:
    item = {"id": str(i), "description": description, "tag": "comedy"}
    if date is not None:
        item["date"] = date
    return item


PROFILE = [
    movie(0, "a quiet drama about two sisters"),
    movie(1, "a robot falls in love with the moon"),
    movie(2, "gangsters rob a bank in the city"),
]


def ids(hits) -> list[str]:
    return [h.item["id"] for h in hits]


def test_registry_lists_the_builtins_and_suggests():
    assert {"bm25", "recency", "contriever", "random"} <= set(RETRIEVERS.names())
    assert isinstance(get_retriever("dense"), DenseRetriever)
    with pytest.raises(RegistryError, match="bm25"):
        get_retriever("bm52")
    with pytest.raises(ValueError, match="tokenizer"):
        get_retriever("bm25", tokenizer="nope")
    with pytest.raises(ValueError, match="unexpected keyword"):
        get_retriever("recency", k=3)


def test_bm25_ranks_the_lexically_matching_item_first():
    (hits,) = get_retriever("bm25").retrieve(LAMP2, [PREFIX + "a robot on the moon"], [PROFILE], k=2)
    assert ids(hits)[0] == "1" and hits[0].score > hits[1].score and hits[0].index == 1


def test_bm25_query_is_the_official_task_query():
    # "sisters" only appears before "description:", which the official query drops.
    inp = "sisters sisters tags: [comedy] description: gangsters rob a bank"
    (hits,) = get_retriever("bm25").retrieve(LAMP2, [inp], [PROFILE], k=1)
    assert ids(hits) == ["2"]


def test_bm25_word_tokenizer_ignores_case_and_punctuation():
    # Three items: with two, BM25Okapi's IDF of a term in one of them is log(1.5/1.5) = 0.
    profile = [movie(0, "A film about dogs."), movie(1, "Robot, Moon, Love!"), movie(2, "Cats.")]
    query = PREFIX + "robot moon"
    whitespace = get_retriever("bm25").score(LAMP2, [query], [profile])[0]
    words = get_retriever("bm25", tokenizer="words").score(LAMP2, [query], [profile])[0]
    assert not whitespace.any()  # "Robot," != "robot" for str.split
    assert words[1] > 0 and words[0] == words[2] == 0


def test_bm25_ties_follow_rank_bm25_get_top_n():
    # No query term matches: all scores are 0 and get_top_n (argsort reversed) yields the
    # last items first; LaMP's BM25 baseline therefore picks the last profile item.
    (hits,) = get_retriever("bm25").retrieve(LAMP2, [PREFIX + "zebra"], [PROFILE], k=2)
    assert ids(hits) == ["2", "1"]


def test_short_and_empty_profiles():
    for name in ("bm25", "recency", "random"):
        r = get_retriever(name)
        assert r.retrieve(LAMP2, ["x"], [[]], k=1) == [[]]
        assert len(r.retrieve(LAMP2, [PREFIX + "robot"], [PROFILE], k=10)[0]) == 3
        assert r.retrieve(LAMP2, [PREFIX + "robot"], [PROFILE], k=0) == [[]]


def test_date_key_reads_lamp_formats():
    assert date_key("2010") == (2010,)
    assert date_key(2010) == (2010,)
    assert date_key("2010-04-20") == (2010, 4, 20)
    assert date_key("2010-4-2") == (2010, 4, 2)
    assert date_key("Mon May 11 03:17:40 UTC 2009") == (2009, 5, 11, 3, 17, 40)
    assert date_key("2009/06/03") == (2009, 6, 3, 0, 0, 0)
    assert date_key("1262304000") == (2010, 1, 1, 0, 0, 0)
    assert date_key(None) is None and date_key("") is None and date_key("not a date") is None
    assert date_key("2010") < date_key("2010-01-01")  # the official tuple order


def test_recency_orders_mixed_formats_and_ranks_undated_last():
    profile = [
        movie(0, "a", date="2010-04-20"),
        movie(1, "b", date=None),
        movie(2, "c", date="Mon May 11 03:17:40 UTC 2009"),
        movie(3, "d", date="2012"),
        movie(4, "e", date="garbage"),
        movie(5, "f", date="2011-12-31"),
    ]
    (hits,) = get_retriever("recency").retrieve(LAMP2, ["x"], [profile], k=6)
    assert ids(hits)[:4] == ["3", "5", "0", "2"]
    assert set(ids(hits)[4:]) == {"1", "4"}


def test_recency_ties_prefer_the_later_item_as_lamp_does():
    profile = [movie(0, "a", "2010-01-01"), movie(1, "b", "2010-01-01"), movie(2, "c", "2009-01-01")]
    (hits,) = get_retriever("recency").retrieve(LAMP2, ["x"], [profile], k=3)
    assert ids(hits) == ["1", "0", "2"]


def test_random_is_seeded_distinct_and_batch_independent():
    profile = [movie(i, f"m{i}") for i in range(20)]
    inputs = [PREFIX + f"q{i}" for i in range(4)]
    a = get_retriever("random", RetrievalContext(seed=1)).retrieve(LAMP2, inputs, [profile] * 4, k=5)
    b = get_retriever("random", RetrievalContext(seed=1)).retrieve(LAMP2, inputs[2:], [profile] * 2, k=5)
    c = get_retriever("random", RetrievalContext(seed=2)).retrieve(LAMP2, inputs, [profile] * 4, k=5)
    assert [ids(h) for h in a[2:]] == [ids(h) for h in b]
    assert all(len(set(ids(h))) == 5 for h in a)
    assert [ids(h) for h in a] != [ids(h) for h in c]


# -- dense -----------------------------------------------------------------------------------
VOCAB = ["robot", "moon", "love", "bank", "rob", "sisters", "drama", "city"]


@dataclasses.dataclass(frozen=True)
class FakePreset:
    query_instruction: str = ""


class BagOfWordsEncoder:
    """A crafted encoder: word counts over a tiny vocabulary; counts its calls."""

    name = "bag-of-words"
    pooling = "mean"
    max_length = 256
    device = "cpu"
    dim = len(VOCAB)
    preset = FakePreset()

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts, batch_size=64, normalize=True):
        self.seen.extend(texts)
        words = [t.lower().split() for t in texts]
        return np.array([[w.count(v) for v in VOCAB] for w in words], dtype=np.float32)


def test_dense_ranks_by_dot_product_or_cosine():
    profile = [movie(0, "robot robot robot bank"), movie(1, "robot moon")]
    query = [PREFIX + "robot moon"]
    dot = DenseRetriever(RetrievalContext(), cache=EmbeddingCache(BagOfWordsEncoder()))
    cos = DenseRetriever(RetrievalContext(), similarity="cosine", cache=EmbeddingCache(BagOfWordsEncoder()))
    assert ids(dot.retrieve(LAMP2, query, [profile], k=2)[0]) == ["0", "1"]  # 3 > 2: long items win
    assert ids(cos.retrieve(LAMP2, query, [profile], k=2)[0]) == ["1", "0"]
    assert dot.retrieve(LAMP2, query, [profile], k=1)[0][0].score == pytest.approx(3.0)


def test_dense_encodes_each_profile_item_once_across_queries_and_retrievers():
    encoder = BagOfWordsEncoder()
    cache = EmbeddingCache(encoder)
    first = DenseRetriever(RetrievalContext(), cache=cache)
    second = DenseRetriever(RetrievalContext(), similarity="cosine", cache=cache)
    queries = [PREFIX + "robot", PREFIX + "bank", PREFIX + "robot"]
    first.retrieve(LAMP2, queries, [PROFILE] * 3, k=1)
    second.retrieve(LAMP2, [PREFIX + "moon"], [PROFILE], k=1)
    texts = [LAMP2.corpus_text(item) for item in PROFILE]
    assert sorted(encoder.seen) == sorted(texts + ["robot", "bank", "moon"])
    assert first.stats() == {"encoder_calls": 1.0, "texts_encoded": 5.0}
    assert second.stats()["texts_encoded"] == 1.0


def test_embedding_cache_persists_across_instances(tmp_path):
    encoder = BagOfWordsEncoder()
    EmbeddingCache(encoder, tmp_path).embed(["robot moon", "bank"])
    again = BagOfWordsEncoder()
    cache = EmbeddingCache(again, tmp_path)
    vectors = cache.embed(["bank", "robot moon"], normalize=True)
    assert again.seen == [] and cache.encoded == 0 and cache.lookups == 2
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


@pytest.mark.integration
def test_dense_with_minilm_finds_the_paraphrase():
    profile = [movie(0, "A quiet drama about two sisters growing apart."),
               movie(1, "An android falls in love while stranded on the lunar surface."),
               movie(2, "Gangsters plan a heist in Chicago.")]
    (hits,) = get_retriever("contriever", RetrievalContext(encoder="minilm-l6")).retrieve(
        LAMP2, [PREFIX + "a robot romance on the moon"], [profile], k=1)
    assert ids(hits) == ["1"]


# -- encoders: sentence-transformers pooling and config, own maximum length, bge -------------
def _st_folder(path, pooling: str, max_seq_length: int | None = 512, prompts: dict | None = None):
    """A sentence-transformers folder around the tiny random BERT (no real weights)."""
    import json

    from harness.models import _build_tiny_encoder

    model, tokenizer = _build_tiny_encoder()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False}))
    if max_seq_length is not None:
        (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    if prompts is not None:
        (path / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    return path


def test_local_bge_folder_keeps_bge_pooling_and_query_instruction(tmp_path):
    from harness.embedding_cache import EmbeddingCache, text_key
    from harness.encoders import BGE_QUERY_INSTRUCTION, load_encoder

    folder = _st_folder(tmp_path / "bge-small-en-v1.5", "cls", max_seq_length=512)
    encoder = load_encoder(str(folder))
    assert encoder.preset.query_instruction == BGE_QUERY_INSTRUCTION
    assert encoder.pooling == "cls" and encoder.max_length == 512
    # The dense retriever puts the instruction before the task's query, never before items.
    cache = EmbeddingCache(encoder)
    retriever = DenseRetriever(RetrievalContext(encoder=str(folder)), cache=cache)
    retriever.retrieve(LAMP2, [PREFIX + "a robot on the moon"], [PROFILE], k=1)
    assert text_key(BGE_QUERY_INSTRUCTION + "a robot on the moon") in cache._index
    assert text_key(BGE_QUERY_INSTRUCTION + LAMP2.corpus_text(PROFILE[0])) not in cache._index


def test_local_folder_pooling_and_prompt_come_from_its_sentence_transformers_config(tmp_path):
    from harness.encoders import load_encoder

    # Named nothing like bge, CLS pooling and a query prompt declared by the folder itself.
    declared = load_encoder(str(_st_folder(tmp_path / "my-encoder", "cls", 128, prompts={"query": "query: "})))
    assert (declared.pooling, declared.max_length, declared.preset.query_instruction) == ("cls", 128, "query: ")
    # A folder named "bge" whose config says mean pooling: the config wins, bge's instruction stays.
    plain = load_encoder(str(_st_folder(tmp_path / "bge-mean", "mean", None)))
    assert plain.pooling == "mean" and plain.max_length == 512 and plain.preset.query_instruction.startswith("Repr")


def test_query_instruction_rules():
    from harness.encoders import BGE_QUERY_INSTRUCTION, BGE_QUERY_INSTRUCTION_ZH, query_instruction

    assert query_instruction(["/models/BAAI--bge-base-en-v1.5/snapshots/abc"]) == BGE_QUERY_INSTRUCTION
    assert query_instruction(["x", "BAAI/bge-large-zh-v1.5"]) == BGE_QUERY_INSTRUCTION_ZH
    assert query_instruction(["BAAI/bge-m3"]) == "" and query_instruction(["facebook/contriever"]) == ""
    assert query_instruction(["bge-base"], declared="mine: ") == "mine: "


def test_encoders_truncate_at_their_own_maximum():
    from harness.encoders import load_encoder

    # The tiny encoder has 512 positions and MiniLM's tokenizer (model_max_length 512), as
    # Contriever: LaMP's tokenizer(..., truncation=True) keeps 512 tokens, not 256.
    encoder = load_encoder("tiny-encoder")
    assert encoder.max_length == 512
    long_text = "word " * 600
    assert encoder.forward([long_text]).shape == (1, encoder.dim)  # 600 words would not fit 512 positions
    assert len(encoder.tokenizer(long_text, truncation=True, max_length=encoder.max_length)["input_ids"]) == 512


def test_pooling_through_sentence_transformers_is_masked_mean_or_first_token():
    import dataclasses as dc

    import torch

    from harness.encoders import TextEncoder, load_encoder

    mean = load_encoder("tiny-encoder")
    texts = ["a robot falls in love", "short"]
    batch = mean.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = mean.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        want_mean = (hidden * mask).sum(1) / mask.sum(1)
        assert torch.allclose(mean.forward(texts, normalize=False), want_mean, atol=1e-6)
        cls = TextEncoder(dc.replace(mean.preset, pooling="cls"), mean.model, mean.tokenizer)
        assert torch.allclose(cls.forward(texts, normalize=False), hidden[:, 0], atol=1e-6)


@pytest.mark.integration
def test_minilm_vectors_equal_sentence_transformers():
    """Our encoder gives SentenceTransformer.encode's vectors: raw (its Transformer and
    Pooling modules) and normalised (its full pipeline, Normalize included)."""
    from sentence_transformers import SentenceTransformer

    from harness.encoders import load_encoder
    from harness.models import minilm_dir

    texts = ["A robot falls in love on the moon.", "short", "a long review of a blender " * 80]
    ours = load_encoder("minilm-l6")
    assert ours.max_length == 256 and ours.pooling == "mean"  # sentence_bert_config.json, 1_Pooling
    st = SentenceTransformer(str(minilm_dir()), device="cpu")
    raw = SentenceTransformer(modules=[st[0], st[1]], device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(ours.encode(texts, normalize=False), raw, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.encode(texts, normalize=True), st.encode(texts, convert_to_numpy=True),
                               atol=1e-5, rtol=0)
