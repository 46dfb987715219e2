"""Voice profiles (webui/modules/voice_profiles.py) on real voices, real SQLite and the real job
queue: a speaker saved from a finished job names that voice in a second recording (other clips
of it), a different voice stays "Speaker N", profiles are per user, renamed speakers are saved
by their new name, and bad clips and names are one clear sentence.

The engine is tests/fakes.EchoEngine (one line per speech chunk): the speaker stage is the real
one (VAD, CAM++ embeddings, clustering, matching), only the words are fake."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tests import conversations as conv
from tests.fakes import EchoEngine
from webui.modules import voice_profiles as vp
from webui.modules.diarize.base import DiarizeOptions
from webui.modules.diarize.known import KnownSpeaker, Voice, match
from webui.modules.history import History
from webui.modules.jobs import JobQueue
from webui.modules.options import PipelineOptions

SR = conv.SR
CARLO, JUNE, OTHER = "it_m", "fr_f", "ru_f"  # three real voices (Debian asterisk prompts)
pytestmark = pytest.mark.skipif(bool(conv.missing((CARLO, JUNE, OTHER))),
                                reason=f"needs Debian packages {', '.join(conv.missing((CARLO, JUNE, OTHER)))}")
OPTIONS = PipelineOptions(itn=False, retry_tail_seconds=0.0, diarize=DiarizeOptions())


def _speech(voice: str, seconds: float, parity: int) -> np.ndarray:
    """About `seconds` of the voice from its even (0) or odd (1) clips: two recordings share no clip."""
    clips = [c for c in conv.voice(voice)[parity::2] if c.size > SR]
    parts, total = [], 0
    for c in clips:
        parts += [c / max(float(np.abs(c).max()), 1e-3) * 0.5, np.zeros(int(0.25 * SR), np.float32)]
        total += c.size + SR // 4
        if total >= seconds * SR:
            break
    return np.concatenate(parts)


def _recording(path, voices: tuple[str, str], parity: int) -> list[tuple[float, float, str]]:
    """Four turns of about 6 s, alternating, each voice's two turns different speech; returns the
    reference turns."""
    speech = {v: _speech(v, 12.0, parity) for v in voices}
    parts, turns, at = [np.zeros(SR // 2, np.float32)], [], 0.5
    for i in range(4):
        who = voices[i % 2]
        half = speech[who].size // 2
        x = speech[who][:half] if i < 2 else speech[who][half:]
        turns.append((at, at + x.size / SR, who))
        parts += [x, np.zeros(int(0.6 * SR), np.float32)]
        at += x.size / SR + 0.6
    sf.write(path, np.concatenate(parts), SR)
    return turns


def _label_of(transcript, turns, voice: str) -> set[str]:
    """The labels of the diarizer's turns that lie mostly inside the voice's reference turns."""
    found = set()
    for t in transcript.turns:
        inside = sum(max(0.0, min(t.end, b) - max(t.start, a)) for a, b, who in turns if who == voice)
        if inside > 0.6 * (t.end - t.start):
            found.add(t.speaker)
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profiles")
    history = History(folder / "history.db")
    queue = JobQueue(history, engine_factory=lambda settings: EchoEngine())
    first, second = folder / "first meeting.wav", folder / "second meeting.wav"
    yield history, queue, (first, _recording(first, (CARLO, JUNE), 0)), (second, _recording(second, (OTHER, CARLO), 1))
    queue.shutdown()


def _run(queue: JobQueue, path, owner: str):
    state = queue.wait(queue.submit(path, OPTIONS, owner=owner), timeout=300)
    assert state.status == "done", state.error
    return state


def test_a_speaker_saved_from_a_job_names_that_voice_in_the_next_recording(world) -> None:
    history, queue, (first, first_turns), (second, second_turns) = world
    job = _run(queue, first, "alice")
    [carlo] = _label_of(job.transcript, first_turns, CARLO)
    assert carlo.startswith("Speaker ")
    record = history.get(job.history_id)
    assert {v["speaker"] for v in record.voices} == {t.speaker for t in job.transcript.turns}
    assert "voices" not in job.transcript.to_dict()  # the exports stay as they were

    profile = vp.save_from_job(history.path, "alice", job.history_id, carlo, "  Carlo  ")
    assert (profile.name, profile.owner, profile.clips) == ("Carlo", "alice", 1)
    assert [p.name for p in vp.list_profiles(history.path, "alice")] == ["Carlo"]

    again = _run(queue, second, "alice")
    assert _label_of(again.transcript, second_turns, CARLO) == {"Carlo"}
    other = _label_of(again.transcript, second_turns, OTHER)
    assert len(other) == 1 and next(iter(other)).startswith("Speaker ")  # a different voice keeps a number
    assert {s.speaker for s in again.transcript.segments} <= {t.speaker for t in again.transcript.turns}

    # per user: bob's job of the same recording names nobody, and bob cannot see, use or delete alice's
    assert vp.list_profiles(history.path, "bob") == []
    assert all(t.speaker.startswith("Speaker ") for t in _run(queue, second, "bob").transcript.turns)
    with pytest.raises(vp.ProfileError, match="not one of yours"):
        vp.save_from_job(history.path, "bob", job.history_id, carlo, "Carlo")
    assert vp.delete_profile(history.path, "bob", profile.id) is False
    assert vp.known_speakers(history.path, "alice")[0].name == "Carlo"

    # saved again under the same name (any case): one profile, merged
    merged = vp.save_from_job(history.path, "alice", again.history_id, "Carlo", "carlo")
    assert (merged.id, merged.clips) == (profile.id, 2)
    assert vp.delete_profile(history.path, "alice", profile.id) is True
    assert vp.list_profiles(history.path, "alice") == [] and vp.known_speakers(history.path, "alice") == ()


def test_a_renamed_speaker_is_saved_by_its_new_name(world) -> None:
    history, queue, (first, first_turns), _ = world
    job = _run(queue, first, "carol")
    [june] = _label_of(job.transcript, first_turns, JUNE)
    lines = [{"start": s.start, "end": s.end, "text": s.text, "speaker": "Dr. June" if s.speaker == june else s.speaker}
             for s in job.transcript.segments]
    assert history.add_revision(job.history_id, lines, author="carol") == 1
    with pytest.raises(vp.ProfileError, match="no speaker called"):
        vp.save_from_job(history.path, "carol", job.history_id, june, "June")  # that label is gone now
    with pytest.raises(vp.ProfileError, match="no speaker called"):
        vp.save_from_job(history.path, "carol", job.history_id, "Nobody", "June")
    assert vp.save_from_job(history.path, "carol", job.history_id, "Dr. June", "June").name == "June"


def test_reference_clips_make_a_profile_and_bad_clips_say_which(world, tmp_path) -> None:
    history = world[0]
    good = tmp_path / "carlo.flac"
    sf.write(good, _speech(CARLO, 8.0, 0), SR)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio at all")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(3 * SR, np.float32), SR)
    short = tmp_path / "short.wav"
    sf.write(short, _speech(CARLO, 1.0, 0)[: int(0.8 * SR)], SR)
    for bad, message in ((text, "notes.wav cannot be read"), (silent, "silent.wav has no speech"),
                         (short, "short.wav is too short")):
        with pytest.raises(vp.ProfileError, match=message):
            vp.save_from_clips(history.path, "dave", "Carlo", [good, bad])
    assert vp.list_profiles(history.path, "dave") == []  # nothing kept from a refused set
    # A "clip" that names a server file (an HLS playlist, a concat list, even named .wav) is refused,
    # never read: the same guarded ffmpeg path as every upload.
    from tests import media_refs

    for made in (media_refs.hls(tmp_path, good, "clip.m3u8"), media_refs.hls(tmp_path, good, "clip_m3u8.wav"),
                 media_refs.ffconcat(tmp_path, good, "list.wav")):
        with pytest.raises(vp.ProfileError, match=f"{made.name} cannot be read"):
            vp.save_from_clips(history.path, "dave", "Carlo", [made])
    assert vp.list_profiles(history.path, "dave") == []
    profile = vp.save_from_clips(history.path, "dave", "Carlo", [good])
    assert (profile.name, profile.clips) == ("Carlo", 1)
    for name, message in (("", "Give the profile a name"), ("a\x00b", "control characters"), ("x" * 41, "at most 40")):
        with pytest.raises(vp.ProfileError, match=message):
            vp.save_from_clips(history.path, "dave", name, [good])


def test_matching_is_one_to_one_best_first_and_only_above_the_threshold() -> None:
    a, b = np.eye(4, dtype=np.float32)[0], np.eye(4, dtype=np.float32)[1]
    near_a = (a * 0.9 + b * 0.1)
    voices = {0: Voice(near_a / np.linalg.norm(near_a), 10), 1: Voice(a, 10), 2: Voice(b, 10)}
    known = [KnownSpeaker.of("Ann", a), KnownSpeaker.of("Ben", (a + b) / np.sqrt(2))]
    # cluster 1 is Ann exactly; cluster 0 (closest to Ann too) cannot have her again, and Ben
    # goes to whichever of 0 and 2 is nearer him above the threshold
    assert match(voices, known, threshold=0.6) == {1: "Ann", 0: "Ben"}
    assert match(voices, known, threshold=0.8) == {1: "Ann"}  # Ben's best is 0.78
    assert match(voices, [KnownSpeaker.of("Cy", np.eye(4, dtype=np.float32)[3])], threshold=0.6) == {}


def test_a_name_is_only_a_name(world) -> None:
    history = world[0]
    evil = "x'); DROP TABLE jobs;--"
    clip = history.path.parent / "clip.wav"
    sf.write(clip, _speech(JUNE, 6.0, 0), SR)
    assert vp.save_from_clips(history.path, "eve", evil, [clip]).name == evil
    assert [p.name for p in vp.list_profiles(history.path, "eve")] == [evil] and history.count() >= 1


def test_a_job_keeps_its_known_speakers_through_history_and_resume() -> None:
    """The profiles a job was queued with are stored with its options (JSON), so a job resumed
    after a restart names the same voices and its checkpoint still fits."""
    from webui.modules import checkpoint
    from webui.modules.job_state import options_record
    from webui.modules.options import options_from_record

    known = (KnownSpeaker.of("Ann", np.arange(192, dtype=np.float32)),)
    options = PipelineOptions(diarize=DiarizeOptions(max_speakers=3, known=known))
    again = options_from_record(json.loads(json.dumps(options_record(options))))
    assert again.diarize.known == known and again == options
    assert checkpoint.options_key(again) == checkpoint.options_key(options)
