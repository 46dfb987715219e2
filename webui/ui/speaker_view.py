"""Speakers on the page: the "Who spoke" choices of the Transcribe and Batch tabs, and a job's
talk time per speaker with its speaker turns (shown inside the transcript view). The numbers
come from modules/speakers.py; every name is escaped here, since a person may have typed it."""

from __future__ import annotations

import html

import gradio as gr

from ..modules.options import MAX_PAGE_SPEAKERS
from ..modules.speakers import current_turns, talk_summary
from ..modules.transcript import Transcript
from .common import QUIET, fmt_seconds

AUTO = "Auto"  # the count found from the recording (between the bounds, if any)
ANY = "Any"    # no bound
MAX_TURNS_SHOWN = 2000  # a 3-hour meeting has a few thousand; the JSON download has them all


class SpeakerChoice:
    """The "Who spoke" checkbox, and the speaker count it opens (elements named `prefix`-…)."""

    def build(self, prefix: str) -> None:
        self.on = gr.Checkbox(value=False, label="Who spoke (speaker labels)", elem_id=f"{prefix}-diarize",
                              info="Labels each line with its speaker; on the CPU it adds about a fifth to the time.")
        with gr.Row(visible=False, elem_id=f"{prefix}-speaker-counts") as self.counts:
            self.count = gr.Dropdown([AUTO, *map(str, range(1, MAX_PAGE_SPEAKERS + 1))], value=AUTO,
                                     label="Speakers", elem_id=f"{prefix}-speakers", min_width=90)
            bounds = [ANY, *map(str, range(1, MAX_PAGE_SPEAKERS + 1))]
            self.low = gr.Dropdown(bounds, value=ANY, label="At least", elem_id=f"{prefix}-min-speakers", min_width=90)
            self.high = gr.Dropdown(bounds, value=ANY, label="At most", elem_id=f"{prefix}-max-speakers", min_width=90)
        self.on.change(lambda on: gr.Row(visible=bool(on)), inputs=[self.on], outputs=[self.counts], **QUIET)

    @property
    def inputs(self) -> list:
        return [self.on, self.count, self.low, self.high]


def speakers_html(transcript: Transcript) -> str:
    """Talk time per speaker (total, share, turns) and the speaker turns under the newest names;
    empty for a transcript without speakers."""
    turns = current_turns(transcript.turns, transcript.segments)
    summary = talk_summary(turns)
    if not summary:
        return ""
    e = html.escape
    rows = "".join(
        f'<tr class="tv-talk-row"><td class="tv-who">{e(t.speaker)}</td><td>{fmt_seconds(t.seconds)}</td>'
        f'<td><span class="tv-share" style="width:{100 * t.share:.0f}px"></span> {100 * t.share:.1f}%</td>'
        f'<td>{t.turns}</td></tr>' for t in summary)
    listed = "".join(f'<tr class="tv-turn"><td>{e(t.speaker)}</td><td>{_clock(t.start)}</td><td>{_clock(t.end)}</td>'
                     f'<td>{_clock(t.end - t.start)}</td></tr>' for t in turns[:MAX_TURNS_SHOWN])
    more = (f'<p class="tv-note">The first {MAX_TURNS_SHOWN:,} of {len(turns):,} turns; the JSON download '
            'has them all.</p>') if len(turns) > MAX_TURNS_SHOWN else ""
    return (f'<div class="tv-talk"><table class="tv-talk-table"><caption>Talk time per speaker '
            f'({len(summary)} speaker{"s" if len(summary) != 1 else ""})</caption>'
            '<thead><tr><th>Speaker</th><th>Talk time</th><th>Share</th><th>Turns</th></tr></thead>'
            f'<tbody>{rows}</tbody></table>'
            f'<details class="tv-turns"><summary>Speaker turns ({len(turns):,})</summary>{more}'
            '<table><thead><tr><th>Speaker</th><th>Start</th><th>End</th><th>Length</th></tr></thead>'
            f'<tbody>{listed}</tbody></table></details></div>')


def _clock(seconds: float) -> str:
    """m:ss.s (h:mm:ss.s past an hour): turns are often shorter than a second's rounding shows."""
    tenths = int(round(max(0.0, seconds) * 10))
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    s = f"{rest // 10:02d}.{rest % 10}"
    return f"{h}:{m:02d}:{s}" if h else f"{m}:{s}"
