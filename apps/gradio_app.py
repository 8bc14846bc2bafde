"""`paradis-app`: one Gradio app over every task's saved checkpoints.

    paradis-app [--runs-dir runs] [--checkpoint PATH ...] [--host 127.0.0.1] [--port 7860] [--share]

Run folders (config.yaml + checkpoints/{best,last}.ckpt) are found under the runs dir at any depth and
grouped by the task their checkpoint holds (MNIST digits, DDPM images, text). Each tab offers its
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
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: before gradio is imported
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from paradis.images import image_grid  # noqa: E402
from paradis.checkpoint import read_checkpoint  # noqa: E402

TASKS = {  # checkpoint `_class_path` -> task; nothing else is ever instantiated
    "lightning_modules.mnist.MNISTClassifier": "mnist",
    "lightning_modules.ddpm.DDPM": "ddpm",
    "lightning_modules.text.TextClassifier": "text",
}
TITLES = {"mnist": "MNIST digits", "ddpm": "DDPM images", "text": "Text"}
TRAIN_COMMANDS = {
    "mnist": "paradis fit --config configs/mnist.yaml",
    "ddpm": "paradis fit --config configs/ddpm_silhouettes.yaml",
    "text": "paradis fit --config configs/text_lora_minilm.yaml",
}
MAX_IMAGES = 64  # DDPM grid
MAX_PIXELS = 4096 * 4096  # uploads
MAX_TEXTS, MAX_CHARS = 64, 100_000


# -- finding checkpoints -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    path: str
    task: str
    label: str


def peek(path: Path) -> dict:
    """The checkpoint's small fields, cheaply (memory-mapped, tensors not read); `weights_only` always."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return read_checkpoint(path)  # legacy (non-zip) files, or the one-sentence error


def task_of(checkpoint: dict, path: Path) -> str:
    class_path = checkpoint.get("hyper_parameters", {}).get("_class_path")
    if class_path not in TASKS:
        raise ValueError(f"Checkpoint {path} holds a {class_path or 'model of unknown type'}, not one of the app's "
                         f"tasks ({', '.join(c.rsplit('.', 1)[-1] for c in TASKS)}); pass a .ckpt written by `paradis fit`.")
    return TASKS[class_path]


def describe(checkpoint: dict, path: Path, run_name: str) -> str:
    """'<run> · best · val/acc 0.9731 · epoch 4 · 2026-11-25 23:05'."""
    parts = [run_name, path.stem]
    for key, state in checkpoint.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and isinstance(state, dict):
            score = state.get("current_score", state.get("best_model_score"))
            if score is not None:
                parts.append(f"{state.get('monitor')} {float(score):.4f}")
                break
    if "epoch" in checkpoint:
        parts.append(f"epoch {checkpoint['epoch']}")
    parts.append(datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M"))
    return " · ".join(parts)


def discover(runs_dir: Optional[str | Path], checkpoints: list[str] = ()) -> tuple[dict[str, list[Entry]], list[str]]:
    """({task: [Entry, ...] newest run first, best before last}, [problem sentences])."""
    found: list[tuple[Path, str]] = []
    runs = Path(runs_dir) if runs_dir else None
    if runs is not None and runs.is_dir():
        run_dirs = sorted((c.parent for c in runs.rglob("config.yaml")), key=lambda d: d.stat().st_mtime, reverse=True)
        for run in run_dirs:
            for name in ("best.ckpt", "last.ckpt"):
                if (run / "checkpoints" / name).is_file():
                    found.append((run / "checkpoints" / name, str(run.relative_to(runs)) if run != runs else run.name))
    for path in map(Path, checkpoints):  # named by their run folder when they sit in one
        found.append((path, str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)))
    entries: dict[str, list[Entry]] = {task: [] for task in TITLES}
    problems: list[str] = []
    seen: set[Path] = set()
    for path, run_name in found:
        if path.resolve() in seen:  # a --checkpoint inside the runs dir
            continue
        seen.add(path.resolve())
        try:
            checkpoint = peek(path)
            task = task_of(checkpoint, path)
            label = describe(checkpoint, path, run_name)
        except (ValueError, FileNotFoundError) as err:
            problems.append(str(err))
            continue
        entries[task].append(Entry(str(path.resolve()), task, label))
    return entries, problems


# -- loading (cached per file version) --------------------------------------------------------------------
class Models:
    """Loads each checkpoint once per (path, mtime, size); one lock per model serialises its inference."""

    def __init__(self, entries: dict[str, list[Entry]]) -> None:
        self.allowed = {e.path: e for es in entries.values() for e in es}
        self._cache: dict[str, tuple[tuple, torch.nn.Module, threading.Lock]] = {}
        self._lock = threading.Lock()

    def get(self, path: Optional[str], task: str) -> tuple[torch.nn.Module, threading.Lock]:
        entry = self.allowed.get(path or "")
        if entry is None or entry.task != task:
            raise ValueError(f"Pick a {TITLES[task]} checkpoint from the list; the app only opens the checkpoints it was started with.")
        file = Path(entry.path)
        if not file.is_file():
            raise FileNotFoundError(f"Checkpoint {file} does not exist any more; train it again or restart paradis-app.")
        stat = file.stat()
        version = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(entry.path)
            if cached is None or cached[0] != version:
                cached = (version, load_module(file, task), threading.Lock())
                self._cache[entry.path] = cached
        return cached[1], cached[2]


def load_module(path: Path, task: str) -> torch.nn.Module:
    """Build the module the checkpoint names (only the three known classes) and load its weights (EMA for DDPM)."""
    checkpoint = read_checkpoint(path)
    found = task_of(checkpoint, path)
    if found != task:
        raise ValueError(f"Checkpoint {path} holds a {TITLES[found]} model, not a {TITLES[task]} one; pick it in the {TITLES[found]} tab.")
    try:
        if task == "text":
            from lightning_modules.text import TextClassifier

            return TextClassifier.load_from_checkpoint(str(path), map_location="cpu").eval()
        if task == "mnist":
            from lightning_modules.mnist import MNISTClassifier as cls
        else:
            from lightning_modules.ddpm import DDPM as cls
        hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
        module = cls(**hparams)
        module.load_state_dict(checkpoint["state_dict"])  # DDPM: the EMA callback saved the EMA weights here
        return module.eval()
    except (ValueError, FileNotFoundError):
        raise
    except Exception as err:  # shape mismatch, missing keys, ...
        raise ValueError(f"Checkpoint {path} does not load into its model ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200]}); pass a .ckpt written by `paradis fit`.") from None


def page_errors(fn):
    """Bad input / broken checkpoint -> a gr.Error with the one-sentence message (the app keeps serving)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(str(err)) from None

    return wrapper


# -- inference ------------------------------------------------------------------------------------------------
def open_image(path: Optional[str]) -> Image.Image:
    if not path:
        raise ValueError("No image: upload a PNG or JPEG of a digit.")
    try:
        image = Image.open(path)
        width, height = image.size
    except (OSError, Image.DecompressionBombError, Image.UnidentifiedImageError):
        raise ValueError(f"{Path(path).name} is not a readable image; upload a PNG or JPEG of a digit.") from None
    if width * height > MAX_PIXELS:
        raise ValueError(f"The image is {width}x{height} pixels, too large to classify; upload one under 4096x4096.")
    image.load()
    return image


def sketch_image(sketch: Optional[dict]) -> Image.Image:
    """The sketchpad's composite, flattened onto white paper (the strokes are dark ink)."""
    composite = (sketch or {}).get("composite")
    if composite is None:
        raise ValueError("The sketch is empty; draw a digit first.")
    image = composite if isinstance(composite, Image.Image) else open_image(composite)
    if image.width * image.height > MAX_PIXELS:
        raise ValueError(f"The sketch is {image.width}x{image.height} pixels, too large to classify; draw on the pad.")
    if image.mode in ("RGBA", "LA", "P"):
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA")).convert("RGB")
    return image


def classify_digit(models: Models, path: Optional[str], image: Image.Image) -> dict[str, float]:
    from datamodules.mnist import preprocess_digit  # exactly what `paradis predict` does with an image file

    digit = preprocess_digit(image)
    model, lock = models.get(path, "mnist")
    with lock, torch.inference_mode():
        probabilities = model(digit[None]).float().softmax(dim=-1)[0]
    return {name: float(p) for name, p in zip(model.class_names, probabilities)}


def generate(models: Models, path: Optional[str], n, seed, sampler: str, steps, progress=None) -> Image.Image:
    n, steps = int(n or 0), int(steps or 0)
    if not 1 <= n <= MAX_IMAGES:
        raise ValueError(f"Ask for between 1 and {MAX_IMAGES} images (got {n}); larger grids take too long on this machine.")
    model, lock = models.get(path, "ddpm")
    limit = model.hparams.num_train_timesteps
    if not 1 <= steps <= limit:
        raise ValueError(f"Steps must be between 1 and {limit} (the model's training timesteps), got {steps}.")
    sampler = str(sampler).lower()
    if sampler not in ("ddim", "ddpm"):
        raise ValueError(f"Sampler must be DDIM or DDPM, got {sampler!r}.")
    generator = torch.Generator().manual_seed(int(seed or 0))
    report = (lambda i, total: progress((i, total), desc="Sampling", unit="steps")) if progress is not None else None
    with lock, torch.inference_mode():
        images = model.sample(n, steps=steps, sampler=sampler, generator=generator, progress=report)
    # The grid `paradis predict` writes, converted to 8 bits as save_image does.
    grid = image_grid(images.cpu())
    return Image.fromarray(grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy())


def classify_texts(models: Models, path: Optional[str], text: Optional[str], per_line: bool):
    text = (text or "").strip()
    if not text:
        raise ValueError("The text is empty; type or paste some text to classify.")
    if len(text) > MAX_CHARS:
        raise ValueError(f"The text has {len(text):,} characters; paste at most {MAX_CHARS:,} at once.")
    texts = [line.strip() for line in text.splitlines() if line.strip()] if per_line else [text]
    if len(texts) > MAX_TEXTS:
        raise ValueError(f"{len(texts)} lines at once is too many; classify at most {MAX_TEXTS} lines per request.")
    import pandas as pd

    model, lock = models.get(path, "text")
    with lock, torch.inference_mode():
        probabilities, truncated = model.classify(texts)
    names = model.class_names
    rows = [[t, names[int(p.argmax())], *[round(float(x), 4) for x in p], "yes" if cut else ""]
            for t, p, cut in zip(texts, probabilities, truncated)]
    table = pd.DataFrame(rows, columns=["text", "label", *[f"p_{n}" for n in names], "truncated"])
    cut = [str(i + 1) for i, c in enumerate(truncated) if c]
    note = (f"Truncated: text {', '.join(cut)} is longer than the model's max length ({model.max_length} tokens); "
            f"only its first {model.max_length} tokens were classified.") if cut else ""
    return {n: float(p) for n, p in zip(names, probabilities[0])}, table, note


# -- the page ---------------------------------------------------------------------------------------------------------
def checkpoint_status(models: Models, task: str, path: Optional[str]) -> str:
    """Load the picked checkpoint now (so the first request is fast) and say what happened."""
    try:
        model, _ = models.get(path, task)
    except (ValueError, FileNotFoundError) as err:
        return f"**Cannot open this checkpoint:** {err}"
    count = sum(p.numel() for p in model.parameters())
    return f"Loaded {Path(path).name} ({count:,} parameters)."


def missing_message(task: str, where: str) -> str:
    return (f"No {TITLES[task]} checkpoint found in {where}. Train one with `{TRAIN_COMMANDS[task]}`, "
            f"then restart `paradis-app`.")


def build_app(runs_dir: Optional[str | Path] = "runs", checkpoints: list[str] = ()) -> gr.Blocks:
    """The Blocks app over the checkpoints under `runs_dir` and the `checkpoints` paths (importable for tests)."""
    entries, problems = discover(runs_dir, list(checkpoints))
    models = Models(entries)
    where = " or ".join(filter(None, [f"`{runs_dir}`" if runs_dir else "", "--checkpoint paths" if checkpoints else ""]))
    with gr.Blocks(title="Paradis") as demo:
        gr.Markdown("# Paradis\nPredictions from the checkpoints of your `paradis fit` runs.")
        if not any(entries.values()):
            gr.Markdown("**Nothing to open:** " + " ".join(missing_message(t, where or "`runs`") for t in TITLES))
        if problems:
            gr.Markdown("**Skipped checkpoints:**\n" + "\n".join(f"- {p}" for p in problems))
        for task in TITLES:
            with gr.Tab(TITLES[task], id=task):
                if not entries[task]:
                    gr.Markdown(missing_message(task, where or "`runs`"))
                    continue
                choices = [(e.label, e.path) for e in entries[task]]
                picker = gr.Dropdown(choices, value=choices[0][1], label="Checkpoint", allow_custom_value=False)
                status = gr.Markdown(f"{len(choices)} checkpoint(s) found.")
                picker.change(functools.partial(checkpoint_status, models, task), picker, status,
                              api_name=f"open_{task}")
                TABS[task](models, picker)
    demo.queue(default_concurrency_limit=2)  # queued, never dropped; 2 = the cores of a small machine
    return demo


def _mnist_tab(models: Models, picker: gr.Dropdown) -> None:
    with gr.Row():
        with gr.Column():
            sketch = gr.Sketchpad(label="Draw a digit", type="pil", image_mode="RGBA", format="png", canvas_size=(280, 280),
                                  fixed_canvas=True, height=360, width=360, layers=False, elem_id="sketch",
                                  brush=gr.Brush(default_size=16, colors=["#000000"], color_mode="fixed"))
            draw_button = gr.Button("Classify the drawing", variant="primary")
            upload = gr.File(label="…or upload an image of a digit", file_types=["image"], type="filepath",
                             elem_id="digit-upload")
            upload_button = gr.Button("Classify the upload")
        label = gr.Label(num_top_classes=10, label="Prediction", elem_id="digit-label")
    draw_button.click(page_errors(lambda path, s: classify_digit(models, path, sketch_image(s))), [picker, sketch], label,
                      api_name="classify_sketch")
    upload_button.click(page_errors(lambda path, f: classify_digit(models, path, open_image(f))), [picker, upload], label,
                        api_name="classify_upload")


def _ddpm_tab(models: Models, picker: gr.Dropdown) -> None:
    with gr.Row():
        with gr.Column():
            n = gr.Slider(1, MAX_IMAGES, value=16, step=1, label=f"Number of images (at most {MAX_IMAGES})")
            seed = gr.Number(0, precision=0, label="Seed")
            sampler = gr.Radio(["DDIM", "DDPM"], value="DDIM", label="Sampler")
            steps = gr.Slider(1, 1000, value=50, step=1, label="Steps", elem_id="ddpm-steps")
            button = gr.Button("Generate", variant="primary")
        grid = gr.Image(label="Samples (EMA weights)", type="pil", format="png", elem_id="ddpm-grid")

    @page_errors
    def run(path, n, seed, sampler, steps, progress=gr.Progress()):
        return generate(models, path, n, seed, sampler, steps, progress)

    button.click(run, [picker, n, seed, sampler, steps], grid, api_name="generate")


def _text_tab(models: Models, picker: gr.Dropdown) -> None:
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(lines=6, label="Text", placeholder="A review, or several reviews one per line",
                              elem_id="text-input")
            per_line = gr.Checkbox(True, label="Each line is a separate text")
            button = gr.Button("Classify", variant="primary")
        with gr.Column():
            label = gr.Label(label="Label (first text)", elem_id="text-label")
            note = gr.Markdown()
    table = gr.Dataframe(label="Every text", interactive=False)
    button.click(page_errors(lambda path, t, lines: classify_texts(models, path, t, lines)), [picker, text, per_line],
                 [label, table, note], api_name="classify_text")


TABS = {"mnist": _mnist_tab, "ddpm": _ddpm_tab, "text": _text_tab}


# -- command line ---------------------------------------------------------------------------------------------------
def parse_args(args: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="paradis-app", description="Open saved paradis checkpoints in a Gradio app.")
    parser.add_argument("--runs-dir", default="runs", help="folder searched (recursively) for run folders (default: runs)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="PATH", help="also offer this .ckpt (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    return parser.parse_args(args)


def main(args: Optional[list[str]] = None) -> None:
    options = parse_args(args)
    demo = build_app(options.runs_dir, options.checkpoint)
    entries, problems = discover(options.runs_dir, options.checkpoint)  # cheap: memory-mapped reads
    for problem in problems:
        print(f"paradis-app: skipped: {problem}", file=sys.stderr)
    for task, found in entries.items():
        print(f"paradis-app: {TITLES[task]}: {len(found)} checkpoint(s)" if found else
              f"paradis-app: {missing_message(task, options.runs_dir)}", file=sys.stderr)
    demo.launch(server_name=options.host, server_port=options.port, share=options.share, max_file_size="20mb",
                footer_links=["api"])


if __name__ == "__main__":
    main()
