"""The course's questions (the seed's lab course), each answered from the measured numbers of the axes.

A question finds its axis by what the variants' commands change (e.g. an axis whose variants differ in
`--model.activation` and include tanh and sigmoid), not by names. Every sentence is computed from the
results; where the data disagrees with what the course expects, the sentence says so. A question whose
axis or variants are missing (or failed) says it is not answered by this run.
"""

from __future__ import annotations

from os.path import commonprefix

from apps.lab.course.answers import Answer, acc, failed, find, first_epoch, folds_note, missing, peers, pts, reached
from apps.lab.course.axes import Axis, number

CHANCE = 0.10  # 10 balanced classes


def tanh_vs_sigmoid(axes: list[Axis]) -> Answer:
    answer = Answer(
        "Tanh or Sigmoid?",
        "Tanh is often better than Sigmoid (its gradients vanish less).",
        "configs/lab/activations.yaml",
    )
    found = find(axes, "model.activation", lambda a: a == "tanh", lambda a: a == "sigmoid")
    if found is None:
        return missing(answer, "trains both a tanh and a sigmoid variant")
    axis, (t, s) = found
    if failed(answer, axis, [t, s]):
        return answer
    a, b = axis.value(t, "test_acc"), axis.value(s, "test_acc")
    if a > b:
        verdict = f"{t} was higher by {pts(a - b)}, as the course expects"
    elif b > a:
        verdict = f"{s} was higher by {pts(b - a)}: this contradicts the course's expectation that tanh does better"
    else:
        verdict = "no difference, where the course expects tanh to do better"
    answer.axis = axis.name
    answer.lines = [
        f"{t} reached {acc(a)} and {s} {acc(b)} test accuracy: {verdict}.",
        f"Convergence: {reached(axis, t)}; {reached(axis, s)}; after the first epoch "
        f"{acc(first_epoch(axis, t))} against {acc(first_epoch(axis, s))} val acc.",
        *folds_note(axis),
    ]
    return answer


def relu_fastest(axes: list[Axis]) -> Answer:
    answer = Answer(
        "Is ReLU the fastest?", "ReLU is the fastest; Sigmoid is heavier to compute.", "configs/lab/activations.yaml"
    )
    found = find(axes, "model.activation", lambda a: a == "relu")
    if found is None:
        return missing(answer, "compares a relu variant with other activations")
    axis, (relu,) = found
    if failed(answer, axis, [relu]):
        return answer
    times = {v: axis.value(v, "epoch_time_s") for v in axis.variants if axis.value(v, "epoch_time_s") is not None}
    if len(times) < 2:
        return failed(answer, axis, axis.variants) or missing(answer, "has two finished activation variants")
    fastest = min(times, key=times.get)
    lines = ["Mean epoch time: " + ", ".join(f"{v} {t:.2f} s" for v, t in times.items()) + "."]
    if fastest == relu:
        rest = {v: t for v, t in times.items() if v != relu}
        runner = min(rest, key=rest.get)
        lines.append(
            f"{relu} was the fastest per epoch, {(rest[runner] / times[relu] - 1) * 100:.1f} % ahead of {runner}, "
            "as the course expects."
        )
    else:
        lines.append(
            f"The fastest per epoch was {fastest} ({times[fastest]:.2f} s); {relu} took "
            f"{(times[relu] / times[fastest] - 1) * 100:.1f} % longer: it was not the fastest, contrary to the course's expectation."
        )
    spread = (max(times.values()) / min(times.values()) - 1) * 100
    if axis.folds == 1:
        lines.append(
            f"One timing per variant: this run cannot tell whether the {spread:.1f} % between the slowest and the "
            "fastest is more than timing noise (other jobs share the machine)."
        )
    epochs = {v: axis.value(v, "epochs_to_target") for v in times}
    done = {v: e for v, e in epochs.items() if e is not None}
    said = ", ".join(f"{v} {'not reached' if e is None else f'{e:g}'}" for v, e in epochs.items())
    if done:
        quickest = sorted(v for v, e in done.items() if e == min(done.values()))
        where = "among the quickest" if relu in quickest else "not the quickest"
        lines.append(
            f"Epochs to reach {axis.target_acc:g} val acc: {said}: {relu} was {where} to converge "
            f"(quickest: {', '.join(quickest)})."
        )
    else:
        lines.append(f"No variant reached {axis.target_acc:g} val acc ({said}).")
    answer.axis, answer.lines = axis.name, lines + folds_note(axis)
    return answer


def momentum(axes: list[Axis]) -> Answer:
    answer = Answer(
        "Does momentum accelerate SGD?",
        "Momentum speeds SGD up by damping its oscillations.",
        "configs/lab/optimizers.yaml",
    )
    for axis in axes:
        sgd = axis.with_option("model.optimizer", lambda o: o == "sgd")
        plain = [v for v in sgd if number(axis.options(v).get("model.momentum")) == 0]
        fast = [v for v in sgd if (number(axis.options(v).get("model.momentum")) or 0) > 0]
        if plain and fast:
            break
    else:
        return missing(answer, "trains SGD both without (`--model.momentum 0`) and with momentum")
    p, m = plain[0], fast[0]
    if failed(answer, axis, [p, m]):
        return answer
    ep, em = axis.value(p, "epochs_to_target"), axis.value(m, "epochs_to_target")
    vp, vm = first_epoch(axis, p), first_epoch(axis, m)
    if ep != em and (ep is None or (em is not None and em < ep)):
        verdict, why = True, "it reached the target sooner"
    elif ep != em:
        verdict, why = False, "it reached the target later"
    else:
        verdict, why = (
            (vm > vp if vm != vp else None),
            "after the first epoch its val acc was " + ("higher" if vm > vp else "not higher"),
        )
    lr = {axis.options(v).get("model.lr") for v in (p, m)}
    lines = [
        f"With momentum {axis.options(m)['model.momentum']}, {reached(axis, m)}; without momentum, {reached(axis, p)}"
        + ("" if len(lr) == 1 else f"; learning rates differ ({', '.join(sorted(map(str, lr)))})")
        + ".",
        f"Val acc after the first epoch: {acc(vm)} with momentum, {acc(vp)} without; test accuracy "
        f"{acc(axis.value(m, 'test_acc'))} against {acc(axis.value(p, 'test_acc'))}.",
    ]
    if verdict is None:
        lines.append("No difference in speed between the two: the run does not show momentum accelerating SGD.")
    elif verdict:
        lines.append(f"Momentum accelerated SGD here ({why}), as the course expects.")
    else:
        lines.append(f"Momentum did not accelerate SGD here ({why}), contrary to the course's expectation.")
    answer.axis, answer.lines = axis.name, lines + folds_note(axis)
    return answer


OVERFIT = 0.10  # the validation loss ending more than 10 % above its minimum is called over-fitting


def loss_story(axis: Axis, v: str, note: str = "") -> tuple[str, float, float]:
    """(sentence, rise of the val loss above its minimum at the end, val - train gap at the last epoch)."""
    train, val = axis.curve(v, "train/loss_epoch"), axis.curve(v, "val/loss")
    low = min(range(len(val)), key=val.__getitem__)
    rise, gap = val[-1] - val[low], val[-1] - train[-1]
    if rise > OVERFIT * val[low]:
        end = f", {rise:.3f} above its minimum: over-fitting"
    elif rise > 0:
        end = f", {rise:.3f} above its minimum (less than {OVERFIT:.0%} of it): little over-fitting"
    else:
        end = ", its lowest: no sign of over-fitting"
    return (
        f"{v}: training loss went from {train[0]:.3f} to {train[-1]:.3f}{note}; validation loss was lowest at epoch "
        f"{low + 1} ({val[low]:.3f}) and ended at {val[-1]:.3f}{end}; val − train gap at the last epoch {gap:.3f}.",
        rise / val[low],
        gap,
    )


def dropout(axes: list[Axis]) -> Answer:
    answer = Answer(
        "Does dropout prevent over-fitting?",
        "Dropout narrows the gap between the train and validation curves.",
        "configs/lab/dropout.yaml",
    )
    found = find(axes, "model.dropout", lambda d: number(d) == 0, lambda d: (number(d) or 0) > 0)
    if found is None:
        return missing(answer, "trains the same net with and without dropout")
    axis, (none, drop) = found
    if failed(answer, axis, [none, drop]) or not (
        axis.curve(none, "val/loss") and axis.curve(drop, "train/loss_epoch")
    ):
        return answer if answer.lines else missing(answer, "has per-epoch train and validation losses for dropout")
    (s0, r0, g0), (s1, r1, g1) = loss_story(axis, none), loss_story(axis, drop, " (measured with dropout active)")
    lines = [s0, s1]
    if r0 <= OVERFIT:
        lines.append(
            "Without dropout the validation loss did not turn back up, so this run shows no over-fitting for "
            "dropout to prevent: the question is not answered by it."
        )
    elif g1 < g0 and r1 < r0:
        lines.append(
            f"Dropout reduced the over-fitting: the last-epoch gap went from {g0:.3f} to {g1:.3f} and the "
            f"validation loss ended {r1:.0%} instead of {r0:.0%} above its minimum, as the course expects."
        )
    else:
        lines.append(
            f"Dropout did not reduce the over-fitting here (gap {g0:.3f} → {g1:.3f}, end of the validation loss "
            f"{r0:.0%} → {r1:.0%} above its minimum), contrary to the course's expectation."
        )
    a0, a1 = axis.value(none, "test_acc"), axis.value(drop, "test_acc")
    lines.append(
        f"Test accuracy: {acc(a0)} without, {acc(a1)} with dropout ({'higher' if a1 > a0 else 'lower' if a1 < a0 else 'equal'}"
        f"{'' if a1 == a0 else ' by ' + pts(a1 - a0)} with dropout)."
    )
    answer.axis, answer.lines = axis.name, lines + folds_note(axis)
    return answer


def zero_init(axes: list[Axis]) -> Answer:
    answer = Answer(
        "Zero initialisation",
        "Zero weights keep every hidden unit identical (no symmetry breaking): the net does not learn.",
        "configs/lab/init_batchnorm.yaml",
    )
    found = find(axes, "model.init", lambda i: i == "zeros")
    if found is None:
        return missing(answer, "compares zero initialisation with others")
    axis = found[0]
    zeros = axis.with_option("model.init", lambda i: i == "zeros")
    if failed(answer, axis, zeros):
        return answer
    lines = []
    for z in zeros:
        a = axis.value(z, "test_acc")
        ref = {v: axis.value(v, "test_acc") for v in peers(axis, z, "model.init") if axis.ok(v)}
        same = "; with the same settings " + ", ".join(f"{v} {acc(x)}" for v, x in ref.items()) if ref else ""
        if a < 2 * CHANCE:
            verdict = f"chance level (10 classes: {CHANCE:.2f}), it did not learn, as the course expects"
        elif ref and max(ref.values()) - a > 0.05:
            verdict = f"above chance ({CHANCE:.2f}) but {pts(max(ref.values()) - a)} below the best other init: it learned poorly"
        else:
            verdict = "it learned about as well as the other inits, contrary to the course's expectation"
        lines.append(f"{z} reached {acc(a)} test accuracy{same}: {verdict}.")
    answer.axis, answer.lines = axis.name, lines + folds_note(axis)
    return answer


def batch_norm(axes: list[Axis]) -> Answer:
    answer = Answer(
        "Batch-norm in a 3-layer net",
        "Batch-norm makes the deeper net train faster and more stably.",
        "configs/lab/init_batchnorm.yaml",
    )
    found = find(axes, "model.batch_norm", lambda b: b == "false", lambda b: b == "true")
    if found is None:
        return missing(answer, "trains the same net with and without batch-norm")
    axis = found[0]
    pairs = [
        (v, w)
        for v in axis.with_option("model.batch_norm", lambda b: b == "false")
        for w in peers(axis, v, "model.batch_norm")
        if axis.options(w).get("model.batch_norm") == "true"
    ]
    pairs = [(v, w) for v, w in pairs if axis.ok(v) and axis.ok(w)]
    if not pairs:
        return failed(answer, axis, axis.variants) or missing(
            answer, "has a finished pair differing in batch-norm only"
        )
    lines, helped, not_helped, dead, ratios = [], [], [], [], []
    for v, w in pairs:
        a, b = axis.value(v, "test_acc"), axis.value(w, "test_acc")
        ev, ew = axis.value(v, "epochs_to_target"), axis.value(w, "epochs_to_target")
        label = commonprefix([v, w]).rstrip("_.-") or v
        if max(a, b) < 2 * CHANCE:
            dead.append(label)
        elif b > a or (ew is not None and (ev is None or ew < ev)):
            helped.append(label)
        else:
            not_helped.append(label)
        ratios.append(axis.value(w, "epoch_time_s") / axis.value(v, "epoch_time_s"))
        sign = "+" if b > a else "−" if b < a else "±"
        lines.append(
            f"{v} → {w}: test accuracy {acc(a)} → {acc(b)} ({sign}{pts(b - a)}); {reached(axis, v)}, {reached(axis, w)}."
        )
    layers = axis.options(pairs[0][0]).get("model.hidden_sizes", "?")
    if helped and not not_helped:
        verdict = "as the course expects"
    elif not helped:
        verdict = "contrary to the course's expectation" if not_helped else "the question is not answered by this run"
    else:
        verdict = "the course's expectation holds for some settings only"
    said = [
        f"helped {', '.join(helped)}" if helped else "",
        f"did not help {', '.join(not_helped)}" if not_helped else "",
    ]
    lines.append(
        f"On hidden layers {layers}, batch-norm (a higher test accuracy or the target sooner) "
        + (" but ".join(x for x in said if x) or "changed nothing measurable")
        + (f"; {', '.join(dead)} learned nothing either way" if dead else "")
        + f": {verdict}. Mean epoch time with batch-norm: {(sum(ratios) / len(ratios) - 1) * 100:+.0f} %."
    )
    answer.axis, answer.lines = axis.name, lines + folds_note(axis)
    return answer


def cross_validation(axes: list[Axis]) -> Answer:
    answer = Answer(
        "Does cross-validation help the grid search?", "Yes, for a more robust evaluation.", "configs/lab/grid.yaml"
    )
    grid = next(
        (
            a
            for a in axes
            if not a.search
            and a.varies("model.lr")
            and not a.varies("model.optimizer")
            and sum(a.varies(o) for o in ("model.hidden_sizes", "model.scheduler", "model.lr")) >= 2
        ),
        None,
    )
    if grid is None:
        return missing(answer, "is a grid over the learning rate and the architecture or schedule")
    ok = [v for v in grid.variants if grid.ok(v)]
    if len(ok) < 2:
        return failed(answer, grid, grid.variants) or missing(answer, "has two finished grid variants")
    val = {v: grid.value(v, "best_val_acc") for v in ok}
    test = {v: grid.value(v, "test_acc") for v in ok}
    chosen = max(ok, key=val.get)
    rank = sorted(ok, key=test.get, reverse=True).index(chosen) + 1
    top = max(ok, key=test.get)
    lines = [
        f"Selecting by {'mean ' if grid.folds > 1 else ''}validation accuracy picks {chosen} (val {acc(val[chosen])}); "
        f"on the test set it ranks #{rank} of {len(ok)} ({acc(test[chosen])}; best test accuracy {acc(test[top])}, {top})."
    ]
    if grid.folds == 1:
        lines.append(
            f"This run used one validation split (no `--folds`): whether cross-validation helps is not answered by "
            f"this run; `paradis-lab {grid.lab} --folds 3` gives mean ± std per configuration."
        )
    else:
        per_fold = [max(ok, key=lambda v: grid.runs[v][i]["best_val_acc"]) for i in range(grid.folds)]
        agree = sum(pick == chosen for pick in per_fold)
        runner = max((v for v in ok if v != chosen), key=val.get)
        std = grid.spread(chosen, "best_val_acc") or 0.0
        lines.append(
            f"{grid.folds}-fold cross-validation: {chosen} {acc(val[chosen])} ± {acc(std)}, runner-up {runner} "
            f"{acc(val[runner])}; {agree} of {grid.folds} folds alone would have picked {chosen}."
        )
        lines.append(
            "A single split would have picked another configuration in some folds: one split alone is not a robust "
            "basis for the choice, and averaging over folds is, as the course says."
            if agree < grid.folds
            else "Every fold alone picks the same configuration: here cross-validation confirmed the choice but did "
            "not change it (it still measured the spread, ± over folds)."
        )
    answer.axis, answer.lines = grid.name, lines
    return answer


QUESTIONS = (tanh_vs_sigmoid, relu_fastest, momentum, dropout, zero_init, batch_norm, cross_validation)


def answer_all(axes: list[Axis]) -> list[Answer]:
    return [question(axes) for question in QUESTIONS]
