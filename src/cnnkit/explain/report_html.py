"""The report of a run as one self-contained HTML page: images as data: URLs, inline CSS, no
scripts, no web fonts, no network. Layout only; `report.build_report` computes the content."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

from cnnkit.explain.error_analysis import report_rows
from cnnkit.explain.report import CalibrationSection, ReportContent, Tile

STYLE = """
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232a;
       background: #f4f5f7; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 20px 48px; }
header { background: #1f3b57; color: #fff; padding: 18px 20px; }
header h1 { margin: 0 auto; max-width: 1140px; font-size: 22px; }
nav { max-width: 1140px; margin: 6px auto 0; font-size: 13px; }
nav a { color: #cfe3f7; margin-right: 12px; text-decoration: none; white-space: nowrap; display: inline-block; }
section { background: #fff; border-radius: 8px; padding: 14px 18px; margin: 16px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h2 { font-size: 18px; margin: 4px 0 10px; color: #1f3b57; }
p.note { color: #5a6470; font-size: 13px; margin: 4px 0 10px; }
p.advice { border-left: 4px solid #1f3b57; background: #eef3f8; padding: 8px 12px; margin: 4px 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 13.5px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e3e6ea; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.avg td { font-weight: 600; background: #f7f8fa; }
.columns { display: flex; flex-wrap: wrap; gap: 12px 36px; }
.columns > div { min-width: 0; flex: 1 1 300px; }
img.figure { display: block; max-width: 100%; height: auto; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; }
.gallery.small { grid-template-columns: repeat(auto-fill, minmax(120px, 1fr)); }
figure { margin: 0; }
figure img { display: block; width: 100%; height: auto; image-rendering: pixelated; border-radius: 4px; }
figcaption { font-size: 12px; color: #39424c; white-space: pre-line; margin-top: 3px; overflow-wrap: anywhere; }
h3 { font-size: 15px; margin: 14px 0 6px; }
"""

SECTIONS = (("run", "Run"), ("data", "Data"), ("curves", "Learning curves"), ("metrics", "Test metrics"),
            ("confusion", "Confusion matrix"), ("classes", "Per-class report"), ("confused", "Most confused"),
            ("trust", "Which map to trust"), ("losses", "Top losses"), ("gallery", "Per-class maps"),
            ("calibration", "Calibration"), ("filters", "Filters"), ("model", "Model"))


def data_url(png: bytes) -> str:
    """PNG bytes as a data: URL, so the page needs no file beside it."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str, css: str = "figure") -> str:
    return f'<img class="{css}" src="{data_url(png)}" alt="{escape(alt)}">'


def _table(body: str) -> str:
    return f'<div class="scroll"><table>{body}</table></div>'


def _num(value: object) -> str:
    return f"<td class='num'>{value}</td>"


def _pairs(rows: Sequence[tuple[str, str]]) -> str:
    return _table("".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows))


def _section(anchor: str, title: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{escape(note)}</p>' if note else ""
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{note_html}{body}</section>'


def _tiles(tiles: Sequence[Tile], css: str = "gallery") -> str:
    figures = "".join(f"<figure>{_img(t.png, t.caption, css='tile')}<figcaption>{escape(t.caption)}</figcaption></figure>"
                      for t in tiles)
    return f'<div class="{css}">{figures}</div>'


def _class_table(content: ReportContent) -> str:
    report = content.interpretation.report
    rows = []
    for name, s in report_rows(report, content.interpretation.class_names):
        css = ' class="avg"' if name in ("macro avg", "weighted avg") else ""
        cells = "".join(_num(f"{value:.3f}") for value in (s.precision, s.recall, s.f1)) + _num(s.support)
        rows.append(f"<tr{css}><td>{escape(name)}</td>{cells}</tr>")
    head = "<tr><th>class</th>" + "".join(f"<th class='num'>{h}</th>" for h in ("precision", "recall", "F1", "support"))
    return _table(head + "</tr>" + "".join(rows))


def _confused_table(content: ReportContent, limit: int = 15) -> str:
    names = content.interpretation.class_names
    pairs = content.interpretation.confused[:limit]
    if not pairs:
        return '<p class="note">No misclassification on this split.</p>'
    rows = "".join(f"<tr><td>{escape(names[p.true])}</td><td>{escape(names[p.predicted])}</td>{_num(p.count)}</tr>"
                   for p in pairs)
    return _table(f'<tr><th>true</th><th>predicted as</th><th class="num">count</th></tr>{rows}')


def _calibration(section: CalibrationSection | None) -> str:
    if section is None:
        return '<p class="note">Skipped: see the notes at the top of the page.</p>'
    names = ("ece", "mce", "nll", "brier", "accuracy", "confidence")
    rows = "".join(f"<tr><td>{name.upper() if len(name) == 3 else name}</td><td class='num'>{section.before[name]:.4f}</td>"
                   f"<td class='num'>{section.after[name]:.4f}</td></tr>" for name in names)
    table = (f'<div class="scroll"><table><tr><th>metric</th><th class="num">before (T = 1)</th>'
             f'<th class="num">after (T = {section.temperature:.3f})</th></tr>{rows}</table></div>'
             f'<p class="note">Temperature {escape(section.source)}. ECE/MCE: 15 equal-width bins '
             "[k/15, (k+1)/15), a confidence of exactly 1 in a bin of its own (torchmetrics' convention). "
             "Brier: mean over images of the squared error summed over classes.</p>")
    return f'<div class="columns"><div>{table}</div><div>{_img(section.diagram, "reliability diagram")}</div></div>'


def render_report(content: ReportContent) -> str:
    """The whole page as one string."""
    interpretation = content.interpretation
    split = interpretation.split
    nav = "".join(f'<a href="#{anchor}">{escape(title)}</a>' for anchor, title in SECTIONS)
    gallery = "".join(f"<h3>{escape(name)}</h3>{_tiles(tiles, 'gallery small')}" for name, tiles in content.class_gallery)
    parts = [
        _section("run", "Run", f'<div class="columns"><div>{_pairs(content.run_facts)}</div>'
                               f'<div>{_pairs(content.config)}</div></div>'),
        _section("data", "Data", _pairs(content.data_facts)),
        _section("curves", "Learning curves", _img(content.learning_curves, "learning curves")
                 if content.learning_curves else '<p class="note">The run has no metrics.csv.</p>'),
        _section("metrics", "Test metrics", _pairs(content.test_metrics), f"On the {split} split."),
        _section("confusion", "Confusion matrix", _img(content.confusion, "confusion matrix"),
                 "Rows: true class; columns: predicted class."),
        _section("classes", "Per-class report", _class_table(content),
                 "Undefined ratios (a class never predicted, or absent) count as 0, as scikit-learn's zero_division=0."),
        _section("confused", "Most confused pairs", _confused_table(content)),
        _section("trust", "Which map to trust", f'<p class="advice">{escape(content.cam_advice)}</p>'),
        _section("losses", "Top losses", _tiles(content.top_losses),
                 f"The {split} images with the highest loss: the image, then the {content.cam_note} map "
                 "of the predicted class (what drove the wrong answer)."),
        _section("gallery", "Where the model looks, per class", gallery or '<p class="note">No examples.</p>',
                 f"The images each class is recognised most surely in, with the {content.cam_note} map of that "
                 "class (see 'Which map to trust' above)."),
        _section("calibration", "Calibration", _calibration(content.calibration),
                 f"How well the confidence matches accuracy on the {split} split, before and after temperature scaling."),
        _section("filters", "First-layer filters", _img(content.filters[0], "first-layer filters")
                 if content.filters else '<p class="note">Not available.</p>',
                 f"The weights of {content.filters[1]}: the patterns the network looks for first." if content.filters else ""),
        _section("model", "Model summary", _pairs(content.model_facts)),
    ]
    notes = "".join(f'<p class="note">Note: {escape(note)}</p>' for note in content.notes)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(content.title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(content.title)}</h1><nav>{nav}</nav></header>"
        f"<main>{notes}{''.join(parts)}</main></body></html>\n"
    )
