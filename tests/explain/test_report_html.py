"""The report page escapes every name it did not write itself: a class, file or layer called
`<script>` shows as text and injects nothing."""

from __future__ import annotations

import re

import torch

from cnnkit.explain.error_analysis import ErrorAccumulator, classification_report, most_confused
from cnnkit.explain.interpret import Interpretation
from cnnkit.explain.report import CalibrationSection, ReportContent, Tile
from cnnkit.explain.report_html import render_report

HOSTILE = '<script>alert("x")</script>'
PNG = b"\x89PNG\r\n\x1a\n"  # the page only embeds the bytes


def test_names_from_the_run_are_escaped_everywhere() -> None:
    names = (HOSTILE, "a&b", "<img src=x onerror=alert(1)>")
    accumulator = ErrorAccumulator(3, top_k=2)
    accumulator.update(torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]]), torch.tensor([0, 1, 2]))
    interpretation = Interpretation(
        split="test", class_names=names, confusion=accumulator.confusion,
        report=classification_report(accumulator.confusion), confused=tuple(most_confused(accumulator.confusion)),
        top_losses=tuple(accumulator.top_losses()), mean_loss=1.0, examples=((0,), (1,), ()))
    content = ReportContent(
        title=f"run {HOSTILE}", run_facts=[("classes", ", ".join(names))], config=[("data", HOSTILE)],
        data_facts=[("dataset", f"/data/{HOSTILE} (folder)")], learning_curves=None,
        test_metrics=[("test_top1", "0.0")], interpretation=interpretation, confusion=PNG,
        top_losses=[Tile(PNG, f"#0 true {HOSTILE}")], class_gallery=[(HOSTILE, [Tile(PNG, f"#1 {HOSTILE}")])],
        cam_note=f"gradcam (layer {HOSTILE})", cam_advice=f"trust {HOSTILE}",
        calibration=CalibrationSection(1.5, f"from {HOSTILE}", *({key: 0.5 for key in (
            "ece", "mce", "nll", "brier", "accuracy", "confidence")} for _ in range(2)), PNG),
        filters=(PNG, HOSTILE), model_facts=[("parameters", "1")], notes=[f"note {HOSTILE}"])
    html = render_report(content)
    assert "<script" not in html.lower() and "<img src=x" not in html
    assert html.count("&lt;script&gt;") >= 12, "each name is there, as text"
    assert "a&amp;b" in html
    assert all(tag.startswith(('<img class="', "<img class='")) for tag in re.findall(r"<img[^>]*>", html))
