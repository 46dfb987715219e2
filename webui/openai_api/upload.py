"""The multipart upload, streamed to a file under the upload folder in chunks (never read
whole into memory), with max_upload_mb enforced as it arrives (413)."""

from __future__ import annotations

import re
import secrets
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import anyio
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from .errors import OpenAIError

_FIELD_LIMIT = 64 * 1024     # bytes of one text field
_FIELDS_LIMIT = 64           # text fields in one request
# known_speaker_references[]: a few seconds of audio as a data URL each, at most 4 of them
REFERENCE_FIELDS = ("known_speaker_references[]", "known_speaker_references")
_REFERENCE_LIMIT = 1_400_000  # bytes of one (base64: about 1 MB of audio, 10 s of 16 kHz WAV thrice over)
_REFERENCES_LIMIT = 4
_FORM_OVERHEAD = 1024 * 1024 + _REFERENCES_LIMIT * _REFERENCE_LIMIT  # headers and fields beyond the file
_WRITE_CHUNK = 1024 * 1024   # buffered before each write to disk (in a thread)


@dataclass
class Form:
    fields: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None  # the uploaded file on disk
    filename: str = ""
    size: int = 0

    def get(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[-1] if values else default

    def all(self, *names: str) -> list[str]:
        return [v for name in names for v in self.fields.get(name, [])]


def safe_name(filename: str) -> str:
    """The client's file name for History: its last path part, printable, at most 200 characters."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return name[:200] or "audio"


def _disk_name(name: str) -> str:
    stem = re.sub(r"[^\w.-]+", "_", Path(name).stem)[:80].strip("._") or "audio"
    suffix = Path(name).suffix
    return stem + (suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,10}", suffix) else "")


async def read_form(request: Request, folder: Path, max_bytes: int,
                    check: Callable[[Form], None] = lambda form: None) -> Form:
    """Parse a multipart body as it arrives: text fields into memory (64 KiB each), the one
    `file` part into a new folder under `folder`, in chunks. OpenAIError 413 past `max_bytes`
    of file data, 400 for a malformed body; `check(form)` runs on the fields sent before the
    file, so a bad request is refused before its upload is stored. The caller owns the file."""
    import python_multipart
    from python_multipart.multipart import parse_options_header

    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise OpenAIError(400, "The body must be multipart/form-data with the audio in the 'file' field.")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes + _FORM_OVERHEAD:
        raise _too_large(max_bytes)

    form = Form()
    state = {"name": "", "file": False, "data": bytearray(), "header": b"", "value": b"", "disposition": b"",
             "ended": False}
    pending = bytearray()
    errors: list[OpenAIError] = []
    out = None
    target: Path | None = None

    def fail(error: OpenAIError) -> None:
        if not errors:
            errors.append(error)

    def on_part_begin() -> None:
        state.update(name="", file=False, data=bytearray(), disposition=b"")

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["header"].lower() == b"content-disposition":
            state["disposition"] = state["value"]
        state["header"] = state["value"] = b""

    def on_headers_finished() -> None:
        _, options = parse_options_header(state["disposition"])
        state["name"] = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            if state["name"] != "file" or form.filename:
                fail(OpenAIError(400, "Send one file, in the 'file' field.", param="file"))
                return
            form.filename = safe_name(options[b"filename"].decode("utf-8", "replace"))
            state["file"] = True
        elif sum(len(v) for v in form.fields.values()) >= _FIELDS_LIMIT:
            fail(OpenAIError(400, "Too many form fields."))
        elif state["name"] in REFERENCE_FIELDS and len(form.all(*REFERENCE_FIELDS)) >= _REFERENCES_LIMIT:
            fail(OpenAIError(400, f"At most {_REFERENCES_LIMIT} known_speaker_references.",
                             param="known_speaker_references"))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if errors:
            return
        if state["file"]:
            form.size += end - start
            if form.size > max_bytes:
                fail(_too_large(max_bytes))
                return
            pending.extend(data[start:end])
        else:
            state["data"].extend(data[start:end])
            if len(state["data"]) > _field_limit(state["name"]):
                fail(_too_long(state["name"]))

    def on_end() -> None:
        state["ended"] = True

    def on_part_end() -> None:
        if not state["file"] and state["name"] and not errors:
            form.fields.setdefault(state["name"], []).append(bytes(state["data"]).decode("utf-8", "replace"))

    parser = python_multipart.MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_end": on_end,
    })
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except python_multipart.exceptions.FormParserError:
                raise OpenAIError(400, "The multipart body is malformed.") from None
            if errors:
                raise errors[0]
            if form.filename and out is None:  # the file part has begun
                check(form)  # the fields sent before the file
                target = folder / secrets.token_hex(8) / _disk_name(form.filename)
                await run_in_threadpool(target.parent.mkdir, parents=True, exist_ok=True)
                out = await anyio.open_file(target, "wb")
                form.path = target
            if out is not None and len(pending) >= _WRITE_CHUNK:
                await out.write(bytes(pending))
                pending.clear()
        try:
            parser.finalize()
        except python_multipart.exceptions.FormParserError:
            state["ended"] = False
        if errors:
            raise errors[0]
        if not state.get("ended"):
            raise OpenAIError(400, "The multipart body is cut short (no closing boundary).")
        if out is not None and pending:
            await out.write(bytes(pending))
    except BaseException:
        if out is not None:
            await out.aclose()
            out = None
        if target is not None:
            await run_in_threadpool(shutil.rmtree, target.parent, True)
        raise
    finally:
        if out is not None:
            await out.aclose()
    if form.path is None:
        raise OpenAIError(400, "No audio: send the recording in the 'file' field.", param="file")
    return form


def _field_limit(name: str) -> int:
    return _REFERENCE_LIMIT if name in REFERENCE_FIELDS else _FIELD_LIMIT


def _too_long(name: str) -> OpenAIError:
    if name in REFERENCE_FIELDS:
        return OpenAIError(400, f"A known_speaker_references clip is over {_REFERENCE_LIMIT / 1e6:g} MB as a data URL; "
                                "send 2-10 s of the voice (16 kHz mono WAV, or a compressed format).",
                           param="known_speaker_references")
    return OpenAIError(400, f"Form field {name[:40]!r} is too long.", param=name[:40])


def _too_large(max_bytes: int) -> OpenAIError:
    return OpenAIError(413, f"The file is larger than this server's limit of {max_bytes / 1e6:g} MB.",
                       param="file", code="file_too_large")


