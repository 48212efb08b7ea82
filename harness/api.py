"""The two interfaces third parties implement: a Task (data) and a Method (code).

Data flows one way: a task's loader yields :class:`Example` s, a :class:`Method` turns
batches of them into prediction strings, the task's ``parse_output`` cleans each raw
generation the same way for every method, and :mod:`harness.metrics` scores the result
with the official LaMP rules.
"""

from __future__ import annotations

import dataclasses
import re
import string
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from harness.params import ParamError, parse_params  # noqa: F401 - re-exported: the public import path

if TYPE_CHECKING:
    from harness.backbones import Backbone, GenerationSettings

TaskKind = Literal["classification", "regression", "generation"]
#: Named settings profiles: ``paper`` is each setting exactly as the reference code has it,
#: ``small`` the documented CPU reductions (docs/fidelity.md lists every difference).
Profile = Literal["paper", "small"]
PROFILES: tuple[str, ...] = ("paper", "small")
#: How an answer is produced: ``free`` generation (the paper), or ``constrained``: the
#: label with the highest log-likelihood under the method's own prompt (classification).
Decoding = Literal["free", "constrained"]


@dataclass(frozen=True)
class Example:
    """One LaMP question: the input, the user's profile and (for train/dev) the gold."""

    id: str
    input: str
    profile: tuple[Mapping[str, Any], ...]
    output: str | None = None
    user_id: str | None = None

    @property
    def user_key(self) -> str:
        """Who this question belongs to.

        Time-based LaMP files carry ``user_id`` and one user may ask several questions;
        in user-based files every question's profile is its own user.
        """
        return str(self.user_id) if self.user_id is not None else f"q:{self.id}"


@dataclass(frozen=True)
class DataSource:
    """Where a split came from; recorded in every result so tables never mix sources.

    ``kind`` is e.g. ``"lamp"`` (official-format files), ``"synthetic"``,
    ``"hf-datasets"`` or ``"realdata:amazon"``; ``checksum`` is a sha256 over the bytes
    that were read; ``detail`` holds generator seed/sizes, split kind, etc.
    """

    kind: str
    location: str
    checksum: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_synthetic(self) -> bool:
        return self.kind == "synthetic"


#: The split names of a LaMP task, in order; the one definition every module uses.
SPLITS: tuple[str, ...] = ("train", "dev", "test")


@dataclass(frozen=True)
class Split:
    """A loaded split: its examples in file order, and where they came from."""

    task: str
    name: str  # "train", "dev" or "test"
    examples: tuple[Example, ...]
    source: DataSource


def _identity(text: str) -> str:
    return text


class TaskSpecError(ValueError):
    """A ``TaskSpec`` that contradicts itself; the message lists every problem found."""


#: The old untyped ``TaskSpec.extra`` keys and the typed fields that replace them.
LEGACY_EXTRA_FIELDS: Mapping[str, str] = {
    "synthetic": "has_synthetic_data", "note": "data_note", "lamp_analogue": "lamp_analogue",
    "realdata": "dataset",
}
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


class LegacyExtra(dict):
    """A task's typed data fields under the old ``extra`` keys (a snapshot, for reading).

    Kept so that ``task.extra.get("synthetic", True)`` in code not yet switched to the
    typed fields reads the same answer; it is rebuilt from the typed fields whenever a
    ``TaskSpec`` is built (``dataclasses.replace`` included), so it never disagrees with
    them. Writing into it changes nothing: set the typed fields.
    """


@dataclass(frozen=True)
class TaskSpec:
    """Everything the harness needs to know about a task. A task is data, not code.

    The callables are small pure functions of strings / profile items, so a task can be
    declared in a few lines (see ``tasks/lamp.py``). A spec checks itself when it is
    built (:meth:`problems`) and refuses to exist when it contradicts itself: a wrong
    kind, a classification task without labels, a metric nobody can compute, an unknown
    prompt style, ... (see docs/writing-a-task.md).
    """

    name: str  # registry name, e.g. "lamp2"; also a folder name under runs/
    lamp_name: str  # the "task" field of LaMP outputs files, e.g. "LaMP_2"
    description: str
    kind: TaskKind
    metrics: tuple[str, ...]  # metric names in table order, each in harness.metrics.METRICS
    item_fields: tuple[str, ...]  # fields every profile item must carry (besides id)
    input_template: str  # the LaMP input template, ``{}`` placeholders named by field
    query: Callable[[str], str]  # retrieval query extracted from an input (official)
    corpus_text: Callable[[Mapping[str, Any]], str]  # profile item -> retrieval/encoder text
    item_output_field: str | None  # which item field plays the "output" role (tag, score..)
    item_template: str | None  # item -> task-style input; None means ``input_template``
    labels: tuple[str, ...] = ()  # closed label set: required for classification/regression
    max_new_tokens: int = 32  # the paper's cap on generated and training-target tokens
    # The ``small`` profile's cap (a CPU reduction: the 135M backbone rarely stops by itself
    # and every extra token costs a decoder step); None: ``max_new_tokens``.
    small_max_new_tokens: int | None = None
    parse_output: Callable[[str], str] = _identity  # raw generation -> prediction text
    prompt_style: str | None = None  # a name in harness.registries.PROMPT_STYLES (official RAG prompt)
    # (task, data, split, *, seed) -> Split; data is "synthetic", a directory or a hub id.
    load_split: Callable[..., Split] | None = None
    source: str = "LaMP (Salemi et al. 2023)"
    # PPlug's per-task texts (the reference's ``embedding.py`` / ``process_qry``): what the
    # user encoder embeds per history item, and the query text drawn from an input. None
    # leaves the choice to the method (methods/pplug.py documents its fallback).
    history_text: Callable[[Mapping[str, Any]], str] | None = None
    persona_query: Callable[[str], str] | None = None
    # Where the data comes from (typed; these replace the old untyped ``extra`` flags).
    has_synthetic_data: bool = True  # the synthetic generator can make this task's data
    data_note: str = ""  # how to get the data when nothing built in provides it
    lamp_analogue: str | None = None  # the LaMP task a non-LaMP task mirrors (metrics, prompt)
    dataset: str | None = None  # the public dataset (realdata folder) the task is built from
    # Deprecated: a mapping with the old keys (see LEGACY_EXTRA_FIELDS) is folded into the
    # typed fields; reading ``task.extra`` gives a LegacyExtra view of them.
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # Bumped whenever the task's behaviour (templates, parsing, loading) changes; it
    # enters the run hash, so cells computed under an older version are never reused.
    version: int = 1

    def __post_init__(self) -> None:
        for name in ("metrics", "item_fields", "labels"):
            value = getattr(self, name)
            if isinstance(value, list):  # a list from a plugin's config: store the hashable form
                object.__setattr__(self, name, tuple(value))
        self._fold_legacy_extra()
        problems = self.problems()
        if problems:
            raise TaskSpecError(f"task {self.name!r} is not valid: " + "; ".join(problems))

    def _fold_legacy_extra(self) -> None:
        given = self.extra
        if not isinstance(given, LegacyExtra):  # a view rebuilt below carries no new information
            unknown = sorted(set(given) - set(LEGACY_EXTRA_FIELDS))
            if unknown:
                raise TaskSpecError(f"task {self.name!r}: extra keys {unknown} are not supported; use the typed "
                                    f"fields ({', '.join(LEGACY_EXTRA_FIELDS.values())})")
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for key, attr in LEGACY_EXTRA_FIELDS.items():
                if key not in given:
                    continue
                current = getattr(self, attr)
                if current != defaults[attr] and current != given[key]:
                    raise TaskSpecError(f"task {self.name!r}: extra[{key!r}] = {given[key]!r} contradicts "
                                        f"{attr} = {current!r}")
                object.__setattr__(self, attr, given[key])
        object.__setattr__(self, "extra", LegacyExtra(
            {key: getattr(self, attr) for key, attr in LEGACY_EXTRA_FIELDS.items()}))

    def problems(self) -> list[str]:
        """Every way this spec contradicts itself (empty for a valid spec)."""
        from harness.metrics import metric_problems
        from harness.registries import prompt_style_names

        out: list[str] = []
        if not isinstance(self.name, str) or not _TASK_NAME.fullmatch(self.name):
            out.append("name must be letters, digits and _.+- (it names a folder), starting with a letter or digit")
        for attr in ("lamp_name", "description", "input_template"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr).strip():
                out.append(f"{attr} must be a non-empty string")
        kinds = typing.get_args(TaskKind)
        if self.kind not in kinds:
            out.append(f"kind {self.kind!r} is not one of {', '.join(kinds)}")
        for attr in ("metrics", "item_fields", "labels"):
            value = getattr(self, attr)
            if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
                out.append(f"{attr} must be a tuple of non-empty strings, got {value!r}")
            elif len(set(value)) != len(value):
                out.append(f"{attr} repeats {sorted({v for v in value if value.count(v) > 1})}")
        if not self.metrics:
            out.append("metrics is empty: declare at least one")
        elif self.kind in kinds and isinstance(self.metrics, tuple):
            out.extend(metric_problems(self.kind, self.metrics))
        out.extend(self._label_problems())
        out.extend(self._template_problems())
        for attr in ("query", "corpus_text", "parse_output"):
            if not callable(getattr(self, attr)):
                out.append(f"{attr} must be callable")
        for attr in ("load_split", "history_text", "persona_query"):
            if getattr(self, attr) is not None and not callable(getattr(self, attr)):
                out.append(f"{attr} must be callable or None")
        if self.prompt_style is not None and self.prompt_style not in prompt_style_names():
            out.append(f"prompt_style {self.prompt_style!r} is not a known prompt style "
                       f"({', '.join(prompt_style_names())}; register one with "
                       "harness.registries.register_prompt_style, or leave it None)")
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            out.append(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            out.append(f"version must be a positive integer, got {self.version!r}")
        if not isinstance(self.has_synthetic_data, bool):
            out.append(f"has_synthetic_data must be True or False, got {self.has_synthetic_data!r}")
        return out

    def _label_problems(self) -> list[str]:
        if self.kind in ("classification", "regression") and not self.labels:
            return [f"a {self.kind} task needs its label list (labels=...)"]
        if self.kind == "generation" and self.labels:
            return ["a generation task has no closed label set: leave labels empty (or make it a classification task)"]
        if self.kind == "regression":
            bad = []
            for label in self.labels:
                try:
                    float(label)
                except (TypeError, ValueError):
                    bad.append(label)
            if bad:
                return [f"regression labels must be numbers (they are scored as such), not {bad}"]
        return []

    def _template_problems(self) -> list[str]:
        out = []
        for attr in ("input_template", "item_template"):
            template = getattr(self, attr)
            if template is None or not isinstance(template, str):
                continue
            try:
                list(string.Formatter().parse(template))
            except ValueError as exc:
                out.append(f"{attr} is not a valid format string: {exc}")
        if self.item_output_field is not None and self.item_output_field not in self.item_fields:
            out.append(f"item_output_field {self.item_output_field!r} is not one of item_fields {self.item_fields}")
        if self.item_output_field is not None and not out:
            # A profile item must render as a task-style input (OPPU's per-user training pairs).
            template = self.item_template or self.input_template
            missing = sorted({n for _, n, _, _ in string.Formatter().parse(template) if n} - {"id", *self.item_fields})
            if missing:
                which = "item_template" if self.item_template else "input_template (item_template is None)"
                out.append(f"{which} uses {missing}, which profile items do not carry (item_fields: "
                           f"{self.item_fields}); set item_template")
        return out

    def item_to_example_input(self, item: Mapping[str, Any]) -> str:
        """Render a profile item as a task-style input (used by OPPU's per-user pairs)."""
        return (self.item_template or self.input_template).format(**item)


USER_ARTIFACTS = "users"  # artifacts_dir/users/<one entry per user>: per-user state, sized by the runner
LOSS_FILE = "loss.json"  # artifacts_dir/loss.json: a trained method's curves, read by harness.report.convergence


@dataclass
class RunContext:
    """What the runner hands a method: the task, models, settings and a place to save.

    ``llm()`` and ``encoder()`` load lazily and are shared by every method in a process.
    ``artifacts_dir`` lives inside the run directory; trained weights go there
    (safetensors) so rerunning the same config reuses them. State kept *per user* goes
    under ``user_artifacts_dir``, one entry (file or folder) per user: the runner reports
    its size as the method's stored bytes per user, and the rest as shared bytes.
    """

    task: TaskSpec
    llm_name: str
    encoder_name: str
    seed: int
    artifacts_dir: Path
    generation: GenerationSettings
    device: str = "cpu"
    progress: bool = True
    profile: str = "small"  # one of PROFILES; part of the run config
    decoding: str = "free"  # one of Decoding; part of the run config
    # Per-example audit of the last predict call, aligned with its batch: the exact prompt
    # each example's LLM call saw (set by ``generate`` or ``record_prompts``) and the
    # profile item ids retrieved into it (set by ``record_retrieved``). The runner stores
    # the prompt's sha256 and the ids in each prediction record.
    last_prompts: list[str] | None = None
    last_retrieved: list[list[str]] | None = None
    _llm: Backbone | None = None

    def llm(self) -> Backbone:
        if self._llm is None:
            from harness.backbones import load_llm

            self._llm = load_llm(self.llm_name, device=self.device)
        return self._llm

    def encoder(self):
        from harness.encoders import load_encoder

        return load_encoder(self.encoder_name, device=self.device)

    def record_prompts(self, prompts: Sequence[str]) -> None:
        """For methods that decode without :meth:`generate`: note what the LLM saw."""
        self.last_prompts = list(prompts)

    def record_retrieved(self, item_ids: Sequence[Sequence[str]]) -> None:
        """Note, per example of the batch, which profile items were put in its prompt."""
        self.last_retrieved = [[str(i) for i in ids] for ids in item_ids]

    @property
    def user_artifacts_dir(self) -> Path:
        return self.artifacts_dir / USER_ARTIFACTS

    @property
    def max_new_tokens(self) -> int:
        """The run's explicit cap, else the profile's: the task's, or its small-profile cap."""
        if self.generation.max_new_tokens:
            return self.generation.max_new_tokens
        if self.profile == "small" and self.task.small_max_new_tokens:
            return self.task.small_max_new_tokens
        return self.task.max_new_tokens

    def generate(self, prompts: Sequence[str], prefix: Any = None, max_input_tokens: int | None = None) -> list[str]:
        """Answer prompts with the run's shared settings; the one path every prediction takes.

        ``decoding == "free"`` decodes (beams, lengths and batch size of the run).
        ``decoding == "constrained"`` returns, per prompt, the label of ``task.labels``
        with the highest log-likelihood under the same prompt and soft tokens: the sum of
        the label's token log-probabilities plus EOS, no length normalisation, ties to
        the label listed first (``Backbone.score_options``, the prompt read once per
        prompt, in batches of ``generation.batch_size``). ``max_input_tokens`` can only
        lower the run's input budget: a method trained on shorter inputs (PPlug: 256
        tokens) truncates them the same way at inference. Either way ``last_prompts``
        records what the LLM saw.
        """
        g = self.generation
        limit = g.max_input_tokens if max_input_tokens is None else min(max_input_tokens, g.max_input_tokens)
        self.last_prompts = list(prompts)
        if self.decoding == "constrained":
            labels = self.task.labels
            if not labels:
                raise ValueError(f"constrained decoding needs a closed label set, and task {self.task.name!r} "
                                 f"({self.task.kind}) has no labels; use decoding 'free'")
            scores = self.llm().score_options(prompts, labels, prefix=prefix, max_input_tokens=limit,
                                              batch_size=g.batch_size)
            return [labels[i] for i in scores.argmax(dim=1).tolist()]
        if self.decoding != "free":
            raise ValueError(f"unknown decoding {self.decoding!r} (known: free, constrained)")
        return self.llm().generate(
            prompts, prefix=prefix, num_beams=g.num_beams, max_new_tokens=self.max_new_tokens,
            max_input_tokens=limit, batch_size=g.batch_size,
        )


@dataclass(frozen=True)
class NoParams:
    """Parameter dataclass of a method that takes none."""


class Method(ABC):
    """A way of personalizing the LLM. Subclass, register, and it gets a table row.

    * ``Params``: a frozen dataclass of the method's knobs; ``bench run -p k=3`` fills
      it and its values are part of the run's config hash.
    * ``fit(train)``: optional; called once with the train split before prediction.
      Training-free methods leave it alone. Save what you learn under
      ``ctx.artifacts_dir`` and reuse it when it is already there.
    * ``predict(batch)``: return one raw generation per example, in order. The task's
      ``parse_output`` and the official metrics are applied by the harness.
    * ``cost()``: optional extra cost figures (e.g. users trained per minute); stored
      bytes are measured by the runner from ``ctx.artifacts_dir``.
    """

    Params: ClassVar[type] = NoParams
    uses_train: ClassVar[bool] = False
    description: ClassVar[str] = ""
    #: Bumped whenever the method's behaviour changes; enters the run hash.
    version: ClassVar[int] = 1
    #: Where the tables place the method: "baseline", "retrieval", "pplug", "peft",
    #: "control", "optimized-retrieval", "prior" (answers without the LLM) or a plugin's
    #: own family. Declared, never guessed.
    family: ClassVar[str] = "other"
    #: The registered name of the method this one is a variant (ablation) of, if any.
    variant_of: ClassVar[str | None] = None
    #: The registered name of this method's control (same budget, no personalization),
    #: against which the tables run a paired test.
    control: ClassVar[str | None] = None
    #: Per-profile overrides of ``Params`` defaults. ``Params`` defaults are the paper's
    #: (reference code) values; ``{"small": {"epochs": 1}}`` documents a CPU reduction.
    profiles: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def __init__(self, ctx: RunContext, params: Any = None) -> None:
        self.ctx = ctx
        self.params = params if params is not None else self.Params()

    def fit(self, train: Sequence[Example]) -> None:
        """Learn from the train split (no-op for training-free methods)."""

    @abstractmethod
    def predict(self, batch: Sequence[Example]) -> list[str]:
        """Raw generations for a batch of examples, in order."""

    def cost(self) -> dict[str, float]:
        return {}

    def fit_files(self) -> Sequence[str]:
        """Files in ``artifacts/`` that mark this method's finished fit, when it may be shared.

        A method returns them only if its training reads nothing a cell's decoding mode or
        beam width changes; cells that differ only in those then train once and share the
        fit (:mod:`harness.shared_fit`). The default, none, never shares: a method whose
        training learns from the LLM's own answers must keep it.
        """
        return ()

    def fit_summary(self) -> dict[str, Any]:
        """What the fit actually used, merged into the run's ``fit.json`` by the runner.

        Trained methods report ``train_examples_used``, ``optimizer_steps``,
        ``budget_steps`` (what the profile asked for) and ``trained_to_budget``; the
        tables never show a cell whose fit fell short as the method's result.
        """
        return {}
