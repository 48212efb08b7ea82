"""The per-user table converter on small inline tables: splits, history, dedup, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasks.convert import Columns, ConvertError, SplitOptions, convert_table, read_table

RATING = Columns(user="user", time="time", output="stars", input_template="review: {text}",
                 fields={"text": "review", "score": "stars"})


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def table(users: dict[str, int]) -> str:
    """A CSV where user u has n rows at times 1..n (written newest first, to test sorting)."""
    lines = ["user,time,review,stars"]
    for user, n in users.items():
        lines += [f"{user},{t},{user} says {t},{1 + t % 5}" for t in range(n, 0, -1)]
    return "\n".join(lines) + "\n"


def load(out: Path, split: str) -> tuple[list[dict], dict[str, str]]:
    questions = json.loads((out / f"{split}_questions.json").read_text())
    golds = json.loads((out / f"{split}_outputs.json").read_text())
    return questions, {g["id"]: g["output"] for g in golds["golds"]}


def test_split_by_user_latest_rows_are_questions_profile_is_strictly_earlier(tmp_path):
    src = write(tmp_path, "t.csv", table({f"u{i}": 4 + i for i in range(10)}))
    report = convert_table([src], tmp_path / "out", columns=RATING, lamp_name="LaMP_3",
                           options=SplitOptions(split_by="user", questions_per_user=2, min_history=2,
                                                dev_fraction=0.2, test_fraction=0.2))
    assert report.counts["dev"]["users"] == 2 and report.counts["test"]["users"] == 2
    assert report.counts["train"]["users"] == 6
    seen_users: dict[str, str] = {}
    for split in ("train", "dev", "test"):
        questions, golds = load(tmp_path / "out", split)
        assert json.loads((tmp_path / "out" / f"{split}_outputs.json").read_text())["task"] == "LaMP_3"
        for q in questions:
            assert seen_users.setdefault(q["user_id"], split) == split  # a user lives in one split
            n = int(q["user_id"][1:]) + 4
            t = int(q["id"].rsplit("-", 1)[1]) + 1  # ids are <user>-<position in time order>
            assert t in (n - 1, n)  # the two latest rows
            assert q["input"] == f"review: {q['user_id']} says {t}" and golds[q["id"]] == str(1 + t % 5)
            dates = [p["date"] for p in q["profile"]]
            assert len(dates) == t - 1 and dates == sorted(dates)  # everything earlier, in order
            assert all(p["date"] < f"1970-01-01 00:00:{t:02d}" for p in q["profile"])
            assert set(q["profile"][0]) == {"id", "date", "text", "score"}


def test_split_by_time_every_user_in_every_split(tmp_path):
    src = write(tmp_path, "t.csv", table({"a": 6, "b": 4, "c": 2}))
    convert_table([src], tmp_path / "out", columns=RATING, lamp_name="X",
                  options=SplitOptions(split_by="time", questions_per_user=1, min_history=2))
    train, _ = load(tmp_path / "out", "train")
    dev, _ = load(tmp_path / "out", "dev")
    test, _ = load(tmp_path / "out", "test")
    assert sorted(q["id"] for q in test) == ["a-5", "b-3"]  # c has too little history
    assert sorted(q["id"] for q in dev) == ["a-4", "b-2"]
    assert sorted(q["id"] for q in train) == ["a-2", "a-3"]
    by_id = {q["id"]: q for q in train + dev + test}
    assert [p["id"] for p in by_id["a-5"]["profile"]] == ["a-0", "a-1", "a-2", "a-3", "a-4"]


def test_dedup_keeps_earliest_and_max_profile_keeps_latest(tmp_path):
    src = write(tmp_path, "t.csv", "user,time,review,stars\n"
                "a,1,same,5\na,2,same,5\na,3,other,4\na,4,third,3\na,5,last,2\n")
    report = convert_table([src], tmp_path / "out", columns=RATING, lamp_name="X",
                           options=SplitOptions(split_by="user", dev_fraction=0, test_fraction=0, max_profile=2))
    assert report.rows["duplicates_dropped"] == 1
    (q,), _ = load(tmp_path / "out", "train")
    assert [p["text"] for p in q["profile"]] == ["other", "third"]
    assert q["profile"][0]["date"] == "1970-01-01 00:00:03"


def test_seeded_and_deterministic(tmp_path):
    src = write(tmp_path, "t.csv", table({f"u{i}": 4 for i in range(20)}))
    opts = SplitOptions(dev_fraction=0.25, test_fraction=0.25, seed=3)
    convert_table([src], tmp_path / "a", columns=RATING, lamp_name="X", options=opts)
    convert_table([src], tmp_path / "b", columns=RATING, lamp_name="X", options=opts)
    convert_table([src], tmp_path / "c", columns=RATING, lamp_name="X",
                  options=SplitOptions(dev_fraction=0.25, test_fraction=0.25, seed=4))
    for split in ("train", "dev", "test"):
        name = f"{split}_questions.json"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "dev_questions.json").read_bytes() != (tmp_path / "c" / "dev_questions.json").read_bytes()


def test_cap_is_round_robin_over_users(tmp_path):
    src = write(tmp_path, "t.csv", table({"a": 10, "b": 10, "c": 10}))
    convert_table([src], tmp_path / "out", columns=RATING, lamp_name="X",
                  options=SplitOptions(split_by="time", questions_per_user=3, min_history=1,
                                       max_questions={"dev": 4}))
    dev, _ = load(tmp_path / "out", "dev")
    assert len(dev) == 4 and {q["user_id"] for q in dev[:3]} == {"a", "b", "c"}
    assert all(q["id"].endswith("-6") for q in dev[:3])  # each user's latest dev question first


def test_jsonl_no_time_uses_file_order_and_question_fields(tmp_path):
    lines = [{"who": "x", "tweet": f"t{i}", "start": f"s{i}", "rest": f"r{i}"} for i in range(4)]
    src = write(tmp_path, "t.jsonl", "\n".join(json.dumps(r) for r in lines) + "\n\n")
    cols = Columns(user="who", output="rest", input_template="complete: {start}", fields={"text": "tweet"},
                   question_fields={"start": "start"})
    report = convert_table([src], tmp_path / "out", columns=cols, lamp_name="X",
                           options=SplitOptions(dev_fraction=0, test_fraction=0, min_history=3))
    (q,), golds = load(tmp_path / "out", "train")
    assert q["input"] == "complete: s3" and golds[q["id"]] == "r3"
    assert q["profile"] == [{"id": f"x-{i}", "text": f"t{i}"} for i in range(3)]  # no date without a time
    assert "file order" in report.manifest["time_order"]
    assert report.manifest["sources"][str(src)] and len(report.manifest["sources"][str(src)]) == 64


def test_iso_times_and_id_column(tmp_path):
    src = write(tmp_path, "t.csv", "u,when,id,text,out\n"
                "a,2020-01-02T10:00:00Z,r2,b,y\na,2020-01-01,r1,a,x\na,2020-01-03 08:00:00,r3,c,z\n")
    cols = Columns(user="u", time="when", id="id", output="out", input_template="{text}", fields={"text": "text"})
    convert_table([src], tmp_path / "out", columns=cols, lamp_name="X",
                  options=SplitOptions(dev_fraction=0, test_fraction=0))
    (q,), _ = load(tmp_path / "out", "train")
    assert q["id"] == "r3"
    assert [(p["id"], p["date"]) for p in q["profile"]] == [("r1", "2020-01-01 00:00:00"),
                                                          ("r2", "2020-01-02 10:00:00")]


# -- malformed input: every error names the file, the line and (where one is at fault) the column
def errors(tmp_path: Path, name: str, text: str, columns: Columns = RATING, **opts) -> str:
    src = write(tmp_path, name, text)
    with pytest.raises(ConvertError) as info:
        convert_table([src], tmp_path / "out", columns=columns, lamp_name="X", options=SplitOptions(**opts))
    assert not (tmp_path / "out").exists()  # nothing half-written
    return str(info.value)


def test_malformed_csv_rows_name_file_line_and_column(tmp_path):
    text = ("user,time,review,stars\n"
            "a,1,fine,5\n"
            'a,2,"a quoted\nreview over two lines",4\n'
            "a,3,bad score,six\n"  # line 5
            "a,,no time,3\n"  # line 6
            "a,yesterday,bad time,3\n"  # line 7
            ",8,no user,3\n")  # line 8
    message = errors(tmp_path, "bad.csv", text, labels=("1", "2", "3", "4", "5"))
    src = tmp_path / "bad.csv"
    assert f"{src}:5: column 'stars': 'six' is not one of the labels" in message
    assert f"{src}:6: column 'time': empty value" in message
    assert f"{src}:7: column 'time': cannot read 'yesterday' as a time" in message
    assert f"{src}:8: column 'user': empty value" in message
    assert "4 malformed row(s)" in message and f"{src}:2" not in message and f"{src}:3" not in message


def test_ragged_csv_row_and_missing_column(tmp_path):
    message = errors(tmp_path, "ragged.csv", "user,time,review,stars\na,1,x,5\na,2,y,5,extra\n")
    assert f"{tmp_path / 'ragged.csv'}:3: expected 4 columns" in message
    message = errors(tmp_path, "nocol.csv", "user,time,text,stars\na,1,x,5\n")
    assert f"{tmp_path / 'nocol.csv'}:2: column 'review': missing" in message


def test_malformed_jsonl(tmp_path):
    text = ('{"user": "a", "time": 1, "review": "ok", "stars": 5}\n'
            '{"user": "a", "time": 2, "review": "ok"\n'  # line 2: broken JSON
            '["not", "an", "object"]\n'  # line 3
            '{"user": "a", "time": 3, "review": {"nested": 1}, "stars": 4}\n'  # line 4
            '{"user": "a", "time": 4, "review": "no stars"}\n')  # line 5: passes reading
    src = tmp_path / "bad.jsonl"
    message = errors(tmp_path, "bad.jsonl", text)
    assert f"{src}:2: invalid JSON" in message
    assert f"{src}:3: expected a JSON object" in message
    assert f"{src}:4: column 'review': expected a string or number" in message
    fixed = "\n".join(line for i, line in enumerate(text.splitlines(), 1) if i in (1, 5))
    message = errors(tmp_path, "bad2.jsonl", fixed)
    assert f"{tmp_path / 'bad2.jsonl'}:2: column 'stars': missing" in message


def test_skip_incomplete_counts_instead_of_refusing(tmp_path):
    src = write(tmp_path, "t.csv", "user,time,review,stars\na,1,x,5\na,2,,5\na,3,z,4\n")
    report = convert_table([src], tmp_path / "out", columns=RATING, lamp_name="X",
                           options=SplitOptions(dev_fraction=0, test_fraction=0, skip_incomplete=True))
    assert report.rows["skipped_incomplete"] == 1 and report.counts["train"]["questions"] == 1


def test_duplicate_ids_and_template_fields_are_refused(tmp_path):
    cols = Columns(user="u", id="id", output="o", input_template="{text}", fields={"text": "t"})
    message = errors(tmp_path, "dup.csv", "u,id,t,o\na,1,x,y\nb,1,z,w\n", columns=cols)
    assert "dup.csv:3: id '1' already used at" in message and "dup.csv:2" in message
    bad_template = Columns(user="u", output="o", input_template="{missing}", fields={"text": "t"})
    assert "uses ['missing']" in errors(tmp_path, "t.csv", "u,t,o\na,x,y\n", columns=bad_template)


def test_headerless_csv_with_column_names(tmp_path):
    src = write(tmp_path, "h.csv", 'a,1,"x, with comma",5\n')
    (row,) = read_table(src, header=False, column_names=["user", "time", "review", "stars"])
    assert row.line == 1 and row.cells["review"] == "x, with comma"


def test_cli_convert_with_task_template(tmp_path):
    from harness.cli import app

    src = write(tmp_path, "t.csv", table({"a": 4, "b": 4}))
    result = CliRunner().invoke(app, ["data", "convert", str(src), "--out", str(tmp_path / "out"), "--task", "lamp3",
                                      "--user", "user", "--time", "time", "--output", "stars",
                                      "--field", "text=review", "--field", "score=stars", "--split-by", "time"])
    assert result.exit_code == 0, result.output
    dev, _ = load(tmp_path / "out", "dev")
    assert dev[0]["input"].startswith("What is the score of the following review on a scale of 1 to 5?")
    bad = write(tmp_path, "bad.csv", "user,time,review,stars\na,1,x,7\n")
    result = CliRunner().invoke(app, ["data", "convert", str(bad), "--out", str(tmp_path / "o2"), "--task", "lamp3",
                                      "--user", "user", "--time", "time", "--output", "stars",
                                      "--field", "text=review", "--field", "score=stars"])
    assert result.exit_code == 2 and "bad.csv:2: column 'stars'" in " ".join(result.output.split())


# -- a whole ``bench data convert`` request from plain values (tasks.convert_request) ------------
def lamp3():
    from harness.registries import TASKS

    return TASKS.get("lamp3")


@pytest.mark.parametrize(("request_", "message"), [
    ({"recipe": "amazon-rating", "tables": ["t.csv"]}, "give either TABLES or --recipe, not both"),
    ({"recipe": "no-such-recipe"}, "unknown recipe 'no-such-recipe'; choose one of amazon-rating"),
    ({}, "give one or more TABLES to convert, or --recipe NAME"),
    ({"tables": ["t.csv"], "task": "lamp3", "user": "user", "output": "stars", "fields": ["text=review"]},
     "task lamp3 needs profile fields text, score; map each with --field NAME=COLUMN"),
    ({"tables": ["t.csv"], "output": "stars", "fields": ["text=review"], "input_template": "{text}"},
     "a table needs --user, --output, at least one --field and --input-template (or --task)"),
    ({"tables": ["t.csv"], "user": "user", "output": "stars", "fields": ["=review"], "input_template": "{text}"},
     "--field '=review' must look like field=column"),
])
def test_request_errors_name_the_option_to_fix(tmp_path, request_, message):
    from tasks.convert_request import convert_request

    src = write(tmp_path, "t.csv", table({"a": 4}))
    request_ = {**request_, **({"tables": [src]} if "tables" in request_ else {}),
                **({"task": lamp3()} if "task" in request_ else {})}
    with pytest.raises(ConvertError) as info:
        convert_request(tmp_path / "out", **request_)
    assert str(info.value).startswith(message)
    assert not (tmp_path / "out").exists()


def test_request_takes_template_labels_and_name_from_the_task_and_applies_overrides(tmp_path):
    from tasks.convert_request import convert_request

    src = write(tmp_path, "t.csv", table({"a": 5, "b": 5, "c": 5}))
    report = convert_request(tmp_path / "out", tables=[src], task=lamp3(), user="user", time="time", output="stars",
                             fields=["text=review", "score=stars"], split_by="time", min_history=2,
                             max_questions={"train": 2, "dev": None}, seed=None)
    assert report.counts["train"]["questions"] == 2 and report.counts["dev"]["questions"] == 3
    assert tuple(report.manifest["options"]["labels"]) == tuple(lamp3().labels) != ()
    assert report.manifest["options"]["min_history"] == 2 and report.manifest["options"]["seed"] == 0
    dev, _ = load(tmp_path / "out", "dev")
    assert dev[0]["input"].startswith("What is the score of the following review on a scale of 1 to 5?")
    assert json.loads((tmp_path / "out" / "dev_outputs.json").read_text())["task"] == lamp3().lamp_name
    bad = write(tmp_path, "bad.csv", "user,time,review,stars\na,1,x,7\n")
    with pytest.raises(ConvertError, match=r"bad.csv:2: column 'stars': '7' is not one of the labels"):
        convert_request(tmp_path / "o2", tables=[bad], task=lamp3(), user="user", time="time", output="stars",
                        fields=["text=review", "score=stars"])


def test_request_overrides_go_on_top_of_a_recipes_own_options(tmp_path, monkeypatch):
    from tasks import convert_request as request_module
    from tasks.realdata import RECIPES

    seen = {}
    monkeypatch.setattr(request_module.recipes, "find_dataset_dir", lambda recipe, data: tmp_path / data)
    monkeypatch.setattr(request_module.recipes, "convert_recipe",
                        lambda recipe, folder, out, options: seen.update(recipe=recipe, folder=folder, options=options))
    request_module.convert_request(tmp_path / "out", recipe="amazon-rating", realdata="here", max_profile=3,
                                   dedup_on=["text"], max_questions={"test": 7, "dev": None})
    own = RECIPES["amazon-rating"].options
    assert seen["recipe"] is RECIPES["amazon-rating"] and seen["folder"] == tmp_path / "here"
    assert seen["options"].max_profile == 3 and seen["options"].dedup_on == ("text",)
    assert seen["options"].max_questions == {**own.max_questions, "test": 7}
    assert seen["options"].split_by == own.split_by and seen["options"].labels == own.labels
