"""`paradis-app`: one Gradio app over every task's saved checkpoints.

    paradis-app [--runs-dir runs] [--checkpoint PATH ...] [--host 127.0.0.1] [--port 7860] [--share]

Run folders (config.yaml + checkpoints/{best,last}.ckpt) are found under the runs dir at any depth and
grouped by the task their checkpoint holds (the registry in `apps.app.tasks`). Each tab offers its
checkpoints in a dropdown -- never a typed path -- labelled with the run, its date and main metric.
Checkpoints load with `weights_only` (no pickled code runs), once per file version (path + mtime),
and inference runs under `torch.inference_mode()`. A broken, missing or wrong-task checkpoint and any
bad input end in one clear message on the page; the app keeps serving.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: before gradio is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402

from apps.app.discovery import Found, discover  # noqa: E402
from apps.app.models import Models  # noqa: E402
from apps.app.tasks import TASKS, Task  # noqa: E402


def checkpoint_status(models: Models, task: str, path: str | None) -> str:
    """Load the picked checkpoint now (so the first request is fast) and say what happened."""
    try:
        model, _ = models.get(path, task)
    except (ValueError, FileNotFoundError) as err:
        return f"**Cannot open this checkpoint:** {err}"
    count = sum(p.numel() for p in model.parameters())
    return f"Loaded {Path(path).name} ({count:,} parameters)."


def missing_message(task: Task, where: str) -> str:
    return f"No {task.title} checkpoint found in {where}. Train one with `{task.train_command}`, then restart `paradis-app`."


def build_app(
    runs_dir: str | Path | None = "runs", checkpoints: list[str] = (), found: Found | None = None
) -> gr.Blocks:
    """The Blocks app over the checkpoints under `runs_dir` and the `checkpoints` paths (importable for tests),
    or over `found` when the caller already ran discovery."""
    found = found or discover(runs_dir, list(checkpoints))
    models = Models(found.entries)
    with gr.Blocks(title="Paradis") as demo:
        gr.Markdown("# Paradis\nPredictions from the checkpoints of your `paradis fit` runs.")
        if not any(found.entries.values()):
            gr.Markdown("**Nothing to open:** " + " ".join(missing_message(t, found.where) for t in TASKS))
        if found.problems:
            gr.Markdown("**Skipped checkpoints:**\n" + "\n".join(f"- {p}" for p in found.problems))
        for task in TASKS:
            with gr.Tab(task.title, id=task.key):
                entries = found.entries[task.key]
                if not entries:
                    gr.Markdown(missing_message(task, found.where))
                    continue
                choices = [(e.label, e.path) for e in entries]
                picker = gr.Dropdown(choices, value=choices[0][1], label="Checkpoint", allow_custom_value=False)
                status = gr.Markdown(f"{len(choices)} checkpoint(s) found.")
                picker.change(
                    functools.partial(checkpoint_status, models, task.key), picker, status, api_name=f"open_{task.key}"
                )
                task.build_tab(models, picker)
    demo.queue(default_concurrency_limit=2)  # queued, never dropped; 2 = the cores of a small machine
    return demo


def parse_args(args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="paradis-app", description="Open saved paradis checkpoints in a Gradio app.")
    parser.add_argument(
        "--runs-dir", default="runs", help="folder searched (recursively) for run folders (default: runs)"
    )
    parser.add_argument(
        "--checkpoint", action="append", default=[], metavar="PATH", help="also offer this .ckpt (repeatable)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    return parser.parse_args(args)


def main(args: list[str] | None = None) -> None:
    options = parse_args(args)
    found = discover(options.runs_dir, options.checkpoint)  # once: memory-mapped reads
    for problem in found.problems:
        print(f"paradis-app: skipped: {problem}", file=sys.stderr)
    for task in TASKS:
        count = len(found.entries[task.key])
        print(
            f"paradis-app: {task.title}: {count} checkpoint(s)"
            if count
            else f"paradis-app: {missing_message(task, found.where)}",
            file=sys.stderr,
        )
    demo = build_app(found=found)
    demo.launch(
        server_name=options.host,
        server_port=options.port,
        share=options.share,
        max_file_size="20mb",
        footer_links=["api"],
    )


if __name__ == "__main__":
    main()
