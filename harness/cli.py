"""The ``bench`` command line (typer). Every command has ``--help``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.api import PROFILES
from harness.registries import METHODS, MODELS, PROMPT_STYLES, TASKS
from harness.registry import Registry, RegistryError

app = typer.Typer(help="persona-bench: which way of personalizing an LLM works, at what cost.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Get, generate, validate and convert LaMP-format data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True)

DATA_HELP = ("'auto' (env PERSONA_BENCH_DATA, else downloaded files, else synthetic), 'synthetic[:SEED]', "
             "a folder of official LaMP files, or a Hugging Face datasets folder / hub id.")


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def _params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            _fail(f"method parameter {item!r} must look like name=value")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


LISTS = ("methods", "tasks", "models", "retrievers", "prompt-styles")


def _description(obj: Any) -> str:
    """An entry's own ``description``, else the first line of its docstring."""
    text = getattr(obj, "description", None)
    if isinstance(text, str) and text:
        return text
    return (obj.__doc__ or "").strip().split("\n")[0]


@app.command("list")
def list_(what: Annotated[str, typer.Argument(help=", ".join(LISTS))] = "methods") -> None:
    """List registered methods, tasks, model presets, retrievers or prompt styles (plugins included)."""
    if what not in LISTS:
        _fail(f"unknown list {what!r}; choose one of {', '.join(LISTS)}")
    if what == "retrievers":
        from harness.retrieval import RETRIEVERS  # numpy: imported only when listed

        registry: Registry[Any] = RETRIEVERS
    else:
        registry = {"methods": METHODS, "tasks": TASKS, "models": MODELS, "prompt-styles": PROMPT_STYLES}[what]
    table = Table(title=what)
    table.add_column("name")
    table.add_column("description")
    for name, obj in registry.items():
        table.add_row(escape(name), escape(_description(obj)))
    console.print(table)
    for bad in registry.plugin_errors:
        err.print(f"[yellow]plugin {bad.name!r} ({bad.entry_point}) unusable:[/] {bad.error}", highlight=False)


@app.command()
def run(
    method: Annotated[str, typer.Option("--method", "-m", help="Method name (see `bench list methods`).")],
    task: Annotated[str, typer.Option("--task", "-t", help="Task name, e.g. lamp2.")],
    data: Annotated[str, typer.Option(help=DATA_HELP)] = "auto",
    split: Annotated[str, typer.Option(help="Split to evaluate (train/dev).")] = "dev",
    limit: Annotated[Optional[int], typer.Option(help="Evaluate only the first N questions (N >= 1).")] = None,
    llm: Annotated[str, typer.Option(help="LLM preset, local path or hub id.")] = "smollm2-135m",
    encoder: Annotated[str, typer.Option(help="Sentence encoder preset, path or hub id.")] = "minilm-l6",
    seed: Annotated[int, typer.Option(help="Seed for training and any randomness.")] = 0,
    out: Annotated[Path, typer.Option(help="Results root directory.")] = Path("runs"),
    param: Annotated[list[str], typer.Option("--param", "-p", help="Method parameter name=value (repeatable).")] = [],  # noqa: B006
    profile: Annotated[Optional[str], typer.Option(help=(
        "Settings profile: 'paper' (the reference code's settings) or 'small' (documented CPU reductions). "
        "Default: paper on a GPU, small on CPU."))] = None,
    decoding: Annotated[str, typer.Option(help=(
        "'free' generation (the paper) or 'constrained': the task label with the highest likelihood."))] = "free",
    beams: Annotated[Optional[int], typer.Option(help="Beam width (default: the profile's; paper 4, small 1).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Examples per prediction batch (default: the profile's).")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Override the task's generation length.")] = None,
    max_input_tokens: Annotated[Optional[int], typer.Option(help=(
        "Ceiling on every method's prompt token budget (default: the profile's; paper 2048, small 512)."))] = None,
    shard: Annotated[Optional[str], typer.Option(help=(
        "i/n: predict only shard i of n (multi-process). Under torchrun / accelerate launch it defaults "
        "to RANK/WORLD_SIZE from the launcher."))] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto; under a launcher cuda means cuda:LOCAL_RANK.")] = "cpu",
    force: Annotated[bool, typer.Option(help=(
        "Start the cell afresh: old results and artifacts are removed, and it trains even where a shared "
        "fit exists."))] = False,
    fits_from: Annotated[list[Path], typer.Option("--fits-from", help=(
        "Another results root to look in for a finished cell that trained exactly as this one would "
        "(differing only in --decoding or --beams); its fit is shared instead of training again. --out is "
        "always searched (repeatable)."))] = [],  # noqa: B006
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run one cell (task x method x models x seed), or reuse / resume it."""
    from harness import inputs
    from harness.runner import run as run_cell
    from harness.store import RunLocked

    try:
        request = inputs.run_request(
            task=task, method=method, params=_params(param), llm=llm, encoder=encoder, data=data, split=split,
            limit=limit, seed=seed, out=out, shard_flag=shard, force=force, progress=progress, device_flag=device,
            fits_from=tuple(fits_from),
            profile=profile, decoding=decoding, num_beams=beams, batch_size=batch_size,
            max_new_tokens=max_new_tokens, max_input_tokens=max_input_tokens)
        result = run_cell(request)
    except (RegistryError, ValueError, FileNotFoundError, RunLocked) as exc:
        _fail(str(exc))
    except OSError as exc:  # a read-only or full results folder
        _fail(inputs.os_error(exc, out))
    if not result.metrics:
        console.print(f"shard {request.shard[0]}/{request.shard[1]} done: {result.path} "
                      "(metrics are written when every shard has finished)")
        return
    state = "reused finished run" if result.reused else "finished"
    console.print(f"[green]{state}[/]: {result.path}  (profile {result.metrics.get('profile')}, "
                  f"decoding {result.metrics.get('decoding')})")
    console.print_json(json.dumps({k: result.metrics[k] for k in ("official", "parsed")}))


@app.command()
def score(
    task: Annotated[str, typer.Option(help="Task name, e.g. lamp2.")],
    predictions: Annotated[Path, typer.Option(help="LaMP-format predictions JSON.")],
    golds: Annotated[Path, typer.Option(help="LaMP-format outputs (golds) JSON.")],
    out: Annotated[Optional[Path], typer.Option(help="Write the metrics JSON here too.")] = None,
) -> None:
    """Score a LaMP-format predictions file against golds with the official rules.

    This is the official scoring: each output is stripped and scored as it is, exactly
    as LaMP's eval/evaluation.py does; no answer parsing is applied.
    """
    from harness.metrics import score_files
    from harness.store import atomic_write_json

    try:
        metrics = score_files(TASKS.get(task), predictions, golds)
    except (RegistryError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    err.print("official LaMP scoring of the outputs as given (stripped, not parsed)", highlight=False)
    console.print_json(json.dumps(metrics))
    if out:
        atomic_write_json(out, metrics)


@app.command()
def curves(
    runs: Annotated[Optional[list[Path]], typer.Option(help="Results root(s) to read runs from (repeatable).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for curves-<task>.png and curves.md.")] = Path("curves"),
    metrics: Annotated[str, typer.Option("--metrics", help="official or parsed scores beside the curves.")] = "official",
) -> None:
    """Training curves of every trained cell: how far it trained, whether it converged.

    Plots train and held-out loss per task; curves.md says, per cell, the steps against its
    budget, the best held-out loss and whether that loss had flattened when training ended.
    """
    from harness.report.curves import curves_markdown, load_curves, plot_curves

    roots = runs or [Path("runs")]
    found, notes = load_curves(roots)
    for note in notes:
        err.print(note, highlight=False, markup=False)
    if not found:
        _fail(f"no trained run with artifacts/loss.json under {', '.join(map(str, roots))}")
    out.mkdir(parents=True, exist_ok=True)
    text = curves_markdown(found, metrics)
    (out / "curves.md").write_text(text + "\n")
    for path in plot_curves(found, out):
        console.print(f"wrote {path}")
    console.print(text, highlight=False, markup=False, soft_wrap=True)


@app.command()
def table(
    runs: Annotated[Path, typer.Option(help="Results root to read runs from.")] = Path("runs"),
    fmt: Annotated[str, typer.Option("--format", help="md, latex or csv.")] = "md",
    which: Annotated[str, typer.Option("--table", help="1, ablation, 2, 3 or cost.")] = "1",
    paper: Annotated[bool, typer.Option(help="Add the paper's published figures as a separate block.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write the table and its figures (PNG, PDF) here.")] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for CIs and paired tests (0: none).")] = 1000,
    stat_seed: Annotated[int, typer.Option(help="Seed of the bootstrap draws.")] = 0,
    metrics: Annotated[str, typer.Option("--metrics", help="official (LaMP's scorer on the raw generation) or parsed; never mixed.")] = "official",
    versus: Annotated[Optional[str], typer.Option(
        help="Also test every column against this one: its label as printed, e.g. 'bm25 (k=4)', "
             "or a method with a single column.")] = None,
) -> None:
    """Tabulate finished runs in the paper's layout, with 95% CIs and paired tests."""
    from harness.tables import render_table

    try:
        text = render_table(runs, which=which, fmt=fmt, paper=paper, out=out, resamples=resamples, seed=stat_seed,
                            metric_set=metrics, versus=versus,
                            notify=lambda m: err.print(m, highlight=False, markup=False))
    except ValueError as exc:
        _fail(str(exc))
    console.print(text, highlight=False, markup=False, soft_wrap=True)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="A finished run folder (A).")],
    run_b: Annotated[Path, typer.Argument(help="The run folder A is tested against (B).")],
    metrics: Annotated[str, typer.Option("--metrics", help="official or parsed.")] = "official",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples (0: no CIs or test).")] = 1000,
    stat_seed: Annotated[int, typer.Option(help="Seed of the bootstrap draws.")] = 0,
    allow_under_budget: Annotated[bool, typer.Option(
        help="Compare a run that stopped short of its training budget (the report says so).")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write the report (markdown) here.")] = None,
) -> None:
    """Paired bootstrap of two runs on the questions both answered.

    For cells no table puts side by side: a --limit N run against a full-split one, or runs
    in two results roots. Refuses runs of different tasks, splits or data files.
    """
    from harness.report.compare import compare_paths, render_comparison

    try:
        result = compare_paths(run_a, run_b, metric_set=metrics, resamples=resamples, seed=stat_seed,
                               allow_under_budget=allow_under_budget)
    except (ValueError, RegistryError, FileNotFoundError) as exc:
        _fail(str(exc))
    text = render_comparison(result)
    if out is not None:
        out.write_text(text)
    console.print(text, highlight=False, markup=False, soft_wrap=True)


@app.command()
def sweep(
    config: Annotated[Optional[Path], typer.Argument(help="TOML sweep config (see sweeps/).")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated tasks (overrides the config).")] = None,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated methods (overrides the config).")] = None,
    llms: Annotated[Optional[str], typer.Option(help="Comma-separated LLMs.")] = None,
    encoders: Annotated[Optional[str], typer.Option(help="Comma-separated encoders.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Comma-separated seeds, e.g. 0,1,2.")] = None,
    data: Annotated[Optional[str], typer.Option(help=DATA_HELP)] = None,
    split: Annotated[Optional[str], typer.Option(help="Split to evaluate.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="First N questions per task (0: all).")] = None,
    beams: Annotated[Optional[int], typer.Option(help="Beam width.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Examples per prediction batch.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Override the tasks' generation length.")] = None,
    max_input_tokens: Annotated[Optional[int], typer.Option(help="Prompt token budget.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Results root directory.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda.")] = None,
    profile: Annotated[Optional[str], typer.Option(help="paper or small (default: paper on a GPU, small on CPU).")] = None,
    decoding: Annotated[Optional[str], typer.Option(help="free or constrained.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Sweep name (its summary file name).")] = None,
    skip_unregistered: Annotated[Optional[bool], typer.Option(
        help="List methods that are not registered as skipped instead of failed.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list the cells.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress view.")] = True,
) -> None:
    """Run a grid of cells from a config file and/or flags; finished cells are reused, failures reported."""
    import dataclasses

    from rich.markup import escape

    from harness import inputs
    from harness import sweep as sw

    split_list = (lambda v: None if v is None else tuple(x.strip() for x in v.split(",") if x.strip()))
    try:
        overrides = dict(
            tasks=split_list(tasks), methods=sw.parse_methods([methods]) if methods else None, llms=split_list(llms),
            encoders=split_list(encoders), seeds=None if seeds is None else inputs.int_list(seeds, "--seeds"),
            data=None if data is None else inputs.data(data, "--data"), split=split,
            limit=None if not limit else inputs.limit(limit, "--limit"), out=out, device=device, name=name,
            skip_unregistered=skip_unregistered, profile=None if profile is None else inputs.choice(
                profile, PROFILES, "--profile"),
            decoding=None if decoding is None else inputs.decoding(decoding, "--decoding"),
            **inputs.generation({"num_beams": beams, "batch_size": batch_size, "max_new_tokens": max_new_tokens,
                                 "max_input_tokens": max_input_tokens}),
        )
        if config is not None:
            spec = sw.with_overrides(sw.load_spec(config), **overrides)
        else:
            base = {k: v for k, v in overrides.items() if v is not None and k in {"tasks", "methods"}}
            spec = sw.with_overrides(sw.spec_from_mapping({**base, "name": name or "sweep"}, where="flags"),
                                     **overrides)
        inputs.device(spec.device, "--device" if device else "device")
        inputs.out_dir(spec.out, "--out" if out else "out")
    except (sw.SweepConfigError, ValueError) as exc:
        _fail(str(exc))
    if limit == 0:  # an explicit 0 lifts a config's limit: the full split
        spec = dataclasses.replace(spec, limit=None)
    grid = sw.cells(spec)
    if dry_run:
        for cell in grid:
            console.print(cell.label, highlight=False, markup=False)
        console.print(f"{len(grid)} cells -> {spec.out}")
        return
    try:
        report = sw.run_sweep(spec, console=err, progress=progress)
    except OSError as exc:  # the summary could not be written: a read-only or full results folder
        _fail(inputs.os_error(exc, spec.out))
    summary = Table(title=f"sweep {spec.name}: {len(grid)} cells")
    for column in ("cell", "status", "seconds", "metrics / error"):
        summary.add_column(column)
    colors = {"ran": "green", "reused": "cyan", "failed": "red", "skipped": "yellow"}
    for o in report.outcomes:
        detail = o.error or ", ".join(f"{k}={v:.3f}" for k, v in o.metrics.items())
        summary.add_row(escape(o.cell.label), f"[{colors[o.status]}]{o.status}[/]", f"{o.seconds:.1f}", escape(detail))
    console.print(summary)
    console.print(f"summary: {report.summary_path}  ("
                  + ", ".join(f"{s}: {report.count(s)}" for s in colors) + ")", highlight=False)
    if report.failed:
        raise typer.Exit(1)


# -- data --------------------------------------------------------------------------------------
@data_app.command("synth")
def data_synth(
    task: Annotated[str, typer.Option(help="Task name or 'all'.")],
    out: Annotated[Path, typer.Option(help="Output directory (one sub-folder per task for 'all').")],
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    train: Annotated[Optional[int], typer.Option(help="Train questions.")] = None,
    dev: Annotated[Optional[int], typer.Option(help="Dev questions.")] = None,
    test: Annotated[Optional[int], typer.Option(help="Test questions.")] = None,
    min_profile: Annotated[Optional[int], typer.Option(help="Smallest profile (default: the generator's).")] = None,
    max_profile: Annotated[Optional[int], typer.Option(help="Largest profile (default: the generator's).")] = None,
    user_based: Annotated[bool, typer.Option(help="User-based split (no user_id) instead of time-based.")] = False,
) -> None:
    """Generate synthetic LaMP-format data with a planted per-user signal."""
    from tasks import synthetic
    from tasks.synth_request import synthesize

    try:
        for name, target in synthesize(task, out, seed=seed, sizes={"train": train, "dev": dev, "test": test},
                                       min_profile=min_profile, max_profile=max_profile, user_based=user_based):
            console.print(f"{name}: wrote {target}  [dim]signal: {synthetic.SIGNAL_DOC.get(name, '')}[/]")
    except (RegistryError, ValueError) as exc:
        _fail(str(exc))


@data_app.command("validate")
def data_validate(
    task: Annotated[str, typer.Option(help="Task name, e.g. lamp2.")],
    path: Annotated[Path, typer.Argument(help="Folder of LaMP-format files.")],
    split: Annotated[list[str], typer.Option(help="Split to check (repeatable; default: every split present).")] = [],  # noqa: B006
) -> None:
    """Check LaMP-format files and name every problem (file, record, field)."""
    from tasks.loader import present_splits, validate_dir

    try:
        spec = TASKS.get(task)
        problems = validate_dir(spec, path, tuple(split) or None)
    except (RegistryError, ValueError) as exc:
        _fail(str(exc))
    if problems:
        for p in problems:
            err.print(f"[red]-[/] {p}", highlight=False)
        raise typer.Exit(1)
    checked = tuple(split) or present_splits(spec, path)
    console.print(f"[green]ok[/]: {path} is valid {task} data ({', '.join(checked)})")


@data_app.command("download")
def data_download(
    task: Annotated[str, typer.Option(help="Task name, e.g. lamp2.")],
    dest: Annotated[Optional[Path], typer.Option(help="Where to put the files (default: the cache).")] = None,
    split_kind: Annotated[str, typer.Option(help="time or user.")] = "time",
) -> None:
    """Fetch the official LaMP files with checksums, resume and a progress bar."""
    from tasks.download import download
    from tasks.sources import default_download_dir

    try:
        paths = download(TASKS.get(task), dest or default_download_dir(), split_kind=split_kind)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    for p in paths:
        console.print(f"downloaded {p}")


@data_app.command("export-hf")
def data_export_hf(
    task: Annotated[str, typer.Option(help="Task name, e.g. lamp2.")],
    data: Annotated[str, typer.Option(help=DATA_HELP)],
    out: Annotated[Path, typer.Option(help="Output Hugging Face datasets folder.")],
) -> None:
    """Export a task's data as a Hugging Face ``datasets`` folder (``load_from_disk``)."""
    from tasks.hf import export_hf
    from tasks.sources import resolve_data_dir

    spec = TASKS.get(task)
    console.print(f"wrote {export_hf(spec, resolve_data_dir(spec, data), out)}")


@data_app.command("convert")
def data_convert(
    tables: Annotated[Optional[list[Path]], typer.Argument(help="CSV or JSONL table(s) with the same columns.")] = None,
    out: Annotated[Path, typer.Option(help="Folder to write the LaMP-format files into.")] = Path("converted"),
    recipe: Annotated[Optional[str], typer.Option(help="Convert a real-data recipe instead of TABLES: "
                                                  "amazon-rating, amazon-summary, movielens-tag or tweets.")] = None,
    realdata: Annotated[str, typer.Option(help="Realdata folder for --recipe ('auto': $PERSONA_BENCH_REALDATA "
                                          "or ../shared/realdata).")] = "auto",
    task: Annotated[Optional[str], typer.Option(help="Take the input template, labels and LaMP name from this "
                                                "task (e.g. lamp3); its profile fields must be mapped.")] = None,
    user: Annotated[Optional[str], typer.Option(help="Column with the user id.")] = None,
    time: Annotated[Optional[str], typer.Option(help="Column with unix seconds or ISO 8601 (default: file order).")] = None,
    item_id: Annotated[Optional[str], typer.Option("--id", help="Column with unique row ids (default: <user>-<n>).")] = None,
    output: Annotated[Optional[str], typer.Option(help="Column with the gold output of a question.")] = None,
    field: Annotated[list[str], typer.Option(help="Profile item field=column (repeatable).")] = [],  # noqa: B006
    question_field: Annotated[list[str], typer.Option(help="Template-only field=column (repeatable).")] = [],  # noqa: B006
    input_template: Annotated[Optional[str], typer.Option(help="Question input, e.g. 'review: {text}'.")] = None,
    lamp_name: Annotated[Optional[str], typer.Option(help="The outputs files' 'task' value.")] = None,
    fmt: Annotated[Optional[str], typer.Option("--format", help="csv or jsonl (default: by suffix).")] = None,
    delimiter: Annotated[str, typer.Option(help="CSV delimiter.")] = ",",
    header: Annotated[bool, typer.Option(help="The CSV's first line names its columns.")] = True,
    column_names: Annotated[Optional[str], typer.Option("--columns", help="Comma-separated CSV column names.")] = None,
    split_by: Annotated[Optional[str], typer.Option(help="user or time.")] = None,
    questions_per_user: Annotated[Optional[int], typer.Option(help="Latest rows per user that become questions.")] = None,
    min_history: Annotated[Optional[int], typer.Option(help="Earlier rows a question needs.")] = None,
    max_profile: Annotated[Optional[int], typer.Option(help="Keep only the most recent N profile items.")] = None,
    dev_fraction: Annotated[Optional[float], typer.Option(help="Share of users in dev (--split-by user).")] = None,
    test_fraction: Annotated[Optional[float], typer.Option(help="Share of users in test (--split-by user).")] = None,
    max_train: Annotated[Optional[int], typer.Option(help="Cap on train questions.")] = None,
    max_dev: Annotated[Optional[int], typer.Option(help="Cap on dev questions.")] = None,
    max_test: Annotated[Optional[int], typer.Option(help="Cap on test questions.")] = None,
    dedup: Annotated[Optional[bool], typer.Option(help="Drop a user's repeated rows (keep the earliest).")] = None,
    dedup_on: Annotated[list[str], typer.Option(help="Fields that define a repeat (repeatable; default all).")] = [],  # noqa: B006
    skip_incomplete: Annotated[Optional[bool], typer.Option(help="Skip rows with an empty required value.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for user shuffling and caps.")] = None,
) -> None:
    """Convert a per-user table (or a real-data recipe) into LaMP-format files.

    Each user's rows go in time order; a question's profile is what that user did before
    it. See docs/realdata.md for the rules and a worked example on your own data.
    """
    from tasks.convert import ConvertError
    from tasks.convert_request import convert_request

    try:
        report = convert_request(
            out, tables=tables or (), recipe=recipe, realdata=realdata, task=TASKS.get(task) if task else None,
            user=user, time=time, item_id=item_id, output=output, fields=field, question_fields=question_field,
            input_template=input_template, lamp_name=lamp_name, fmt=fmt, delimiter=delimiter, header=header,
            column_names=column_names.split(",") if column_names else None, split_by=split_by,
            questions_per_user=questions_per_user, min_history=min_history, max_profile=max_profile,
            dev_fraction=dev_fraction, test_fraction=test_fraction,
            max_questions={"train": max_train, "dev": max_dev, "test": max_test}, dedup=dedup, dedup_on=dedup_on,
            skip_incomplete=skip_incomplete, seed=seed)
    except (ConvertError, RegistryError, FileNotFoundError, TypeError) as exc:
        _fail(str(exc))
    for name, count in report.counts.items():
        console.print(f"{name}: {count['questions']} questions from {count['users']} users")
    console.print(f"rows: {report.rows}")
    console.print(f"[green]wrote[/] {report.out_dir}")


def main() -> None:  # pragma: no cover - console script entry
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":  # `python -m harness.cli`, `torchrun -m harness.cli`, `accelerate launch -m harness.cli`
    main()
