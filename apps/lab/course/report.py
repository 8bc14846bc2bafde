"""`course.md` and `course.html` of a lab folder: every axis in one report (apps/lab/course/axes.py reads them,
apps/lab/course/questions.py answers the course's questions from their numbers).

The content is built once as a list of blocks and written twice: Markdown with the figures as relative
links to the PNGs the axis reports already wrote, and one self-contained HTML file (figures as base64
data URIs, inline CSS, no script, no external resource) that prints cleanly to PDF.
"""

from __future__ import annotations

import base64
import html
import io
import re
import shlex
from datetime import datetime, timezone
from pathlib import Path

from apps.lab.course.answers import Answer, axis_summary
from apps.lab.course.axes import Axis, best_overall, collect, hardware, shared_command, table
from apps.lab.course.questions import answer_all

COURSE_MD, COURSE_HTML = "course.md", "course.html"


def build(axes: list[Axis], runs_dir: Path) -> list[tuple]:
    """The report as blocks: (h1|h2|h3|p, text), (ul, [text]), (pre, text), (img, title, path), (table, headers, groups)."""
    answers = answer_all(axes)
    command = shared_command(axes)
    blocks: list[tuple] = [
        ("h1", f"MNIST lab course: {len(axes)} ax{'i' if len(axes) == 1 else 'e'}s"),
        (
            "p",
            f"Written {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} from the runs in `{runs_dir}`: "
            "every number below is read from the runs' `results.json`; the sentences are computed from them.",
        ),
        ("h2", "Machine"),
        ("ul", hardware(axes)),
        ("h2", "Reproduce"),
        ("p", "Every row, from the repository root (finished variants are read back, not rerun):"),
        ("pre", command or "\n".join(shlex.join(["paradis-lab", *a.argv]) for a in axes)),
        (
            "p",
            f"TensorBoard over every run of every axis: `tensorboard --logdir {runs_dir}`; each row's own "
            "`paradis fit` / `paradis test` commands are at the end.",
        ),
        ("h2", "All axes side by side"),
        (
            "p",
            "Test accuracy of the best checkpoint (by val acc); epochs to reach the axis's target val acc; mean "
            "training-epoch wall time; peak memory (`perf/peak_memory_mb`); parameter count. Axes differ in epochs, "
            "data and network, so compare rows within an axis.",
        ),
        ("table", *table(axes)),
    ]
    best = best_overall(axes)
    if best:
        blocks.append(("p", f"Best variant overall: **{best[1]}** of {best[0].name}, {best[2]:.4f} test accuracy."))
    unanswered = [a for a in answers if a.axis is None]
    if unanswered:
        blocks += [("h2", "Questions not answered by this run")]
        for answer in unanswered:
            blocks += [("p", f"**{answer.title}** {' '.join(answer.lines)}")]
    for axis in axes:
        blocks += axis_blocks(axis, [a for a in answers if a.axis == axis.name], runs_dir)
    blocks.append(("h2", "Commands of every row"))
    for axis in axes:
        commands = [
            line
            for name, runs in axis.runs.items()
            for run in runs
            for line in [
                f"# {name}" + (f" fold {run['fold']}" if run.get("fold") is not None else ""),
                *run.get("commands", []),
            ]
        ]
        blocks += [("h3", axis.name), ("pre", "\n".join(commands))]
    return blocks


def axis_blocks(axis: Axis, answers: list[Answer], runs_dir: Path) -> list[tuple]:
    report = (axis.folder / "report.md").relative_to(runs_dir).as_posix()
    blocks: list[tuple] = [
        ("h2", f"Axis: {axis.name}"),
        *([("p", axis.description)] if axis.description else []),
        (
            "p",
            f"Lab file `{axis.lab}`; this axis alone: `{shlex.join(['paradis-lab', *axis.argv])}`; its full report "
            f"(per-variant table with more columns): [{report}]({report}).",
        ),
        ("ul", axis_summary(axis)),
    ]
    for answer in answers:
        blocks += [("h3", answer.title), ("p", f"The course expects: {answer.expected}"), ("ul", answer.lines)]
    blocks += [("img", title, path) for title, path in axis.figures()]
    return blocks


INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


def inline(text: str) -> str:
    """The Markdown subset used in the blocks (`code`, **bold**, [link](target)) as HTML."""
    out, last = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[last : m.start()]))
        code, bold, label, target = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{html.escape(bold)}</strong>")
        else:
            out.append(f'<a href="{html.escape(target)}">{html.escape(label)}</a>')
        last = m.end()
    return "".join(out) + html.escape(text[last:])


def to_markdown(blocks: list[tuple], runs_dir: Path) -> str:
    lines: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + rest[0], ""]
        elif kind == "p":
            lines += [rest[0], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in rest[0]] + [""]
        elif kind == "pre":
            lines += ["```bash", rest[0], "```", ""]
        elif kind == "img":
            lines += [f"![{rest[0]}]({rest[1].relative_to(runs_dir).as_posix()})", ""]
        elif kind == "table":
            headers, groups = rest
            lines += ["| axis | " + " | ".join(headers) + " |", "|" + "---|" * (len(headers) + 1)]
            for axis, rows in groups:
                for i, cells in enumerate(rows):
                    lines.append(
                        "| "
                        + " | ".join([f"**{axis.name}**" if i == 0 else "", *(c.replace("|", "\\|") for c in cells)])
                        + " |"
                    )
            lines.append("")
    return "\n".join(lines)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;max-width:1100px;margin:1.5em auto;
padding:0 1em;color:#1a1a1a;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.3em;border-bottom:1px solid #ddd;margin-top:1.6em}h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;width:100%;font-size:.88em}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left}
thead th{background:#f0f0f0}tr.axis-head th{background:#e8eef8}
code,pre{font-family:ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:.85em}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f6f6f6;padding:.5em;font-size:.75em}
figure{margin:.6em 0;break-inside:avoid;page-break-inside:avoid}figcaption{font-size:.85em;color:#555}
img{max-width:100%;height:auto}
@page{size:A4;margin:14mm}
@media print{body{margin:0;max-width:none;font-size:10pt}tbody,tr,figure,img,li{break-inside:avoid;page-break-inside:avoid}
thead{display:table-header-group}h2,h3{break-after:avoid;page-break-after:avoid}a{color:inherit;text-decoration:none}
pre{font-size:6.5pt}}
"""


def compact_png(path: Path) -> bytes:
    """The figure as a 256-colour palette PNG (matplotlib's plots lose nothing visible; ~3x smaller), or as is."""
    raw = path.read_bytes()
    try:
        from PIL import Image

        with Image.open(path) as image:
            palette = image.convert("RGB").quantize(
                colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
            )
        out = io.BytesIO()
        palette.save(out, "PNG", optimize=True)
    except (ImportError, OSError, ValueError):
        return raw
    return out.getvalue() if len(out.getvalue()) < len(raw) else raw


def to_html(blocks: list[tuple]) -> str:
    title = next(rest[0] for kind, *rest in blocks if kind == "h1")
    body: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{inline(rest[0])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{inline(rest[0])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{inline(item)}</li>" for item in rest[0]) + "</ul>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(rest[0])}</pre>")
        elif kind == "img":
            data = base64.b64encode(compact_png(rest[1])).decode()
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(rest[0])}">'
                f"<figcaption>{html.escape(rest[0])}</figcaption></figure>"
            )
        elif kind == "table":
            headers, groups = rest
            body.append(
                '<table class="course"><thead><tr>'
                + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                + "</tr></thead>"
            )
            for axis, rows in groups:
                target = f", target {axis.target_acc:g} val acc" if axis.target_acc else ""
                body.append(
                    f'<tbody data-axis="{html.escape(axis.name)}"><tr class="axis-head"><th colspan="{len(headers)}">'
                    f"{html.escape(axis.name)} ({len(rows)} variants{target})</th></tr>"
                )
                body += [
                    '<tr class="variant">' + "".join(f"<td>{inline(c)}</td>" for c in cells) + "</tr>" for cells in rows
                ]
                body.append("</tbody>")
            body.append("</table>")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        f"<style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_course(runs_dir: Path, order: list[str] = ()) -> list[Path]:
    """`course.md` and `course.html` in `runs_dir` over every axis found there; [] when none is."""
    runs_dir = Path(runs_dir)
    axes = collect(runs_dir, order)
    if not axes:
        return []
    blocks = build(axes, runs_dir)
    (runs_dir / COURSE_MD).write_text(to_markdown(blocks, runs_dir))
    (runs_dir / COURSE_HTML).write_text(to_html(blocks))
    return [runs_dir / COURSE_MD, runs_dir / COURSE_HTML]
