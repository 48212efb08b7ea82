"""Hugging Face datasets folders: export official files, load them back unchanged, same validation."""

from __future__ import annotations

import json

import datasets
import pytest

from harness.registries import TASKS
from tasks.hf import export_hf, load_hf
from tasks.loader import DataError, load_split
from tasks.sources import load_lamp_split
from tests.test_loader import question, write_split

LAMP2 = TASKS.get("lamp2")
LAMP3 = TASKS.get("lamp3")


def lamp3_dir(root, *, user_based=False):
    """A tiny official-format LaMP-3 folder by hand: int and str scores, int ids, an extra field."""
    folder = root / "official"
    for split, n in (("train", 3), ("dev", 2), ("test", 2)):
        records = []
        for i in range(n):
            profile = [{"id": 100 * i + j, "date": f"2019-0{j + 1}-01", "text": f"review {j} by {i}",
                        "score": j + 1 if j % 2 else str(j + 1)} for j in range(3)]
            record = {"id": f"{split}{i}", "input": f"What is the score? review: thing {i}", "profile": profile}
            if not user_based:
                record["user_id"] = f"user{i % 2}"
            records.append(record)
        records[0]["profile"][1]["helpful"] = "yes"  # an extra field on one item only
        write_split(folder, split, records, [{"id": r["id"], "output": str(i % 5 + 1)} for i, r in enumerate(records)],
                    task="LaMP_3", outputs=split != "test")
    return folder


@pytest.mark.parametrize("user_based", [False, True], ids=["time", "user"])
def test_round_trip_gives_the_same_examples(tmp_path, user_based):
    folder = lamp3_dir(tmp_path, user_based=user_based)
    out = export_hf(LAMP3, folder, tmp_path / "hf")
    assert out == tmp_path / "hf" and (out / "dataset_dict.json").is_file()
    for split in ("train", "dev", "test"):
        original = load_split(LAMP3, folder, split)
        loaded = load_hf(LAMP3, str(out), split)
        assert loaded.examples == original.examples
        assert loaded.task == "lamp3" and loaded.name == split
        assert loaded.source.kind == "hf-datasets" and not loaded.source.is_synthetic
        assert loaded.source.location == str(out.resolve())
        assert loaded.source.detail["split_kind"] == ("user" if user_based else "time")
        assert loaded.source.detail["files"] and all(f.startswith(f"{split}/") for f in loaded.source.detail["files"])
    test = load_hf(LAMP3, str(out), "test")
    assert all(e.output is None for e in test.examples)
    assert load_hf(LAMP3, str(out), "dev").examples[0].profile[1] == {
        "id": "1", "date": "2019-02-01", "text": "review 1 by 0", "score": "2", "helpful": "yes"}


def test_checksum_is_stable_and_follows_the_bytes(tmp_path):
    folder = lamp3_dir(tmp_path)
    a = export_hf(LAMP3, folder, tmp_path / "a")
    assert load_hf(LAMP3, str(a), "dev").source.checksum == load_hf(LAMP3, str(a), "dev").source.checksum
    assert load_hf(LAMP3, str(a), "dev").source.checksum != load_hf(LAMP3, str(a), "train").source.checksum


def test_synthetic_marker_travels_with_the_export(tmp_path):
    folder = lamp3_dir(tmp_path)
    (folder / "synthetic.json").write_text(json.dumps({"seed": 1, "signal": "rater bias"}))
    out = export_hf(LAMP3, folder, tmp_path / "hf")
    split = load_hf(LAMP3, str(out), "dev")
    assert split.source.kind == "synthetic" and split.source.detail["synthetic"] == {"seed": 1, "signal": "rater bias"}
    assert split.source.detail["format"] == "hf-datasets"


def test_export_only_the_splits_present_and_refuses_non_empty_out(tmp_path):
    write_split(tmp_path / "src", "dev", [question("1"), question("2")])
    out = export_hf(LAMP2, tmp_path / "src", tmp_path / "hf")
    assert list(datasets.load_from_disk(str(out))) == ["dev"]
    with pytest.raises(DataError, match=r"no split 'train' \(it has dev\)"):
        load_hf(LAMP2, str(out), "train")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        export_hf(LAMP2, tmp_path / "src", out)
    with pytest.raises(DataError, match="bench data download --task lamp2"):
        export_hf(LAMP2, tmp_path / "nothing", tmp_path / "hf2")
    assert not (tmp_path / "hf2").exists()


def save(tmp_path, rows_by_split):
    out = tmp_path / "hand"
    datasets.DatasetDict({s: datasets.Dataset.from_list(rows) for s, rows in rows_by_split.items()}).save_to_disk(
        str(out))
    return str(out)


def row(qid, output="comedy", **changes):
    record = question(qid)
    record["output"] = output
    record.update(changes)
    return record


def test_rows_are_validated_like_official_records(tmp_path):
    bad_items = question("x")["profile"]
    for item in bad_items:
        item["tag"] = None  # Arrow null: the key is dropped, so the field is missing
    source = save(tmp_path, {"dev": [row("a"), row("b", profile=bad_items), row("a"), row("c", output=None)]})
    with pytest.raises(DataError) as info:
        load_hf(LAMP2, source, "dev")
    problems = info.value.problems
    label = f"{source}[dev]"
    assert f'{label}: record 1 (id "b"): profile item 0 (id "x-0"): missing field "tag"' in problems
    assert f'{label}: record 2 (id "a"): duplicate id (first at record 0)' in problems
    assert any(p.startswith(f"{label}: 1 of 2 questions") and '(ids "c")' in p for p in problems)


def test_missing_columns_are_named(tmp_path):
    rows = [row("a")]
    for r in rows:
        del r["output"], r["input"]
    source = save(tmp_path, {"dev": rows, "test": rows})
    with pytest.raises(DataError) as info:
        load_hf(LAMP2, source, "dev")
    assert info.value.problems == [f'{source}[dev]: missing column "input"']
    with pytest.raises(DataError, match=r'\[test\]: missing column "input"'):
        load_hf(LAMP2, source, "test")


def test_dev_without_output_column_is_refused_test_is_fine(tmp_path):
    rows = [row("a"), row("b")]
    for r in rows:
        del r["output"]
    source = save(tmp_path, {"dev": rows, "test": rows})
    with pytest.raises(DataError, match=r'\[dev\]: missing column "output" \(dev needs gold outputs\)'):
        load_hf(LAMP2, source, "dev")
    assert [e.output for e in load_hf(LAMP2, source, "test").examples] == [None, None]


def test_folder_that_is_not_a_datasets_folder(tmp_path):
    with pytest.raises(DataError, match="not a Hugging Face datasets folder saved with save_to_disk"):
        load_hf(LAMP2, str(tmp_path), "dev")


def test_hub_failure_is_explained(monkeypatch):
    def offline(name):
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"could not load 'someone/lamp' from the Hugging Face hub "
                                        r"\(ConnectionError: .*\)\. Without network access, pass a local folder"):
        load_hf(LAMP2, "someone/lamp", "dev")


def test_task_loader_dispatches_datasets_folders_to_load_hf(tmp_path):
    out = export_hf(LAMP3, lamp3_dir(tmp_path), tmp_path / "hf")
    assert load_lamp_split(LAMP3, str(out), "dev").source.kind == "hf-datasets"
