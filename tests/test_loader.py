"""The official-format loader: layouts, normalization, source records and error messages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from harness.registries import TASKS
from tasks.loader import MAX_PROBLEMS, SPLITS, DataError, DataWarning, find_split_files, load_split, validate_dir

LAMP2 = TASKS.get("lamp2")
LAMP3 = TASKS.get("lamp3")


def question(qid: Any, n_items: int = 3, user: str | None = "u1", **extra: Any) -> dict[str, Any]:
    """A valid LaMP-2 question with ``n_items`` profile items."""
    record = {
        "id": qid,
        "input": f"Which tag does this movie relate to? description: film {qid}",
        "profile": [{"id": f"{qid}-{j}", "date": f"2020-01-0{j + 1}", "description": f"movie {j}",
                     "tag": "comedy"} for j in range(n_items)],
        **extra,
    }
    if user is not None:
        record["user_id"] = user
    return record


def write_split(folder: Path, split: str, questions: Any, golds: Any = None, *, task: str = "LaMP_2",
                outputs: bool = True) -> tuple[Path, Path | None]:
    """Write ``{split}_questions.json`` (and outputs, golds defaulting to one per question)."""
    folder.mkdir(parents=True, exist_ok=True)
    q = folder / f"{split}_questions.json"
    q.write_text(questions if isinstance(questions, str) else json.dumps(questions), encoding="utf-8")
    if not outputs:
        return q, None
    if golds is None:
        golds = [{"id": r["id"], "output": "comedy"} for r in questions]
    o = folder / f"{split}_outputs.json"
    o.write_text(json.dumps({"task": task, "golds": golds}), encoding="utf-8")
    return q, o


def write_task(folder: Path, *, user: str | None = "u1", nested: bool = False) -> None:
    """A complete small LaMP-2 task folder: train, dev, and test without outputs."""
    for split, n in (("train", 4), ("dev", 3), ("test", 2)):
        where = folder / split if nested else folder
        write_split(where, split, [question(f"{split}{i}", user=user) for i in range(n)], outputs=split != "test")


def problems_of(task, path: Path, split: str = "dev") -> list[str]:
    with pytest.raises(DataError) as info:
        load_split(task, path, split)
    return info.value.problems


# -- happy paths ------------------------------------------------------------------------------------
def test_flat_layout_loads_examples_with_normalized_ids_and_a_byte_checksum(tmp_path):
    records = [question(7), question("q8", user=None)]
    records[1]["user_id"] = 42  # int user ids are normalized too
    records[0]["profile"][0]["id"] = 700
    records[0]["profile"][1]["rating"] = 4.5  # extra fields are kept as they are
    q, o = write_split(tmp_path, "dev", records, [{"id": 7, "output": "comedy"}, {"id": "q8", "output": "action"}])

    split = load_split(LAMP2, tmp_path, "dev")

    assert [e.id for e in split.examples] == ["7", "q8"]
    assert [e.output for e in split.examples] == ["comedy", "action"]
    assert [e.user_id for e in split.examples] == ["u1", "42"]
    first = split.examples[0]
    assert first.input == records[0]["input"]
    assert first.profile[0] == {"id": "700", "date": "2020-01-01", "description": "movie 0", "tag": "comedy"}
    assert first.profile[1]["rating"] == 4.5
    assert split.task == "lamp2" and split.name == "dev"
    src = split.source
    assert src.kind == "lamp" and not src.is_synthetic
    assert src.checksum == hashlib.sha256(q.read_bytes() + o.read_bytes()).hexdigest()
    assert src.location == str(tmp_path.resolve())
    assert src.detail == {"split_kind": "time", "files": ["dev_questions.json", "dev_outputs.json"]}


def test_lamp3_scores_may_be_int_or_str_and_become_str(tmp_path):
    records = [{"id": "1", "input": "review: fine", "profile": [
        {"id": "a", "text": "good", "score": 5}, {"id": "b", "text": "bad", "score": "1"},
        {"id": "c", "text": "meh", "score": 3.0}]}]
    write_split(tmp_path, "dev", records, [{"id": "1", "output": 4}], task="LaMP_3")
    split = load_split(LAMP3, tmp_path, "dev")
    assert [i["score"] for i in split.examples[0].profile] == ["5", "1", "3"]
    assert split.examples[0].output == "4"
    assert split.source.detail["split_kind"] == "user"


@pytest.mark.parametrize("rel", [".", "LaMP_2", "lamp2", "time/LaMP_2", "user/LaMP_2"])
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "per-split"])
def test_every_documented_layout_is_found(tmp_path, rel, nested):
    folder = tmp_path / rel
    write_task(folder, nested=nested)
    questions, outputs = find_split_files(LAMP2, tmp_path, "dev")
    assert questions == folder / ("dev" if nested else "") / "dev_questions.json"
    assert outputs == questions.with_name("dev_outputs.json")
    test_q, test_o = find_split_files(LAMP2, tmp_path, "test")
    assert test_q.name == "test_questions.json" and test_o is None
    split = load_split(LAMP2, tmp_path, "dev")
    assert len(split.examples) == 3
    assert split.source.location == str(folder.resolve())
    assert split.source.detail["files"] == (["dev/dev_questions.json", "dev/dev_outputs.json"] if nested
                                            else ["dev_questions.json", "dev_outputs.json"])


def test_time_based_wins_over_user_based_and_user_dir_selects_user(tmp_path):
    write_task(tmp_path / "time" / "LaMP_2", nested=True)
    write_task(tmp_path / "user" / "LaMP_2", user=None, nested=True)
    assert load_split(LAMP2, tmp_path, "dev").source.detail["split_kind"] == "time"
    assert load_split(LAMP2, tmp_path / "user", "dev").source.detail["split_kind"] == "user"


def test_test_split_without_outputs_has_no_golds(tmp_path):
    write_task(tmp_path)
    split = load_split(LAMP2, tmp_path, "test")
    assert [e.output for e in split.examples] == [None, None]
    assert split.source.detail["files"] == ["test_questions.json"]


def test_synthetic_marker_sets_kind_and_detail(tmp_path):
    write_task(tmp_path / "lamp2")
    (tmp_path / "synthetic.json").write_text(json.dumps({"seed": 3, "signal": "favourite tags"}))
    split = load_split(LAMP2, tmp_path, "dev")
    assert split.source.kind == "synthetic" and split.source.is_synthetic
    assert split.source.detail["synthetic"] == {"seed": 3, "signal": "favourite tags"}


def test_marker_above_data_dir_is_not_consulted(tmp_path):
    (tmp_path / "synthetic.json").write_text("{}")
    write_task(tmp_path / "real")
    assert load_split(LAMP2, tmp_path / "real", "dev").source.kind == "lamp"


def test_validate_dir_is_empty_for_valid_data(tmp_path):
    write_task(tmp_path, nested=True)
    assert validate_dir(LAMP2, tmp_path) == []


def test_validate_dir_checks_the_splits_present(tmp_path):
    write_split(tmp_path, "dev", [question("1")])  # one downloaded split: dev questions + outputs only
    assert validate_dir(LAMP2, tmp_path) == []
    assert any("no train_questions.json" in p for p in validate_dir(LAMP2, tmp_path, ["train"]))
    [msg] = validate_dir(LAMP2, tmp_path / "empty")
    assert "no split of lamp2 found" in msg


# -- problems -------------------------------------------------------------------------------------
def test_missing_questions_says_where_it_looked_and_how_to_get_data(tmp_path):
    with pytest.raises(DataError) as info:
        find_split_files(LAMP2, tmp_path, "dev")
    msg = str(info.value)
    assert "dev/dev_questions.json" in msg and str(tmp_path / "time" / "LaMP_2") in msg
    assert "bench data download --task lamp2" in msg and "bench data synth --task lamp2" in msg


def test_lamp6_hint_does_not_offer_a_download(tmp_path):
    with pytest.raises(DataError) as info:
        load_split(TASKS.get("lamp6"), tmp_path, "dev")
    assert "bench data download" not in str(info.value) and "Avocado" in str(info.value)


def test_dev_without_outputs_is_refused(tmp_path):
    write_split(tmp_path, "dev", [question("1")], outputs=False)
    [msg] = problems_of(LAMP2, tmp_path)
    assert "dev_questions.json" in msg and "no dev_outputs.json" in msg


def test_invalid_json_names_line_and_column(tmp_path):
    write_split(tmp_path, "dev", '[\n  {"id": "1",\n   "input": oops}\n]', golds=[])
    [msg] = problems_of(LAMP2, tmp_path)
    assert "dev_questions.json: invalid JSON at line 3, column 13" in msg


def test_outputs_file_in_place_of_questions_gets_a_hint(tmp_path):
    write_split(tmp_path, "dev", {"task": "LaMP_2", "golds": []}, golds=[])
    [msg] = problems_of(LAMP2, tmp_path)
    assert msg.endswith("dev_questions.json: top level must be a list of questions, got dict "
                        "(this looks like an outputs file)")


def test_mistyped_and_missing_fields_name_file_record_id_and_field(tmp_path):
    records = [question("1"), question("310"), question("3"), {"input": "no id", "profile": []}]
    records[1]["profile"] = "not a list"
    del records[2]["profile"][1]["tag"]
    records[2]["profile"][2]["description"] = ["x"]
    records[2]["input"] = 5
    write_split(tmp_path, "dev", records, [{"id": r.get("id", "x"), "output": "comedy"} for r in records])
    problems = problems_of(LAMP2, tmp_path)
    q = str(tmp_path / "dev_questions.json")
    assert f'{q}: record 1 (id "310"): field "profile" must be a list, got str' in problems
    assert f'{q}: record 2 (id "3"): field "input" must be a string, got int' in problems
    assert f'{q}: record 2 (id "3"): profile item 1 (id "3-1"): missing field "tag"' in problems
    assert f'{q}: record 2 (id "3"): profile item 2 (id "3-2"): field "description" must be a string or number, ' \
           "got list" in problems
    assert f'{q}: record 3: missing field "id"' in problems
    # validate_dir reports the same problems (plus the missing train/test files when named)
    assert all(p in validate_dir(LAMP2, tmp_path) for p in problems)
    found = validate_dir(LAMP2, tmp_path, SPLITS)
    assert all(p in found for p in problems)
    assert any("no train_questions.json" in p for p in found) and any("no test_questions.json" in p for p in found)


def test_profile_item_without_id_and_non_object_items(tmp_path):
    records = [question("1")]
    del records[0]["profile"][0]["id"]
    records[0]["profile"].append("just text")
    write_split(tmp_path, "dev", records)
    problems = problems_of(LAMP2, tmp_path)
    assert any(p.endswith('record 0 (id "1"): profile item 0: missing field "id"') for p in problems)
    assert any(p.endswith('record 0 (id "1"): profile item 3: must be an object, got str') for p in problems)


def test_empty_profile_and_empty_file(tmp_path):
    write_split(tmp_path, "dev", [question("1", n_items=0)])
    [msg] = problems_of(LAMP2, tmp_path)
    assert msg.endswith('record 0 (id "1"): field "profile" is empty (every question needs the user\'s history)')
    write_split(tmp_path, "dev", [], golds=[])
    [msg] = problems_of(LAMP2, tmp_path)
    assert msg.endswith("dev_questions.json: contains no questions")


def test_duplicate_question_ids_are_refused(tmp_path):
    write_split(tmp_path, "dev", [question("1"), question("2"), question(1)], [{"id": "1", "output": "comedy"},
                                                                               {"id": "2", "output": "comedy"}])
    [msg] = problems_of(LAMP2, tmp_path)
    assert msg.endswith('dev_questions.json: record 2 (id "1"): duplicate id (first at record 0)')


def test_duplicate_item_ids_in_a_profile_only_warn(tmp_path):
    records = [question("1"), question("2")]
    for r in records:
        r["profile"][1]["id"] = r["profile"][0]["id"]
    write_split(tmp_path, "dev", records)
    with pytest.warns(DataWarning, match=r'dev_questions.json: 2 profiles repeat an item id \(first: .*record 0 '
                                         r'\(id "1"\)\)'):
        split = load_split(LAMP2, tmp_path, "dev")
    assert len(split.examples) == 2


def test_questions_without_golds_and_golds_without_questions_are_counted(tmp_path):
    records = [question(str(i)) for i in range(8)]
    golds = [{"id": str(i), "output": "comedy"} for i in range(2)] + [{"id": "x1", "output": "comedy"}]
    write_split(tmp_path, "dev", records, golds)
    problems = problems_of(LAMP2, tmp_path)
    o = str(tmp_path / "dev_outputs.json")
    assert f'{o}: 6 of 8 questions in {tmp_path / "dev_questions.json"} have no gold output (ids ' \
           '"2", "3", "4", "5", "6", ...)' in problems
    assert f'{o}: golds without a question in {tmp_path / "dev_questions.json"}: 1 (ids "x1")' in problems


def test_outputs_file_problems(tmp_path):
    write_split(tmp_path, "dev", [question("1"), question("2")],
                [{"id": "1", "output": ["comedy"]}, {"id": "1", "output": "comedy"}, {"output": "x"}], task="LaMP_3")
    problems = problems_of(LAMP2, tmp_path)
    o = str(tmp_path / "dev_outputs.json")
    assert f'{o}: field "task" is "LaMP_3", expected "LaMP_2" (are these lamp2 files?)' in problems
    assert f'{o}: gold 0 (id "1"): field "output" must be a string, got list' in problems
    assert f'{o}: gold 2: missing field "id"' in problems
    assert any('have no gold output (ids "2")' in p for p in problems)


def test_user_id_on_some_records_only(tmp_path):
    write_split(tmp_path, "dev", [question("1"), question("2", user=None), question("3")])
    [msg] = problems_of(LAMP2, tmp_path)
    assert 'field "user_id" is on 2 of 3 records; missing on "2"' in msg


def test_all_problems_are_collected_up_to_a_cap(tmp_path):
    records = [question(str(i)) for i in range(MAX_PROBLEMS + 10)]
    for r in records:
        r["input"] = None
    write_split(tmp_path, "dev", records)
    with pytest.raises(DataError) as info:
        load_split(LAMP2, tmp_path, "dev")
    problems = info.value.problems
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[-1] == "... and 10 more problems"
    assert str(info.value).startswith("invalid LaMP data:\n  - ")


def test_unknown_split_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        find_split_files(LAMP2, tmp_path, "valid")


def test_profile_items_are_the_parsed_dicts_not_copies(tmp_path, monkeypatch):
    """Loading holds the data once: Examples share the item dicts the JSON decoder produced."""
    import tasks.loader as loader

    parsed: list[Any] = []
    real_iter = loader.iter_json_list

    def spy(text):
        for record in real_iter(text):
            parsed.append(record)
            yield record

    monkeypatch.setattr(loader, "iter_json_list", spy)
    write_split(tmp_path, "dev", [question("1")])
    example = load_split(LAMP2, tmp_path, "dev").examples[0]
    assert example.profile[0] is parsed[0]["profile"][0]


def test_a_users_repeated_history_is_held_once(tmp_path):
    """Time-based files repeat a user's items in each question; equal items become one dict."""
    first, second = question("1"), question("2")
    second["profile"] = [dict(item) for item in first["profile"]] + [{"id": "new", "description": "d", "tag": "comedy"}]
    clash = question("3")  # same item id, other content: kept apart
    clash["profile"] = [{**first["profile"][0], "description": "something else"}]
    write_split(tmp_path, "dev", [first, second, clash])
    a, b, c = load_split(LAMP2, tmp_path, "dev").examples
    assert all(x is y for x, y in zip(a.profile, b.profile))
    assert len(b.profile) == len(a.profile) + 1
    assert c.profile[0] is not a.profile[0] and c.profile[0]["description"] == "something else"


def test_streamed_json_errors_match_json_loads(tmp_path):
    from tasks.loader import iter_json_list

    for text in ['[{"a": 1}, {"b": 2}]', " [ ] ", "[1,2 ,3]\n"]:
        assert list(iter_json_list(text)) == json.loads(text)
    for text in ["[1 2]", "[1,]", "[1] x", "[1"]:
        with pytest.raises(json.JSONDecodeError):
            list(iter_json_list(text))
