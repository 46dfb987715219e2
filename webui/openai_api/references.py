"""`known_speaker_names[]` and `known_speaker_references[]`, as OpenAI's diarizing model and
speaches take them: up to 4 names, each with a short clip of that voice as a data URL
(`data:audio/wav;base64,...`). The names are checked with the other fields (before the upload
is stored); the clips are decoded later, in a thread, through the guarded audio reader, and
become the job's known speakers. Everything here comes from a visitor: bad input is a 400 that
names the field, never a traceback."""

from __future__ import annotations

import base64
import binascii
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..modules.diarize.known import KnownSpeaker
from ..modules.voice_profiles import ProfileError, clean_name, voice_of_file
from .errors import OpenAIError
from .upload import REFERENCE_FIELDS, Form

log = logging.getLogger(__name__)

NAME_FIELDS = ("known_speaker_names[]", "known_speaker_names")
MAX_KNOWN = 4                 # OpenAI's limit
MAX_REFERENCE_SECONDS = 12.0  # OpenAI asks for 2-10 s; a little slack for a clip cut loosely
_DATA_URL = re.compile(r"data:(?:audio|video|application)/[\w.+-]{1,40}(?:;[\w.+-]{1,40}=[\w.+-]{1,40})*;base64,",
                       re.ASCII)


@dataclass(frozen=True)
class Reference:
    name: str
    audio: bytes


def read_references(form: Form) -> tuple[Reference, ...]:
    """The names and their clips' bytes (OpenAIError 400 naming the bad field)."""
    names, urls = form.all(*NAME_FIELDS), form.all(*REFERENCE_FIELDS)
    if not names and not urls:
        return ()
    if len(names) != len(urls):
        raise OpenAIError(400, f"known_speaker_names[] has {len(names)} name(s) but known_speaker_references[] has "
                               f"{len(urls)} clip(s); send one clip per name.", param="known_speaker_names")
    if len(names) > MAX_KNOWN:
        raise OpenAIError(400, f"At most {MAX_KNOWN} known speakers, not {len(names)}.", param="known_speaker_names")
    references, seen = [], set()
    for i, (name, url) in enumerate(zip(names, urls)):
        try:
            name = clean_name(name)
        except ProfileError as exc:
            raise OpenAIError(400, f"known_speaker_names[{i}]: {exc}", param="known_speaker_names") from None
        if name.casefold() in seen:
            raise OpenAIError(400, f"known_speaker_names[{i}]: {name!r} is given twice.", param="known_speaker_names")
        seen.add(name.casefold())
        references.append(Reference(name, _audio_of(url.strip(), i)))
    return tuple(references)


def _audio_of(url: str, i: int) -> bytes:
    prefix = _DATA_URL.match(url)
    if prefix is None:
        raise OpenAIError(400, f"known_speaker_references[{i}] must be a data URL of audio "
                               "(data:audio/wav;base64,...).", param="known_speaker_references")
    try:
        data = base64.b64decode(url[prefix.end():], validate=True)
    except (binascii.Error, ValueError):
        raise OpenAIError(400, f"known_speaker_references[{i}] is not valid base64.",
                          param="known_speaker_references") from None
    if not data:
        raise OpenAIError(400, f"known_speaker_references[{i}] is empty.", param="known_speaker_references")
    return data


def known_speakers(references: tuple[Reference, ...], folder: Path) -> tuple[KnownSpeaker, ...]:
    """Each clip's voice (blocking: run it in a thread). The clips are written to a private
    temporary folder under `folder` only while they are read."""
    if not references:
        return ()
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="references-", dir=folder))
    try:
        known = []
        for i, ref in enumerate(references):
            path = scratch / f"reference-{i}"  # no name or extension from the visitor
            path.write_bytes(ref.audio)
            known.append(KnownSpeaker.of(ref.name, _voice(path, i)))
        return tuple(known)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _voice(path: Path, i: int):
    label = f"known_speaker_references[{i}]"
    try:
        return voice_of_file(path, label, max_seconds=MAX_REFERENCE_SECONDS).centroid
    except ProfileError as exc:
        raise OpenAIError(400, str(exc).replace(f"The clip {label}", label), param="known_speaker_references") from None
    except Exception:
        log.exception("reading %s failed", label)
        raise OpenAIError(500, f"{label} could not be processed (see the server log).", type_="server_error",
                          param="known_speaker_references") from None
