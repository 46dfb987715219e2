"""Everything that runs ffmpeg: probing, the silence scan and streamed decoding.

ffmpeg is always called with an argument list, never through a shell.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Protocol

import numpy as np

SAMPLE_RATE = 16_000
# Demuxers that read nothing but the bytes of the file itself. Everything else is refused by
# ffmpeg, which checks the probed format against this list before it reads any header: playlists
# (hls, dash, webm_dash_manifest), lists (concat, ffconcat), image sequences (image2), IMF
# compositions, SDP/RTSP and the rest name other files or addresses, and `-protocol_whitelist
# file` cannot stop a local file being named. The refusal comes before any named file is opened,
# so it is the same whether that file exists or not. (mov's external data references stay off:
# its `enable_drefs` defaults to false.)
SAFE_DEMUXERS = (
    "aac", "ac3", "aiff", "amr", "amrnb", "amrwb", "ape", "asf", "au", "avi", "caf", "dsf", "dts", "dtshd", "eac3",
    "flac", "flv", "gsm", "ircam", "loas", "matroska", "mlp", "mov", "mp3", "mpc", "mpc8", "mpeg", "mpegts",
    "nistsphere", "nut", "ogg", "oma", "qcp", "rm", "shn", "sox", "tak", "truehd", "tta", "voc", "w64", "wav",
    "wv", "xwma",
)
# Input options for every ffmpeg/ffprobe call: local files only (no http:, tcp:, ...), and only
# the demuxers above.
INPUT_GUARD = ("-protocol_whitelist", "file", "-format_whitelist", ",".join(SAFE_DEMUXERS))
_NOT_ON_WHITELIST = re.compile(r"\[([\w,]+) @ [^]]*\] Format not on whitelist")
ENVELOPE_HOP = 0.1  # seconds per loudness value kept for the quietest-window fallback
# 320 hops of 100 ms of 16-bit samples: blocks split into whole envelope hops, with no carry.
_READ_BYTES = 320 * 2 * int(ENVELOPE_HOP * SAMPLE_RATE)
_BLOCKS_AHEAD = 16  # decoded blocks (~32 s of audio each) ffmpeg may run ahead of the consumer
_F_SETPIPE_SZ = 1031  # fcntl: Linux pipe buffer size


class InputError(ValueError):
    """The input cannot be transcribed; `str()` names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    path: str
    duration: float
    sample_rate: int
    channels: int
    codec: str


@dataclass(frozen=True)
class Silence:
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class SilenceScan:
    """One pass over the file: its silences and a coarse loudness envelope (dBFS per hop)."""

    silences: tuple[Silence, ...]
    envelope_db: np.ndarray
    duration: float


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise RuntimeError(f"{tool} is not installed (apt-get install ffmpeg)")
    return found


def probe(path: str | Path) -> AudioInfo:
    """Duration and audio stream facts from ffprobe; InputError for anything unusable."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "file not found")
    if p.is_dir():
        raise InputError(path, "is a directory, not a file")
    if p.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    argv = [
        _require("ffprobe"), "-v", "warning", "-print_format", "json",
        "-show_entries", "format=duration:stream=codec_type,codec_name,sample_rate,channels,duration",
        "-select_streams", "a", *INPUT_GUARD, media_arg(p),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=120)
    if proc.returncode != 0:
        if refused := _NOT_ON_WHITELIST.search(proc.stderr):
            raise InputError(path, _refusal(refused.group(1).split(",")[0]))
        detail = proc.stderr.strip().splitlines()[-1:] or ["unknown error"]
        raise InputError(path, f"not a readable audio or video file ({_short(detail[0], p)})")
    if _EXTERNAL_TRACK in proc.stderr:  # ffmpeg did not follow it, but the file is not self-contained
        raise InputError(path, _refusal("external data reference"))
    data = json.loads(proc.stdout or "{}")
    streams = data.get("streams") or []
    if not streams:
        raise InputError(path, "contains no audio stream (not a sound or video recording)")
    stream = streams[0]
    # The audio stream's own length first: a video track may run longer than its sound.
    duration = _float(stream.get("duration")) or _float(data.get("format", {}).get("duration"))
    if duration is None:
        duration = _measure_duration(p)
    if duration <= 0:
        raise InputError(path, "audio stream has zero length")
    return AudioInfo(
        path=str(p),
        duration=duration,
        sample_rate=int(_float(stream.get("sample_rate")) or 0),
        channels=int(stream.get("channels") or 0),
        codec=str(stream.get("codec_name") or ""),
    )


# Formats that name other files or addresses: said so, since a user may not know a .m3u8 is a list.
_REFERENCING = frozenset("concat dash hls image2 imf rtp rtsp sdp webm_dash_manifest".split())
_EXTERNAL_TRACK = "Skipped opening external track"  # mov/mp4 with a data reference to another file


def _refusal(demuxer: str) -> str:
    if demuxer in _REFERENCING:
        return (f"refused: a {demuxer} file is a playlist, list or sequence that names other files or "
                "addresses; upload the recording itself")
    if demuxer == "external data reference":
        return "refused: its audio is kept in another file (an external data reference); upload the recording itself"
    return f"not a readable audio or video file (the {demuxer} format is not accepted)"


def media_arg(path: Path) -> str:
    """The path as ffmpeg must see it: absolute, so a name starting with '-' is never read as
    an option and one like 'concat:x' or 'http:x' is never read as a protocol."""
    return str(path.absolute())


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _short(message: str, path: Path) -> str:
    # ffmpeg repeats the path in its messages; the caller already names the file.
    return message.replace(media_arg(path), "").replace(str(path), "").strip(" :") or "unknown error"


def _measure_duration(path: Path) -> float:
    """Containers without a duration header (raw streams, some webm): count decoded samples."""
    samples = 0
    for block in _pcm_blocks(path):
        samples += block.size
    return samples / SAMPLE_RATE


def dies_with_us(argv: list[str]) -> list[str]:
    """`argv` run so that the child is killed when the thread that started it dies, `kill -9` of
    the process included: Linux's parent-death signal, set by util-linux's setpriv before it execs
    the command. A child that writes to a file rather than a pipe otherwise outlives a killed
    server: an ffmpeg still encoding a player copy into the `.part` file that the restarted
    server starts writing again (two writers, one file), or still decoding into a spool.
    Where setpriv is missing or too old for --pdeathsig (util-linux before 2.33; not Linux), the
    command as it is."""
    return [*_pdeathsig_prefix(), *argv]


@functools.lru_cache(maxsize=1)
def _pdeathsig_prefix() -> tuple[str, ...]:
    """setpriv's prefix for `dies_with_us`, tried once: an old setpriv that does not know the
    option must not fail every decode."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv is None:
        return ()
    prefix = (setpriv, "--pdeathsig", "KILL", "--")
    try:
        probe = shutil.which("true") or sys.executable
        works = subprocess.run([*prefix, probe], stdin=subprocess.DEVNULL, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        works = False
    return prefix if works else ()


def _decode_argv(path: Path, extra_filters: str = "", output: str = "pipe:1") -> list[str]:
    filters = "aresample=16000" + (f",{extra_filters}" if extra_filters else "")
    return [
        _require("ffmpeg"), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info", *INPUT_GUARD, "-i", media_arg(path),
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-af", filters,
        "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "-acodec", "pcm_s16le", output,
    ]


def to_float(samples: np.ndarray) -> np.ndarray:
    """16-bit PCM as the float32 the models take (one pass; 1/32768 is exact, so the values are
    those of dividing)."""
    return np.multiply(samples, np.float32(1 / 32768), dtype=np.float32)


def _pcm_blocks(path: Path, extra_filters: str = "", stderr_sink: list[str] | None = None) -> Iterator[np.ndarray]:
    """Decode to 16 kHz mono int16, yielding blocks as they arrive (bounded memory).

    A thread reads the pipe into a short queue, so ffmpeg decodes the next blocks while the
    caller works on this one: with the caller reading the pipe itself, ffmpeg stalled on the
    full 64 KiB pipe for the whole of the caller's work on each block (the decode took 2–3×
    a plain ffmpeg run)."""
    proc = subprocess.Popen(_decode_argv(path, extra_filters), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = stderr_sink if stderr_sink is not None else []
    reader = threading.Thread(target=_drain, args=(proc.stderr, lines), daemon=True)
    reader.start()
    assert proc.stdout is not None
    _grow_pipe(proc.stdout)
    ahead: queue.Queue[bytes | None] = queue.Queue(maxsize=_BLOCKS_AHEAD)
    stop = threading.Event()
    pump = threading.Thread(target=_pump, args=(proc.stdout, ahead, stop), daemon=True)
    pump.start()
    leftover = b""
    try:
        while (chunk := ahead.get()) is not None:
            chunk = leftover + chunk if leftover else chunk
            usable = len(chunk) - len(chunk) % 2
            leftover = chunk[usable:]
            if usable:
                yield np.frombuffer(chunk, dtype="<i2", count=usable // 2)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        pump.join(timeout=5)
        reader.join(timeout=5)
    if proc.returncode not in (0, -9):
        tail = [ln for ln in lines if ln.strip()][-1:] or ["decoder failed"]
        raise InputError(path, f"could not decode audio ({_short(tail[0], path)})")


def _pump(stream: IO[bytes], ahead: queue.Queue, stop: threading.Event) -> None:
    """Pipe → queue until EOF (then None); gives up when the consumer has stopped."""
    try:
        while not stop.is_set():
            chunk = stream.read(_READ_BYTES)
            while not stop.is_set():
                try:
                    ahead.put(chunk or None, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not chunk:
                return
    except (OSError, ValueError):  # the pipe closed under us (the consumer stopped and killed ffmpeg)
        if not stop.is_set():
            ahead.put(None)


def _grow_pipe(stream: IO[bytes]) -> None:
    """A 1 MiB pipe buffer (Linux) lets ffmpeg write a whole block without waiting for a read."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, 1 << 20)
    except (ImportError, OSError):
        pass  # other systems, or a lower pipe-max-size: the queue still decouples the two


def _drain(stream: IO[bytes] | None, lines: list[str]) -> None:
    if stream is None:
        return
    for raw in iter(stream.readline, b""):
        lines.append(raw.decode("utf-8", "replace").rstrip())
        if len(lines) > 100_000:  # silencedetect lines are kept separately; cap the rest
            del lines[:50_000]


_SILENCE_START = re.compile(r"silence_start:\s*(-?[\d.]+)")
_SILENCE_END = re.compile(r"silence_end:\s*(-?[\d.]+)")


def parse_silences(lines: Iterable[str], duration: float) -> list[Silence]:
    """Pair ffmpeg silencedetect's start/end lines; an open silence runs to the end (the
    reference that sample_scan.SampleScan is checked against)."""
    silences: list[Silence] = []
    start: float | None = None
    for line in lines:
        if m := _SILENCE_START.search(line):
            start = max(0.0, float(m.group(1)))
        elif (m := _SILENCE_END.search(line)) and start is not None:
            silences.append(Silence(start, min(float(m.group(1)), duration)))
            start = None
    if start is not None and start < duration:
        silences.append(Silence(start, duration))
    return silences


class PcmFile(Protocol):
    """An open regular file that ffmpeg appends 16 kHz int16 samples to (the run's spool)."""

    def fileno(self) -> int: ...

    def written(self) -> None:
        """ffmpeg has appended samples through the descriptor: take them into account."""


def _decode_to_file(path: Path, fd: int, while_running: Callable[[], bool] | None = None) -> None:
    """ffmpeg writes the samples straight into `fd`: no pipe and no Python between the decoder
    and the disk. Through a pipe, ffmpeg's small writes and our reads cost almost as much again
    as an MP3 decode (measured on a 150 min MP3: 4.6 s against 2.6 s for the decode alone).
    `while_running` is called until ffmpeg exits (it returns False when it found nothing to do)."""
    lines: list[str] = []
    argv = dies_with_us(_decode_argv(path, output=f"pipe:{fd}"))  # a file, not a pipe: see dies_with_us
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            pass_fds=(fd,))
    reader = threading.Thread(target=_drain, args=(proc.stderr, lines), daemon=True)
    reader.start()
    try:
        while proc.poll() is None:
            if while_running is None or not while_running():
                time.sleep(0.02)
    finally:
        if proc.poll() is None:  # the caller's work failed: stop the decoder too
            proc.kill()
        proc.wait()
        reader.join(timeout=5)
    if proc.returncode != 0:
        tail = [ln for ln in lines if ln.strip()][-1:] or ["decoder failed"]
        raise InputError(path, f"could not decode audio ({_short(tail[0], path)})")


def scan_silences(path: str | Path, noise_db: float = -30.0, min_silence: float = 1.2,
                  into: PcmFile | None = None) -> SilenceScan:
    """One decode pass: the silences (as ffmpeg's silencedetect finds them) and a 100 ms
    loudness envelope, both from the samples read behind the decoder (sample_scan.py). The
    samples go `into` the caller's spool, so the run never decodes the file a second time."""
    from .sample_scan import SampleScan

    with contextlib.ExitStack() as stack:
        target = into if into is not None else stack.enter_context(tempfile.TemporaryFile(prefix="longform-scan-"))
        scan = SampleScan(target.fileno(), os.fstat(target.fileno()).st_size, noise_db, min_silence)
        _decode_to_file(Path(path), target.fileno(), scan.read_whole_hops)
        if into is not None:
            into.written()
        scan.read_rest()
    duration = scan.samples / SAMPLE_RATE
    if duration <= 0:
        raise InputError(path, "audio stream decodes to zero samples")
    return SilenceScan(tuple(scan.silences()), scan.envelope_db(), duration)


def decode_into(path: str | Path, into: PcmFile | Callable[[np.ndarray], None]) -> None:
    """Decode the whole file into a spool (a resumed run's), or hand each int16 block to a callable."""
    if callable(into):
        for block in _pcm_blocks(Path(path)):
            into(block)
        return
    _decode_to_file(Path(path), into.fileno())
    into.written()


def stream_ranges(path: str | Path, ranges: Iterable[tuple[float, float]]) -> Iterator[np.ndarray]:
    """One sequential decode, sliced on the fly into the given (start, end) ranges.

    Ranges must be sorted and non-overlapping; only the current range is held in memory.
    """
    p = Path(path)
    blocks = _pcm_blocks(p)
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = 0  # absolute sample index of buffer[0]
    exhausted = False
    try:
        for start, end in ranges:
            first, last = int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE))
            while buffer_start + buffer.size < last and not exhausted:
                block = next(blocks, None)
                if block is None:
                    exhausted = True
                    break
                block = to_float(block)
                buffer = np.concatenate([buffer, block]) if buffer.size else block
                # Drop what lies before this range so memory stays at one range plus one block.
                if first > buffer_start:
                    drop = min(first - buffer_start, buffer.size)
                    buffer = buffer[drop:]
                    buffer_start += drop
            lo = max(0, first - buffer_start)
            hi = max(lo, min(buffer.size, last - buffer_start))
            yield buffer[lo:hi].copy()
            if last > buffer_start:
                drop = min(last - buffer_start, buffer.size)
                buffer = buffer[drop:]
                buffer_start += drop
    finally:
        blocks.close()


def decode(path: str | Path, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Decode one range whole (tests and short clips; long files go through stream_ranges)."""
    stop = end if end is not None else probe(path).duration
    return next(stream_ranges(path, [(start, stop)]))


MEDIA_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .m4a .aac .ogg .oga .opus .wma .aif .aiff .amr .webm .mp4 .m4v .mkv .mov .avi .mpg .mpeg .ts".split()
)


def list_media(folder: Path) -> list[Path]:
    """Audio and video files directly inside `folder`, by name. Symbolic links are skipped:
    the folder was checked against the allowed roots, a link inside it could point anywhere."""
    return sorted((p for p in folder.iterdir()
                   if not p.is_symlink() and p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS),
                  key=lambda p: p.name.lower())
