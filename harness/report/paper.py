"""The paper's published figures (SPEC.md, "Paper Table 1"), kept apart from anything computed.

These numbers are printed only as their own labelled block (``bench table --paper``);
they never enter a grid of ours. ``PAPER_COLUMNS`` maps each of the paper's nine
method columns to the registered method that reproduces it, which is also the column
order of our Table 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

PAPER_SETTING = "PPlug paper (Liu et al., ACL 2025), Table 1: LaMP time-based dev, FlanT5-XXL + bge-base-en-v1.5"

#: (registered method, the paper's column name), in the paper's order.
PAPER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("adhoc", "ad-hoc"), ("bm25", "BM25"), ("recency", "Recency"), ("contriever", "Contriever"),
    ("ropg-rl", "ROPG-RL"), ("ropg-kd", "ROPG-KD"), ("rspg-pre", "RSPG-Pre"), ("rspg-post", "RSPG-Post"),
    ("pplug", "PPlug"),
)
PAPER_METHODS: tuple[str, ...] = tuple(label for _, label in PAPER_COLUMNS)
#: Our Table 1's leading columns: the registered methods behind the paper's columns.
PAPER_ORDER: tuple[str, ...] = tuple(method for method, _ in PAPER_COLUMNS)

#: (task, metric) -> one value per paper column, in ``PAPER_COLUMNS`` order.
PAPER_TABLE1: dict[tuple[str, str], tuple[float, ...]] = {
    ("lamp1", "accuracy"): (0.498, 0.629, 0.639, 0.641, 0.682, 0.676, 0.672, 0.670, 0.680),
    ("lamp2", "accuracy"): (0.326, 0.345, 0.361, 0.362, 0.365, 0.365, 0.391, 0.416, 0.565),
    ("lamp2", "f1"): (0.255, 0.282, 0.291, 0.282, 0.292, 0.291, 0.312, 0.337, 0.501),
    ("lamp3", "mae"): (0.335, 0.293, 0.305, 0.297, 0.273, 0.274, 0.266, 0.246, 0.231),
    ("lamp3", "rmse"): (0.639, 0.585, 0.596, 0.592, 0.561, 0.566, 0.560, 0.539, 0.534),
    ("lamp4", "rouge-1"): (0.173, 0.192, 0.194, 0.190, 0.190, 0.193, 0.195, 0.207, 0.216),
    ("lamp4", "rouge-L"): (0.157, 0.175, 0.177, 0.174, 0.174, 0.176, 0.179, 0.188, 0.197),
    ("lamp5", "rouge-1"): (0.472, 0.467, 0.469, 0.471, 0.473, 0.472, 0.479, 0.480, 0.487),
    ("lamp5", "rouge-L"): (0.419, 0.419, 0.422, 0.421, 0.425, 0.423, 0.429, 0.429, 0.435),
    ("lamp7", "rouge-1"): (0.454, 0.451, 0.452, 0.440, 0.458, 0.451, 0.460, 0.468, 0.536),
    ("lamp7", "rouge-L"): (0.401, 0.401, 0.402, 0.391, 0.407, 0.402, 0.409, 0.416, 0.484),
}


@dataclass(frozen=True)
class PaperValue:
    task: str
    metric: str
    method: str  # registered name
    column: str  # the paper's column name
    value: float


def paper_values() -> Iterator[PaperValue]:
    """Every published figure, row by row, in the paper's column order."""
    for (task, metric), values in PAPER_TABLE1.items():
        for (method, column), value in zip(PAPER_COLUMNS, values, strict=True):
            yield PaperValue(task, metric, method, column, value)
