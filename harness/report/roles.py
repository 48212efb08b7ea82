"""Where a method sits in the tables and which tests it gets, from what it declares.

A method class declares ``family``, ``variant_of`` and ``control`` (ClassVars on
:class:`harness.api.Method`); the tables read them through the METHODS registry and never
from the method's name, so a plugin called ``pplug-x`` gets no PPlug treatment unless it
declares it. A method in a results folder that is not registered in this environment (an
uninstalled plugin, a removed method) still gets a column: a generic one, with a note
saying so, instead of crashing the table.

Placement:

* Table 1: every method that is not a variant (``variant_of is None``): the paper's nine
  columns first, in the paper's order, then the others by family; a declared control
  sits right after the method that declares it.
* ablation: variants of the same family as the method they ablate, beside it.
* Table 2: non-variant ``baseline`` and ``pplug`` methods, across LLM x encoder.
* Table 3: ``retrieval`` methods, PPlug, and ``pplug+retrieval`` methods.

Tests: every column against ``adhoc``; a method against its declared control; methods of
the PPlug families against the row's best baseline-family column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

ADHOC = "adhoc"
GENERIC_FAMILY = "other"
PPLUG_FAMILY = "pplug"
PPLUG_RETRIEVAL_FAMILY = "pplug+retrieval"
#: Families a PPlug-family method is compared against ("the row's best baseline").
BASELINE_FAMILIES: tuple[str, ...] = ("baseline", "retrieval", "optimized-retrieval")
#: Families tested against the row's best baseline.
PERSONA_FAMILIES: tuple[str, ...] = (PPLUG_FAMILY, PPLUG_RETRIEVAL_FAMILY)
#: Column order of families after the paper's nine columns; unknown families follow, then "other".
FAMILY_ORDER: tuple[str, ...] = ("baseline", "retrieval", "optimized-retrieval", PPLUG_FAMILY,
                                 PPLUG_RETRIEVAL_FAMILY, "peft", "control", "prior")


@dataclass(frozen=True)
class Role:
    """A method's declared place; ``registered`` is False when the registry does not know it."""

    method: str
    family: str = GENERIC_FAMILY
    variant_of: str | None = None
    control: str | None = None
    registered: bool = True


class Roles:
    """Declared roles of the methods a table meets, each looked up once in METHODS.

    ``problems`` maps each method that could not be placed as declared to a sentence
    saying so, for the header of every table it appears in.
    """

    def __init__(self, registry: Any = None) -> None:
        if registry is None:
            from harness.registries import METHODS

            registry = METHODS
        self._registry = registry
        self._cache: dict[str, Role] = {}
        self.problems: dict[str, str] = {}

    def __getitem__(self, method: str) -> Role:
        if method not in self._cache:
            self._cache[method] = self._lookup(method)
        return self._cache[method]

    def _lookup(self, method: str) -> Role:
        try:
            cls = self._registry.get(method)
        except Exception as exc:  # noqa: BLE001 - unknown name, broken plugin: place it generically
            reason = str(exc).split(". ")[0]
            self.problems[method] = (f"method {method!r} is not registered here ({reason}); shown as a generic "
                                     "column with no family, variant or control")
            return Role(method, registered=False)
        family = getattr(cls, "family", GENERIC_FAMILY)
        variant_of = getattr(cls, "variant_of", None)
        control = getattr(cls, "control", None)
        if not isinstance(family, str) or not family or not all(v is None or isinstance(v, str)
                                                                for v in (variant_of, control)):
            self.problems[method] = (f"method {method!r} declares family/variant_of/control of the wrong type; "
                                     "shown as a generic column")
            return Role(method)
        return Role(method, family, variant_of or None, control or None)

    # -- placement ---------------------------------------------------------------------------
    def is_ablation_variant(self, method: str) -> bool:
        """A declared variant of the same family as the method it varies (e.g. pplug-mean of pplug)."""
        role = self[method]
        return role.variant_of is not None and self[role.variant_of].family == role.family

    def in_table(self, which: str, method: str, present: Iterable[str]) -> bool:
        """Whether ``method`` gets a column in table ``which``, given the methods present."""
        role = self[method]
        if which == "1":
            return role.variant_of is None
        if which == "ablation":
            return self.is_ablation_variant(method) or any(
                self.is_ablation_variant(m) and self[m].variant_of == method for m in present)
        if which == "2":
            return role.variant_of is None and role.family in ("baseline", PPLUG_FAMILY)
        if which == "3":
            return (role.family == "retrieval" or role.family == PPLUG_RETRIEVAL_FAMILY
                    or (role.family == PPLUG_FAMILY and role.variant_of is None))
        return True

    def rank(self, method: str, paper_order: Sequence[str]) -> tuple[int, int, str]:
        """Sort key: the paper's columns in its order, then by declared family, then name."""
        if method in paper_order:
            return 0, paper_order.index(method), method
        family = self[method].family
        if family == GENERIC_FAMILY:
            return 3, 0, method
        if family in FAMILY_ORDER:
            return 1, FAMILY_ORDER.index(family), method
        return 2, 0, f"{family}/{method}"

    def controlled_by(self, control: str, methods: Iterable[str]) -> list[str]:
        """The methods among ``methods`` that declare ``control`` as their control."""
        return [m for m in methods if self[m].control == control]

    def gets_best_baseline_test(self, method: str) -> bool:
        return self[method].family in PERSONA_FAMILIES

    def is_baseline(self, method: str) -> bool:
        return self[method].family in BASELINE_FAMILIES
