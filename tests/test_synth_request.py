"""``bench data synth``'s request logic (tasks.synth_request): task choice, folders, sizes, marker."""

from __future__ import annotations

import json

import pytest

from harness.registries import TASKS
from harness.registry import RegistryError
from tasks import synthetic
from tasks.synth_request import synthesize

TINY = {"train": 3, "dev": 2, "test": 0}


def test_one_task_writes_into_out_with_requested_or_default_sizes_and_a_marker(tmp_path):
    written = list(synthesize("lamp2", tmp_path / "d", seed=4, sizes={**TINY, "test": None},
                              min_profile=2, max_profile=3))
    assert written == [("lamp2", tmp_path / "d")]
    train = json.loads((tmp_path / "d" / "train_questions.json").read_text())
    assert len(train) == 3 and all(2 <= len(q["profile"]) <= 3 for q in train)
    test = json.loads((tmp_path / "d" / "test_questions.json").read_text())
    assert len(test) == synthetic.DEFAULT_SIZES["test"] > 0  # None keeps the generator's default
    assert json.loads((tmp_path / "d" / "synthetic.json").read_text())["seed"] == 4


def test_all_writes_one_folder_per_task_that_has_a_generator(tmp_path):
    names = [name for name, _ in synthesize("all", tmp_path, sizes=TINY, max_profile=2, min_profile=1)]
    expected = [n for n in TASKS.names() if TASKS.get(n).has_synthetic_data]
    assert names == expected and len(names) > 1
    assert all((tmp_path / n / "synthetic.json").is_file() for n in names)


def test_unknown_task_fails_before_writing(tmp_path):
    with pytest.raises(RegistryError):
        list(synthesize("no-such-task", tmp_path / "d", sizes=TINY))
    assert not (tmp_path / "d").exists()
