"""Real-data tasks on ../shared/realdata (skipped, with the reason, when it is absent)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from harness.registries import TASKS
from tasks import realdata

ROOT = realdata.default_realdata_root()
pytestmark = pytest.mark.skipif(
    not ROOT.is_dir(),
    reason=f"real per-user data not found at {ROOT}; set ${realdata.REALDATA_ENV} to the realdata folder to run these",
)
NAMES = tuple(realdata.RECIPES)


@pytest.fixture(scope="module")
def splits() -> dict[tuple[str, str], object]:
    """Every task's train/dev split, converted once into the session's cache."""
    return {(name, s): TASKS.get(name).load_split(TASKS.get(name), "auto", s, seed=0)
            for name in NAMES for s in ("train", "dev")}


@pytest.mark.parametrize("name", NAMES)
def test_split_is_real_cpu_sized_and_says_where_it_came_from(splits, name):
    task = TASKS.get(name)
    dev, train = splits[(name, "dev")], splits[(name, "train")]
    assert 40 <= len(dev.examples) <= 100 and 90 <= len(train.examples) <= 500
    source = dev.source
    assert source.kind == f"realdata:{realdata.RECIPES[name].dataset}" and not source.is_synthetic
    assert re.fullmatch(r"[0-9a-f]{64}", source.checksum)
    assert source.detail["citation"] and source.detail["terms"] and source.detail["dataset"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in source.detail["source_sha256"].values())
    assert source.detail["lamp_analogue"] == task.lamp_analogue
    for ex in dev.examples:
        assert ex.output and ex.profile and ex.user_id
        assert all(set(task.item_fields) <= set(item) for item in ex.profile)
        assert ex.id not in {item["id"] for item in ex.profile}
        if task.labels:
            assert ex.output in task.labels
        assert task.query(ex.input).strip()


@pytest.mark.parametrize("name", NAMES)
def test_profiles_hold_only_the_past(splits, name):
    # dev questions are each user's second-latest rows; their profiles end before them
    dev_ids = {ex.id for ex in splits[(name, "dev")].examples}
    for ex in splits[(name, "train")].examples:
        assert ex.id not in dev_ids
        dates = [item.get("date") for item in ex.profile]
        if dates[0] is not None:
            assert dates == sorted(dates)
        positions = [int(item["id"].rsplit("-", 1)[1]) for item in ex.profile]
        assert positions == sorted(positions) and positions[-1] < int(ex.id.rsplit("-", 1)[1])


def test_conversion_is_cached_and_deterministic(splits):
    again = TASKS.get("amazon-rating").load_split(TASKS.get("amazon-rating"), "auto", "dev", seed=7)
    first = splits[("amazon-rating", "dev")]
    assert again.source.checksum == first.source.checksum and again.source.location == first.source.location
    assert [e.id for e in again.examples] == [e.id for e in first.examples]


def test_movielens_label_set_is_the_most_frequent_tags():
    folder = realdata.find_dataset_dir(realdata.RECIPES["movielens-tag"], "auto")
    assert realdata.movielens_top_tags(folder) == realdata.MOVIELENS_TAGS


def test_tweets_are_human_and_cleaned(splits):
    humans = set()
    for name in realdata.TWEEPFAKE_FILES:
        with (ROOT / realdata.TWEEPFAKE_DIR / name).open(encoding="utf-8") as fh:
            humans |= {line.split(";", 1)[0] for line in fh if line.rstrip().endswith(";human;human")}
    examples = splits[("tweets", "dev")].examples
    assert {e.user_id for e in examples} <= humans and len({e.user_id for e in examples}) == 17
    for ex in examples:
        assert "http" not in ex.output and "&amp;" not in ex.output
        assert all(item["text"] == f"{item['start']} {item['rest']}" for item in ex.profile)


def test_converted_folder_can_be_passed_as_data(tmp_path):
    recipe = realdata.RECIPES["amazon-summary"]
    small = dataclasses.replace(recipe.options, max_questions={"dev": 10, "train": 20, "test": 10})
    realdata.convert_recipe(recipe, realdata.find_dataset_dir(recipe, "auto"), tmp_path / "small", small)
    task = TASKS.get("amazon-summary")
    split = task.load_split(task, str(tmp_path / "small"), "dev", seed=0)
    assert len(split.examples) == 10 and split.source.detail["options"]["max_questions"]["dev"] == 10
    manifest = json.loads((tmp_path / "small" / "conversion.json").read_text())
    assert manifest["realdata"]["citation"] == realdata.AMAZON_CITATION
    with pytest.raises(ValueError, match="recipe 'amazon-summary'"):
        TASKS.get("amazon-rating").load_split(TASKS.get("amazon-rating"), str(tmp_path / "small"), "dev")


def test_missing_data_and_synthetic_are_explained(tmp_path):
    task = TASKS.get("tweets")
    with pytest.raises(FileNotFoundError, match="tweepfake/train.csv"):
        task.load_split(task, str(tmp_path), "dev")
    with pytest.raises(ValueError, match="no synthetic version"):
        task.load_split(task, "synthetic", "dev")


@pytest.mark.integration
def test_adhoc_run_on_real_data(tmp_path):
    from harness.backbones import GenerationSettings
    from harness.runner import RunRequest, run

    result = run(RunRequest(task="amazon-rating", method="adhoc", params={}, data="auto", limit=4, out=tmp_path,
                            progress=False, generation=GenerationSettings(num_beams=1, batch_size=4)))
    assert result.metrics["data_source"]["kind"] == "realdata:amazon-musical-instruments"
    assert "McAuley" in result.metrics["data_source"]["detail"]["citation"]
    assert set(result.metrics["official"]) >= {"mae", "rmse"}
