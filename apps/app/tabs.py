"""The tabs: components, and the API endpoints they expose (named with `api_name`, listed in the README)."""

from __future__ import annotations

import functools

import gradio as gr

from apps.app.inference import MAX_IMAGES, classify_digit, classify_texts, generate, open_image, sketch_image


def page_errors(fn):
    """Bad input / broken checkpoint -> a gr.Error with the one-sentence message (the app keeps serving)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError) as err:
            raise gr.Error(str(err)) from None

    return wrapper


def mnist_tab(models, picker: gr.Dropdown) -> None:
    with gr.Row():
        with gr.Column():
            sketch = gr.Sketchpad(
                label="Draw a digit",
                type="pil",
                image_mode="RGBA",
                format="png",
                canvas_size=(280, 280),
                fixed_canvas=True,
                height=360,
                width=360,
                layers=False,
                elem_id="sketch",
                brush=gr.Brush(default_size=16, colors=["#000000"], color_mode="fixed"),
            )
            draw_button = gr.Button("Classify the drawing", variant="primary")
            upload = gr.File(
                label="…or upload an image of a digit (a photo of paper works)",
                file_types=["image"],
                type="filepath",
                elem_id="digit-upload",
            )
            upload_button = gr.Button("Classify the upload")
        with gr.Column():
            label = gr.Label(num_top_classes=10, label="Prediction", elem_id="digit-label")
            seen = gr.Image(
                label="What the model saw (28×28, enlarged)",
                type="pil",
                format="png",
                height=240,
                interactive=False,
                elem_id="digit-seen",
            )
    draw_button.click(
        page_errors(lambda path, s: classify_digit(models, path, sketch_image(s))),
        [picker, sketch],
        [label, seen],
        api_name="classify_sketch",
    )
    upload_button.click(
        page_errors(lambda path, f: classify_digit(models, path, open_image(f))),
        [picker, upload],
        [label, seen],
        api_name="classify_upload",
    )


def ddpm_tab(models, picker: gr.Dropdown) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            n = gr.Slider(1, MAX_IMAGES, value=16, step=1, label=f"Number of images (at most {MAX_IMAGES})")
            seed = gr.Number(0, precision=0, label="Seed")
            sampler = gr.Radio(["DDIM", "DDPM"], value="DDIM", label="Sampler")
            steps = gr.Slider(1, 1000, value=50, step=1, label="Steps", elem_id="ddpm-steps")
            button = gr.Button("Generate", variant="primary")
            download = gr.File(
                label="The grid as PNG (as `paradis predict` writes grid.png)",
                interactive=False,
                elem_id="ddpm-download",
            )
        grid = gr.Image(label="Samples (EMA weights), enlarged", type="pil", format="png", elem_id="ddpm-grid", scale=2)

    @page_errors
    def run(path, n, seed, sampler, steps, progress=gr.Progress()):  # noqa: B008 (gradio injects progress through this default)
        return generate(models, path, n, seed, sampler, steps, progress)

    button.click(run, [picker, n, seed, sampler, steps], [grid, download], api_name="generate")


def text_tab(models, picker: gr.Dropdown) -> None:
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(
                lines=6, label="Text", placeholder="A review, or several reviews one per line", elem_id="text-input"
            )
            per_line = gr.Checkbox(True, label="Each line is a separate text")
            button = gr.Button("Classify", variant="primary")
        with gr.Column():
            label = gr.Label(label="Label (first text)", elem_id="text-label")
            note = gr.Markdown()
    table = gr.Dataframe(label="Every text", interactive=False)
    button.click(
        page_errors(lambda path, t, lines: classify_texts(models, path, t, lines)),
        [picker, text, per_line],
        [label, table, note],
        api_name="classify_text",
    )
