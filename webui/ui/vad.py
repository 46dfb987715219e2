"""The VAD inspection tab: the cut plan and speech spans of one recording, drawn over its waveform."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..context import AppContext
from ..modules.audio import InputError
from ..modules.engines import EngineError
from ..modules.vad_view import VadInspection, engine_cap_for, inspect_vad
from .common import MAX_SEGMENT_CHOICES, file_path, fmt_seconds, md_text

VAD_HEADERS = ["#", "Start", "End", "Length (s)", "Speech (s)", "Speech spans"]


def build(ctx: AppContext) -> None:
    with gr.Tab("VAD inspection", id="vad", elem_id="tab-vad"):
        gr.Markdown("Runs only the silence scan, the segment cut plan and VAD (no model): "
                    "check how a recording will be split before transcribing it.")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                vad_file = gr.File(label="Recording", type="filepath", elem_id="vad-file")
                vad_max = gr.Dropdown(MAX_SEGMENT_CHOICES, value="auto", allow_custom_value=True,
                                      label="Maximum segment length (s)", elem_id="vad-max")
                run = gr.Button("Inspect", variant="primary", elem_id="vad-run")
            with gr.Column(scale=3, min_width=420):
                summary = gr.Markdown(elem_id="vad-summary")
                gr.Markdown("Waveform in blue, detected speech shaded green, segment cuts in red (numbered).",
                            elem_classes=["muted"])
                plot = gr.Image(show_label=False, type="pil", interactive=False, format="png", elem_id="vad-plot")
                table = gr.Dataframe(headers=VAD_HEADERS, value=[], interactive=False, max_height=320,
                                     elem_id="vad-table")

    def inspect(path, max_text):
        path = file_path(path)
        if not path:
            return "Choose a recording first.", None, []
        try:
            base = ctx.settings.with_changes(max_segment=max_text or "auto")
        except ValueError as exc:
            return f"**{md_text(exc)}**", None, []
        options = base.to_pipeline_options()
        try:
            cap = engine_cap_for(options.engine)
            result = inspect_vad(path, options, cap)
        except InputError as exc:
            return f"**Cannot read {md_text(Path(path).name)}: {md_text(exc.reason)}.**", None, []
        except (EngineError, ValueError) as exc:
            return f"**{md_text(exc)}**", None, []
        table_rows = [[v.segment.index + 1, round(v.segment.start, 2), round(v.segment.end, 2),
                       round(v.segment.duration, 2), round(v.speech_seconds, 2), len(v.spans)]
                      for v in result.segments]
        return _summary(result, cap, base.max_segment), vad_plot(result), table_rows

    run.click(inspect, inputs=[vad_file, vad_max], outputs=[summary, plot, table], concurrency_limit=2,
              api_visibility="private")


def _summary(result: VadInspection, cap: float | None, setting) -> str:
    lengths = result.lengths
    if not lengths:
        return "No segments."
    duration = result.info.duration
    cap_note = f"{cap:g} s (model limit)" if cap else "unknown until the model is loaded"
    return (
        f"**{len(lengths)} segment(s)** over {fmt_seconds(duration)} "
        f"({duration:.1f} s) · effective maximum segment length **{result.max_seconds:g} s** "
        f"(setting: {setting}; engine cap: {cap_note})  \n"
        f"Segment lengths: min {min(lengths):.1f} s · mean {sum(lengths) / len(lengths):.1f} s · "
        f"max {max(lengths):.1f} s · speech {result.speech_seconds:.1f} s "
        f"({100 * result.speech_seconds / max(duration, 1e-9):.0f}%)"
    )


def vad_plot(result: VadInspection, width: int = 1200, height: int = 260):
    """The waveform outline with speech spans shaded and segment cuts drawn (a PIL image)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image, "RGBA")
    frame = _Frame(width, height, max(result.info.duration, 1e-6))
    _shade_speech(draw, frame, result)
    _waveform(draw, frame, result.peaks)
    _cuts(draw, frame, result)
    _time_axis(draw, frame)
    return image


@dataclass(frozen=True)
class _Frame:
    """Where the plot area sits in the image, and how recording time maps to x."""

    width: int
    height: int
    duration: float
    left: int = 8
    bottom: int = 26
    top: int = 18

    @property
    def plot_w(self) -> int:
        return self.width - 2 * self.left

    @property
    def plot_h(self) -> int:
        return self.height - self.bottom - self.top

    @property
    def base(self) -> int:
        return self.top + self.plot_h

    def x(self, t: float) -> int:
        return self.left + int(round(self.plot_w * min(max(t / self.duration, 0.0), 1.0)))


def _shade_speech(draw, f: _Frame, result: VadInspection) -> None:
    for view in result.segments:
        for start, end in view.spans:
            draw.rectangle([f.x(start), f.top, max(f.x(end), f.x(start) + 1), f.base], fill=(22, 163, 74, 60))


def _waveform(draw, f: _Frame, peaks) -> None:
    """One vertical line per pixel column: the loudest peak it covers, scaled to half the plot height."""
    mid = f.top + f.plot_h // 2
    top = float(peaks.max()) if peaks.size else 0.0
    scale = (f.plot_h / 2 - 2) / top if top > 0 else 0.0
    columns = max(1, f.plot_w)
    for col in range(columns):
        lo = int(col * peaks.size / columns)
        hi = max(lo + 1, int((col + 1) * peaks.size / columns))
        value = float(peaks[lo:hi].max()) if peaks.size else 0.0
        half = max(1, int(value * scale))
        draw.line([(f.left + col, mid - half), (f.left + col, mid + half)], fill=(37, 99, 235))


def _cuts(draw, f: _Frame, result: VadInspection) -> None:
    """A numbered red line at each segment start, and one at the end of the recording."""
    for view in result.segments:
        x = f.x(view.segment.start)
        draw.line([(x, f.top - 4), (x, f.base)], fill=(220, 38, 38), width=2)
        draw.text((x + 3, 2), str(view.segment.index + 1), fill=(220, 38, 38))
    end = f.x(f.duration)
    draw.line([(end, f.top - 4), (end, f.base)], fill=(220, 38, 38), width=2)


def _time_axis(draw, f: _Frame) -> None:
    draw.line([(f.left, f.base), (f.left + f.plot_w, f.base)], fill=(120, 120, 120))
    step = _tick_step(f.duration)
    tick = 0.0
    while tick <= f.duration + 1e-9:
        x = f.x(tick)
        draw.line([(x, f.base), (x, f.base + 4)], fill=(120, 120, 120))
        label = fmt_seconds(tick) if f.duration >= 60 else f"{tick:g}s"
        draw.text((min(x + 2, f.width - 40), f.base + 7), label, fill=(80, 80, 80))
        tick += step


def _tick_step(duration: float) -> float:
    """The smallest round time-axis step that gives at most 12 ticks."""
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration / step <= 12:
            return float(step)
    return 7200.0
