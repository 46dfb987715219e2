"""The player's copy of a recording: 32 kbit/s mono Opus in WebM (about 14 MB an hour), made
once per job with ffmpeg, in the background, at low priority.

A 3-hour upload may be a gigabyte of WAV or a video; the page never loads it. The copy lives in
the results folder, in a folder of the job's owner registered like any download folder, so the
file route serves it to that owner (and the admin) only, with range requests: the browser
fetches the part it plays. WebM keeps a seek index (cues), so a jump to 2:41:07 is one request.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .audio import INPUT_GUARD, dies_with_us, media_arg

log = logging.getLogger(__name__)

FILE_NAME = "audio.webm"
ENCODE = ("-vn", "-map", "0:a:0", "-ac", "1", "-c:a", "libopus", "-b:a", "32k", "-application", "voip",
          "-f", "webm")
TIMEOUT_SECONDS = 3600.0  # a 12-hour recording encodes in well under that on one core


class ProxyError(RuntimeError):
    """The copy could not be made; str() says why, in a sentence."""


@dataclass(frozen=True)
class Player:
    state: str          # ready | pending | missing | failed
    path: Path | None   # the copy, when ready
    message: str = ""   # for the page, when not ready


def folder_token(job_id: object, created_at: str, file_path: str) -> str:
    """The name of a job's player folder: stable (made once per job), not guessable from the id."""
    digest = hashlib.sha256(f"{job_id}|{created_at}|{file_path}".encode()).hexdigest()[:24]
    return f"player-{job_id}-{digest}"


def make(source: Path, target: Path, timeout: float = TIMEOUT_SECONDS) -> Path:
    """Encode `source` into `target` (written whole, then renamed into place); ProxyError."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ProxyError("ffmpeg is not installed, so the player cannot be prepared.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    nice = [shutil.which("nice"), "-n", "10"] if shutil.which("nice") else []  # transcription comes first
    # killed with the server (kill -9 too): a restarted server makes the copy again into the same file
    argv = dies_with_us([*nice, ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *INPUT_GUARD,
                         "-i", media_arg(source), *ENCODE, str(partial)])
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not partial.exists() or partial.stat().st_size == 0:
            reason = (proc.stderr.strip().splitlines() or ["no audio"])[-1].replace(str(source), source.name)
            raise ProxyError(f"The recording could not be prepared for the player ({reason[:200]}).")
        os.replace(partial, target)
    except subprocess.TimeoutExpired:
        raise ProxyError("Preparing the player took too long; the transcript is still complete.") from None
    except OSError as exc:
        raise ProxyError(f"The player's audio could not be written ({exc.strerror or exc}).") from None
    finally:
        partial.unlink(missing_ok=True)
    return target


class ProxyMaker:
    """Makes the copies one at a time in a background thread; asking again while one is being
    made (another page, a reload) waits for the same one."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="player-audio")
        self._lock = threading.Lock()
        self._work: dict[Path, Future] = {}

    def request(self, source: Path | None, target: Path) -> Player:
        if target.is_file():
            return Player("ready", target)
        with self._lock:
            future = self._work.get(target)
            if future is not None and future.done():
                error = future.exception()
                del self._work[target]
                if error is not None:  # said once; asking again tries again
                    return Player("failed", None, str(error))
                if target.is_file():
                    return Player("ready", target)
            if source is None or not source.is_file():
                return Player("missing", None, "The recording is no longer on the server, so there is nothing to "
                                               "play; the transcript and its downloads are complete.")
            if target not in self._work:
                self._work[target] = self._pool.submit(make, source, target)
        return Player("pending", None, "Preparing the audio for the player…")

    def wait(self, target: Path, timeout: float) -> None:
        with self._lock:
            future = self._work.get(target)
        if future is not None:
            try:
                future.result(timeout)
            except Exception:  # reported by the next request()
                pass


MAKER = ProxyMaker()
