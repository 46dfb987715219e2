"""Speakers in a real browser: tick "Who spoke", transcribe a two-voice recording, see both
speakers with their talk time, find the job in History by speaker, and save one of its voices
as a profile and delete it again. The parts below the page: test_speakers_page.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.browser import browser_fixture, page_fixture  # noqa: F401  (the browser and page fixtures)
from tests.browser import open_job, open_tab, shot, table_rows, upload, view_lines
from tests.conftest import DATA
from tests.test_api import Server, start_server
from webui.modules.history import History

pytestmark = pytest.mark.browser
# Two real readers, one after the other twice (~28 s): LibriVox's Austen reader and LibriSpeech 1089.
READS = ["librivox_sense_and_sensibility_01_austen_64kb-0870.wav", "1089-134686-0000.flac",
         "librivox_sense_and_sensibility_01_austen_64kb-0890.wav", "1089-134686-0001.flac"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = start_server(tmp_path_factory.mktemp("speakers-server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def two_voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    parts = []
    for name in READS:
        pcm = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(DATA / name), "-ac", "1", "-ar", "16000",
                              "-f", "f32le", "-"], capture_output=True, check=True).stdout
        parts += [np.frombuffer(pcm, np.float32), np.zeros(8000, np.float32)]
    path = tmp_path_factory.mktemp("two-voices") / "two voices.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path


def fill(page, selector: str, value: str) -> None:
    page.locator(f"{selector} input, {selector} textarea").first.fill(value)


def choose(page, selector: str, option: str) -> None:
    page.locator(f"{selector} input").click()
    page.locator(f"{selector} [role=option][aria-label='{option}']").click()


def test_speaker_labels_talk_time_and_search_by_speaker(page, server: Server, two_voices: Path) -> None:
    open_tab(page, "Transcribe")
    upload(page, "#tx-upload", [two_voices])
    page.locator("#tx-diarize input").check()
    choose(page, "#tx-min-speakers", "3")  # a mistake first: a clear line, no job
    choose(page, "#tx-max-speakers", "2")
    page.click("#tx-start")
    page.locator("#tx-progress").get_by_text("minimum number of speakers (3) is above the maximum (2)").wait_for()
    choose(page, "#tx-min-speakers", "Any")
    choose(page, "#tx-max-speakers", "Any")
    page.click("#tx-start")
    page.locator("#tx-progress .job-status.done").wait_for(timeout=150_000)
    talk = page.locator("#tx-transcript .tv-talk-row")
    talk.first.wait_for()
    lines = view_lines(page, "#tx-transcript")
    assert {who for _, who, _ in lines} == {"Speaker 1", "Speaker 2"}, lines
    rows = talk.evaluate_all("rs => rs.map(r => [...r.cells].map(c => c.innerText.trim()))")
    assert sorted(r[0] for r in rows) == ["Speaker 1", "Speaker 2"], rows
    shares = [float(re.search(r"([\d.]+)%", r[2]).group(1)) for r in rows]
    assert abs(sum(shares) - 100) < 0.2 and all(s > 20 for s in shares), rows  # both read a fair part
    assert page.locator("#tx-transcript .tv-turn").count() >= 4  # two turns each, at least
    shot(page, "speakers-1-transcribe")

    job = History(server.history_path).search()[0].id
    open_tab(page, "History")
    fill(page, "#hist-speaker", "speaker 2")
    page.click("#hist-search")
    page.locator("#hist-msg").get_by_text("1 job(s) found.").wait_for()
    assert [r[0] for r in table_rows(page, "#hist-table")] == [str(job)]
    fill(page, "#hist-speaker", "Speaker 3")
    page.click("#hist-search")
    page.locator("#hist-msg").get_by_text("0 job(s) found.").wait_for()

    open_tab(page, "Batch")  # the same choice, for every file of a batch
    assert not page.locator("#batch-speakers").is_visible()
    page.locator("#batch-diarize input").check()
    page.locator("#batch-speakers").wait_for()
    shot(page, "speakers-3-batch")


def test_a_speaker_saved_as_a_voice_profile_and_deleted(page, server: Server) -> None:
    job = History(server.history_path).search()[0].id
    open_job(page, job)
    choose(page, "#hist-profile-speaker", "Speaker 2")
    fill(page, "#hist-profile-name", "Mr. <b>Reader</b>")
    page.click("#hist-profile-save")
    page.locator("#hist-profile-msg").get_by_text("as the voice profile Mr. <b>Reader</b>").wait_for()
    page.get_by_text("Voice profiles", exact=True).click()
    assert [r[1:3] for r in table_rows(page, "#profiles-table")] == [["Mr. <b>Reader</b>", "1"]]
    shot(page, "speakers-2-profile")
    page.locator("#profiles-pick input").click()
    page.get_by_role("option", name=re.compile("Reader")).click()
    page.click("#profiles-delete")
    page.locator("#profiles-msg").get_by_text("Deleted the voice profile.").wait_for()
    page.wait_for_function("document.querySelectorAll('#profiles-table [role=row][data-index]').length === 0")
