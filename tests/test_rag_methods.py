"""The RAG methods: registered, parameterised, official prompts, end to end through the runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.api import Example, RunContext, parse_params
from harness.backbones import GenerationSettings
from harness.prompting import render_prompt
from harness.registries import METHODS, TASKS
from harness.runner import RunRequest, run
from methods.rag import RAG, BM25Params, DenseParams

GEN = GenerationSettings(num_beams=1, max_new_tokens=4, batch_size=4)
LAMP2 = TASKS.get("lamp2")
INPUT = ("Which tag does this movie relate to among the following tags? Just answer with the tag name without "
         "further explanation. tags: [sci-fi, comedy] description: A robot falls in love on the moon.")
PROFILE = (
    {"id": "a", "description": "Two sisters argue at a wedding.", "tag": "comedy", "date": "2011-05-01"},
    {"id": "b", "description": "A robot builds a home on the moon.", "tag": "sci-fi", "date": "2009-01-01"},
    {"id": "c", "description": "Gangsters rob a bank.", "tag": "violence", "date": "2012-03-04"},
)


def context(tmp_path: Path, generation: GenerationSettings = GEN, **kw) -> RunContext:
    return RunContext(task=LAMP2, llm_name="tiny-causal", encoder_name="tiny-encoder", seed=0,
                      artifacts_dir=tmp_path, generation=generation, progress=False, **kw)


def test_registered_with_lamp_defaults():
    for name in ("bm25", "recency", "contriever", "random"):
        cls = METHODS.get(name)
        assert issubclass(cls, RAG) and cls.Params().k == 1 and cls.description
        assert cls.family == "retrieval" and cls.version >= 2
        # LaMP/evaluate_llm.py: --max_length 256, in both profiles (nothing to reduce).
        for profile in ("paper", "small"):
            assert cls.Params(**cls.profiles[profile]).max_input_tokens == 256
    assert METHODS.get("dense") is METHODS.get("contriever")
    assert parse_params(METHODS.get("bm25").Params, {"k": "3", "tokenizer": "words"}) == BM25Params(
        3, tokenizer="words")
    assert parse_params(METHODS.get("contriever").Params, {"similarity": "cosine"}) == DenseParams(
        1, similarity="cosine")


@pytest.mark.parametrize("name, expected", [("bm25", "b"), ("recency", "c")])
def test_prompt_is_the_official_rendering_of_the_retrieved_item(tmp_path, name, expected):
    ctx = context(tmp_path)
    method = METHODS.get(name)(ctx)
    example = Example(id="q1", input=INPUT, profile=PROFILE, output="sci-fi")
    item = next(p for p in PROFILE if p["id"] == expected)
    want = render_prompt(LAMP2, INPUT, [item], ctx.llm().tokenizer, max_length=256)  # LaMP's budget
    assert method.prompts([example]) == [want]
    assert want.startswith(f'the tag for the movie: "{item["description"].lower()}" is "{item["tag"]}" . ')
    assert len(method.predict([example])) == 1
    assert ctx.last_prompts == [want] and ctx.last_retrieved == [[expected]]


def test_one_budget_renders_and_cuts_the_llm_input(tmp_path, monkeypatch):
    """The method's 256 (or the run's cap when lower) is both the rendering budget and the
    LLM's input cut-off."""
    seen = {}

    def fake_generate(self, prompts, prefix=None, max_input_tokens=None):
        seen["max_input_tokens"] = max_input_tokens
        return ["x"] * len(prompts)

    monkeypatch.setattr(RunContext, "generate", fake_generate)
    example = Example(id="q1", input=INPUT, profile=PROFILE)
    for run_cap, own, budget in ((512, 256, 256), (100, 256, 100), (512, 40, 40)):
        ctx = context(tmp_path, generation=GenerationSettings(num_beams=1, max_new_tokens=4, max_input_tokens=run_cap))
        method = METHODS.get("bm25")(ctx, BM25Params(k=2, max_input_tokens=own))
        assert method.max_input_tokens == budget
        method.predict([example])
        assert seen["max_input_tokens"] == budget
        items = [h.item for h in method.retriever.retrieve(LAMP2, [INPUT], [PROFILE], 2)[0]]
        assert method.prompts([example]) == [render_prompt(LAMP2, INPUT, items, ctx.llm().tokenizer, budget)]


def test_k0_sends_the_bare_input(tmp_path):
    ctx = context(tmp_path)
    method = METHODS.get("random")(ctx, METHODS.get("random").Params(k=0))
    assert method.prompts([Example(id="q", input=INPUT, profile=PROFILE)]) == [INPUT]
    method.predict([Example(id="q", input=INPUT, profile=PROFILE)])
    assert ctx.last_retrieved == [[]]


def test_negative_k_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="k must be"):
        METHODS.get("bm25")(context(tmp_path), BM25Params(k=-1))


def request(out: Path, method: str, **params) -> RunRequest:
    return RunRequest(task="lamp2", method=method, params=params, llm="tiny-causal", encoder="tiny-encoder",
                      data="synthetic", limit=8, seed=0, generation=GEN, out=out, progress=False)


@pytest.mark.parametrize("name", ["bm25", "recency", "contriever", "random"])
def test_runs_end_to_end_on_synthetic_data(tmp_path, name):
    result = run(request(tmp_path, name, k="2"))
    assert result.metrics["n_examples"] == 8
    scores = result.metrics.get("official", result.metrics.get("metrics"))  # "metrics" before this round's runner
    assert set(scores) == {"accuracy", "f1"}
    config = json.loads((result.path / "config.json").read_text())
    assert config["config"]["params"]["k"] == 2
    if name == "contriever":
        assert result.metrics["cost"]["texts_encoded"] > 0


def test_runs_are_deterministic(tmp_path):
    a = run(request(tmp_path / "a", "random"))
    b = run(request(tmp_path / "b", "random"))
    lines = [(r.path / "predictions.json").read_text() for r in (a, b)]
    assert lines[0] == lines[1]
