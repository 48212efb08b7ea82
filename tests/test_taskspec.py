"""TaskSpec checks itself when it is built, and its typed fields replace ``extra``."""

from __future__ import annotations

import dataclasses

import pytest

from harness.api import LegacyExtra, TaskSpec, TaskSpecError
from harness.registries import TASKS


def _text(item) -> str:
    return item["text"]


def spec(**changes) -> TaskSpec:
    """A valid small classification task, with ``changes`` applied."""
    base = dict(
        name="toy", lamp_name="Toy", description="a toy task", kind="classification", metrics=("accuracy", "f1"),
        item_fields=("text", "tag"), input_template="Tag this: {text}", query=str.strip,
        corpus_text=_text, item_output_field="tag", item_template=None, labels=("a", "b"),
    )
    return TaskSpec(**{**base, **changes})


def test_a_valid_spec_builds_and_normalizes_lists():
    task = spec(metrics=["accuracy"], labels=["a", "b"])
    assert task.metrics == ("accuracy",) and task.labels == ("a", "b")
    assert task.version == 1 and task.has_synthetic_data and task.lamp_analogue is None


@pytest.mark.parametrize(("changes", "message"), [
    ({"labels": ()}, r"a classification task needs its label list"),
    ({"kind": "regression", "metrics": ("mae",), "labels": ()}, r"a regression task needs its label list"),
    ({"kind": "regression", "metrics": ("mae", "rmse"), "labels": ("1", "two")},
     r"regression labels must be numbers .*\['two'\]"),
    ({"kind": "generation", "metrics": ("rouge-1",)}, r"a generation task has no closed label set"),
    ({"kind": "ranking"}, r"kind 'ranking' is not one of classification, regression, generation"),
    ({"metrics": ("accuracy", "bleu")}, r"metric 'bleu' is not registered .*register_metric"),
    ({"metrics": ("accuracy", "mae")}, r"metric 'mae' is produced only for regression tasks, not classification"),
    ({"metrics": ()}, r"metrics is empty"),
    ({"metrics": ("accuracy", "accuracy")}, r"metrics repeats \['accuracy'\]"),
    ({"labels": ("a", "a")}, r"labels repeats"),
    ({"prompt_style": "lamp9"}, r"prompt_style 'lamp9' is not a known prompt style \(lamp1, .*register_prompt_style"),
    ({"item_output_field": "label"}, r"item_output_field 'label' is not one of item_fields"),
    ({"input_template": "Tag {text} by {author}"}, r"input_template \(item_template is None\) uses \['author'\]"),
    ({"item_template": "{body}"}, r"item_template uses \['body'\]"),
    ({"input_template": "Tag {text"}, r"input_template is not a valid format string"),
    ({"name": "my task"}, r"name must be letters, digits"),
    ({"name": "../up"}, r"name must be letters, digits"),
    ({"description": " "}, r"description must be a non-empty string"),
    ({"max_new_tokens": 0}, r"max_new_tokens must be a positive integer"),
    ({"version": 0}, r"version must be a positive integer"),
    ({"query": "after:"}, r"query must be callable"),
    ({"load_split": 3}, r"load_split must be callable or None"),
])
def test_inconsistent_specs_are_refused_with_the_reason(changes, message):
    with pytest.raises(TaskSpecError, match=message):
        spec(**changes)


def test_every_problem_is_reported_at_once():
    with pytest.raises(TaskSpecError) as info:
        spec(labels=(), metrics=("accuracy", "bleu"), prompt_style="nope")
    text = str(info.value)
    assert text.startswith("task 'toy' is not valid: ")
    assert "label list" in text and "'bleu'" in text and "'nope'" in text


def test_a_task_without_an_output_field_needs_no_item_template():
    task = spec(input_template="Which of {a} or {b}?", item_output_field=None)
    assert task.item_output_field is None


def test_legacy_extra_is_folded_into_typed_fields_and_stays_readable():
    task = spec(extra={"synthetic": False, "note": "bring your own files", "lamp_analogue": "lamp2",
                       "realdata": "movies"})
    assert (task.has_synthetic_data, task.data_note, task.lamp_analogue, task.dataset) == (
        False, "bring your own files", "lamp2", "movies")
    assert isinstance(task.extra, LegacyExtra)
    assert task.extra.get("synthetic", True) is False and task.extra["lamp_analogue"] == "lamp2"
    assert task == spec(has_synthetic_data=False, data_note="bring your own files", lamp_analogue="lamp2",
                        dataset="movies")


def test_replace_follows_the_typed_fields_not_the_old_view():
    task = spec(has_synthetic_data=False)
    again = dataclasses.replace(task, name="toy2", has_synthetic_data=True)
    assert again.has_synthetic_data and again.extra["synthetic"] is True


def test_unknown_or_contradicting_extra_is_refused():
    with pytest.raises(TaskSpecError, match=r"extra keys \['flavour'\] are not supported"):
        spec(extra={"flavour": 1})
    with pytest.raises(TaskSpecError, match=r"extra\['lamp_analogue'\] = 'lamp3' contradicts lamp_analogue = 'lamp2'"):
        spec(lamp_analogue="lamp2", extra={"lamp_analogue": "lamp3"})


def test_builtin_tasks_carry_their_typed_data_fields():
    assert TASKS.get("lamp2").has_synthetic_data is True
    lamp6 = TASKS.get("lamp6")
    assert lamp6.has_synthetic_data is False and "Avocado" in lamp6.data_note
    rating = TASKS.get("amazon-rating")
    assert (rating.has_synthetic_data, rating.lamp_analogue, rating.dataset) == (
        False, "lamp3", "amazon-musical-instruments")
