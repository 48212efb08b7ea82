"""Golden tests: the official LaMP prompt rules applied by hand, for every task.

The tokenizer is MiniLM's uncased WordPiece (``tiny_tokenizer()``): it adds [CLS] and
[SEP] (counted by ``len(tokenizer(x)["input_ids"])``, as LaMP counts) and decoding
lower-cases, so even untruncated item text comes back lower-cased — exactly what the
official ``batch_decode(..., skip_special_tokens=True)`` does.
"""

from __future__ import annotations

import pytest

from harness.models import tiny_tokenizer
from harness.prompting import PromptStyle, n_tokens, render_prompt
from harness.registries import PROMPT_STYLES, TASKS, register_prompt_style
from harness.registry import RegistryTypeError
from tasks.prompts import LAMP_PROMPT_STYLES


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


INPUTS = {
    "lamp1": 'For an author who has written the paper with the title "Deep Nets", which reference is related? '
             'Just answer with [1] or [2] without explanation. [1]: "Graph Kernels" [2]: "Neural Parsing"',
    "lamp2": "Which tag does this movie relate to among the following tags? Just answer with the tag name without "
             "further explanation. tags: [sci-fi, comedy] description: A robot falls in love.",
    "lamp3": "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, or 5 "
             "without further explanation. review: Great blender, loud.",
    "lamp4": "Generate a headline for the following article: Markets rallied on Monday.",
    "lamp5": "Generate a title for the following abstract of a paper: We study retrieval.",
    "lamp6": "Generate a subject for the following email: Meeting moved to Friday.",
    "lamp7": "Paraphrase the following tweet without any explanation before or after it: so tired today",
}
ITEMS = {
    "lamp1": [{"id": "1", "title": "Sparse Graph Kernels", "abstract": "x"},
              {"id": "2", "title": "Neural Parsing Revisited", "abstract": "y"}],
    "lamp2": [{"id": "1", "description": "A robot learns to paint.", "tag": "sci-fi"},
              {"id": "2", "description": "Two friends rob a bank.", "tag": "comedy"}],
    "lamp3": [{"id": "1", "text": "Loud but strong blender.", "score": "4"},
              {"id": "2", "text": "Broke in a week.", "score": "1"}],
    "lamp4": [{"id": "1", "text": "Stocks fell sharply.", "title": "Markets Slide"},
              {"id": "2", "text": "Rain all weekend.", "title": "Wet Weekend"}],
    "lamp5": [{"id": "1", "abstract": "We propose a parser.", "title": "Fast Parsing"},
              {"id": "2", "abstract": "We rank documents.", "title": "Neural Ranking"}],
    "lamp6": [{"id": "1", "text": "Lunch is at noon.", "title": "Lunch"},
              {"id": "2", "text": "Report due Monday.", "title": "Report"}],
    "lamp7": [{"id": "1", "text": "Loving the sun today!"}, {"id": "2", "text": "Coffee first, then code."}],
}
# Official rules, written out: item sentence per task, joined by ", and ", then the glue.
EXPECTED_K2 = {
    "lamp1": 'For an author who has written the paper with the title, and "sparse graph kernels", and '
             '"neural parsing revisited" "Deep Nets", which reference is related? Just answer with [1] or [2] '
             'without explanation. [1]: "Graph Kernels" [2]: "Neural Parsing"',
    "lamp2": 'the tag for the movie: "a robot learns to paint." is "sci-fi" , and the tag for the movie: '
             '"two friends rob a bank." is "comedy" . ' + INPUTS["lamp2"],
    "lamp3": '4 is the score for "loud but strong blender." , and 1 is the score for "broke in a week." . '
             + INPUTS["lamp3"],
    "lamp4": '"Markets Slide" is the title for "stocks fell sharply." , and "Wet Weekend" is the title for '
             '"rain all weekend." . ' + INPUTS["lamp4"],
    "lamp5": '"Fast Parsing" is a title for "we propose a parser." , and "Neural Ranking" is a title for '
             '"we rank documents." . Following the given patterns ' + INPUTS["lamp5"],
    "lamp6": '"Lunch" is the title for "lunch is at noon." , and "Report" is the title for "report due monday." . '
             + INPUTS["lamp6"],
    "lamp7": '"loving the sun today!" , and "coffee first, then code."  are written by a person. '
             'Following the given patterns ' + INPUTS["lamp7"],
}
EXPECTED_K1 = {
    "lamp1": 'For an author who has written the paper with the title, and "sparse graph kernels" "Deep Nets", '
             'which reference is related? Just answer with [1] or [2] without explanation. [1]: "Graph Kernels" '
             '[2]: "Neural Parsing"',
    "lamp2": 'the tag for the movie: "a robot learns to paint." is "sci-fi" . ' + INPUTS["lamp2"],
    "lamp3": '4 is the score for "loud but strong blender." . ' + INPUTS["lamp3"],
    "lamp4": '"Markets Slide" is the title for "stocks fell sharply." . ' + INPUTS["lamp4"],
    "lamp5": '"Fast Parsing" is a title for "we propose a parser." . Following the given patterns '
             + INPUTS["lamp5"],
    "lamp6": '"Lunch" is the title for "lunch is at noon." . ' + INPUTS["lamp6"],
    "lamp7": '"loving the sun today!"  are written by a person. Following the given patterns ' + INPUTS["lamp7"],
}


def test_every_lamp_task_has_an_official_style():
    assert set(LAMP_PROMPT_STYLES) == {f"lamp{i}" for i in range(1, 8)}
    assert all(PROMPT_STYLES.get(name) is style for name, style in LAMP_PROMPT_STYLES.items())
    for i in range(1, 8):
        assert TASKS.get(f"lamp{i}").prompt_style == f"lamp{i}"


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_untruncated_prompts_match_the_official_rules(tok, name):
    task = TASKS.get(name)
    assert render_prompt(task, INPUTS[name], ITEMS[name][:1], tok) == EXPECTED_K1[name]
    assert render_prompt(task, INPUTS[name], ITEMS[name], tok) == EXPECTED_K2[name]


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_k0_returns_the_input_unchanged(tok, name):
    assert render_prompt(TASKS.get(name), INPUTS[name], [], tok) == INPUTS[name]


def test_lamp2_truncation_with_factor_retries(tok):
    """max_length=60, two items; every step of the official loop by hand."""
    items = [{"id": "1", "description": "A lonely robot learns to paint portraits of the people who built it.",
              "tag": "sci-fi"},
             {"id": "2", "description": "Two friends rob a bank.", "tag": "comedy"}]
    inp = INPUTS["lamp2"]
    assert n_tokens(tok, inp) == 41
    assert n_tokens(tok, 'the tag for the movie: " " is "sci-fi" ') == 16  # item 1 overhead
    assert n_tokens(tok, 'the tag for the movie: " " is "comedy" ') == 14  # item 2 overhead
    # share = (60 - min(41, int(f * 60)) - 1 - 2) // 2
    # f=0.6: budget 24, share 10, item 1 max_length 10-16 < 0      -> tokenizer raises, retry
    # f=0.5: budget 30, share 13, item 1 max_length -3              -> retry
    # f=0.4: budget 36, share 16, item 1 max_length 0 (= no truncation: all 16 tokens),
    #        saved = 16-16-16 = -16, item 2 max_length 16-16-14 < 0 -> retry
    # f=0.3 (0.30000000000000004 after three subtractions): int(18.0..) = 18, budget 42, share 19,
    #        item 1 max_length 3 -> [CLS] a [SEP] -> "a"; saved = 19-3-16 = 0;
    #        item 2 max_length 19-14 = 5 -> [CLS] two friends rob [SEP]
    expected = ('the tag for the movie: "a" is "sci-fi" , and the tag for the movie: "two friends rob" is "comedy" . '
                + inp)
    assert render_prompt(TASKS.get("lamp2"), inp, items, tok, max_length=60) == expected


def test_lamp1_truncates_titles_with_a_fixed_two_token_overhead(tok):
    items = [{"id": "1", "title": "Sparse Graph Kernels for Molecule Property Prediction at Scale", "abstract": "x"},
             {"id": "2", "title": "Neural Parsing", "abstract": "y"}]
    inp = INPUTS["lamp1"]
    assert n_tokens(tok, inp) == 54 and n_tokens(tok, items[0]["title"]) == 12
    # f=0.6: budget 70 - min(54, 42) = 28; share (28 - 2) // 2 = 13; item 1 max_length 13-2 = 11
    # -> 9 word pieces, "...prediction at" (drops "scale"); saved 13-11-2 = 0; item 2 max_length 11 fits.
    expected = ('For an author who has written the paper with the title, and "sparse graph kernels for molecule '
                'property prediction at", and "neural parsing" "Deep Nets", which reference is related? Just answer '
                'with [1] or [2] without explanation. [1]: "Graph Kernels" [2]: "Neural Parsing"')
    assert render_prompt(TASKS.get("lamp1"), inp, items, tok, max_length=70) == expected


def test_lamp7_reserves_its_suffix_sentence(tok):
    items = [{"id": "1", "text": "Loving the sun today! Beach, ice cream and a good book, what else could I want?"}]
    inp = INPUTS["lamp7"]
    assert n_tokens(tok, inp) == 21
    assert n_tokens(tok, "are written by user. Following the given patterns") == 11
    assert n_tokens(tok, '"" ') == 4
    # f=0.6: budget 40 - min(21, 24) = 19; share 19 - 1 - 11 = 7; max_length 7 - 4 = 3 -> "loving"
    expected = '"loving"  are written by a person. Following the given patterns ' + inp
    assert render_prompt(TASKS.get("lamp7"), inp, items, tok, max_length=40) == expected


def test_hopeless_budget_falls_back_to_the_input(tok):
    items = [{"id": "3", "description": "A boy finds a dragon egg.", "tag": "based on a book"}]
    assert render_prompt(TASKS.get("lamp2"), INPUTS["lamp2"], items, tok, max_length=10) == INPUTS["lamp2"]


def test_missing_item_field_is_an_error_not_a_silent_fallback(tok):
    with pytest.raises(KeyError, match="tag"):
        render_prompt(TASKS.get("lamp2"), INPUTS["lamp2"], [{"id": "9", "description": "x"}], tok)


def test_task_without_style_is_rejected(tok):
    import dataclasses

    task = dataclasses.replace(TASKS.get("lamp2"), name="custom", prompt_style=None)
    with pytest.raises(ValueError, match="no official RAG prompt"):
        render_prompt(task, "x", ITEMS["lamp2"], tok)


def _suffix(suffix: str):
    return lambda items, text: f"{items}{suffix}{text}"


def test_prompt_style_registry_takes_equal_definitions_and_refuses_others():
    """A plugin imported twice registers new function objects for the same style: that is
    the same entry; another style, or anything but a PromptStyle, under a name is refused."""
    style = PromptStyle("text", '"{text}" ', overhead='"" ', assemble=_suffix(". "))
    try:
        assert register_prompt_style("test-style", style) is style
        again = PromptStyle("text", '"{text}" ', overhead='"" ', assemble=_suffix(". "))
        assert again.assemble is not style.assemble and again == style
        register_prompt_style("test-style", again)  # no error
        with pytest.raises(ValueError, match="already registered"):
            register_prompt_style("test-style", PromptStyle("text", '"{text}" ', overhead='"" ',
                                                            assemble=_suffix(" then ")))
        with pytest.raises(RegistryTypeError, match="harness.prompting.PromptStyle"):
            register_prompt_style("not-a-style", {"text_field": "text"})
    finally:
        PROMPT_STYLES.unregister("test-style")
    assert "test-style" not in PROMPT_STYLES and "not-a-style" not in PROMPT_STYLES


def test_a_style_lookup_registers_lamps_styles_first():
    """The engine imports no task module; its first prompt-style lookup imports LaMP's."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from harness.registries import PROMPT_STYLES\n"
            "assert not any(m == 'tasks' or m.startswith('tasks.') for m in sys.modules)\n"
            "print(','.join(PROMPT_STYLES.names()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ",".join(f"lamp{i}" for i in range(1, 8))


@pytest.mark.integration
def test_smollm2_tokenizer_adds_no_special_tokens_and_keeps_case():
    """The decoder-only backbone's BPE counts no [CLS]/[SEP]: same rules, other numbers."""
    from harness.backbones import load_llm

    tok = load_llm("smollm2-135m").tokenizer
    items = [{"id": "1", "text": "Loving the sun today! Beach, ice cream and a good book, what else could I want?"}]
    inp = INPUTS["lamp7"]
    assert n_tokens(tok, inp) == 17
    assert n_tokens(tok, "are written by user. Following the given patterns") == 9
    assert n_tokens(tok, '"" ') == 2
    # budget 40 - min(17, 24) = 23; share 23 - 1 - 9 = 13; max_length 13 - 2 = 11 BPE tokens
    expected = ('"Loving the sun today! Beach, ice cream and"  are written by a person. Following the given patterns '
                + inp)
    assert render_prompt(TASKS.get("lamp7"), inp, items, tok, max_length=40) == expected


# -- the shared retrieve-and-render path (harness.augment) ---------------------------------
class _FixedRetriever:
    """Returns the profile items in a fixed order of positions (a stand-in for any retriever)."""

    def __init__(self, order: list[int]) -> None:
        self.order = order
        self.calls = 0

    def retrieve(self, task, inputs, profiles, k):
        from harness.retrieval import Hit

        self.calls += 1
        return [[Hit(i, 1.0, profile[i]) for i in self.order if i < len(profile)][:k] for profile in profiles]


def _examples(n: int = 2) -> list:
    from harness.api import Example

    items = tuple(ITEMS["lamp2"]) + ({"description": "A ghost haunts a lighthouse.", "tag": "fantasy"},)  # no id
    return [Example(id=f"q{i}", input=INPUTS["lamp2"], profile=items) for i in range(n)]


def test_augment_renders_the_official_prompt_with_item_ids_best_first(tok):
    from harness.augment import AugmentedPrompt, augmented_prompts

    task = TASKS.get("lamp2")
    retriever = _FixedRetriever([2, 0, 1])
    out = augmented_prompts(task, retriever, _examples(), 2, tok, 256)
    profile = _examples()[0].profile
    want = render_prompt(task, INPUTS["lamp2"], [profile[2], profile[0]], tok, max_length=256)
    assert out == [AugmentedPrompt(want, ("#2", "1"))] * 2  # an item without an id is named by position
    assert retriever.calls == 1  # one retrieval call for the whole batch


def test_augment_k0_and_empty_profiles_give_the_plain_input(tok):
    from harness.api import Example
    from harness.augment import AugmentedPrompt, augmented_prompts

    task = TASKS.get("lamp2")
    assert augmented_prompts(task, None, _examples(1), 0, tok, 256) == [AugmentedPrompt(INPUTS["lamp2"], ())]
    empty = [Example(id="e", input=INPUTS["lamp2"], profile=())]
    assert augmented_prompts(task, _FixedRetriever([0]), empty, 1, tok, 256) == [AugmentedPrompt(INPUTS["lamp2"], ())]
    with pytest.raises(ValueError, match="no retriever"):
        augmented_prompts(task, None, _examples(1), 1, tok, 256)


def test_augment_budget_rule_fits_the_items_in_the_budget(tok):
    """Long items are cut by LaMP's rule so the rendered prompt fits the one budget; when
    nothing fits, the bare input comes back and no item id is claimed."""
    from harness.api import Example
    from harness.augment import augmented_prompts

    task = TASKS.get("lamp2")
    long = tuple({"id": str(i), "description": f"A very long description of film {i}, " * 40, "tag": "comedy"}
                 for i in range(3))
    example = Example(id="q", input=INPUTS["lamp2"], profile=long)
    for budget in (96, 160, 256):
        (out,) = augmented_prompts(task, _FixedRetriever([0, 1, 2]), [example], 3, tok, budget)
        assert out.item_ids == ("0", "1", "2")
        assert out.text == render_prompt(task, INPUTS["lamp2"], list(long), tok, max_length=budget)
        assert n_tokens(tok, out.text) <= budget  # the LLM, cut at the same budget, reads all of it
    (hopeless,) = augmented_prompts(task, _FixedRetriever([0]), [example], 1, tok, 10)
    assert hopeless.text == INPUTS["lamp2"] and hopeless.item_ids == ()


def test_input_budget_is_the_methods_own_within_the_runs_cap(tmp_path):
    from harness.api import RunContext
    from harness.augment import input_budget
    from harness.settings import GenerationSettings

    ctx = RunContext(task=TASKS.get("lamp2"), llm_name="tiny-causal", encoder_name="tiny-encoder", seed=0,
                     artifacts_dir=tmp_path, generation=GenerationSettings(max_input_tokens=300))
    assert input_budget(ctx, 256) == 256 and input_budget(ctx, 2048) == 300 and input_budget(ctx) == 300
