"""Long recordings of the kinds real long audio comes in, built from real speech clips at known
times, and the checks made on their transcripts. Shared by tests/test_longform_kinds.py and
scripts/bench/longform_accuracy.py, so the test and the benchmark measure the same thing.

Kinds (every one written block by block into the real ffmpeg binary, so memory stays small):

    continuous   one steady speaker (-20 dBFS), pauses under 0.5 s: nothing for silencedetect
                 to cut at, so the planner cuts at its quietest windows
    silence      10 minutes of room noise (-65 dBFS) between two stretches of talk
    music_bed    chords and pink noise 22 dB under the speech, all the way through
    telephone    band-limited 300-3400 Hz, 8 kHz mono mu-law .wav
    mp3          44.1 kHz stereo mp3 (libmp3lame)
    video        mp4: h264 video (lavfi `color`) + aac audio
    meeting      two speakers taking turns with short pauses, quiet stretches, a long break; opus
    mixed        (benchmark) one long recording with a section of each of the above

Checks: WER of the long run against the same clips transcribed one at a time (on the same
reference words), words duplicated or dropped around every planned cut, timestamps, and
speech onsets matched by transcript line starts.
"""

from __future__ import annotations

import bisect
import json
import re
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.recordings import DATA, SR, Placed, speech_bounds

ROOT = Path(__file__).resolve().parent.parent
# The same 15 English clips (same bytes, same manifest) live in tests/data; CI also has the
# shared test data beside the clone.
SHARED_CLIPS = ROOT.parent / "shared" / "testdata" / "real_en"
BLOCK = 10 * SR            # samples written per block
ROOM_DB = -65.0            # room noise under everything (dBFS RMS)
BED_BELOW_SPEECH_DB = 22.0  # music bed level under the speech's active level
CONTEXT = 3                # reference words looked at on each side of a cut ...
NEAR = 3.0                 # ... spoken within this many seconds of it
LECTURE_DB = -20.0         # continuous speech: one speaker at a steady level (as after a mic's AGC)
TRIM_MARGIN = 0.05         # seconds kept around a clip's speech when clips follow each other closely


def normalise(text: str) -> str:
    """As tests/test_wer.py: lower case, punctuation (but apostrophes) to spaces."""
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return " ".join(text.split())


# ----------------------------------------------------------------------------- clips

@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    audio: np.ndarray = field(repr=False, compare=False)  # 16 kHz mono float32
    text: str
    lo: float   # speech bounds inside the clip (s)
    hi: float

    @property
    def seconds(self) -> float:
        return self.audio.size / SR


def clip_folder() -> Path | None:
    """tests/data (in the repository), else ../shared/testdata/real_en; None when neither has
    the clips."""
    for folder in (DATA, SHARED_CLIPS):
        manifest = folder / "manifest.jsonl"
        if manifest.exists():
            entries = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
            if entries and all((folder / e["audio"]).exists() for e in entries):
                return folder
    return None


def load_clip_set(folder: Path | None = None) -> list[Clip]:
    from webui.modules.audio import decode

    folder = folder or clip_folder()
    if folder is None:
        raise FileNotFoundError(f"no speech clips: neither {DATA} nor {SHARED_CLIPS} has manifest.jsonl and its files")
    clips = []
    for line in (folder / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            audio = decode(folder / entry["audio"])
            lo, hi = speech_bounds(audio)
            clips.append(Clip(entry["audio"], folder / entry["audio"], audio, entry["text"], lo, hi))
    return clips


def speech_level_db(clips: Sequence[Clip]) -> float:
    """Active speech level (dBFS): mean power of the 20 ms frames within 30 dB of each clip's
    loudest frame."""
    powers = []
    hop = SR // 50
    for clip in clips:
        frames = clip.audio[: clip.audio.size - clip.audio.size % hop].reshape(-1, hop)
        power = np.mean(frames * frames, axis=1)
        powers.append(power[power > power.max() * 1e-3])
    return float(10 * np.log10(np.mean(np.concatenate(powers))))


def longest_pause(clip: Clip, gain: float = 1.0, noise_db: float = -30.0) -> float:
    """Longest stretch inside the clip's speech where every sample is quieter than `noise_db`
    dBFS: what ffmpeg silencedetect (the planner's silence scan) would call silence."""
    hop = SR // 100
    speech = clip.audio[int(clip.lo * SR):int(clip.hi * SR)] * gain
    peaks = np.abs(speech[: speech.size - speech.size % hop]).reshape(-1, hop).max(axis=1)
    longest = run = 0
    for quiet in peaks < 10 ** (noise_db / 20):
        run = run + 1 if quiet else 0
        longest = max(longest, run)
    return longest * hop / SR


def lecture_clips(clips: Sequence[Clip], level_db: float = -20.0, max_pause: float = 1.0) -> list[Clip]:
    """The clips that, brought to `level_db`, hold no pause silencedetect could cut at."""
    return [c for c in clips if longest_pause(c, 10 ** ((level_db - speech_level_db([c])) / 20)) < max_pause]


# ----------------------------------------------------------------------------- beds

class RoomNoise:
    """White noise at `level_db` dBFS RMS."""

    def __init__(self, level_db: float = ROOM_DB, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.scale = 10 ** (level_db / 20)

    def take(self, n: int) -> np.ndarray:
        return (self.rng.standard_normal(n) * self.scale).astype(np.float32)


class MusicBed:
    """Chords (C Am F G, two seconds each, a few harmonics, soft attack and release) and pink
    noise, together `level_db` dBFS RMS, over room noise. Continuous across blocks."""

    CHORDS = ((261.63, 329.63, 392.00), (220.00, 261.63, 329.63), (174.61, 220.00, 261.63), (196.00, 246.94, 293.66))
    PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
    PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])

    def __init__(self, level_db: float, seed: int = 0):
        from scipy.signal import lfilter, lfilter_zi

        self.rng = np.random.default_rng(seed)
        self.room = RoomNoise(ROOM_DB, seed + 1)
        self.pos = 0
        self.zi = lfilter_zi(self.PINK_B, self.PINK_A) * 0.0
        probe_rng = np.random.default_rng(12345)
        pink_rms = float(np.sqrt(np.mean(lfilter(self.PINK_B, self.PINK_A, probe_rng.standard_normal(10 * SR)) ** 2)))
        half = 10 ** ((level_db - 3.0) / 20)  # chords and noise each carry half the power
        self.pink_scale = half / pink_rms
        chord = self._chords(np.arange(8 * SR) / SR)
        self.chord_scale = half / float(np.sqrt(np.mean(chord * chord)))

    def _chords(self, t: np.ndarray) -> np.ndarray:
        index = (t // 2.0).astype(int) % len(self.CHORDS)
        tau = t % 2.0
        envelope = np.minimum(1.0, tau / 0.03) * np.exp(-0.5 * tau) * np.clip((2.0 - tau) / 0.05, 0.0, 1.0)
        out = np.zeros_like(t)
        notes = np.array(self.CHORDS)[index]               # (n, 3)
        for k in range(3):
            f = notes[:, k]
            for h in range(1, 5):
                out += np.sin(2 * np.pi * f * h * t) / h
        out += 1.5 * np.sin(np.pi * notes[:, 0] * t)     # bass, an octave below the root
        return out * envelope

    def take(self, n: int) -> np.ndarray:
        from scipy.signal import lfilter

        t = (self.pos + np.arange(n)) / SR
        self.pos += n
        pink, self.zi = lfilter(self.PINK_B, self.PINK_A, self.rng.standard_normal(n), zi=self.zi)
        return (self._chords(t) * self.chord_scale + pink * self.pink_scale).astype(np.float32) + self.room.take(n)


def telephone_band(audio: np.ndarray) -> np.ndarray:
    """300-3400 Hz, through 8 kHz and 8-bit mu-law, back at 16 kHz (for a telephone section
    inside a 16 kHz recording; the telephone kind itself is made by ffmpeg)."""
    from scipy.signal import butter, resample_poly, sosfilt

    sos = butter(4, [300, 3400], btype="bandpass", fs=SR, output="sos")
    narrow = resample_poly(sosfilt(sos, audio), 1, 2)
    mu = 255.0
    code = np.round(np.sign(narrow) * np.log1p(mu * np.minimum(np.abs(narrow), 1.0)) / np.log1p(mu) * 127) / 127
    expanded = np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu
    return resample_poly(expanded, 2, 1).astype(np.float32)


# ----------------------------------------------------------------------------- writing

class FfmpegSink:
    """16 kHz mono float32 blocks piped into the real ffmpeg binary, which encodes the file."""

    def __init__(self, path: Path, output_args: Sequence[str], inputs_before: Sequence[str] = ()):
        self.path = path
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *inputs_before,
                "-f", "f32le", "-ar", str(SR), "-ac", "1", "-i", "pipe:0", *output_args, str(path)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.errors)

    def write(self, block: np.ndarray) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(np.ascontiguousarray(block, dtype="<f4").tobytes())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait()
        self.errors.seek(0)
        message = self.errors.read().decode("utf-8", "replace")
        self.errors.close()
        if code != 0:
            raise RuntimeError(f"ffmpeg could not write {self.path.name}: {message[-2000:]}")


# name -> (suffix, ffmpeg output arguments, inputs before the audio pipe)
CONTAINERS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "wav": (".wav", ("-c:a", "pcm_s16le"), ()),
    "flac": (".flac", ("-c:a", "flac"), ()),
    "telephone": (".wav", ("-af", ("highpass=f=300:poles=2,highpass=f=300:poles=2,lowpass=f=3400:poles=2,"
                                   "lowpass=f=3400:poles=2"), "-ar", "8000", "-ac", "1", "-c:a", "pcm_mulaw"), ()),
    "mp3": (".mp3", ("-af", "pan=stereo|c0=c0|c1=0.7*c0", "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "128k"), ()),
    "mp4": (".mp4", ("-map", "0:v", "-map", "1:a", "-shortest", "-c:v", "libx264", "-preset", "ultrafast",
                     "-tune", "stillimage", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ar", "48000",
                     "-ac", "2"),
            ("-f", "lavfi", "-i", "color=c=0x1f2a44:s=160x120:r=5")),
    "opus": (".opus", ("-c:a", "libopus", "-b:a", "32k", "-compression_level", "3", "-ar", "48000"), ()),
}


@dataclass(frozen=True)
class Section:
    """A stretch of a recording of one kind; `channel` names what its clips sound like (the
    key of their transcribed-alone baseline): "clean" is the clip files as they are."""

    kind: str
    start: float
    end: float
    channel: str


@dataclass(frozen=True)
class Recording:
    kind: str
    path: Path
    duration: float
    placed: tuple[Placed, ...]            # clips in time order; `offset` is the clip file's time 0
    written: tuple[tuple[float, float], ...]  # per clip: the stretch of its audio in the recording
    sections: tuple[Section, ...]

    def section_of(self, time: float) -> Section:
        for section in self.sections:
            if section.start <= time < section.end:
                return section
        return self.sections[-1]


class Writer:
    """Writes a recording block by block: clips at known times over a bed that never stops."""

    def __init__(self, sink: FfmpegSink, bed):
        self.sink = sink
        self.bed = bed
        self.cursor = 0  # samples written
        self.placed: list[Placed] = []
        self.written: list[tuple[float, float]] = []

    @property
    def seconds(self) -> float:
        return self.cursor / SR

    def pause(self, seconds: float) -> None:
        left = round(seconds * SR)
        while left > 0:
            n = min(left, BLOCK)
            self.sink.write(self.bed.take(n))
            self.cursor += n
            left -= n

    def clip(self, clip: Clip, gain: float = 1.0, trim: bool = False,
             effect: Callable[[np.ndarray], np.ndarray] | None = None) -> Placed:
        first = int(max(0.0, clip.lo - TRIM_MARGIN) * SR) if trim else 0
        last = int(min(clip.seconds, clip.hi + TRIM_MARGIN) * SR) if trim else clip.audio.size
        audio = clip.audio[first:last] * gain
        if effect is not None:
            audio = effect(audio)[: last - first]
        audio = np.clip(audio + self.bed.take(audio.size), -1.0, 1.0)
        origin = (self.cursor - first) / SR  # where the clip file's time 0 falls
        self.sink.write(audio)
        placed = Placed(round(origin + clip.lo, 3), round(origin + clip.hi, 3), clip.text, clip.name, origin)
        self.placed.append(placed)
        self.written.append((self.cursor / SR, (self.cursor + audio.size) / SR))
        self.cursor += audio.size
        return placed


class Deck:
    """Clips dealt in shuffled order, every clip once before any comes again."""

    def __init__(self, clips: Sequence[Clip], rng: np.random.Generator):
        self.clips, self.rng, self.order = list(clips), rng, []

    def next(self) -> Clip:
        if not self.order:
            self.order = list(self.rng.permutation(len(self.clips)))
        return self.clips[self.order.pop()]


# ----------------------------------------------------------------------------- scripts

def talk(w: Writer, deck: Deck, rng: np.random.Generator, until: float, gap=(1.0, 4.0), trim: bool = False,
         effect=None, level_db: float | None = None) -> None:
    """Clips with pauses drawn from `gap` until the recording reaches `until` seconds (the
    rest is filled with the bed); each clip at its own level, or brought to `level_db`."""
    while True:
        clip = deck.next()
        pause = rng.uniform(*gap)
        length = (min(clip.seconds, clip.hi + TRIM_MARGIN) - max(0.0, clip.lo - TRIM_MARGIN)) if trim else clip.seconds
        if w.seconds + pause + length > until:
            break
        w.pause(pause)
        gain = 1.0 if level_db is None else 10 ** ((level_db - speech_level_db([clip])) / 20)
        w.clip(clip, gain=gain, trim=trim, effect=effect)
    w.pause(until - w.seconds)


def meeting(w: Writer, clips: Sequence[Clip], rng: np.random.Generator, until: float, break_seconds: float = 600.0,
            quiet=(20.0, 90.0)) -> None:
    """Two speakers (the second one farther from the microphone) in exchanges of 2-5 turns,
    one or two utterances a turn, 0.2-0.5 s between a speaker's utterances and 0.3-1.0 s
    between turns; quiet stretches (`quiet`, s) between exchanges, and one long break
    (`break_seconds`) half way."""
    decks = (Deck(clips[0::2], rng), Deck(clips[1::2], rng))
    gains = (1.0, 0.55)
    break_at = (until - break_seconds) / 2 if break_seconds else float("inf")
    w.pause(rng.uniform(2.0, 5.0))
    while True:
        if w.seconds >= break_at:
            w.pause(break_seconds)
            break_at = float("inf")
        turns, speaker = int(rng.integers(2, 6)), int(rng.integers(2))
        for turn in range(turns):
            for k in range(int(rng.integers(1, 3))):
                clip = decks[speaker].next()
                if w.seconds + clip.seconds + 1.0 > until:
                    w.pause(until - w.seconds)
                    return
                if k:
                    w.pause(rng.uniform(0.2, 0.5))
                w.clip(clip, gain=gains[speaker], trim=True)
            speaker = 1 - speaker
            if turn + 1 < turns:
                w.pause(rng.uniform(0.3, 1.0))
        w.pause(min(rng.uniform(*quiet), max(0.0, until - w.seconds)))
        if w.seconds >= until - 1.0:
            w.pause(until - w.seconds)
            return


# kind -> (container, default minutes, pipeline window seconds used by the tests, what it is)
KINDS: dict[str, tuple[str, float, float | None, str]] = {
    "continuous": ("wav", 5.0, 60.0, "one steady speaker (-20 dBFS), pauses under 0.5 s; 16 kHz wav"),
    "silence": ("flac", 13.0, None, "talk, 10 min of room noise (-65 dBFS), talk; flac"),
    "music_bed": ("wav", 5.0, 60.0, "chords + pink noise 22 dB under the speech; wav"),
    "telephone": ("telephone", 5.0, 60.0, "300-3400 Hz, 8 kHz mono mu-law wav"),
    "mp3": ("mp3", 5.0, None, "44.1 kHz stereo mp3 (libmp3lame 128k)"),
    "video": ("mp4", 5.0, None, "mp4: h264 (lavfi color) + aac 48 kHz stereo"),
    "meeting": ("opus", 60.0, None, "two speakers taking turns, quiet stretches, 10 min break; opus 32k"),
}
# Kinds whose clips are cut out of the recording and transcribed alone for the baseline (the
# music bed and the telephone band change what the model hears). Every other kind is compared
# with the clip files transcribed alone ("clean"), its codec being transparent to the model:
# the clips cut out of the mp3 and mp4 recordings and transcribed alone gave the very same
# words as the files (15 of 15), out of the opus meeting 14 of 15 (the other one two words
# better).
CHANNEL_KINDS = ("music_bed", "telephone")


def build_kind(kind: str, folder: Path, clips: Sequence[Clip], minutes: float | None = None, seed: int = 0,
               **script) -> Recording:
    """Write one recording of `kind` into `folder` and return where every clip went."""
    container, default_minutes, _, _ = KINDS[kind]
    minutes = default_minutes if minutes is None else minutes
    until = minutes * 60.0
    suffix, output_args, inputs_before = CONTAINERS[container]
    path = folder / f"{kind} {minutes:g}min{suffix}"
    rng = np.random.default_rng(seed)
    if kind == "music_bed":
        bed = MusicBed(speech_level_db(clips) - BED_BELOW_SPEECH_DB, seed)
    else:
        bed = RoomNoise(ROOM_DB, seed)
    sink = FfmpegSink(path, output_args, inputs_before)
    w = Writer(sink, bed)
    try:
        deck = Deck(clips, rng)
        if kind == "continuous":
            deck = Deck(lecture_clips(clips, LECTURE_DB), rng)
            talk(w, deck, rng, until, gap=(0.15, 0.4), trim=True, level_db=LECTURE_DB)
        elif kind == "silence":
            silence = script.get("silence_seconds", 600.0)
            talk(w, deck, rng, (until - silence) / 2, gap=(1.0, 4.0))
            w.pause(silence)
            talk(w, deck, rng, until, gap=(1.0, 4.0))
        elif kind == "meeting":
            meeting(w, clips, rng, until, **script)
        else:
            talk(w, deck, rng, until, gap=(1.0, 4.0))
    finally:
        sink.close()
    channel = kind if kind in CHANNEL_KINDS else "clean"
    return Recording(kind, path, w.seconds, tuple(w.placed), tuple(w.written),
                     (Section(kind, 0.0, w.seconds, channel),))


def build_mixed(folder: Path, clips: Sequence[Clip], minutes: float = 150.0, seed: int = 0,
                container: str = "mp4") -> Recording:
    """One long recording with a section of every kind (benchmark): meeting-like dialogue,
    continuous speech, 10 min of silence, a music bed, a telephone-band call, more dialogue;
    sections in proportion to `minutes`. The whole file in one container (mp4 by default; the
    codecs in CONTAINERS are transparent to the model, see CHANNEL_KINDS)."""
    until = minutes * 60.0
    shares = (("meeting", 0.25), ("continuous", 0.12), ("silence", 0.10), ("music_bed", 0.12),
              ("telephone", 0.12), ("meeting", 0.29))
    suffix, output_args, inputs_before = CONTAINERS[container]
    path = folder / f"mixed {minutes:g}min{suffix}"
    rng = np.random.default_rng(seed)
    room = RoomNoise(ROOM_DB, seed)
    music = MusicBed(speech_level_db(clips) - BED_BELOW_SPEECH_DB, seed)
    sink = FfmpegSink(path, output_args, inputs_before)
    w = Writer(sink, room)
    sections = []
    deck = Deck(clips, rng)
    try:
        for kind, share in shares:
            start, end = w.seconds, w.seconds + share * until
            if kind == "meeting":
                meeting(w, clips, rng, end - 3.0, break_seconds=0.0, quiet=(5.0, 40.0))
            elif kind == "continuous":
                talk(w, Deck(lecture_clips(clips, LECTURE_DB), rng), rng, end - 3.0, gap=(0.15, 0.4), trim=True,
                     level_db=LECTURE_DB)
            elif kind == "silence":
                w.pause(end - 3.0 - w.seconds)
            elif kind == "music_bed":
                w.bed = music
                talk(w, deck, rng, end - 3.0)
            elif kind == "telephone":
                talk(w, deck, rng, end - 3.0, effect=telephone_band)
            w.bed = room
            w.pause(end - w.seconds)  # 3 s of room noise between sections
            channel = f"mixed {kind}" if kind in CHANNEL_KINDS else "clean"
            sections.append(Section(kind, start, w.seconds, channel))
    finally:
        sink.close()
    return Recording("mixed", path, w.seconds, tuple(w.placed), tuple(w.written), tuple(sections))


# ----------------------------------------------------------------------------- running

@dataclass
class Run:
    planned: object            # events.Planned
    finished: object           # events.Finished
    wall: float
    results_at: list[tuple[float, float]]  # (segment start in the recording, seconds since the start)


def run_pipeline(path: Path, options, engine) -> Run:
    from webui.modules.events import Finished, Planned, SegmentDone
    from webui.modules.pipeline import transcribe

    planned = finished = None
    results_at = []
    started = time.perf_counter()
    for event in transcribe(path, options, engine=engine):
        if isinstance(event, Planned):
            planned = event
        elif isinstance(event, SegmentDone):
            results_at.append((event.result.segment.start, time.perf_counter() - started))
        elif isinstance(event, Finished):
            finished = event
    wall = time.perf_counter() - started
    if planned is None or finished is None:
        raise AssertionError(f"{Path(path).name}: the run ended without a Planned and a Finished event")
    return Run(planned, finished, wall, results_at)


def alone_baseline(rec: Recording, clips: Sequence[Clip], engine, cache: dict, folder: Path, options=None) -> dict:
    """The distinct clips of `rec`, each transcribed alone through the pipeline, once per
    channel: "clean" clips from their files; any other channel cut out of the recording itself
    (first occurrence), so the baseline hears exactly what the long run heard.

    Fills and returns `cache`: (channel, clip name) -> (transcript, seconds from the clip
    file's time 0 to the start of the audio that was transcribed)."""
    import soundfile as sf

    from webui.modules.audio import stream_ranges
    from webui.modules.options import PipelineOptions

    options = options or PipelineOptions()
    by_name = {c.name: c for c in clips}
    wanted: dict[tuple[str, str], int] = {}
    for i, p in enumerate(rec.placed):
        key = (rec.section_of(p.start).channel, p.name)
        if key not in cache and key not in wanted:
            wanted[key] = i
    sources: dict[tuple[str, str], tuple[Path, float]] = {}
    cut = sorted((i, key) for key, i in wanted.items() if key[0] != "clean")
    for key, i in wanted.items():
        if key[0] == "clean":
            sources[key] = (by_name[key[1]].path, 0.0)
    if cut:
        decoded = stream_ranges(rec.path, [rec.written[i] for i, _ in cut])
        try:
            for i, key in cut:
                audio = next(decoded)
                path = folder / f"alone-{len(cache) + len(sources):03d}.wav"
                sf.write(str(path), audio, SR, subtype="PCM_16")
                sources[key] = (path, rec.written[i][0] - rec.placed[i].offset)
        finally:
            decoded.close()
    for key, (path, shift) in sources.items():
        cache[key] = (run_pipeline(path, options, engine).finished.transcript, shift)
    return cache


# ----------------------------------------------------------------------------- checks

def timed_words(segments) -> list[tuple[str, float]]:
    """Normalised words of transcript lines, each timed by its place in its line."""
    out = []
    for seg in segments:
        words = normalise(seg.text).split()
        for k, word in enumerate(words):
            out.append((word, seg.start + (seg.end - seg.start) * (k + 0.5) / len(words)))
    return out


def _alignment(ref: list[str], hyp: list[str]):
    """Per reference word: the op ('equal', 'substitute', 'delete') and the hypothesis index;
    and the inserted hypothesis indices by the reference position they come before."""
    import jiwer

    ops = ["delete"] * len(ref)
    to_hyp: list[int | None] = [None] * len(ref)
    inserted: dict[int, list[int]] = {}
    if not ref:
        if hyp:
            inserted[0] = list(range(len(hyp)))
        return ops, to_hyp, inserted
    if not hyp:
        return ops, to_hyp, inserted
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    for chunk in out.alignments[0]:
        if chunk.type in ("equal", "substitute"):
            for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
                ops[chunk.ref_start_idx + k] = chunk.type
                to_hyp[chunk.ref_start_idx + k] = chunk.hyp_start_idx + k
        elif chunk.type == "insert":
            inserted.setdefault(chunk.ref_start_idx, []).extend(range(chunk.hyp_start_idx, chunk.hyp_end_idx))
    return ops, to_hyp, inserted


def reference_times(words: list[str], alone_segments, shift: float, lo: float, hi: float) -> list[float]:
    """Where each reference word of a clip is spoken (seconds from the clip file's time 0): the
    time of the word the clip's alone transcript aligned to it; words it missed are placed
    between their neighbours (or spread over the clip's speech)."""
    hyp = [(w, t + shift) for w, t in timed_words(alone_segments)]
    _, to_hyp, _ = _alignment(words, [w for w, _ in hyp])
    known = [(i, hyp[j][1]) for i, j in enumerate(to_hyp) if j is not None]
    if not known:
        return [lo + (hi - lo) * (k + 0.5) / len(words) for k in range(len(words))]
    xs, ys = [i for i, _ in known], [t for _, t in known]
    if len(known) == 1:
        return [ys[0]] * len(words)
    return list(np.interp(range(len(words)), xs, ys, left=None, right=None))


@dataclass
class CutCheck:
    times: list[float]        # the planned cuts (s) sharing this neighbourhood of reference words
    window: bool              # one of them is a window boundary
    in_speech: bool           # one of them falls inside a clip's speech
    dropped: list[str]
    duplicated: list[str]
    context: str

    @property
    def errors(self) -> int:
        return len(self.dropped) + len(self.duplicated)


@dataclass
class Score:
    section: str
    minutes: float
    ref_words: int
    wer_long: float
    wer_alone: float
    cuts: list[CutCheck]        # cuts with speech near them, grouped by the words around them
    quiet_cuts: int             # cuts with no reference word within NEAR seconds
    onsets: int                 # clip starts after a pause long enough to start a line
    onset_misses: list[Placed]  # ... with no transcript line start within ±0.5 s
    close_starts: int           # clip starts after a shorter pause (one line may hold both)
    close_uncovered: list[Placed]  # ... that fall in no transcript line (±0.5 s)
    timestamp_problems: list[str]

    @property
    def boundary_errors(self) -> int:
        return sum(c.errors for c in self.cuts)

    def failed_cuts(self) -> list[CutCheck]:
        return [c for c in self.cuts if c.errors]


def score(rec: Recording, run: Run, alone: dict, section: Section | None = None, tolerance: float = 0.5) -> Score:
    """WER against the clips transcribed alone, words at cuts, timestamps, onsets: over the
    whole recording, or over one section of it."""
    import jiwer

    from webui.modules.lines import UTTERANCE_PAUSE
    from webui.modules.vads import VadOptions

    transcript = run.finished.transcript
    lo_t, hi_t = (section.start, section.end) if section else (0.0, float("inf"))
    inside = [i for i, p in enumerate(rec.placed) if lo_t <= p.start < hi_t]
    # Reference words in recording time, and the alone transcript words, clip by clip.
    ref, ref_t, alone_words = [], [], []
    for i in inside:
        p = rec.placed[i]
        transcript_alone, shift = alone[(rec.section_of(p.start).channel, p.name)]
        words = normalise(p.text).split()
        times = reference_times(words, transcript_alone.segments, shift, p.start - p.offset, p.end - p.offset)
        ref += words
        ref_t += [p.offset + t for t in times]
        alone_words += normalise(transcript_alone.text).split()
    hyp_timed = [(w, t) for w, t in timed_words(transcript.segments) if lo_t - 1.0 <= t < hi_t]
    hyp = [w for w, _ in hyp_timed]
    wer_long = jiwer.wer(" ".join(ref), " ".join(hyp)) if ref else float(len(hyp))
    wer_alone = jiwer.wer(" ".join(ref), " ".join(alone_words)) if ref else float(len(alone_words))

    # Words around every planned cut: up to CONTEXT reference words on each side, spoken
    # within NEAR seconds of it (a cut deep inside a long pause has no words to lose).
    ops_h, to_h, ins_h = _alignment(ref, hyp)
    ops_a, to_a, ins_a = _alignment(ref, alone_words)
    ref_t = list(np.maximum.accumulate(ref_t)) if ref_t else []
    segments, windows = run.planned.segments, run.planned.windows
    window_starts = {segments[first].start for first, _ in windows[1:]}
    by_neighbourhood: dict[tuple[int, int], CutCheck] = {}
    quiet_cuts = 0
    for seg in segments[1:]:
        cut = seg.start
        if not (lo_t <= cut < hi_t):
            continue
        at = bisect.bisect_left(ref_t, cut)
        i0 = max(bisect.bisect_left(ref_t, cut - NEAR), at - CONTEXT)
        i1 = min(bisect.bisect_right(ref_t, cut + NEAR), at + CONTEXT) - 1
        if i1 < i0:
            quiet_cuts += 1
            continue
        in_speech = any(p.start - 0.3 <= cut <= p.end + 0.3 for p in (rec.placed[i] for i in inside))
        check = by_neighbourhood.get((i0, i1))
        if check is None:
            check = by_neighbourhood[(i0, i1)] = _check_words(ref, hyp, alone_words, i0, i1, ops_h, to_h, ins_h,
                                                               ops_a, to_a, ins_a)
        check.times.append(cut)
        check.window |= cut in window_starts
        check.in_speech |= in_speech

    # Timestamps and onsets.
    problems = []
    starts = [s.start for s in transcript.segments]
    if starts != sorted(starts):
        bad = next(k for k in range(1, len(starts)) if starts[k] < starts[k - 1])
        problems.append(f"line starts go back in time at line {bad}: {starts[bad - 1]} then {starts[bad]}")
    problems += [f"line ends before it starts: {s}" for s in transcript.segments if s.end < s.start]
    problems += [f"line ends after the recording ({transcript.duration} s): {s}" for s in transcript.segments
                 if s.end > transcript.duration + 0.01]
    # Lines split at every VAD pause of UTTERANCE_PAUSE; VAD spans are padded on both sides,
    # so a clip start is a line start when the speech before it ended that much earlier.
    split_pause = UTTERANCE_PAUSE + 2 * VadOptions().pad
    onsets, misses, close, uncovered = 0, [], 0, []
    previous_end = -1e9
    for i in inside:
        p = rec.placed[i]
        if p.start - previous_end >= split_pause:
            onsets += 1
            if not any(abs(s - p.start) <= tolerance for s in starts):
                misses.append(p)
        else:
            close += 1
            if not any(s.start - tolerance <= p.start <= s.end + tolerance for s in transcript.segments):
                uncovered.append(p)
        previous_end = p.end
    minutes = ((min(hi_t, rec.duration) - lo_t) / 60.0)
    return Score(section.kind if section else rec.kind, minutes, len(ref), wer_long, wer_alone,
                 sorted(by_neighbourhood.values(), key=lambda c: c.times[0]), quiet_cuts, onsets, misses, close,
                 uncovered,
                 problems)


def _check_words(ref, hyp, alone, i0, i1, ops_h, to_h, ins_h, ops_a, to_a, ins_a) -> CutCheck:
    """Around reference words i0..i1: dropped, a reference word the long run deleted where the
    alone run heard something; duplicated, a word the long run inserted that repeats a word
    said there (in the reference or in its own text), beyond what the alone run repeats."""
    def span(words, to_x, ins_x) -> list[str]:
        out = []
        for r in range(i0, i1 + 2):
            out += [words[j] for j in ins_x.get(r, ())]
            if r <= i1 and to_x[r] is not None:
                out.append(words[to_x[r]])
        return out

    said = Counter(ref[i0:i1 + 1])

    def repeats(words, ins_x, text: list[str]) -> Counter:
        inserted = [words[j] for r in range(i0, i1 + 2) for j in ins_x.get(r, ())]
        in_text = Counter(text)
        return Counter(w for w in inserted if said[w] or in_text[w] > 1)

    span_h, span_a = span(hyp, to_h, ins_h), span(alone, to_a, ins_a)
    dropped = [ref[r] for r in range(i0, i1 + 1) if ops_h[r] == "delete" and ops_a[r] != "delete"]
    duplicated = list((repeats(hyp, ins_h, span_h) - repeats(alone, ins_a, span_a)).elements())
    context = (f"ref: {' '.join(ref[max(0, i0 - 2):i1 + 3])} | long: {' '.join(span_h)} | alone: {' '.join(span_a)}")
    return CutCheck([], False, False, dropped, duplicated, context)


def describe(score: Score) -> list[str]:
    """Lines for an assertion message or a report."""
    cuts = score.cuts
    lines = [(
        f"{score.section}: {score.minutes:.1f} min, {score.ref_words} reference words, WER long {score.wer_long:.2%} "
        f"vs clips alone {score.wer_alone:.2%}; {sum(len(c.times) for c in cuts)} cuts near speech "
        f"({len(cuts)} word neighbourhoods, {sum(c.in_speech for c in cuts)} inside speech, "
        f"{sum(c.window for c in cuts)} at window boundaries) and {score.quiet_cuts} in long pauses: "
        f"{score.boundary_errors} words dropped or duplicated; line starts at clip onsets "
        f"{score.onsets - len(score.onset_misses)}/{score.onsets} within ±0.5 s, clip starts after short pauses "
        f"inside a line {score.close_starts - len(score.close_uncovered)}/{score.close_starts}")]
    for c in score.failed_cuts():
        lines.append(f"  cut at {', '.join(f'{t:.2f}' for t in c.times)} s{' (window boundary)' if c.window else ''}"
                     f"{' inside speech' if c.in_speech else ''}: dropped {c.dropped} duplicated {c.duplicated} "
                     f":: {c.context}")
    for p in score.onset_misses[:8]:
        lines.append(f"  clip onset {p.start:.2f} s ({p.name}): no line starts within ±0.5 s")
    for p in score.close_uncovered[:8]:
        lines.append(f"  clip start {p.start:.2f} s ({p.name}): inside no line")
    lines += [f"  {problem}" for problem in score.timestamp_problems[:5]]
    return lines
