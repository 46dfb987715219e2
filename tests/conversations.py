"""Test conversations for diarization: real voices, synthetic mixing, exact reference turns.

Voices (all real recordings; only the turn-taking, levels and degradations are synthetic):
- Debian asterisk-core-sounds-{fr,it,ru}-g722: one IVR voice per language (fr: June, female;
  it: Carlo, male; ru: female). The `es` set is the `en` speaker, so it is not used.
- Debian fillets-ng-data-cs / -nl: the two fish of Fish Fillets, voice-acted per language
  (small fish, big fish); the speaker of each line is the font in script/*/dialogs_<lang>.lua.
  help* and rand-* lines are read by either fish, so they are skipped, and so are the Czech
  levels that other actors voiced (_OTHER_ACTORS).
- tests/data: LibriSpeech 1089 (5 clips), the LibriVox Sense and Sensibility reader (5 clips)
  and the LibriVox Tale of Two Cities reader (one 44 s clip, cut at its pauses).
Music beds come from fillets-ng-data's music/ folder.

Built audio is cached under $DIARIZE_TEST_CACHE (default: <tmp>/diarize-conversations).
Reference turns are the sounding parts of each placed clip (pauses over 0.25 s split a turn),
as a forced alignment would give them. `der` scores with an optimal speaker mapping.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

SR = 16_000
DATA = Path(__file__).resolve().parent / "data"
ASTERISK = Path("/usr/share/asterisk/sounds")
FILLETS = Path("/usr/share/games/fillets-ng")
BUILD_VERSION = 6  # bump when a builder changes, so cached audio is rebuilt

_ASTERISK_VOICES = {"fr_f": "fr_CA_f_June", "it_m": "it_IT_m_Carlo", "ru_f": "ru_RU_f_IvrvoiceRU"}
_FILLETS_VOICES = {"cs_small": ("cs", "font_small"), "cs_big": ("cs", "font_big"),
                   "nl_small": ("nl", "font_small"), "nl_big": ("nl", "font_big")}
_EN_VOICES = {"en_1089": "1089-*.flac", "en_austen": "librivox_sense_and_sensibility_*.wav",
              "en_dickens": "two_cities.wav"}
VOICES = (*_ASTERISK_VOICES, *_FILLETS_VOICES, *_EN_VOICES)
# Czech levels voiced by other actors (measured: their lines cluster apart from the rest, for
# both fish, cosine 0.3 between the groups' centres, as between different people).
_OTHER_ACTORS = {"cs": {"fdto", "hanoi", "hole", "keys", "linux", "nowall", "rush"}}
_NOT_SPEECH = re.compile(r"beep|tone$|monkeys")  # asterisk's tones and monkey screams; silence/ is skipped too


@dataclass(frozen=True)
class RefTurn:
    start: float
    end: float
    speaker: str


@dataclass
class Conversation:
    name: str
    audio: np.ndarray              # 16 kHz mono float32
    turns: list[RefTurn]
    note: str = ""

    @property
    def speakers(self) -> int:
        return len({t.speaker for t in self.turns})

    @property
    def duration(self) -> float:
        return self.audio.size / SR


def cache_root() -> Path:
    root = Path(os.environ.get("DIARIZE_TEST_CACHE") or Path(tempfile.gettempdir()) / "diarize-conversations")
    root.mkdir(parents=True, exist_ok=True)
    return root


# --- voices -----------------------------------------------------------------------------------

def package_for(voice: str) -> str | None:
    """The Debian package a voice needs, or None for voices in tests/data."""
    if voice in _ASTERISK_VOICES:
        return f"asterisk-core-sounds-{voice[:2]}-g722"
    if voice in _FILLETS_VOICES:
        return f"fillets-ng-data-{_FILLETS_VOICES[voice][0]}"
    return None


def missing(voices) -> list[str]:
    """Debian packages that the given voices need and that are not installed."""
    absent = []
    for v in voices:
        if v in _ASTERISK_VOICES and not (ASTERISK / _ASTERISK_VOICES[v]).is_dir():
            absent.append(package_for(v))
        elif v in _FILLETS_VOICES and not list((FILLETS / "sound").glob(f"*/{_FILLETS_VOICES[v][0]}/*.ogg")):
            absent.append(package_for(v))
    return sorted(set(absent))


@lru_cache(maxsize=None)
def voice(name: str) -> tuple[np.ndarray, ...]:
    """The voice's clips, silence trimmed, 16 kHz float32, in a fixed order (cached on disk)."""
    path = cache_root() / f"voice-{name}-v{BUILD_VERSION}.npz"
    if not path.exists():
        clips = [trim(c) for c in _load_voice(name)]
        clips = [c for c in clips if c.size >= SR // 4 and _rms(c) > 10 ** (-45 / 20)]  # no near-silent files
        if not clips:
            raise FileNotFoundError(f"no clips for voice {name}; install {package_for(name)}")
        flat = np.concatenate(clips)
        np.savez(path.with_suffix(".tmp.npz"), pcm=np.round(flat * 32767).astype(np.int16),
                 sizes=np.array([c.size for c in clips]))
        os.replace(path.with_suffix(".tmp.npz"), path)
    with np.load(path) as stored:
        pcm, sizes = stored["pcm"].astype(np.float32) / 32767, stored["sizes"]
    return tuple(np.split(pcm, np.cumsum(sizes)[:-1]))


def _load_voice(name: str) -> list[np.ndarray]:
    if name in _ASTERISK_VOICES:
        return _asterisk(ASTERISK / _ASTERISK_VOICES[name])
    if name in _FILLETS_VOICES:
        return _fillets(*_FILLETS_VOICES[name])
    files = sorted(DATA.glob(_EN_VOICES[name]))
    if name == "en_1089":  # the same LibriSpeech speaker, kept under another name
        files += sorted(DATA.glob("funasr_runtime_*example_4.wav"))
    clips = [ffmpeg_decode(f) for f in files]
    return [piece for c in clips for piece in split_at_pauses(c, 0.4)] if name == "en_dickens" else clips


def _asterisk(folder: Path) -> list[np.ndarray]:
    """All prompts of one voice in one ffmpeg call: raw G.722 concatenates, 2 samples a byte."""
    files = sorted(p for p in folder.rglob("*.g722") if p.stat().st_size > 8000 // 2
                   and p.parent.name != "silence" and not _NOT_SPEECH.search(p.stem))
    blob = b"".join(p.read_bytes() for p in files)
    pcm = ffmpeg_decode(blob, ["-f", "g722"])
    edges = np.cumsum([0] + [2 * p.stat().st_size for p in files])
    return [pcm[a:b] for a, b in zip(edges[:-1], edges[1:])]


def _fillets(lang: str, font: str) -> list[np.ndarray]:
    import soundfile as sf
    from scipy.signal import resample_poly

    fonts: dict[str, str] = {}
    for script in glob.glob(str(FILLETS / "script" / "*" / f"dialogs_{lang}.lua")):
        text = Path(script).read_text(errors="replace")
        fonts.update(re.findall(r'dialogId\("([^"]+)",\s*"([^"]+)"', text))
    clips = []
    for path in sorted((FILLETS / "sound").glob(f"*/{lang}/*.ogg")):
        if fonts.get(path.stem) != font or path.stem.startswith(("help", "rand-")):
            continue  # another character, or a line either fish may say
        if path.parent.parent.name in _OTHER_ACTORS.get(lang, ()):
            continue
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        clips.append(resample_poly(audio.mean(axis=1), SR, rate).astype(np.float32))
    return clips


def ffmpeg_decode(source: Path | bytes, input_args: list[str] = (), output_args: list[str] = ()) -> np.ndarray:
    """Decode a file or bytes to 16 kHz mono float32 (output_args go before the output format)."""
    name = "pipe:0" if isinstance(source, bytes) else str(source)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", *input_args, "-i", name, *output_args,
           "-ac", "1", "-ar", str(SR), "-f", "f32le", "pipe:1"]
    out = subprocess.run(cmd, input=source if isinstance(source, bytes) else None, capture_output=True, check=True)
    return np.frombuffer(out.stdout, dtype=np.float32).copy()


# --- clip measurements ------------------------------------------------------------------------

def _frame_db(clip: np.ndarray, hop: int = SR // 50) -> np.ndarray:
    frames = clip[: clip.size - clip.size % hop].reshape(-1, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) + 1e-9
    return 20 * np.log10(rms / rms.max())


def sounding(clip: np.ndarray, below_peak_db: float = 35.0, bridge: float = 0.25) -> list[tuple[float, float]]:
    """(start, end) seconds of the sounding parts of a clip; pauses up to `bridge` are kept."""
    if clip.size < SR // 50:
        return []
    loud = _frame_db(clip) > -below_peak_db
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    runs: list[list[float]] = []
    for lo, hi in edges.reshape(-1, 2) * 0.02:
        if runs and lo - runs[-1][1] <= bridge:
            runs[-1][1] = hi
        else:
            runs.append([lo, hi])
    return [(a, b) for a, b in runs if b - a >= 0.1]


def trim(clip: np.ndarray, margin: float = 0.05) -> np.ndarray:
    parts = sounding(clip)
    if not parts:
        return clip[:0]
    lo = max(0, int((parts[0][0] - margin) * SR))
    return clip[lo: int((parts[-1][1] + margin) * SR)]


def split_at_pauses(clip: np.ndarray, pause: float) -> list[np.ndarray]:
    parts = sounding(clip, bridge=pause)
    return [clip[int(a * SR): int(b * SR)] for a, b in parts]


# --- scoring ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Score:
    der: float
    missed: float
    false_alarm: float
    confusion: float


def der(reference, hypothesis, collar: float = 0.25, step: float = 0.01) -> Score:
    """Diarization error rate, frame-based (10 ms): (missed + false alarm + confusion) / speech,
    with the best one-to-one speaker mapping. `collar` seconds on each side of every reference
    boundary are not scored (NIST md-eval's convention; pyannote.metrics calls it collar=2x).
    Turns are anything with start, end and speaker attributes."""
    from scipy.optimize import linear_sum_assignment

    end = max([t.end for t in [*reference, *hypothesis]], default=0.0)
    frames = int(np.ceil(end / step)) + 1
    ref, ref_names = _activity(reference, frames, step)
    hyp, _ = _activity(hypothesis, frames, step)
    scored = np.ones(frames, bool)
    for t in reference:
        for edge in (t.start, t.end):
            scored[max(0, int(round((edge - collar) / step))): int(round((edge + collar) / step))] = False
    ref, hyp = ref[scored], hyp[scored]
    total = ref.sum()
    if total == 0:
        return Score(float(hyp.any()), 0.0, float(hyp.any()), 0.0)
    overlap = ref.T.astype(np.int64) @ hyp.astype(np.int64)
    rows, cols = linear_sum_assignment(-overlap) if overlap.size else ([], [])
    n_ref, n_hyp = ref.sum(1), hyp.sum(1)
    correct = sum((ref[:, r] & hyp[:, c]).astype(np.int64) for r, c in zip(rows, cols)) if len(rows) else 0
    missed = np.maximum(n_ref - n_hyp, 0).sum()
    false_alarm = np.maximum(n_hyp - n_ref, 0).sum()
    confusion = (np.minimum(n_ref, n_hyp) - correct).sum()
    return Score((missed + false_alarm + confusion) / total, missed / total, false_alarm / total, confusion / total)


def _activity(turns, frames: int, step: float) -> tuple[np.ndarray, list]:
    names = sorted({t.speaker for t in turns}, key=str)
    grid = np.zeros((frames, max(1, len(names))), bool)
    for t in turns:
        grid[int(round(t.start / step)): int(round(t.end / step)), names.index(t.speaker)] = True
    return grid, names


def save(conv: Conversation, folder: Path) -> Path:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    sf.write(str(folder / f"{conv.name}.wav"), conv.audio, SR, subtype="PCM_16")
    (folder / f"{conv.name}.json").write_text(json.dumps({"note": conv.note, "turns": [
        [t.start, t.end, t.speaker] for t in conv.turns]}))
    return folder / f"{conv.name}.wav"


def load(path: Path) -> Conversation:
    import soundfile as sf

    meta = json.loads(path.with_suffix(".json").read_text())
    audio, _ = sf.read(str(path), dtype="float32")
    return Conversation(path.stem, audio, [RefTurn(*t) for t in meta["turns"]], meta["note"])



# --- mixing -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Piece:
    voice: str
    clip: int
    lo: int       # samples inside the clip
    hi: int
    at: int       # sample in the conversation
    gain: float


def plan(voices, seconds: float, seed: int, turn=(2.0, 6.0), gap=(0.15, 0.8), overlap: float = 0.0,
         overlap_len=(0.2, 0.6), weights=None, crop: bool = False, breaks=None) -> list[Piece]:
    """Turn-taking: a random other speaker each turn, `turn` seconds of their clips (a range, or
    a range per voice; cropped to the turn's length when `crop`), then a pause in `gap`, or with
    probability `overlap` the next turn starts `overlap_len` seconds before this one ends.
    `breaks`: (every, (shortest, longest)) seconds of silence now and then, as in a meeting."""
    rng = np.random.default_rng(seed)
    level = {v: 10 ** (rng.uniform(-3, 3) / 20) for v in voices}
    p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    pieces: list[Piece] = []
    cursor, previous, talked = 0.5, None, {}
    next_break = breaks[0] if breaks else float("inf")
    while cursor < seconds:
        if cursor >= next_break:
            cursor += rng.uniform(*breaks[1])
            next_break += breaks[0]
        choices = [i for i, v in enumerate(voices) if v != previous or len(voices) == 1]
        if p is None and rng.random() < 0.7:  # mostly whoever has said least: balanced cases
            speaker = voices[min(choices, key=lambda i: talked.get(voices[i], 0.0))]
        else:
            w = None if p is None else p[choices] / p[choices].sum()
            speaker = voices[choices[rng.choice(len(choices), p=w)]]
        span = turn[speaker] if isinstance(turn, dict) else turn
        clips, length, t = voice(speaker), rng.uniform(*span), cursor
        while t - cursor < length:
            index = int(rng.integers(len(clips)))
            size = clips[index].size
            want = int((length - (t - cursor)) * SR)
            lo, hi = 0, size
            if crop and size > want + SR // 2:
                lo = int(rng.integers(0, size - want))
                hi = lo + max(want, int(0.4 * SR))
            gain = level[speaker] * 0.063 / max(_rms(clips[index][lo:hi]), 1e-4)  # about -24 dBFS
            pieces.append(Piece(speaker, index, lo, hi, int(t * SR), gain))
            t += (hi - lo) / SR + rng.uniform(0.1, 0.3)
        end = pieces[-1].at / SR + (pieces[-1].hi - pieces[-1].lo) / SR
        talked[speaker] = talked.get(speaker, 0.0) + end - cursor
        step = -rng.uniform(*overlap_len) if rng.random() < overlap else rng.uniform(*gap)
        cursor, previous = max(end + step, t - (t - cursor) / 2), speaker
    return pieces


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


def render(pieces: list[Piece], start: int, stop: int, seed: int = 0) -> np.ndarray:
    """Samples [start, stop) of the mix, with a -70 dBFS noise floor."""
    out = np.random.default_rng(seed + start).standard_normal(stop - start).astype(np.float32) * 3e-4
    fade = np.linspace(0, 1, SR // 200, dtype=np.float32)
    for p in pieces:
        if p.at >= stop or p.at + p.hi - p.lo <= start:
            continue
        x = voice(p.voice)[p.clip][p.lo:p.hi] * np.float32(p.gain)
        n = min(fade.size, x.size // 2)
        x[:n] *= fade[:n]
        x[x.size - n:] *= fade[::-1][:n]
        a, b = max(start, p.at), min(stop, p.at + x.size)
        out[a - start:b - start] += x[a - p.at:b - p.at]
    return np.clip(out, -1, 1)


def reference(pieces: list[Piece]) -> list[RefTurn]:
    """The sounding parts of every piece, same-speaker turns that touch merged."""
    turns = sorted((RefTurn(round(p.at / SR + a, 3), round(p.at / SR + b, 3), p.voice)
                    for p in pieces for a, b in sounding(voice(p.voice)[p.clip][p.lo:p.hi])),
                   key=lambda t: (t.speaker, t.start))
    merged: list[RefTurn] = []
    for t in turns:
        if merged and merged[-1].speaker == t.speaker and t.start <= merged[-1].end + 0.01:
            merged[-1] = RefTurn(merged[-1].start, max(merged[-1].end, t.end), t.speaker)
        else:
            merged.append(t)
    return sorted(merged, key=lambda t: t.start)


def mix(name: str, voices, seconds: float, seed: int, **kw) -> Conversation:
    pieces = plan(voices, seconds, seed, **kw)
    total = max(p.at + p.hi - p.lo for p in pieces) + SR // 2
    return Conversation(name, render(pieces, 0, total, seed), reference(pieces), f"voices: {', '.join(voices)}")


# --- degradations -----------------------------------------------------------------------------

def through_ffmpeg(audio: np.ndarray, args: list[str], fmt: str) -> np.ndarray:
    """Encode with `args` into format `fmt`, then decode back to 16 kHz."""
    enc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(SR), "-ac", "1",
                          "-i", "pipe:0", *args, "-f", fmt, "pipe:1"],
                         input=audio.astype(np.float32).tobytes(), capture_output=True, check=True).stdout
    out = ffmpeg_decode(enc, ["-f", fmt])
    return np.pad(out, (0, max(0, audio.size - out.size)))[: audio.size]


def telephone(audio: np.ndarray) -> np.ndarray:
    """300-3400 Hz, 8 kHz G.711 mu-law, back to 16 kHz."""
    return through_ffmpeg(audio, ["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000", "-c:a", "pcm_mulaw"], "wav")


def opus(audio: np.ndarray, bitrate: str = "24k") -> np.ndarray:
    return through_ffmpeg(audio, ["-c:a", "libopus", "-b:a", bitrate], "ogg")


def reverb(audio: np.ndarray, rt60: float = 0.6, seed: int = 0) -> np.ndarray:
    """A synthetic room: direct sound plus exponentially decaying noise (-60 dB at rt60)."""
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    t = np.arange(int(rt60 * SR)) / SR
    rir = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60) * 0.25
    rir[0] = 1.0
    wet = fftconvolve(audio, rir.astype(np.float32))[: audio.size]
    return (wet * (_rms(audio) / max(_rms(wet), 1e-9))).astype(np.float32)


def music(seconds: float, track: str = "rybky01.ogg") -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    x, rate = sf.read(str(FILLETS / "music" / track), dtype="float32", always_2d=True)
    x = resample_poly(x.mean(axis=1), SR, rate).astype(np.float32)
    return np.tile(x, int(np.ceil(seconds * SR / x.size)))[: int(seconds * SR)]


def bed(conv: Conversation, under: np.ndarray, snr_db: float) -> np.ndarray:
    """`under` added at `snr_db` below the speech (speech level measured inside the turns)."""
    speech = np.concatenate([conv.audio[int(t.start * SR): int(t.end * SR)] for t in conv.turns])
    scale = _rms(speech) / max(_rms(under), 1e-9) * 10 ** (-snr_db / 20)
    return np.clip(conv.audio + under[: conv.audio.size] * scale, -1, 1).astype(np.float32)


def _pink(samples: int, seed: int) -> np.ndarray:
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(samples))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    return np.fft.irfft(spectrum, samples).astype(np.float32)


# --- the cases --------------------------------------------------------------------------------

THREE = ("fr_f", "it_m", "nl_big")


def _degraded(name: str, change) -> Conversation:
    base = mix(name, THREE, 120, seed=7)
    base.audio = change(base)
    base.note += f"; {name}"
    return base


CASES = {
    "2spk": lambda: mix("2spk", ("cs_small", "cs_big"), 90, seed=1),
    "3spk": lambda: mix("3spk", THREE, 120, seed=2),
    "4spk": lambda: mix("4spk", ("ru_f", "cs_big", "nl_small", "it_m"), 150, seed=3),
    "3spk_en": lambda: mix("3spk_en", ("en_1089", "en_austen", "en_dickens"), 90, seed=4),
    "same_gender": lambda: mix("same_gender", ("fr_f", "ru_f"), 90, seed=5),
    "short_turns": lambda: mix("short_turns", ("fr_f", "it_m", "cs_big"), 120, seed=6, turn=(0.6, 3.0),
                               gap=(0.05, 0.4), overlap=0.25, crop=True),
    "telephone": lambda: _degraded("telephone", lambda c: telephone(c.audio)),
    "opus24": lambda: _degraded("opus24", lambda c: opus(c.audio, "24k")),
    "reverb": lambda: _degraded("reverb", lambda c: reverb(c.audio, 0.6)),
    "music15": lambda: _degraded("music15", lambda c: bed(c, music(c.duration), 15)),
    "noise15": lambda: _degraded("noise15", lambda c: bed(c, _pink(c.audio.size, 1), 15)),
    "one_speaker": lambda: mix("one_speaker", ("nl_big",), 90, seed=8, gap=(0.3, 2.0)),
    "five_speakers": lambda: mix("five_speakers", ("fr_f", "it_m", "ru_f", "cs_big", "nl_small"), 150, seed=9),
    "music_only": lambda: Conversation("music_only", music(30, "rybky02.ogg") * 0.5, [], "music, no speech"),
    "two_seconds": lambda: Conversation("two_seconds", _two_seconds(), [RefTurn(0.0, 2.0, "it_m")], "2 s file"),
}


def _two_seconds() -> np.ndarray:
    clip = next(c for c in voice("it_m") if c.size >= 2 * SR)
    return clip[: 2 * SR] / max(float(np.abs(clip).max()), 1e-3) * 0.5


def build(case: str) -> Conversation:
    """A case of CASES, built once and cached (audio + reference turns)."""
    path = cache_root() / f"case-{case}-v{BUILD_VERSION}.wav"
    if not (path.exists() and path.with_suffix(".json").exists()):
        conv = CASES[case]()
        conv.name = path.stem
        save(conv, path.parent)
    conv = load(path)
    conv.name = case
    return conv


MEETING_VOICES = ("cs_big", "it_m", "fr_f", "ru_f", "nl_small", "nl_big", "cs_small")
MEETING_WEIGHTS = (0.45, 0.15, 0.12, 0.1, 0.08, 0.06, 0.04)


def meeting(minutes: float, seed: int = 11) -> tuple[Path, list[RefTurn]]:
    """A long meeting on disk (16 kHz PCM WAV, written a minute at a time): one voice leads,
    six others take shorter turns, the same seven throughout, a pause every ~10 minutes."""
    import soundfile as sf

    path = cache_root() / f"meeting-{minutes:g}min-s{seed}-v{BUILD_VERSION}.wav"
    if not (path.exists() and path.with_suffix(".json").exists()):
        turn = {v: (2.0, 12.0) for v in MEETING_VOICES} | {MEETING_VOICES[0]: (4.0, 25.0)}
        pieces = sorted(plan(MEETING_VOICES, minutes * 60 - 1, seed, turn=turn, gap=(0.2, 1.5), overlap=0.1,
                             weights=MEETING_WEIGHTS, breaks=(600.0, (5.0, 20.0))), key=lambda p: p.at)
        total = max(p.at + p.hi - p.lo for p in pieces) + SR
        staging = path.with_suffix(".tmp.wav")
        with sf.SoundFile(str(staging), "w", samplerate=SR, channels=1, subtype="PCM_16") as out:
            for block in range(0, total, 60 * SR):
                out.write(render(pieces, block, min(total, block + 60 * SR), seed))
        turns = reference(pieces)
        path.with_suffix(".json").write_text(json.dumps({"note": f"voices: {', '.join(MEETING_VOICES)}",
                                                          "turns": [[t.start, t.end, t.speaker] for t in turns]}))
        os.replace(staging, path)
    meta = json.loads(path.with_suffix(".json").read_text())
    return path, [RefTurn(*t) for t in meta["turns"]]
