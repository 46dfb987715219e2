"""Speakers on the page, below the browser: the page's speaker choices, the talk-time summary,
History's search by speaker (as of the newest revision) and the HTML that shows them.
The browser test of the whole flow: test_speakers_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DATA
from webui.modules import revisions
from webui.modules.history import History
from webui.modules.options import diarize_choice
from webui.modules.speakers import talk_summary
from webui.modules.transcript import SpeakerTurn, TimedText, Transcript
from webui.ui.speaker_view import speakers_html


def turn(start: float, end: float, who: str) -> SpeakerTurn:
    return SpeakerTurn(start, end, who)


# --- the page's choices -----------------------------------------------------------------------

def test_speaker_choices_become_diarize_options() -> None:
    assert diarize_choice(False, "3", 9, 1) is None  # off: nothing else is read
    auto = diarize_choice(True, "Auto", "Any", "any")
    assert (auto.num_speakers, auto.min_speakers, auto.max_speakers) == (None, None, None)
    assert diarize_choice(True, "2", None, None).num_speakers == 2
    bounded = diarize_choice(True, "auto", 2.0, "4")
    assert (bounded.num_speakers, bounded.min_speakers, bounded.max_speakers) == (None, 2, 4)


@pytest.mark.parametrize("count, low, high, says", [
    ("0", None, None, "from 1 to 20"), ("21", None, None, "from 1 to 20"), ("2.5", None, None, "whole number"),
    ("two", None, None, "whole number"), ("auto", 5, 3, "minimum number of speakers (5) is above the maximum (3)"),
    ("auto", float("nan"), None, "minimum"), ("auto", None, 1e9, "maximum"), ("6", 2, 4, "outside the minimum"),
    ("auto", True, None, "whole number"),
])
def test_bad_speaker_choices_say_what_is_wrong(count, low, high, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        diarize_choice(True, count, low, high)
    assert says in str(caught.value)


# --- talk time --------------------------------------------------------------------------------

def test_talk_summary_adds_each_speakers_turns() -> None:
    summary = talk_summary([turn(0, 4, "A"), turn(4.5, 6, "B"), turn(6, 10, "A"), turn(10, 10.5, "B")])
    assert [(t.speaker, t.seconds, t.turns) for t in summary] == [("A", 8.0, 2), ("B", 2.0, 2)]
    assert [round(t.share, 3) for t in summary] == [0.8, 0.2]


def test_talk_summary_without_turns_joins_runs_of_lines() -> None:
    lines = [TimedText(0, 2, "a", speaker="X"), TimedText(2, 3, "b", speaker="X"), TimedText(3, 4, "c"),
             TimedText(4, 7, "d", speaker="Y"), TimedText(7, 8, "e", speaker="X")]
    summary = talk_summary([], lines)
    assert [(t.speaker, t.seconds, t.turns) for t in summary] == [("X", 4.0, 2), ("Y", 3.0, 1)]
    assert talk_summary([], [TimedText(0, 1, "unlabelled")]) == []


def test_talk_summary_follows_the_lines_where_a_correction_named_someone_the_turns_do_not() -> None:
    turns = [turn(0, 4, "Speaker 1"), turn(4, 6, "Speaker 2")]
    as_found = [TimedText(0, 4, "a", speaker="Speaker 1"), TimedText(4, 6, "b", speaker="Speaker 2")]
    assert [t.speaker for t in talk_summary(turns, as_found)] == ["Speaker 1", "Speaker 2"]
    assert talk_summary(turns, as_found[:1])[1].seconds == 2.0  # a speaker without lines keeps its turns
    corrected = [as_found[0], TimedText(4, 6, "b", speaker="Ms. Ode")]
    assert [(t.speaker, t.seconds) for t in talk_summary(turns, corrected)] == [("Speaker 1", 4.0), ("Ms. Ode", 2.0)]


# --- History: search by speaker, as of the newest revision -------------------------------------

def finished(history: History, name: str, speakers: list[str]) -> int:
    job = history.create_job(name, f"/tmp/{name}", "tiny", {})
    lines = [TimedText(i * 2.0, i * 2.0 + 1.5, f"line {i}", speaker=who) for i, who in enumerate(speakers)]
    turns = [SpeakerTurn(p.start, p.end, p.speaker) for p in lines]
    history.finish_job(job, Transcript(name, 10.0, "tiny", "en", "x", segments=lines, turns=turns))
    return job


def renamed(history: History, job: int, old: str, new: str) -> None:
    record = history.get(job)
    lines = revisions.rename_speaker(revisions.lines_of(revisions.latest(history, record)[0]), old, new)
    history.add_revision(job, [line.to_dict() for line in lines], "me", "rename")


def test_search_by_speaker_follows_the_newest_revision(tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    chen = finished(history, "meeting.wav", ["Speaker 1", "Speaker 2", "Speaker 1"])
    solo = finished(history, "lecture.wav", ["Speaker 1"])
    finished(history, "plain.wav", [None])  # type: ignore[list-item]

    def found(speaker: str) -> set[int]:
        return {r.id for r in history.search(speaker=speaker)}

    assert found("Speaker 1") == {chen, solo}
    assert found("  speaker   2 ") == {chen}  # any case, spaces as typed
    assert found("Speaker") == set()  # a whole name, not a part of one
    renamed(history, chen, "Speaker 2", "Dr. Chen")
    assert found("Dr. Chen") == {chen} and found("dr. chen") == {chen}
    assert found("Speaker 2") == set()  # the old name is gone with the newest revision
    renamed(history, chen, "Dr. Chen", "Speaker 2")  # a later revision decides again
    assert found("Dr. Chen") == set() and found("Speaker 2") == {chen}
    assert found("%") == set() and found("' OR 1=1 --") == set()  # bound, not spliced into SQL
    assert [r.id for r in history.search(name="lecture", speaker="Speaker 1")] == [solo]  # with the other filters
    assert history.search(speaker="Speaker 1", owner="someone else") == []


# --- what the page shows -----------------------------------------------------------------------

def test_speakers_html_shows_renamed_turns_and_escapes_names(tmp_path: Path) -> None:
    history = History(tmp_path / "history.db")
    job = finished(history, "meeting.wav", ["Speaker 1", "Speaker 2", "Speaker 1"])
    renamed(history, job, "Speaker 2", "<b>Dr. Chen</b>")
    transcript, _ = revisions.latest(history, history.get(job))
    page = speakers_html(transcript)
    assert "&lt;b&gt;Dr. Chen&lt;/b&gt;" in page and "<b>Dr. Chen" not in page
    assert "Speaker 2" not in page  # renamed everywhere: summary and turns
    assert page.count('class="tv-turn"') == 3
    assert "66.7%" in page and "33.3%" in page  # 3 s of Speaker 1 to 1.5 s
    assert speakers_html(Transcript("a.wav", 1.0, "tiny", segments=[TimedText(0, 1, "hi")])) == ""


# --- the tabs hand the choices to the job ---------------------------------------------------------

def fake_context(submitted: list):
    """Just what Transcribe's and Batch's Start use: the job's options and the queue."""
    from types import SimpleNamespace

    from tests.test_ui_common import state
    from webui.modules.options import PipelineOptions, with_preset

    def submit(path, options, owner, group=""):
        submitted.append(options)
        return "1-1"

    queue = SimpleNamespace(submit=submit, get=lambda jid: state(id=jid, status="queued"),
                            jobs=lambda group=None: [state(id="1-1", status="queued", group=group or "")])
    return SimpleNamespace(job_options=lambda accurate=False, **kw: with_preset(PipelineOptions(), accurate), queue=queue,
                           visitor=lambda request: SimpleNamespace(name="local"),
                           settings=SimpleNamespace(max_batch_files=10))


def test_transcribe_and_batch_start_jobs_that_diarize_or_say_why_not() -> None:
    from types import SimpleNamespace

    from webui.ui import batch, transcribe

    page = SimpleNamespace(username=None, session_hash="p1")
    submitted: list = []
    tx = transcribe._View(fake_context(submitted))
    assert tx.submit("/tmp/a.wav", None, "", "", "", True, "", False, True, "2", None, None, page)[0] == "1-1"
    assert submitted.pop().diarize.num_speakers == 2
    tx.submit("/tmp/a.wav", None, "", "", "", True, "", True, False, "2", None, None, page)
    chosen = submitted.pop()
    assert chosen.diarize is None  # off by default, and the count is not read then
    assert chosen.accurate is True  # the Accurate mode box, beside the speaker choices
    refused = tx.submit("/tmp/a.wav", None, "", "", "", True, "", False, True, "Auto", 4, 2, page)
    assert "above the maximum" in refused[1] and not submitted
    b = batch._Batch(fake_context(submitted))
    assert b.submit(["/tmp/a.wav", "/tmp/b.wav"], "", "", True, True, "Auto", 2, 3, page)[0]
    assert [(o.diarize.min_speakers, o.diarize.max_speakers, o.accurate) for o in submitted] == [(2, 3, True)] * 2
    submitted.clear()
    refused = b.submit(["/tmp/a.wav"], "", "", False, True, "99", None, None, page)
    assert "from 1 to 20" in refused[2] and not submitted


# --- voice profiles: each user's own ---------------------------------------------------------------

def test_profiles_are_each_users_own_on_the_page(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import numpy as np

    from webui.context import AppContext
    from webui.modules.diarize.known import encode_vector
    from webui.modules.transcript import SpeakerVoice
    from webui.ui.voice_profiles import ProfilesPanel

    history = History(tmp_path / "history.db")
    job = history.create_job("talk.wav", "/tmp/talk.wav", "tiny", {}, owner="ann")
    lines = [TimedText(0, 3, "hi", speaker="Speaker 1"), TimedText(3, 6, "hello", speaker="Speaker 2")]
    voices = [SpeakerVoice(f"Speaker {i}", encode_vector(np.eye(192)[i]), 8) for i in (1, 2)]
    history.finish_job(job, Transcript("talk.wav", 6.0, "tiny", "en", "hi hello", segments=lines, voices=voices))
    ctx = AppContext(SimpleNamespace(), None, history, SimpleNamespace(jobs=lambda: []), logins=True,
                     admins=frozenset({"root"}))
    ann, bob, root = (SimpleNamespace(username=u, session_hash=u) for u in ("ann", "bob", "root"))
    panel = ProfilesPanel(ctx)
    box, speakers, _ = panel.job_speakers(job, ann)
    assert box.visible and speakers.choices == [("Speaker 1", "Speaker 1"), ("Speaker 2", "Speaker 2")]
    assert not panel.job_speakers(job, bob)[0].visible  # not bob's job
    assert not panel.job_speakers(job, root)[0].visible  # the admin sees the job, but it is not theirs to save
    said, rows, _ = panel.save_speaker(job, "Speaker 2", "  Ms.  *Ode*  ", ann)
    assert "Ms\\. \\*Ode\\*" in said and [r[1:3] for r in rows] == [["Ms. *Ode*", 1]]
    assert "not one of yours" in panel.save_speaker(job, "Speaker 2", "Mine now", bob)[0]
    assert "no speaker called" in panel.save_speaker(job, "Speaker 9", "Nobody", ann)[0]
    assert panel.listing(bob)[0] == []  # bob sees none of ann's
    ann_id = rows[0][0]
    assert "No such profile" in panel.remove(ann_id, bob)[0]
    assert "Choose a profile" in panel.remove("1; DROP TABLE jobs", ann)[0]
    assert "Add at least one" in panel.add_clips([], "Empty", ann)[0]
    bogus = tmp_path / "notes.wav"
    bogus.write_text("not audio at all\n" * 50)
    assert "notes\\.wav cannot be read" in panel.add_clips([str(bogus)], "Bogus", ann)[0]
    said, rows, _ = panel.add_clips([str(DATA / "1089-134686-0000.flac")], "Reader", bob)
    assert "Reader" in said and [r[1:3] for r in rows] == [["Reader", 1]]
    assert panel.remove(ann_id, ann)[0] == "Deleted the voice profile." and panel.listing(ann)[0] == []


def test_a_jobs_details_say_whether_it_labelled_speakers() -> None:
    from webui.ui.history import _settings_line

    assert _settings_line({"vad": {}}).endswith("speaker labels off")
    assert _settings_line({"diarize": {"num_speakers": 2}}).endswith("speaker labels on \\(2 speakers\\)")
    assert _settings_line({"diarize": {"min_speakers": 2}}).endswith("on \\(2–any speakers\\)")
    assert _settings_line({"diarize": {}}).endswith("on \\(number found\\)")


def test_job_settings_shown_in_history_name_known_voices_without_their_vectors():
    from webui.ui.history import _shown_settings

    stored = {"model": "whisper-base", "diarize": {"num_speakers": None,
                                                   "known": [{"name": "Carlo", "vector": "AAAA" * 200}]}}
    shown = _shown_settings(stored)
    assert shown["diarize"]["known"] == ["Carlo"] and "AAAA" not in str(shown)
    assert stored["diarize"]["known"][0]["vector"]  # the stored record itself is untouched
    assert _shown_settings({"model": "x"}) == {"model": "x"} and _shown_settings(None) is None
