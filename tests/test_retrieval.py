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
