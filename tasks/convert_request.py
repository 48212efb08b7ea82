"""One ``bench data convert`` request, from plain option values to a finished conversion.

The command line only declares options and prints; everything that decides *what* gets
converted lives here so that it can be called (and tested) without typer: choosing between
a real-data recipe and the user's own tables, applying option overrides on top of a
recipe's or the converter's defaults, taking the template, labels and LaMP name from a
task, and refusing incomplete mappings with a message that names the option to add. The
messages name ``bench data convert``'s options (``--field``, ``--recipe``...) because that
is where a person meets them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.api import TaskSpec
from tasks import realdata as recipes
from tasks.convert import (
    Columns,
    ConversionReport,
    ConvertError,
    SplitOptions,
    convert_table,
    parse_mapping,
)


def convert_request(out: Path, *, tables: Sequence[Path] = (), recipe: str | None = None, realdata: str = "auto",
                    task: TaskSpec | None = None, user: str | None = None, time: str | None = None,
                    item_id: str | None = None, output: str | None = None, fields: Sequence[str] = (),
                    question_fields: Sequence[str] = (), input_template: str | None = None,
                    lamp_name: str | None = None, fmt: str | None = None, delimiter: str = ",", header: bool = True,
                    column_names: Sequence[str] | None = None, split_by: str | None = None,
                    questions_per_user: int | None = None, min_history: int | None = None,
                    max_profile: int | None = None, dev_fraction: float | None = None,
                    test_fraction: float | None = None, max_questions: Mapping[str, int | None] | None = None,
                    dedup: bool | None = None, dedup_on: Sequence[str] = (), skip_incomplete: bool | None = None,
                    seed: int | None = None) -> ConversionReport:
    """Convert ``tables`` (or the real-data ``recipe``) into LaMP-format files in ``out``.

    Every split option left ``None`` keeps the default of the recipe (or of
    :class:`~tasks.convert.SplitOptions` for tables); ``max_questions`` maps split -> cap,
    ``None`` caps ignored. ``fields`` and ``question_fields`` are ``field=column`` strings.
    ``task`` (tables only) supplies the input template, the labels every output must be
    one of, and the LaMP name, and its profile fields must all be mapped. Raises
    :class:`~tasks.convert.ConvertError` for a request that cannot be carried out.
    """
    overrides: dict[str, Any] = {k: v for k, v in {
        "split_by": split_by, "questions_per_user": questions_per_user, "min_history": min_history,
        "max_profile": max_profile, "dev_fraction": dev_fraction, "test_fraction": test_fraction,
        "dedup": dedup, "dedup_on": tuple(dedup_on) or None, "skip_incomplete": skip_incomplete, "seed": seed,
    }.items() if v is not None}
    caps = {k: v for k, v in (max_questions or {}).items() if v is not None}
    if recipe:
        if tables:
            raise ConvertError("give either TABLES or --recipe, not both")
        return _convert_recipe(recipe, realdata, out, overrides, caps)
    if not tables:
        raise ConvertError("give one or more TABLES to convert, or --recipe NAME")
    mapped = parse_mapping(fields, "--field")
    if task is not None and set(task.item_fields) - set(mapped):
        raise ConvertError(f"task {task.name} needs profile fields {', '.join(task.item_fields)}; "
                           f"map each with --field NAME=COLUMN")
    template = input_template or (task.input_template if task else None)
    if not (user and output and mapped and template):
        raise ConvertError("a table needs --user, --output, at least one --field and --input-template (or --task)")
    columns = Columns(user=user, output=output, input_template=template, fields=mapped, time=time, id=item_id,
                      question_fields=parse_mapping(question_fields, "--question-field"))
    labels = task.labels if task is not None and task.kind != "generation" else ()
    options = SplitOptions(**{"labels": labels, **overrides, "max_questions": caps})
    return convert_table(tables, out, columns=columns, options=options,
                         lamp_name=lamp_name or (task.lamp_name if task else "custom"), fmt=fmt,
                         delimiter=delimiter, header=header, column_names=column_names)


def _convert_recipe(name: str, realdata: str, out: Path, overrides: Mapping[str, Any],
                    caps: Mapping[str, int]) -> ConversionReport:
    """Run a named recipe with the given overrides on top of its own options and caps."""
    if name not in recipes.RECIPES:
        raise ConvertError(f"unknown recipe {name!r}; choose one of {', '.join(recipes.RECIPES)}")
    chosen = recipes.RECIPES[name]
    options = dataclasses.replace(chosen.options, **overrides, max_questions={**chosen.options.max_questions, **caps})
    return recipes.convert_recipe(chosen, recipes.find_dataset_dir(chosen, realdata), out, options)
