"""The report of a search: the grid report's table, plots and commands over the trials, plus the study,
the best trials, Optuna's optimisation history and parameter importances."""

from __future__ import annotations

import json
import platform
import warnings
from pathlib import Path

from apps.lab.runner.report import write_report
from apps.lab.runner.table import markdown_table, summarize
from apps.lab.search.space import SearchConfig
from apps.lab.search.storage import retried_trial_number, shown_url
from apps.lab.spec import Lab


def trial_results(study) -> dict[str, list[dict]]:
    """Variant name -> [result] for every trial that ran to an end (or was lost with its worker)."""
    from optuna.trial import TrialState

    retried = {retried_trial_number(t): t.number for t in study.trials}
    here = platform.node()
    results: dict[str, list[dict]] = {}
    for trial in sorted(study.trials, key=lambda t: t.number):
        run_dir = trial.user_attrs.get("run_dir")
        host = trial.user_attrs.get("host", here)
        name = f"trial_{trial.number:04d}" + ("" if host == here else f" on {host}")  # another machine's trial
        if run_dir is None or trial.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        result_file = Path(run_dir) / "result.json"
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and result_file.exists():
            result = json.loads(result_file.read_text())
            if trial.state == TrialState.PRUNED:
                name += f" (pruned at epoch {max(trial.intermediate_values) + 1})"
        elif trial.state in (TrialState.COMPLETE, TrialState.PRUNED):  # its run folder is on another machine
            value = "—" if trial.value is None else f"{trial.value:.4f}"
            result = {
                "status": "elsewhere",
                "stage": "fit",
                "error": f"ran on {trial.user_attrs.get('host', 'another machine')} "
                f"({trial.state.name.lower()}, value {value}) in {run_dir}",
            }
        elif "error" in trial.user_attrs:
            result = {"status": "failed", "stage": "fit", "error": trial.user_attrs["error"]}
        else:
            again = retried.get(trial.number)
            result = {
                "status": "lost",
                "stage": "fit",
                "error": "its worker stopped" + (f"; run again as trial_{again:04d}" if again is not None else ""),
            }
        result.setdefault("commands", trial.user_attrs.get("commands", []))
        results[name] = [result]
    return results


def save_optuna_plots(study, out_dir: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm
    from optuna.trial import TrialState

    plots = [("Optimisation history", "optimization_history.png", ovm.plot_optimization_history)]
    if len(study.get_trials(states=(TrialState.COMPLETE,))) >= 2:
        plots.append(("Parameter importances", "param_importances.png", ovm.plot_param_importances))
    saved = []
    for title, filename, draw in plots:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna's ExperimentalWarning for its matplotlib plots
            try:
                ax = draw(study)
            except (ValueError, RuntimeError):  # e.g. importances of parameters that never varied
                continue
        figure = getattr(ax, "figure", None) or ax.flat[0].figure
        figure.set_size_inches(7, 4.5)
        figure.tight_layout()
        figure.savefig(out_dir / filename, dpi=100)
        plt.close(figure)
        saved.append((title, filename))
    return saved


def best_trials_table(study, config: SearchConfig, count: int = 5) -> list[str]:
    from optuna.trial import TrialState

    done = study.get_trials(states=(TrialState.COMPLETE,))
    done.sort(key=lambda t: t.value, reverse=config.direction == "maximize")
    names = sorted({name for t in done for name in t.params})
    lines = [f"| trial | {config.objective} | test acc | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 3)]
    for trial in done[:count]:
        test = trial.user_attrs.get("test_acc")
        cells = [f"trial_{trial.number:04d}", f"{trial.value:.4f}", "—" if test is None else f"{test:.4f}"]
        cells += [
            f"{trial.params[n]:.4g}" if isinstance(trial.params.get(n), float) else str(trial.params.get(n, "—"))
            for n in names
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_search_report(lab: Lab, config: SearchConfig, study, out_dir: Path, argv: list[str], url: str) -> list[dict]:
    from optuna.trial import TrialState

    results = trial_results(study)
    rows = [summarize(name, runs) for name, runs in results.items()]
    states = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    study_lines = [
        "## Study",
        "",
        f"- Optuna study `{config.study_name}` in `{shown_url(url)}`: budget {config.trials} finished trials; "
        + ", ".join(f"{n} {s}" for s, n in states.items() if n),
        f"- Objective: best per-epoch `{config.objective}` of a trial ({config.direction}); sampler {config.sampler}, "
        f"pruner {config.pruner} (after {config.startup_trials} trials, from epoch {config.warmup_epochs + 1}); "
        "a pruned trial stops training and is still tested.",
        f"- More workers, on this or another machine (shared database): `paradis-lab {lab.path} --storage URL --workers N`",
        "",
        "## Best trials",
        "",
        *best_trials_table(study, config),
        "",
    ]
    plots = save_optuna_plots(study, out_dir)
    for title, filename in plots:
        study_lines += [f"## {title}", "", f"![{title}]({filename})", ""]
    (out_dir / "results.json").write_text(
        json.dumps(
            {
                "lab": str(lab.path),
                "argv": argv,
                "search": True,
                "description": lab.description,
                "target_acc": lab.target_acc,
                "rows": rows,
                "runs": results,
            },
            indent=1,
        )
    )
    report = write_report(lab, out_dir, rows, results, argv, 1, "trials run by search workers", (study_lines,))
    print(f"\n{lab.axis}:\n{markdown_table(rows, lab.target_acc)}\n\nReport: {report}", flush=True)
    return rows
