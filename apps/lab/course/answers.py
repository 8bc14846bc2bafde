"""Helpers of the course's answers (apps/lab/course/questions.py): finding the variants a question needs in
an axis, saying it is not answered when they are missing or failed, and the sentences they share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from apps.lab.course.axes import Axis


@dataclass
class Answer:
    title: str
    expected: str  # what the course (the seed) expects
    lab: str  # the lab file that answers it
    axis: str | None = None  # None: not answered by this run
    lines: list[str] = field(default_factory=list)


def acc(x: float) -> str:
    return f"{x:.4f}"


def pts(d: float) -> str:
    return f"{abs(d) * 100:.2f} points"


def others(axis: Axis, variant: str, option: str) -> dict[str, str]:
    return {k: v for k, v in axis.options(variant).items() if k not in (option, "run_dir")}


def peers(axis: Axis, variant: str, option: str) -> list[str]:
    """The variants that differ from `variant` in `option` only."""
    mine = others(axis, variant, option)
    return [v for v in axis.variants if v != variant and others(axis, v, option) == mine]


def find(axes: list[Axis], option: str, *tests: Callable[[str], bool]) -> tuple[Axis, list[str]] | None:
    """The first axis that varies `option` and has a variant passing each test: (axis, one variant per test)."""
    for axis in axes:
        if not axis.varies(option):
            continue
        picked = [next(iter(axis.with_option(option, test)), None) for test in tests]
        if all(picked):
            return axis, picked
    return None


def failed(answer: Answer, axis: Axis, variants: list[str]) -> Answer | None:
    bad = [v for v in variants if not axis.ok(v)]
    if not bad:
        return None
    answer.lines = [
        f"Not answered by this run: in {axis.name}, "
        + "; ".join(f"`{v}` {axis.error(v) or 'has no result'}" for v in bad)
        + "."
    ]
    return answer


def missing(answer: Answer, what: str) -> Answer:
    answer.lines = [f"Not answered by this run: no axis {what}; `{answer.lab}` has them."]
    return answer


def reached(axis: Axis, v: str) -> str:
    epoch, target = axis.value(v, "epochs_to_target"), axis.target_acc
    if epoch is not None:
        return f"{v} reached {target:g} val acc at epoch {epoch:g}"
    return f"{v} did not reach {target:g} val acc in {axis.value(v, 'epochs'):g} epochs (best {acc(axis.value(v, 'best_val_acc'))})"


def first_epoch(axis: Axis, v: str) -> float | None:
    curve = axis.curve(v, "val/acc")
    return curve[0] if curve else None


def folds_note(axis: Axis) -> list[str]:
    return [f"Numbers are means over {axis.folds} folds."] if axis.folds > 1 else []


def axis_summary(axis: Axis) -> list[str]:
    """Best and worst test accuracy of the axis, and its failed variants."""
    scores = {v: axis.value(v, "test_acc") for v in axis.variants if axis.value(v, "test_acc") is not None}
    lines = []
    if scores:
        best, worst = max(scores, key=scores.get), min(scores, key=scores.get)
        lines.append(
            f"Best test accuracy of this axis: {best} {acc(scores[best])}"
            + (
                f"; lowest: {worst} {acc(scores[worst])} ({pts(scores[best] - scores[worst])} apart)."
                if worst != best
                else "."
            )
        )
    bad = [v for v in axis.variants if not axis.ok(v)]
    if bad:
        lines.append(f"{len(bad)} variant(s) failed: " + "; ".join(f"{v} ({axis.error(v)})" for v in bad) + ".")
    return lines
