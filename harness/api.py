"""The two interfaces third parties implement: a Task (data) and a Method (code).

Data flows one way: a task's loader yields :class:`Example` s, a :class:`Method` turns
batches of them into prediction strings, the task's ``parse_output`` cleans each raw
generation the same way for every method, and :mod:`harness.metrics` scores the result
with the official LaMP rules.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

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


@dataclass(frozen=True)
class Split:
    """A loaded split: its examples in file order, and where they came from."""

    task: str
    name: str  # "train", "dev" or "test"
    examples: tuple[Example, ...]
    source: DataSource


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True)
class TaskSpec:
    """Everything the harness needs to know about a task. A task is data, not code.

    The callables are small pure functions of strings / profile items, so a task can be
    declared in a few lines (see ``tasks/lamp.py``).
    """

    name: str  # registry name, e.g. "lamp2"
    lamp_name: str  # the "task" field of LaMP outputs files, e.g. "LaMP_2"
    description: str
    kind: TaskKind
    metrics: tuple[str, ...]  # metric names in table order, e.g. ("accuracy", "f1")
    item_fields: tuple[str, ...]  # fields every profile item must carry (besides id)
    input_template: str  # the LaMP input template, ``{}`` placeholders named by field
    query: Callable[[str], str]  # retrieval query extracted from an input (official)
    corpus_text: Callable[[Mapping[str, Any]], str]  # profile item -> retrieval/encoder text
    item_output_field: str | None  # which item field plays the "output" role (tag, score..)
    item_template: str | None  # item -> task-style input; None means ``input_template``
    labels: tuple[str, ...] = ()  # closed label set for classification/regression
    max_new_tokens: int = 32
    parse_output: Callable[[str], str] = _identity  # raw generation -> prediction text
    prompt_style: str | None = None  # key of the official RAG prompt renderer
    # (task, data, split, *, seed) -> Split; data is "synthetic", a directory or a hub id.
    load_split: Callable[..., Split] | None = None
    source: str = "LaMP (Salemi et al. 2023)"
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Bumped whenever the task's behaviour (templates, parsing, loading) changes; it
    # enters the run hash, so cells computed under an older version are never reused.
    version: int = 1

    def item_to_example_input(self, item: Mapping[str, Any]) -> str:
        """Render a profile item as a task-style input (used by OPPU's per-user pairs)."""
        return (self.item_template or self.input_template).format(**item)


USER_ARTIFACTS = "users"  # artifacts_dir/users/<one entry per user>: per-user state, sized by the runner


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
        return self.generation.max_new_tokens or self.task.max_new_tokens

    def generate(self, prompts: Sequence[str], prefix: Any = None, max_input_tokens: int | None = None) -> list[str]:
        """Decode prompts with the run's shared settings (beams, lengths, batch size).

        ``max_input_tokens`` can only lower the run's input budget: a method trained on
        shorter inputs (PPlug: 256 tokens) truncates them the same way at inference.
        """
        g = self.generation
        limit = g.max_input_tokens if max_input_tokens is None else min(max_input_tokens, g.max_input_tokens)
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
    #: "control", "optimized-retrieval" or a plugin's own family. Declared, never guessed.
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

    def fit(self, train: Sequence[Example]) -> None:  # noqa: B027 - optional hook
        """Learn from the train split (no-op for training-free methods)."""

    @abstractmethod
    def predict(self, batch: Sequence[Example]) -> list[str]:
        """Raw generations for a batch of examples, in order."""

    def cost(self) -> dict[str, float]:
        return {}

    def fit_summary(self) -> dict[str, Any]:
        """What the fit actually used, merged into the run's ``fit.json`` by the runner.

        Trained methods report ``train_examples_used``, ``optimizer_steps``,
        ``budget_steps`` (what the profile asked for) and ``trained_to_budget``; the
        tables never show a cell whose fit fell short as the method's result.
        """
        return {}


def parse_params(params_cls: type, raw: Mapping[str, str | Any]) -> Any:
    """Build a method's ``Params`` from ``{"k": "3"}``-style strings, with clear errors."""
    if not dataclasses.is_dataclass(params_cls):
        raise TypeError(f"{params_cls!r} must be a dataclass")
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise ValueError(f"unknown parameter {key!r} for this method (known: {known})")
        values[key] = _coerce(value, fields[key].type, key)
    return params_cls(**values)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    if not isinstance(value, str):
        return value
    ann = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if "None" in ann and value.lower() == "none":
        return None
    base = ann.replace("| None", "").replace("None |", "").strip()
    try:
        if base == "int":
            return int(value)
        if base == "float":
            return float(value)
        if base == "bool":
            if value.lower() in {"1", "true", "yes", "on"}:
                return True
            if value.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
    except ValueError as exc:
        raise ValueError(f"parameter {key!r} expects {base}, got {value!r}") from exc
    return value
