"""Real people's data as LaMP-style tasks: recipes over public per-user datasets.

The official LaMP files cannot be reached from our machines, but public datasets with
real users and their own histories can (``../shared/realdata``; see docs/realdata.md).
Each recipe turns one of them into LaMP-format files with :mod:`tasks.convert` and
declares a task with the metric family, label set and prompt style of its LaMP analogue:

=================  ======================================  =============================
task               data                                    LaMP analogue
=================  ======================================  =============================
amazon-rating      Amazon Musical Instruments reviews      LaMP-3 (MAE, RMSE)
amazon-summary     the same reviews, their summary lines   LaMP-4 (ROUGE-1, ROUGE-L)
movielens-tag      MovieLens ml-latest-small tags          LaMP-2 (accuracy, macro-F1)
tweets             TweepFake, human accounts only          LaMP-7 (ROUGE-1, ROUGE-L)
=================  ======================================  =============================

The converted files are cached under ``cache_root()/realdata/<task>-<key>``, where the key
hashes the source files and the recipe, so a changed file or recipe converts afresh.
Every split's :class:`~harness.api.DataSource` is ``realdata:<dataset>`` and carries the
source files' sha256, the dataset's citation and terms, and the recipe's options.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.api import DataSource, Split, TaskSpec
from harness.models import cache_root
from tasks.convert import (
    CONVERTER_VERSION,
    Columns,
    ConversionReport,
    Row,
    SplitOptions,
    convert_rows,
    read_table,
    sha256_file,
)
from tasks.lamp import after, fields, parse_generation, parse_label, parse_rating

REALDATA_ENV = "PERSONA_BENCH_REALDATA"
#: Bump when a recipe's row preparation changes in a way its options do not show.
RECIPE_VERSION = 1
#: Default sizes keep every task CPU-friendly (dev/test <= 100 questions, train <= 500).
CPU_CAPS: Mapping[str, int] = {"train": 500, "dev": 100, "test": 100}


def default_realdata_root() -> Path:
    """``$PERSONA_BENCH_REALDATA``, else ``../shared/realdata`` beside the repository."""
    env = os.environ.get(REALDATA_ENV)
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@dataclass(frozen=True)
class Recipe:
    """How one public dataset becomes one task's LaMP-format files.

    ``rows`` reads the dataset folder into converter rows (keeping each row's real file
    and line, so errors point into the original data); ``columns``/``options`` are
    handed to :func:`tasks.convert.convert_rows` unchanged.
    """

    task: str
    dataset: str  # folder under the realdata root; DataSource kind is "realdata:<dataset>"
    files: tuple[str, ...]  # relative to the dataset folder; hashed into the cache key
    rows: Callable[[Path], tuple[list[Row], dict[str, Any]]]  # -> rows, notes for the manifest
    columns: Columns
    options: SplitOptions
    title: str  # which public dataset, in words
    citation: str
    terms: str
    ordering: str  # how items are put in time order


# -- Amazon Musical Instruments reviews ----------------------------------------------------------
AMAZON_DIR = "amazon-musical-instruments"
AMAZON_FILE = "Musical_instruments_reviews.csv"
AMAZON_COLUMNS = ("reviewerID", "asin", "reviewerName", "helpful", "reviewText", "overall", "summary",
                  "unixReviewTime", "reviewTime")
AMAZON_TITLE = ("Amazon product reviews, 'Musical Instruments' 5-core (McAuley et al., 2014 release; "
                "the local copy is a 5,050-review prefix of the file)")
AMAZON_CITATION = ("R. He and J. McAuley. Ups and downs: Modeling the visual evolution of fashion trends with "
                   "one-class collaborative filtering. WWW 2016. J. McAuley, C. Targett, Q. Shi and A. van den "
                   "Hengel. Image-based recommendations on styles and substitutes. SIGIR 2015.")
AMAZON_TERMS = "Research use only; do not redistribute the reviews (the project ships the converter, not the data)."


def amazon_rows(folder: Path) -> tuple[list[Row], dict[str, Any]]:
    return read_table(folder / AMAZON_FILE, header=False, column_names=AMAZON_COLUMNS), {}


def _amazon_options() -> SplitOptions:
    # Time-based like the PPlug evaluation: every reviewer with >= 5 reviews asks a train,
    # a dev and a test question, each with at least 3 earlier reviews as the profile.
    return SplitOptions(split_by="time", questions_per_user=1, min_history=3, max_questions=CPU_CAPS,
                        skip_incomplete=True, seed=0)


# -- MovieLens ml-latest-small tags -------------------------------------------------------------
MOVIELENS_DIR = "movielens-latest-small"
#: The 15 most frequent tags of ml-latest-small (case-folded), "in netflix queue" left out
#: because it marks a to-watch list, not the movie; the 15th place is a tie at 19
#: applications (comedy, politics) broken alphabetically. Fixed here so the task's label
#: set (and prompt) exist before any data is read; a test recomputes it from tags.csv.
MOVIELENS_TAGS: tuple[str, ...] = (
    "atmospheric", "funny", "superhero", "surreal", "thought-provoking", "disney", "sci-fi", "quirky",
    "religion", "dark comedy", "psychology", "suspense", "twist ending", "visually appealing", "comedy",
)
MOVIELENS_EXCLUDED_TAGS = ("in netflix queue",)
MOVIELENS_TITLE = "MovieLens ml-latest-small (GroupLens, generated 2018-09-26): tags.csv and movies.csv"
MOVIELENS_CITATION = ("F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context. "
                      "ACM Transactions on Interactive Intelligent Systems (TiiS) 5, 4: 19:1-19:19. "
                      "https://doi.org/10.1145/2827872")
MOVIELENS_TERMS = ("GroupLens usage license (README.txt): research use; acknowledge the dataset in publications; "
                   "no endorsement implied; redistribution only under the same terms; no commercial use "
                   "without permission.")


def normalize_tag(tag: str) -> str:
    return " ".join(tag.lower().split())


def movielens_top_tags(folder: Path, k: int = 15) -> tuple[str, ...]:
    """The ``k`` most frequent normalized tags (ties alphabetical), excluded ones left out."""
    counts = Counter(normalize_tag(r.cells["tag"] or "") for r in read_table(folder / "tags.csv"))
    for tag in (*MOVIELENS_EXCLUDED_TAGS, ""):
        counts.pop(tag, None)
    return tuple(tag for tag, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k])


def movielens_rows(folder: Path) -> tuple[list[Row], dict[str, Any]]:
    """Tag applications of the fixed label set, each with its movie's "title [genres]"."""
    movies = {r.cells["movieId"]: r.cells for r in read_table(folder / "movies.csv")}
    rows, other = [], 0
    for row in read_table(folder / "tags.csv"):
        tag = normalize_tag(row.cells.get("tag") or "")
        if tag not in MOVIELENS_TAGS:
            other += 1
            continue
        movie = movies.get(row.cells.get("movieId") or "")
        description = None
        if movie is not None:
            genres = ", ".join(g for g in (movie.get("genres") or "").split("|") if g != "(no genres listed)")
            description = f"{movie['title']} [{genres}]" if genres else movie["title"]
        rows.append(replace(row, cells={**row.cells, "tag": tag, "description": description}))
    return rows, {"tag_applications_outside_label_set": other, "excluded_tags": list(MOVIELENS_EXCLUDED_TAGS)}


def _movielens_options() -> SplitOptions:
    # Few people tag a lot: 5 users have >= 23 tagged movies within the label set, so each
    # gives 10 dev and 10 test questions (their latest), and earlier ones train.
    return SplitOptions(split_by="time", questions_per_user=10, min_history=3, max_questions=CPU_CAPS,
                        dedup_on=("description",), labels=MOVIELENS_TAGS, seed=0)


# -- TweepFake human tweets ---------------------------------------------------------------------
TWEEPFAKE_DIR = "tweepfake"
TWEEPFAKE_FILES = ("train.csv", "validation.csv", "test.csv")
TWEET_MIN_WORDS = 6
URL = re.compile(r"https?://\S+")
TWEEPFAKE_TITLE = "TweepFake (Fagni et al. 2021), human accounts only (account.type == human)"
TWEEPFAKE_CITATION = ("T. Fagni, F. Falchi, M. Gambini, A. Martella and M. Tesconi. TweepFake: About detecting "
                      "deepfake tweets. PLOS ONE 16(5): e0251415, 2021. https://doi.org/10.1371/journal.pone.0251415")
TWEEPFAKE_TERMS = ("Research use; the tweets remain subject to X/Twitter's terms (the local copy states no "
                   "licence); never redistribute them.")


def clean_tweet(text: str) -> str:
    """Unescape HTML entities and drop t.co links: random short URLs no model can predict."""
    return " ".join(URL.sub(" ", html.unescape(text)).split())


def tweepfake_rows(folder: Path) -> tuple[list[Row], dict[str, Any]]:
    """Human tweets with at least ``TWEET_MIN_WORDS`` words, cut into a start and the rest.

    The question gives the first half of a tweet's words and asks for the rest; the rest
    depends on the account (its topics, phrasing, signature jokes), which is what the
    profile of the account's earlier tweets can tell a model.
    """
    rows, bots, short = [], 0, 0
    for name in TWEEPFAKE_FILES:
        for row in read_table(folder / name, delimiter=";"):
            if (row.cells.get("account.type") or "").strip() != "human":
                bots += 1
                continue
            words = clean_tweet(row.cells.get("text") or "").split()
            if len(words) < TWEET_MIN_WORDS:
                short += 1
                continue
            cut = len(words) // 2
            rows.append(replace(row, cells={**row.cells, "text": " ".join(words), "start": " ".join(words[:cut]),
                                            "rest": " ".join(words[cut:])}))
    return rows, {"bot_tweets_dropped": bots, f"human_tweets_under_{TWEET_MIN_WORDS}_words_dropped": short,
                  "text_cleaning": "HTML entities unescaped, http(s) links removed, whitespace collapsed"}


def _tweet_options() -> SplitOptions:
    # 17 accounts: the latest 5 tweets of each are test, the 5 before dev (85 each); at
    # least 20 earlier tweets as history; profiles hold the 300 latest earlier tweets.
    return SplitOptions(split_by="time", questions_per_user=5, min_history=20, max_profile=300,
                        max_questions=CPU_CAPS, dedup_on=("text",), seed=0)


# -- recipes and task specs ---------------------------------------------------------------------
TWEET_TEMPLATE = "Complete the following tweet without any explanation before or after it: {start}"
SUMMARY_TEMPLATE = "Generate a summary for the following product review: {text}"
LAMP3_TEMPLATE = ("What is the score of the following review on a scale of 1 to 5? just answer with "
                  "1, 2, 3, 4, or 5 without further explanation. review: {text}")
MOVIELENS_TEMPLATE = ("Which tag does this movie relate to among the following tags? Just answer with the tag name "
                      "without further explanation. tags: [" + ", ".join(MOVIELENS_TAGS) + "] "
                      "description: {description}")

RECIPES: dict[str, Recipe] = {
    "amazon-rating": Recipe(
        task="amazon-rating", dataset=AMAZON_DIR, files=(AMAZON_FILE,), rows=amazon_rows,
        columns=Columns(user="reviewerID", time="unixReviewTime", output="overall", input_template=LAMP3_TEMPLATE,
                        fields={"text": "reviewText", "score": "overall"}),
        options=_amazon_options(), title=AMAZON_TITLE, citation=AMAZON_CITATION, terms=AMAZON_TERMS,
        ordering="unixReviewTime (day resolution), ties in file order",
    ),
    "amazon-summary": Recipe(
        task="amazon-summary", dataset=AMAZON_DIR, files=(AMAZON_FILE,), rows=amazon_rows,
        columns=Columns(user="reviewerID", time="unixReviewTime", output="summary", input_template=SUMMARY_TEMPLATE,
                        fields={"text": "reviewText", "title": "summary"}),
        options=_amazon_options(), title=AMAZON_TITLE, citation=AMAZON_CITATION, terms=AMAZON_TERMS,
        ordering="unixReviewTime (day resolution), ties in file order",
    ),
    "movielens-tag": Recipe(
        task="movielens-tag", dataset=MOVIELENS_DIR, files=("tags.csv", "movies.csv"), rows=movielens_rows,
        columns=Columns(user="userId", time="timestamp", output="tag", input_template=MOVIELENS_TEMPLATE,
                        fields={"description": "description", "tag": "tag"}),
        options=_movielens_options(), title=MOVIELENS_TITLE, citation=MOVIELENS_CITATION, terms=MOVIELENS_TERMS,
        ordering="tag timestamp; a user's first tag of a movie is kept",
    ),
    "tweets": Recipe(
        task="tweets", dataset=TWEEPFAKE_DIR, files=TWEEPFAKE_FILES, rows=tweepfake_rows,
        columns=Columns(user="screen_name", output="rest", input_template=TWEET_TEMPLATE,
                        fields={"text": "text", "start": "start", "rest": "rest"}),
        options=_tweet_options(), title=TWEEPFAKE_TITLE, citation=TWEEPFAKE_CITATION, terms=TWEEPFAKE_TERMS,
        ordering=("TweepFake has no timestamps: file order stands in for time (train.csv, then validation.csv, "
                  "then test.csv, rows in file order), so an account's dev/test questions are its last tweets in "
                  "TweepFake's own validation/test files; items carry no 'date' and recency means file order"),
    ),
}


def find_dataset_dir(recipe: Recipe, data: str) -> Path:
    """Resolve ``--data`` (``auto``/``realdata``, a realdata root, or the dataset folder itself)."""
    if data in ("auto", "realdata"):
        root = default_realdata_root()
    elif data == "synthetic" or data.startswith("synthetic:"):
        raise ValueError(f"{recipe.task} is built from real people's data and has no synthetic version; "
                         f"use --data auto (or a realdata folder)")
    else:
        root = Path(data).expanduser()
    for folder in (root / recipe.dataset, root):
        if all((folder / f).is_file() for f in recipe.files):
            return folder
    wanted = ", ".join(f"{recipe.dataset}/{f}" for f in recipe.files)
    raise FileNotFoundError(
        f"{recipe.task} needs the public dataset files {wanted} under {root}. Point --data or "
        f"${REALDATA_ENV} at the realdata folder (default ../shared/realdata); see docs/realdata.md."
    )


def _fingerprint(recipe: Recipe, options: SplitOptions, sources: Mapping[str, str]) -> str:
    """sha256 over the source files' hashes and everything that shapes the conversion."""
    payload = {"sources": dict(sorted(sources.items())), "recipe_version": RECIPE_VERSION,
               "converter_version": CONVERTER_VERSION, "task": recipe.task,
               "columns": asdict(recipe.columns), "options": asdict(options)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=list).encode()).hexdigest()


def convert_recipe(recipe: Recipe, folder: Path, out_dir: Path, options: SplitOptions | None = None,
                   lamp_name: str | None = None) -> ConversionReport:
    """Run one recipe on a dataset folder into ``out_dir`` (what ``bench data convert --recipe`` does)."""
    options = options or recipe.options
    sources = {f: sha256_file(folder / f) for f in recipe.files}
    rows, notes = recipe.rows(folder)
    extra = {"realdata": {"dataset": recipe.dataset, "title": recipe.title, "citation": recipe.citation,
                          "terms": recipe.terms, "ordering": recipe.ordering, "recipe": recipe.task,
                          "recipe_version": RECIPE_VERSION, "source_sha256": sources, "preparation": notes,
                          "fingerprint": _fingerprint(recipe, options, sources)}}
    return convert_rows(rows, out_dir, columns=recipe.columns, options=options,
                        lamp_name=lamp_name or RECIPE_TASKS[recipe.task].lamp_name,
                        sources=[folder / f for f in recipe.files], extra_manifest=extra)


def converted_dir(recipe: Recipe, data: str) -> Path:
    """The cached LaMP-format folder for a recipe, converting on first use.

    ``data`` may also be a folder that ``bench data convert --recipe`` wrote (it has a
    ``conversion.json`` for this recipe): that is how non-default sizes are run.
    """
    given = Path(data).expanduser()
    if data not in ("auto", "realdata") and (given / "conversion.json").is_file():
        manifest = json.loads((given / "conversion.json").read_text())
        if manifest.get("realdata", {}).get("recipe") != recipe.task:
            raise ValueError(f"{given} was converted by recipe {manifest.get('realdata', {}).get('recipe')!r}, "
                             f"not {recipe.task!r}")
        return given
    folder = find_dataset_dir(recipe, data)
    sources = {f: sha256_file(folder / f) for f in recipe.files}
    target = cache_root() / "realdata" / f"{recipe.task}-{_fingerprint(recipe, recipe.options, sources)[:16]}"
    if not (target / "conversion.json").is_file():
        convert_recipe(recipe, folder, target)
    return target


def load_realdata_split(task: TaskSpec, data: str, split: str, *, seed: int = 0) -> Split:
    """The ``TaskSpec.load_split`` of every real-data task (``seed`` is the run's; the
    conversion has its own fixed seed so every run of a task sees the same questions)."""
    from tasks import loader

    recipe = RECIPES[task.name]
    where = converted_dir(recipe, data)
    loaded = loader.load_split(task, where, split)
    manifest = json.loads((where / "conversion.json").read_text())
    info = manifest["realdata"]
    source = DataSource(
        kind=f"realdata:{recipe.dataset}",
        location=str(where),
        checksum=info["fingerprint"],
        detail={
            "dataset": info["title"], "citation": info["citation"], "terms": info["terms"],
            "source_sha256": info["source_sha256"], "ordering": info["ordering"],
            "recipe": info["recipe"], "recipe_version": info["recipe_version"],
            "lamp_analogue": task.extra.get("lamp_analogue"), "options": manifest["options"],
            "counts": manifest["counts"], "rows": manifest["rows"], "preparation": info["preparation"],
            "lamp_format_checksum": loaded.source.checksum,
        },
    )
    return Split(task=task.name, name=split, examples=loaded.examples, source=source)


def _spec(name: str, analogue: str, **kw: Any) -> TaskSpec:
    recipe = RECIPES[name]
    return TaskSpec(
        name=name, lamp_name=name.replace("-", "_"), input_template=recipe.columns.input_template,
        load_split=load_realdata_split, source=recipe.title,
        extra={"synthetic": False, "realdata": recipe.dataset, "lamp_analogue": analogue,
               "note": f"real people's data from {recipe.title}; see docs/realdata.md"},
        **kw,
    )


# Each task takes its LaMP analogue's PPlug settings (tasks/lamp.py): generation and target
# caps of 128 new tokens (10 for the rating task), and the analogue's history text (the
# review, the review + its summary line, the movie description, the whole tweet); the
# user's own ratings and tags stay out of it, as in the reference. Version 2.
REALDATA_TASKS: tuple[TaskSpec, ...] = (
    _spec("amazon-rating", "lamp3", description="Amazon reviewer's 1-5 rating of their own review (LaMP-3 style)",
          kind="regression", metrics=("mae", "rmse"), item_fields=("text", "score"),
          query=after("review:"), corpus_text=fields("text"), item_output_field="score", item_template=None,
          labels=("1", "2", "3", "4", "5"), max_new_tokens=10, small_max_new_tokens=4, parse_output=parse_rating, prompt_style="lamp3",
          history_text=fields("text"), version=2),
    _spec("amazon-summary", "lamp4", description="Amazon reviewer's own summary line for a review (LaMP-4 style)",
          kind="generation", metrics=("rouge-1", "rouge-L"), item_fields=("text", "title"),
          query=after("review:"), corpus_text=fields("title", "text"), item_output_field="title",
          item_template=None, max_new_tokens=128, small_max_new_tokens=32, parse_output=parse_generation, prompt_style="lamp4",
          history_text=fields("text", "title"), version=2),
    _spec("movielens-tag", "lamp2", description="MovieLens user's tag for a movie, 15 frequent tags (LaMP-2 style)",
          kind="classification", metrics=("accuracy", "f1"), item_fields=("description", "tag"),
          query=after("description:"), corpus_text=fields("description"), item_output_field="tag",
          item_template=None, labels=MOVIELENS_TAGS, max_new_tokens=128, small_max_new_tokens=8, parse_output=parse_label(MOVIELENS_TAGS),
          prompt_style="lamp2", history_text=fields("description"), version=2),
    _spec("tweets", "lamp7", description="Complete a human account's tweet in its own style (LaMP-7 style)",
          kind="generation", metrics=("rouge-1", "rouge-L"), item_fields=("text", "start", "rest"),
          query=after(":"), corpus_text=fields("text"), item_output_field="rest", item_template=None,
          max_new_tokens=128, small_max_new_tokens=64, parse_output=parse_generation, prompt_style="lamp7",
          history_text=fields("text"), version=2),
)
RECIPE_TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in REALDATA_TASKS}
