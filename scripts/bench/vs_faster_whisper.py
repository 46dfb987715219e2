"""This pipeline against faster-whisper on real speech, same Whisper base int8 weights, CPU.

Every run is a whole process (imports, model load and the run; wall time measured from outside),
rows in alternating order round by round. Rows:

    ours          python -m webui.cli transcribe FILE --format json --no-itn (the default mode)
    ours-acc      the same with --accurate
    fw-b1, fw-b5  faster-whisper BatchedInferencePipeline.transcribe (its defaults: Silero VAD,
                  batch_size 8, no timestamp tokens, no word times) at beam 1 and beam 5
    fw-b1w        fw-b1 with word_timestamps=True: the same output as ours (every word timed)
    fw-b1t        fw-b1 with without_timestamps=False: timestamp tokens, as ours decodes Chinese
    fw-b1m        fw-b1 with multilingual=True: every input decoded in the language its language ID
                  puts first (for `switch`: ours follows a change of language by default)
    fw-seq        faster-whisper WhisperModel.transcribe(vad_filter=True) (its defaults: beam 5,
                  context carried between windows, temperature fallback)
    ROW+malloc    a faster-whisper row run with this project's allocator settings (one glibc arena,
                  large buffers reused from the heap: webui/modules/hostmem.py), to show what of
                  the difference is the allocator. The plain fw rows run with glibc's defaults, as
                  a program that imports faster-whisper gets them.

For each: wall seconds per round (and their median), CPU seconds (user + system of the whole
process and its children, ffmpeg included: on a loaded machine less noisy than wall time), WER
(English) or CER (Mandarin, both sides in Simplified), encoder inputs (every Whisper encoder
pass, language detection included), padded seconds sent to the encoder (inputs x 30 s), audio
seconds fed to the feature extractor, decode tokens (generated tokens of every decode, fallbacks
and second passes included) and peak RSS. Counted the same way for every row, by wrapping the
CTranslate2 model object faster-whisper holds (both pipelines call it).

WER: the same normaliser on both sides (lower case; single digits read one by one and written
"1, 2, 3, 4" or "5-0-0" joined into one number; numbers spelt out; punctuation but apostrophes
dropped; hyphens to spaces) on the raw model text (our runs use --no-itn; no ITN on either side).
Other languages: lower case, punctuation dropped (accents too where the transcript has none);
the "digits" column also counts their number words 0-10 as digits (NUMBER_WORDS) on both sides.

Recordings (built once into --work; real human speech only):

    real_en     ../shared/testdata/real_en: its 15 clips in manifest order, 0.6-3 s pauses
                (tests/data holds the same 15 clips, byte for byte)
    asterisk    Debian asterisk-core-sounds-en(-wav): real telephone prompts (8 kHz) with the
                package's own transcript, shuffled, 0.6-3 s pauses, --asterisk-minutes long
    long_en     tests/recordings.py build(): the 15 clips with 3-12 s pauses and coffee breaks
    mixed_en    tests/longform_kinds.py build_mixed(): dialogue, continuous speech, silence,
                music bed, telephone band, dialogue; mp4
    radio_en    a radio show (_radio): the asterisk prompts in blocks of about 2 minutes between
                real music (Fish Fillets' tracks: Debian fillets-ng-data), an opening, 15-45 s
                interludes and a close at the speech's level, every third block over a music bed
                18 dB under the speech; --dialog-minutes long
    real_zh     ../shared/testdata/real_zh: its 11 clips in manifest order, 0.6-3 s pauses
    long_zh     tests/recordings.py build() over the real_zh clips (drawn with replacement: a clip
                may follow itself, which a real recording would not say)
    dialog_zh   the real_zh clips in a dialogue's pace, 0.3-1.5 s pauses, no clip within five
                of its last placing (no input holds a sentence twice), --dialog-minutes long
    asterisk_fr Debian asterisk-core-sounds-fr(-g722): Canadian French telephone prompts (16 kHz
                G.722) with the package's transcript, shuffled, 0.6-3 s pauses
    dialog_nl   Debian fillets-ng-data-nl: Fish Fillets' Dutch voice-acted dialogue (two actors,
                lines in the levels' order) with the game's Dutch text, 0.2-1.2 s pauses,
                --dialog-minutes long
    asterisk_it, asterisk_ru, asterisk_es
                the same as asterisk_fr for Italian, Russian and Mexican Spanish (not in the
                default set: added 2026-12-06 as languages no setting was ever tuned on)
    dialog_cs   the same as dialog_nl in Czech (the game's Czech actors and text; ditto)
    switch      a meeting that changes language (SWITCH): --switch-minutes of English, Mandarin,
                French and Russian in turn (the telephone prompts and the Mandarin clips, built
                as above), each part scored in its own language against the segments that start
                in it (switch_error); not in the default set

WER for the other languages: lower case, punctuation but in-word apostrophes dropped, numbers as
written (a digit against a spelt-out number is an error on both sides alike). Two transcripts are
repaired or matched: the Italian one lost word-final accents to "?" (put back: "pu?" -> "può",
a lone "?" -> "è"); the Spanish one has no accents or tildes (both sides compared without them).

With --shifts 7,13,29 each row also runs once on copies of the recording with that many
milliseconds of silence before it, and a second table gives each row's error rate on every copy:
a shift of a few frames moves every input's edges, and greedy Whisper base changes a word here
and there (asterisk: one row's errors ranged 68-84 of 1,846 words). A difference between two rows
that stays inside those ranges is noise, not a finding. (An mp4 is shifted into a FLAC: audio
only.)

    .venv/bin/python scripts/bench/vs_faster_whisper.py --rounds 2
    .venv/bin/python scripts/bench/vs_faster_whisper.py --only asterisk --rows ours,fw-b1 --rounds 2
    .venv/bin/python scripts/bench/vs_faster_whisper.py --only asterisk --rows ours,fw-b1 --rounds 1 --shifts 7,13,29
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import unicodedata
from pathlib import Path
from typing import Sequence

# What the user set before anything here imports webui (which puts numpy's BLAS on one thread
# in os.environ, so the fw children would inherit it): None, as for most users.
USER_BLAS_THREADS = os.environ.get("OPENBLAS_NUM_THREADS")

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "testdata"
SR = 16_000
ROWS = ("ours", "fw-b1", "fw-b5", "fw-seq", "ours-acc")
ZH_RECORDINGS = ("real_zh", "long_zh", "dialog_zh")


# ----------------------------------------------------------------------------- counting

class Counts:
    inputs = 0          # encoder passes (one per input of a batch)
    fed_seconds = 0.0   # audio given to the feature extractor
    tokens = 0          # generated tokens, every decode


class _CountingModel:
    """Stands in for the ctranslate2.models.Whisper that faster-whisper holds: counts the
    encoder inputs and the generated tokens, passes everything through."""

    def __init__(self, inner):
        object.__setattr__(self, "_inner", inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def encode(self, features, *args, **kwargs):
        Counts.inputs += int(features.shape[0])
        return self._inner.encode(features, *args, **kwargs)

    def generate(self, features, prompts, *args, **kwargs):
        results = self._inner.generate(features, prompts, *args, **kwargs)
        # CTranslate2 gives back a prompt's text tokens (a resumed decode's own text: ours,
        # whisper_decode.resumed) with the ones it generated: only those count.
        Counts.tokens += sum(len(r.sequences_ids[0]) - len(_prefix(p)) for r, p in zip(results, prompts)
                             if r.sequences_ids)
        return results


def _prefix(prompt) -> list:
    """The text tokens after a prompt's start-of-transcript sequence (Whisper's multilingual ids:
    the specials run from end-of-text, 50257, to the first timestamp, 50364)."""
    tokens = list(prompt)
    specials = [k for k, t in enumerate(tokens) if isinstance(t, int) and 50257 <= t < 50364]
    return tokens[specials[-1] + 1:] if specials else []


class _CountingFeatures:
    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, waveform, *args, **kwargs):
        Counts.fed_seconds += len(waveform) / SR
        return self._inner(waveform, *args, **kwargs)


def install_counters() -> None:
    import faster_whisper
    from faster_whisper import transcribe as fw_transcribe

    original = fw_transcribe.WhisperModel.__init__

    def counted_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.model = _CountingModel(self.model)
        self.feature_extractor = _CountingFeatures(self.feature_extractor)

    fw_transcribe.WhisperModel.__init__ = counted_init
    assert faster_whisper.WhisperModel is fw_transcribe.WhisperModel


def child(row: str, audio: str, out: str) -> None:
    """One measured run in this process; writes {text, segments, inputs, fed, tokens, rss_mb} to `out`."""
    install_counters()
    row = row.split("+")[0]
    if row.startswith("ours"):
        from webui import cli

        folder = Path(out).with_suffix(".d")
        argv = ["transcribe", audio, "--format", "json", "--out", str(folder), "--no-itn", "--quiet", "--no-resume",
                "--device", "cpu"]
        if row == "ours-acc":
            argv.append("--accurate")
        if cli.main(argv):
            raise SystemExit("the CLI failed")
        data = json.loads((folder / f"{Path(audio).stem}.json").read_text())
        text = data["text"]
        timed = [(seg["start"], seg["end"], seg["text"]) for seg in data["segments"]]
    else:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        from webui.modules.engines.whisper_ct2 import bundled_model_dir

        model = WhisperModel(str(bundled_model_dir()), device="cpu", compute_type="int8",
                             cpu_threads=os.cpu_count() or 1)
        if row == "fw-seq":
            segments, _ = model.transcribe(audio, vad_filter=True, beam_size=5)
        else:
            words = row.endswith("w")  # fw-b1w: with word times, as every line of ours has them
            stamps = row.endswith("t")  # fw-b1t: timestamp tokens, as ours decodes Chinese
            multilingual = row.endswith("m")  # fw-b1m: each input decoded in its own best-guess language
            segments, _ = BatchedInferencePipeline(model).transcribe(audio, beam_size=int(row.rstrip("wtm")[-1]),
                                                                     word_timestamps=words, without_timestamps=not stamps,
                                                                     multilingual=multilingual)
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments)
        timed = [(s.start, s.end, s.text) for s in segments]
    times = os.times()
    Path(out).write_text(json.dumps({
        # children: the ffmpeg decodes of our pipeline (faster-whisper decodes with PyAV, in process)
        "text": text, "segments": timed, "cpu": round(times.user + times.system + times.children_user + times.children_system, 1), "inputs": Counts.inputs, "fed": round(Counts.fed_seconds, 1), "tokens": Counts.tokens,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }, ensure_ascii=False))


# ----------------------------------------------------------------------------- scoring

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def spell(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + spell(n % 100))
    if n < 1_000_000:
        return spell(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + spell(n % 1000))
    return " ".join(_ONES[int(d)] for d in str(n))


def normalise_en(text: str) -> str:
    text = text.lower().replace("%", " percent ").replace("&", " and ")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    # Digits read one by one: "1, 2, 3, 4" and "5-0-0" are the numbers 1234 and 500 as written.
    text = re.sub(r"\b\d(?:(?:, ?|-)\d\b)+", lambda m: re.sub(r"\D", "", m.group()), text)
    text = re.sub(r"\d+", lambda m: f" {spell(int(m.group()))} ", text)
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def normalise_zh(text: str) -> list[str]:
    import opencc

    text = opencc.OpenCC("t2s").convert(text).lower()
    return [ch for ch in re.sub(r"[^\w]|_", "", text)]


# The Spanish prompts' transcript is written without accents or tildes ("contrasena"): both
# sides are compared without them.
ASCII_TRANSCRIPTS = ("es",)


def normalise_other(text: str, without_accents: bool = False) -> str:
    """Other languages: lower case, punctuation but in-word apostrophes dropped; numbers as
    written (the same on both sides: a digit against a spelt number counts for both)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    if without_accents:
        text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


# Recordings in languages other than English and Mandarin, with their build seeds.
OTHER_LANGUAGES = {"asterisk_fr": 4, "dialog_nl": 5, "asterisk_it": 8, "asterisk_ru": 9, "asterisk_es": 10,
                   "dialog_cs": 6}


def language_of(recording: str) -> str:
    if recording in OTHER_LANGUAGES:
        return recording.split("_", 1)[1]
    return "zh" if recording in ZH_RECORDINGS else "en"


# Number words 0-10 (and their other genders) written as digits, for `error_rate(..., digits=True)`:
# Whisper writes "uno" where one transcript has "1" and "2" where another has "два". Both sides
# are mapped alike, so a word said as an article ("una", "un", "een") maps on both sides too.
NUMBER_WORDS = {
    "it": "zero uno|una|un due tre quattro cinque sei sette otto nove dieci",
    "es": "cero uno|una|un dos tres cuatro cinco seis siete ocho nueve diez",
    "fr": "zéro un|une deux trois quatre cinq six sept huit neuf dix",
    "ru": "ноль один|одна|одно два|две три четыре пять шесть семь восемь девять десять",
    "nl": "nul een|één twee drie vier vijf zes zeven acht negen tien",
    "cs": "nula jedna|jeden|jedno dva|dvě tři čtyři pět šest sedm osm devět deset",
}


def numbers_as_digits(normalised: str, language: str) -> str:
    """Text from normalise_other with the language's number words 0-10 as digits (and ё as е)."""
    plain = language in ASCII_TRANSCRIPTS
    digits = {normalise_other(word, plain): str(value)
              for value, forms in enumerate(NUMBER_WORDS.get(language, "").split()) for word in forms.split("|")}
    return " ".join(digits.get(word, word) for word in normalised.replace("ё", "е").split())


def error_rate(reference: str, hypothesis: str, zh: bool | str, digits: bool = False) -> float:
    """WER (CER for Chinese); `zh` is True/False or the recording's language. `digits`: number
    words 0-10 count as the digits they name (languages other than English and Mandarin; the
    English normaliser already spells every number out)."""
    language = ("zh" if zh else "en") if isinstance(zh, bool) else zh
    errors, words = error_counts(reference, hypothesis, language, digits)
    return errors / max(words, 1)


def error_counts(reference: str, hypothesis: str, language: str, digits: bool = False) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words), characters for Chinese, after
    the language's normaliser."""
    import jiwer

    if language not in ("en", "zh"):
        plain = language in ASCII_TRANSCRIPTS
        ref, hyp = normalise_other(reference, plain), normalise_other(hypothesis, plain)
        if digits:
            ref, hyp = numbers_as_digits(ref, language), numbers_as_digits(hyp, language)
    elif language == "zh":
        ref, hyp = " ".join(normalise_zh(reference)), " ".join(normalise_zh(hypothesis))
    else:
        ref, hyp = normalise_en(reference), normalise_en(hypothesis)
    out = jiwer.process_words(ref, hyp or "<empty>")
    return out.substitutions + out.deletions + out.insertions, len(ref.split())


def switch_error(parts: list[dict], segments: list, digits: bool = False) -> float:
    """A recording that changes language (SWITCH): each part scored in its own language (WER,
    CER for Mandarin) against the text of the segments that start in it; errors over reference
    words and characters of all parts together."""
    errors = words = 0
    for part in parts:
        said = " ".join(text for start, _, text in segments if part["start"] <= start < part["end"])
        e, n = error_counts(part["reference"], said, part["language"], digits)
        errors, words = errors + e, words + n
    return errors / max(words, 1)


# ----------------------------------------------------------------------------- recordings

def _clips(folder: Path) -> list[tuple[str, object, str]]:
    from webui.modules.audio import decode

    out = []
    for line in (folder / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            out.append((entry["audio"], decode(folder / entry["audio"]), entry["text"]))
    return out


def _concat(path: Path, clips, seed: int, gap=(0.6, 3.0), minutes: float | None = None, shuffle: bool = False):
    """Clips (name, audio, text) with pauses of room noise between them; returns the reference."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(clips))) if shuffle else list(range(len(clips)))
    texts, total = [], 0
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as out:
        for k in order:
            _, audio, text = clips[k]
            pause = int(rng.uniform(*gap) * SR)
            if minutes is not None and total + pause + audio.size > minutes * 60 * SR:
                break
            out.write((rng.standard_normal(pause) * 10 ** (-65 / 20)).astype(np.float32))
            out.write(np.clip(audio, -1, 1))
            texts.append(text)
            total += pause + audio.size
        out.write((rng.standard_normal(SR) * 10 ** (-65 / 20)).astype(np.float32))
    return " ".join(texts)


def _radio(path: Path, clips, seed: int, minutes: float) -> str:
    """A radio show from clips (name, audio, text): real music (Fish Fillets' tracks, Debian
    fillets-ng-data) as an opening, interludes of 15-45 s and a close, at the speech's level
    less 3 dB; speech blocks of about 2 minutes with 0.6-3 s pauses, every third one over a music
    bed 18 dB under the speech. Returns the reference (the clips' text in order)."""
    import numpy as np
    import soundfile as sf
    from tests.conversations import FILLETS, music

    rng = np.random.default_rng(seed)
    tracks = sorted(p.name for p in (FILLETS / "music").glob("*.ogg"))
    if not tracks:
        raise SystemExit("fillets-ng-data not found (apt-get install fillets-ng-data)")
    level = float(np.sqrt(np.mean(np.concatenate([a for _, a, _ in clips[:50]]) ** 2)))

    def tune(seconds: float, below_db: float) -> np.ndarray:
        x = music(seconds + 60, tracks[int(rng.integers(len(tracks)))])
        start = int(rng.integers(0, 60 * SR))
        x = x[start:start + int(seconds * SR)]
        fade = np.minimum(1.0, np.minimum(np.arange(x.size), np.arange(x.size)[::-1]) / (0.5 * SR))
        return (x * fade * level / max(float(np.sqrt(np.mean(x ** 2))), 1e-9) * 10 ** (-below_db / 20)).astype(np.float32)

    order = list(rng.permutation(len(clips)))
    parts, texts, total, block = [tune(30, 3)], [], 30 * SR, 0
    while order and total < (minutes * 60 - 30) * SR:
        speech = []
        while order and sum(a.size for a in speech) < 120 * SR:
            _, audio, text = clips[order.pop()]
            speech += [(rng.standard_normal(int(rng.uniform(0.6, 3.0) * SR)) * 10 ** (-65 / 20)).astype(np.float32),
                       np.clip(audio, -1, 1).astype(np.float32)]
            texts.append(text)
        speech = np.concatenate(speech)
        if block % 3 == 1:
            speech = speech + tune(speech.size / SR, 18)
        parts += [speech, tune(rng.uniform(15, 45), 3)]
        total += sum(p.size for p in parts[-2:])
        block += 1
    parts[-1] = tune(30, 3)
    sf.write(str(path), np.clip(np.concatenate(parts), -1, 1), SR, subtype="PCM_16")
    return " ".join(texts)


def _cycle(path: Path, clips, seed: int, gap, minutes: float, apart: int = 5) -> str:
    """The clips (name, audio, text) drawn at random, none within `apart` placings of its last,
    with pauses of room noise, `minutes` long; returns the reference."""
    import numpy as np

    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < int(minutes * 60):  # more than will fit; _concat stops at `minutes`
        order.append(int(rng.choice([k for k in range(len(clips)) if k not in order[-apart:]])))
    return _concat(path, [clips[k] for k in order], seed, gap=gap, minutes=minutes)


def asterisk_clips(work: Path, lang: str = "en") -> list[tuple[str, object, str]]:
    """The prompts of Debian's asterisk-core-sounds-LANG (its transcript, core-sounds-LANG.txt)
    in the -wav (English) or -g722 (other languages) package; installed, or fetched with
    apt-get download into `work`."""
    from tests.conversations import ffmpeg_decode

    kind = "wav" if lang == "en" else "g722"
    roots = [Path("/usr/share"), work / "deb" / "usr" / "share"]
    def find():
        for root in roots:
            txt = root / "doc" / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz"
            sounds = sorted((root / "asterisk" / "sounds").glob(f"{lang}*/")) if (root / "asterisk" / "sounds").exists() else []
            sounds = [s for s in sounds if next(s.glob(f"*.{kind}"), None)]
            if txt.exists() and sounds:
                return txt, sounds[0]
        return None
    found = find()
    if found is None:
        (work / "deb").mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", f"asterisk-core-sounds-{lang}", f"asterisk-core-sounds-{lang}-{kind}"],
                       cwd=work / "deb", check=True, capture_output=True)
        for deb in (work / "deb").glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(work / "deb")], check=True)
        found = find()
        if found is None:
            raise SystemExit(f"asterisk-core-sounds-{lang}(-{kind}) not found")
    txt, sounds = found
    clips = []
    for line in gzip.open(txt, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        text = text.strip()
        if not sep or line.startswith(";") or not text or "[" in text or "/" in name:
            continue
        path = sounds / f"{name.strip()}.{kind}"
        if path.exists() and re.search(r"[^\W\d_]", text):
            clips.append((path.name, ffmpeg_decode(path, [] if kind == "wav" else ["-f", "g722"]), _repaired(text, lang)))
    return clips


# The Italian transcript lost its accented vowels at the end of words to "?" (the prompts say them).
_ACCENTS_LOST = {"it": ((r"(?<=\s)\?(?=\s)", "è"), (r"\bpu\?", "può"), (r"\bsar\?", "sarà"), (r"\bpi\?", "più"),
                        (r"\bcos\?", "così"))}


def _repaired(text: str, lang: str) -> str:
    for pattern, accented in _ACCENTS_LOST.get(lang, ()):
        text = re.sub(pattern, accented, text)
    return text


def fillets_clips(lang: str) -> list[tuple[str, object, str]]:
    """Fish Fillets' voice-acted dialogue (Debian fillets-ng-data-LANG): every line with its text
    from the levels' dialogs_LANG.lua, both fish, level by level in the scripts' order."""
    from tests.conversations import FILLETS, ffmpeg_decode

    clips = []
    for level in sorted((FILLETS / "script").iterdir()):
        script = level / f"dialogs_{lang}.lua"
        if not script.exists():
            continue
        text = script.read_text(errors="replace")
        for line_id, said in re.findall(r'dialogId\("([^"]+)",\s*"[^"]*",\s*"[^"]*"\)\s*dialogStr\("([^"]*)"\)', text):
            path = FILLETS / "sound" / level.name / lang / f"{line_id}.ogg"
            if path.exists() and said.strip():
                clips.append((path.name, ffmpeg_decode(path), said.strip()))
    if not clips:
        raise SystemExit(f"fillets-ng-data-{lang} not found (apt-get install fillets-ng-data-{lang})")
    return clips


def build(name: str, work: Path, args) -> tuple[Path, str]:
    """The recording `name` in `work` (built once) and its reference text."""
    sidecar = work / f"{name}.json"
    if sidecar.exists():
        data = json.loads(sidecar.read_text())
        if Path(data["path"]).exists():
            return Path(data["path"]), data["reference"]
    work.mkdir(parents=True, exist_ok=True)
    if name == "real_en":
        path = work / "real_en.flac"
        reference = _concat(path, _clips(SHARED / "real_en"), seed=1)
    elif name == "real_zh":
        path = work / "real_zh.flac"
        reference = _concat(path, _clips(SHARED / "real_zh"), seed=2)
    elif name == "radio_en":
        path = work / "radio_en.flac"
        reference = _radio(path, asterisk_clips(work), seed=21, minutes=args.dialog_minutes)
    elif name == "asterisk":
        path = work / "asterisk.flac"
        reference = _concat(path, asterisk_clips(work), seed=3, minutes=args.asterisk_minutes, shuffle=True)
    elif name in OTHER_LANGUAGES and name.startswith("asterisk_"):
        path = work / f"{name}.flac"
        reference = _concat(path, asterisk_clips(work, language_of(name)), seed=OTHER_LANGUAGES[name],
                            minutes=args.asterisk_minutes, shuffle=True)
    elif name in OTHER_LANGUAGES:
        path = work / f"{name}.flac"
        reference = _concat(path, fillets_clips(language_of(name)), seed=OTHER_LANGUAGES[name], gap=(0.2, 1.2),
                            minutes=args.dialog_minutes)
    elif name == "dialog_zh":
        path = work / "dialog_zh.flac"
        reference = _cycle(path, _clips(SHARED / "real_zh"), seed=12, gap=(0.3, 1.5), minutes=args.dialog_minutes)
    elif name in ("long_en", "long_zh"):
        from tests.recordings import build as build_long, load_clips

        path = work / f"{name}.flac"
        clips = load_clips(SHARED / "real_zh") if name == "long_zh" else None
        placed = build_long(path, args.long_minutes, seed=7, clips=clips)
        reference = " ".join(p.text for p in placed)
    elif name in SWITCH:
        path, reference, parts = _switch(work / f"{name}.flac", work, SWITCH[name], args.switch_minutes)
        sidecar.write_text(json.dumps({"path": str(path), "reference": reference, "parts": parts}, ensure_ascii=False))
        return path, reference
    elif name == "mixed_en":
        from tests import longform_kinds as lk

        rec = lk.build_mixed(work, lk.load_clip_set(), args.mixed_minutes, seed=0)
        path, reference = rec.path, " ".join(p.text for p in rec.placed)
    else:
        raise SystemExit(f"unknown recording {name}")
    sidecar.write_text(json.dumps({"path": str(path), "reference": reference}, ensure_ascii=False))
    return path, reference


# Recordings that change language: (language, clips) parts, each --switch-minutes long, in order.
SWITCH = {"switch": ("en", "zh", "fr", "ru")}


def _switch(path: Path, work: Path, languages: Sequence[str], minutes: float) -> tuple[Path, str, list[dict]]:
    """A meeting that changes language: a part in each of `languages` in turn (English, French and
    Russian telephone prompts, Mandarin clips in a dialogue's pace), built as the one-language
    recordings are. Returns the path, the whole reference and the parts (language, start, end,
    reference; seconds)."""
    import numpy as np
    import soundfile as sf

    parts, audio, at = [], [], 0.0
    for k, language in enumerate(languages):
        piece = path.with_name(f"{path.stem}.{k}.{language}.flac")
        if language == "zh":
            reference = _cycle(piece, _clips(SHARED / "real_zh"), seed=30 + k, gap=(0.3, 1.5), minutes=minutes)
        else:
            reference = _concat(piece, asterisk_clips(work, language), seed=30 + k, minutes=minutes, shuffle=True)
        samples, _ = sf.read(str(piece), dtype="float32")
        piece.unlink()
        parts.append({"language": language, "start": round(at, 3), "end": round(at + samples.size / SR, 3),
                      "reference": reference})
        audio.append(samples)
        at += samples.size / SR
    sf.write(str(path), np.concatenate(audio), SR, subtype="PCM_16")
    return path, " ".join(p["reference"] for p in parts), parts


def parts_of(name: str, work: Path) -> list[dict] | None:
    """The language parts of a SWITCH recording (None for the others)."""
    return json.loads((work / f"{name}.json").read_text())["parts"] if name in SWITCH else None


def duration(path: Path) -> float:
    from webui.modules.audio import probe

    return probe(path).duration


# ----------------------------------------------------------------------------- driver

def measure(row: str, audio: Path, work: Path) -> dict:
    out = work / "runs" / f"{audio.stem}.{row}.{os.getpid()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, __file__, "--child", row, str(audio), str(out)]
    started = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if row.startswith("fw"):
        # The child imports webui (offline guard, model path) first, which puts numpy's BLAS on
        # one thread unless told otherwise (webui/__init__.py): a faster-whisper program has
        # OpenBLAS's default, a thread per core, for its feature extraction.
        env["OPENBLAS_NUM_THREADS"] = USER_BLAS_THREADS or str(os.cpu_count() or 1)
        if not row.endswith("+malloc"):
            env["WEBUI_MALLOC"] = "default"
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{row} on {audio.name} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(out.read_text()), "wall": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="asterisk,real_en,real_zh,long_en,mixed_en,radio_en,long_zh,dialog_zh,"
                        "asterisk_fr,dialog_nl",
                        help="recordings, comma-separated")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help="rows, comma-separated: " + ", ".join(ROWS) + ", fw-b1w, fw-b1t, fw-b1m (an fw row + '+malloc': see above)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/lfbench"), help="recordings and run logs")
    parser.add_argument("--asterisk-minutes", type=float, default=18.7)
    parser.add_argument("--long-minutes", type=float, default=20.0)
    parser.add_argument("--mixed-minutes", type=float, default=20.0)
    parser.add_argument("--dialog-minutes", type=float, default=15.0)
    parser.add_argument("--switch-minutes", type=float, default=3.0, help="each language's part of `switch`")
    parser.add_argument("--shifts", default="",
                        help="also run each row once on the recording shifted by these milliseconds (e.g. 7,13,29) "
                             "and print each row's error rate under them: the noise between two rows")
    parser.add_argument("--log", type=Path, help="append every run as a JSON line here (default WORK/log.jsonl)")
    parser.add_argument("--child", nargs=3, metavar=("ROW", "AUDIO", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from webui.offline import enforce_offline

        enforce_offline()
        child(*args.child)
        return

    rows = [r for r in args.rows.split(",") if r]
    shifts = [int(ms) for ms in args.shifts.split(",") if ms]
    names = [n for n in args.only.split(",") if n]
    recordings = {n: build(n, args.work, args) for n in names}
    log = args.log or args.work / "log.jsonl"
    results: dict[tuple[str, str], list[dict]] = {}
    spread: dict[tuple[str, str], list[float]] = {}  # error rates on the shifted copies (--shifts)
    for name in names:  # a recording's rounds back to back (the load changes slowly), rows alternating
        path, reference = recordings[name]
        for rnd in range(args.rounds):
            for row in (rows if rnd % 2 == 0 else rows[::-1]):
                r = scored(measure(row, path, args.work), name, reference, args.work)
                results.setdefault((name, row), []).append(r)
                load = os.getloadavg()[0]
                with open(log, "a") as f:
                    f.write(json.dumps({"recording": name, "row": row, "round": rnd + 1, "load1": load,
                                        **{k: v for k, v in r.items() if k not in ("text", "segments")}}) + "\n")
                print(f"round {rnd + 1} {name:9} {row:12} {r['wall']:7.1f} s  cpu {r['cpu']:7.1f} s  err {r['err']:.2%}  inputs {r['inputs']}"
                      f"  tokens {r['tokens']}  rss {r['rss_mb']:.0f} MB  (load {load:.1f})", flush=True)
        for ms in shifts:  # the same recording a few milliseconds later: each row once
            for row in rows:
                r = scored(measure(row, shifted(path, ms, args.work), args.work), name, reference, args.work)
                spread.setdefault((name, row), []).append(r["err"])
                print(f"shift {ms:3d} ms {name:9} {row:12} err {r['err']:.2%}  inputs {r['inputs']}", flush=True)
    print_table(names, rows, recordings, results)
    if shifts:
        print_spread(names, rows, results, spread, shifts)


def scored(r: dict, name: str, reference: str, work: Path) -> dict:
    """A run's result with its error rate (`err`) and the rate with number words as digits."""
    parts = parts_of(name, work)
    if parts:
        return {**r, "err": switch_error(parts, r["segments"]), "err_digits": switch_error(parts, r["segments"], digits=True)}
    return {**r, "err": error_rate(reference, r["text"], language_of(name)),
            "err_digits": error_rate(reference, r["text"], language_of(name), digits=True)}


def shifted(path: Path, ms: int, work: Path) -> Path:
    """The recording with `ms` milliseconds of silence before it (16 kHz mono FLAC, built once):
    every input then starts and ends a few frames elsewhere, and Whisper's text changes here and
    there. How far an error rate moves under that is the noise a difference between two rows
    has to clear. Built again when the recording is newer (rebuilt at another length)."""
    out = work / "shifted" / f"{path.stem}.{ms}ms.flac"
    if not out.exists() or out.stat().st_mtime < path.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-vn", "-af", f"adelay={ms}:all=1",
                        "-ar", str(SR), "-ac", "1", str(out)], check=True)
    return out


def print_spread(names, rows, results, spread, shifts) -> None:
    """Each row's error rate on the recording as built (its first round) and shifted by each of
    `shifts` ms: the mean and the range. Two rows whose ranges overlap are not told apart by
    this recording."""
    head = f"{'recording':10} {'row':12} {'as built':>9} " + " ".join(f"{f'+{ms} ms':>8}" for ms in shifts) \
        + f" {'mean':>8} {'range':>15}"
    print("\nerror rate under a shift of the whole recording\n" + head + "\n" + "-" * len(head))
    for name in names:
        for row in rows:
            runs, errs = results.get((name, row)), spread.get((name, row))
            if not runs or not errs:
                continue
            errs = [runs[0]["err"]] + errs
            print(f"{name:10} {row:12} " + " ".join(f"{e:8.2%}" for e in errs)
                  + f" {statistics.mean(errs):8.2%} {min(errs):7.2%}-{max(errs):.2%}")


def print_table(names, rows, recordings, results) -> None:
    head = (f"{'recording':10} {'min':>5} {'row':12} {'beam':>4} {'wall s (rounds)':>17} {'median':>7} {'CPU s':>7} "
            f"{'WER/CER':>8} {'digits':>7} {'inputs':>6} {'padded s':>8} {'fed s':>7} {'tokens':>7} {'RSS MB':>7} {'/ours wall':>10} "
            f"{'/ours CPU':>9}")
    print("\n" + head + "\n" + "-" * len(head))
    beams = {"ours": "1*", "ours-acc": "5", "fw-b1": "1", "fw-b1w": "1", "fw-b1t": "1", "fw-b1m": "1", "fw-b5": "5", "fw-seq": "5"}
    for name in names:
        path, _ = recordings[name]
        minutes = duration(path) / 60
        ours = results.get((name, "ours"))
        base = statistics.median(r["wall"] for r in ours) if ours else None
        base_cpu = statistics.median(r["cpu"] for r in ours) if ours else None
        for row in rows:
            runs = results.get((name, row))
            if not runs:
                continue
            med = statistics.median(r["wall"] for r in runs)
            cpu = statistics.median(r["cpu"] for r in runs)
            r = runs[-1]
            beam = beams[row.split("+")[0]]
            ratio = f"{med / base:10.2f} {cpu / base_cpu:9.2f}" if base else ""
            walls = "/".join(f"{x['wall']:.1f}" for x in runs)
            print(f"{name:10} {minutes:5.1f} {row:12} {beam:>4} {walls:>17} "
                  f"{med:7.1f} {cpu:7.1f} {r['err']:8.2%} {r['err_digits']:7.2%} {r['inputs']:6d} {30 * r['inputs']:8d} {r['fed']:7.0f} {r['tokens']:7d} "
                  f"{max(x['rss_mb'] for x in runs):7.0f} {ratio}")
    print("digits: the same error rate with number words 0-10 counted as digits (NUMBER_WORDS); beam: * by "
          "language (greedy, 5 for Japanese and Korean); /ours: median wall (CPU) seconds of the row over "
          "ours (default), above 1: ours is faster; CPU s: user + system seconds of the whole process (less "
          "sensitive to a loaded machine than wall time)")


if __name__ == "__main__":
    main()
