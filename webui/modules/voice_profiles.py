"""Voice profiles: a user's named voices, found again in later recordings.

A profile is an embedding only (a unit float32 centroid and how many 0.5 s embeddings made it),
never audio, stored per user in history.db (table voice_profiles). It comes from a speaker of a
finished job (the job keeps each speaker's centroid, jobs.voices) or from reference clips.
Saving a name the user already has merges into that profile, weighted by the counts. Jobs
that diarize are given their owner's profiles (jobs.py), and a cluster that matches one is
labelled with its name (diarize/known.py).
"""

from __future__ import annotations

import sqlite3
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from . import history_db
from .diarize.known import KnownSpeaker, Voice, centroid_of, decode_vector, merged, unit

MAX_NAME = 40
MAX_PROFILES = 200            # per user
MAX_CLIP_SECONDS = 120.0      # of a reference clip, decoded (the rest is not read)
MIN_SPEECH_EMBEDDINGS = 2     # 0.5 s steps of speech: under about 2 s of speech is too little to know a voice


class ProfileError(ValueError):
    """What went wrong, in a sentence meant for the user as it is."""


@dataclass(frozen=True)
class Profile:
    id: int
    owner: str
    name: str
    clips: int       # sources merged into it (speakers of jobs, reference clips)
    created: str     # ISO-8601 UTC


# --- names ---------------------------------------------------------------------------------------

def clean_name(name: object) -> str:
    """Trimmed, inner whitespace collapsed; 1..MAX_NAME characters, no control characters."""
    if not isinstance(name, str):
        raise ProfileError("A profile's name must be text.")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") and c not in " \t" for c in name):
        raise ProfileError("A profile's name cannot contain control characters.")
    text = " ".join(name.split())
    if not text:
        raise ProfileError("Give the profile a name.")
    if len(text) > MAX_NAME:
        raise ProfileError(f"A profile's name has at most {MAX_NAME} characters ({len(text)} given).")
    return text


# --- reading and deleting ------------------------------------------------------------------------

def _connect(history_path: str | Path):
    history_db.prepare(Path(history_path))
    return history_db.connect(Path(history_path))


def _profile(row: sqlite3.Row) -> Profile:
    return Profile(int(row["id"]), row["owner"], row["name"], int(row["clips"]), row["created_at"])


def list_profiles(history_path: str | Path, owner: str) -> list[Profile]:
    """The owner's profiles, by name."""
    with _connect(history_path) as con:
        rows = con.execute("SELECT id, owner, name, clips, created_at FROM voice_profiles WHERE owner = ?"
                           " ORDER BY name COLLATE NOCASE, id", (owner,)).fetchall()
    return [_profile(r) for r in rows]


def delete_profile(history_path: str | Path, owner: str, profile_id: int) -> bool:
    """False when the owner has no such profile (another user's id finds nothing)."""
    try:
        profile_id = int(profile_id)  # from a page: may be text
    except (TypeError, ValueError):
        return False
    with _connect(history_path) as con:
        return con.execute("DELETE FROM voice_profiles WHERE id = ? AND owner = ?", (profile_id, owner)).rowcount > 0


def known_speakers(history_path: str | Path, owner: str) -> tuple[KnownSpeaker, ...]:
    """The owner's profiles as the pipeline takes them."""
    with _connect(history_path) as con:
        rows = con.execute("SELECT name, vector FROM voice_profiles WHERE owner = ? ORDER BY id", (owner,)).fetchall()
    return tuple(KnownSpeaker.of(r["name"], np.frombuffer(r["vector"], dtype="<f4")) for r in rows)


# --- saving --------------------------------------------------------------------------------------

def save_from_job(history_path: str | Path, owner: str, job_id: int, speaker: str, name: str) -> Profile:
    """The speaker of a finished job of the owner's (`speaker`: the label as the user sees it
    now, after renames) saved as, or merged into, profile `name`."""
    from . import revisions
    from .history import History

    name = clean_name(name)
    history = History(history_path)
    try:
        record = history.get(int(job_id), owner=owner)
    except (TypeError, ValueError):  # from a page: may be text
        record = None
    if record is None:
        raise ProfileError(f"Job {job_id} is not one of yours (or no longer exists).")
    voices = {v["speaker"]: Voice(unit(decode_vector(v["vector"])), int(v["count"]))
              for v in record.voices if isinstance(v, dict) and v.get("vector")}
    if not voices:
        raise ProfileError(f"Job {job_id} has no speaker voices to save (it ran without speaker labels, "
                           "or before voice profiles existed).")
    current, _ = revisions.latest(history, record)
    labels = _original_labels(record.to_transcript().segments, current.segments, " ".join(str(speaker).split()))
    found = [voices[label] for label in labels if label in voices]
    if not found:
        raise ProfileError(f"Job {job_id} has no speaker called {str(speaker)[:60]!r}.")
    voice = found[0]
    for other in found[1:]:  # the user gave two of the diarizer's speakers one name: one person
        voice = merged(voice, other)
    return _store(history_path, owner, name, voice)


def _original_labels(original: Sequence, current: Sequence, speaker: str) -> list[str]:
    """The diarizer's labels whose lines now carry `speaker` (lines matched by start time), or
    `speaker` itself when no line was renamed to it (a job without corrections)."""
    now = {round(p.start, 3): p.speaker for p in current}
    labels = [p.speaker for p in original if p.speaker and now.get(round(p.start, 3)) == speaker]
    renamed_away = any(p.speaker == speaker and now.get(round(p.start, 3)) not in (speaker, None) for p in original)
    ordered = list(dict.fromkeys(labels))
    return ordered or ([] if renamed_away else [speaker])


def save_from_clips(history_path: str | Path, owner: str, name: str, paths: list[str | Path]) -> Profile:
    """Reference clips of one voice (any format ffmpeg reads) saved as, or merged into, profile
    `name`. A clip that cannot be read, is too short or holds no speech: ProfileError naming it."""
    name = clean_name(name)
    if not paths:
        raise ProfileError("Add at least one reference clip of the voice.")
    voice: Voice | None = None
    for path in paths:
        one = voice_of_file(path, Path(path).name)
        voice = one if voice is None else merged(voice, one)
    assert voice is not None
    return _store(history_path, owner, name, voice, clips=len(paths))


def voice_of_file(path: str | Path, label: str, max_seconds: float | None = None) -> Voice:
    """The voice in an audio file, read through the guarded decoder (audio.py); a file longer
    than `max_seconds` is refused (without it, only its first MAX_CLIP_SECONDS are read)."""
    from . import audio

    try:
        info = audio.probe(path)
        if max_seconds is not None and info.duration > max_seconds:
            raise ProfileError(f"The clip {label} is {info.duration:.1f} s long; send at most {max_seconds:g} s "
                               "of the voice.")
        samples = audio.decode(path, 0.0, min(info.duration, MAX_CLIP_SECONDS))
    except audio.InputError as exc:
        raise ProfileError(f"The clip {label} cannot be read: {exc.reason}.") from None
    return voice_of_samples(samples, label)


def voice_of_samples(samples: np.ndarray, label: str) -> Voice:
    """The voice of 16 kHz mono float32 audio: embeddings inside its speech (the product's VAD)."""
    from .diarize import embed_window
    from .vads import speech_spans

    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    spans = speech_spans(samples, 0.0)
    if not spans:
        raise ProfileError(f"The clip {label} has no speech in it (silent, or too quiet).")
    found = embed_window(samples, 0.0, spans, "cpu")
    if len(found) < MIN_SPEECH_EMBEDDINGS:
        raise ProfileError(f"The clip {label} is too short: give at least 3 seconds of the voice speaking.")
    return centroid_of(found.vectors)


def _store(history_path: str | Path, owner: str, name: str, voice: Voice, clips: int = 1) -> Profile:
    """Insert profile `name`, or merge into the owner's profile of that name (any case)."""
    blob = np.ascontiguousarray(unit(voice.centroid), "<f4").tobytes()
    with _connect(history_path) as con:
        con.execute("BEGIN IMMEDIATE")
        try:
            row = con.execute("SELECT id, vector, embeddings FROM voice_profiles WHERE owner = ?"
                              " AND name = ? COLLATE NOCASE", (owner, name)).fetchone()
            if row is not None:
                old = Voice(np.frombuffer(row["vector"], dtype="<f4").astype(np.float32), int(row["embeddings"]))
                both = merged(old, voice)
                con.execute("UPDATE voice_profiles SET vector = ?, embeddings = ?, clips = clips + ? WHERE id = ?",
                            (np.ascontiguousarray(both.centroid, "<f4").tobytes(), both.count, clips, row["id"]))
                profile_id = int(row["id"])
            else:
                if con.execute("SELECT COUNT(*) FROM voice_profiles WHERE owner = ?", (owner,)).fetchone()[0] \
                        >= MAX_PROFILES:
                    raise ProfileError(f"You have {MAX_PROFILES} voice profiles, the most kept; delete one first.")
                profile_id = int(con.execute(
                    "INSERT INTO voice_profiles (owner, name, vector, embeddings, clips, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (owner, name, blob, voice.count, clips, datetime.now(timezone.utc).isoformat(timespec="seconds"))
                ).lastrowid)
            row = con.execute("SELECT id, owner, name, clips, created_at FROM voice_profiles WHERE id = ?",
                              (profile_id,)).fetchone()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return _profile(row)

