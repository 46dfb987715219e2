"""OpenAI-compatible audio API: POST /v1/audio/transcriptions and GET /v1/models.

What OpenAI's clients send is accepted: multipart `file`, `model`, `language`, `prompt`,
`response_format` (json, text, srt, vtt, verbose_json), `temperature` and
`timestamp_granularities[]`, with a Bearer API key. Differences, by design:

* `model`: one of this server's models (GET /v1/models), or an OpenAI name (whisper-1,
  gpt-4o-transcribe, ...) which means the server's default model; anything else is a 400.
* `prompt` is used as hotwords (biasing words), not as preceding context. `keywords[]` (newer
  clients) is added to them. `temperature` is accepted and ignored (decoding is deterministic).
* `language`: an ISO code or `auto`; zh-CN, zh-TW and zh-HK mean Chinese written in that script.
  The extra field `script` (zh, zh-TW, zh-HK, keep) chooses the Chinese script explicitly and wins.
* verbose_json: segments are the transcript's subtitle lines with their real times. tokens,
  temperature, avg_logprob, compression_ratio and no_speech_prob are the model's (Whisper: those
  of the decode the line came from, tokens the line's own; see transcript.Scores), left out where
  the engine does not report them (FunASR models) or, for tokens, cannot attribute them; never a
  made-up constant. `seek` is left out: inputs are VAD-packed speech decoded in batches, not a
  window sought through the file. Words (`timestamp_granularities[]=word`) are NOT aligned: each
  line's time is shared out among its words in proportion to their length (CJK: one word per
  character), so the first word starts with the line and the last ends with it; the response says
  so in `word_timestamps: "interpolated"`.
* `stream=true` and `diarized_json` are refused (400).

The upload is streamed to a file under the upload folder in chunks (never read whole into
memory), with the server's max_upload_mb enforced as it arrives (413). The job goes through the
same queue as the page and shows in History, owned by the API key's user. The handler waits for
it asynchronously (no worker thread held), and a client that disconnects cancels its job.
Errors have OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from .context import LOCAL, AppContext
from .modules import script as script_mod
from .modules.audio import InputError
from .modules.jobs import DONE, JobState, LimitError
from .modules.transcript import TimedText, Transcript, is_cjk, render

log = logging.getLogger(__name__)

# OpenAI's own transcription models: a client written for OpenAI sends one of these; it means
# the server's default model.
OPENAI_MODELS = frozenset({"whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe",
                           "gpt-4o-mini-transcribe-2025-12-15", "gpt-transcribe"})
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
POLL_SECONDS = 0.25
API_USER = "api"  # owner of a job sent with a key that names no user, on a server with logins

_FIELD_LIMIT = 64 * 1024     # bytes of one text field
_FIELDS_LIMIT = 64           # text fields in one request
_FORM_OVERHEAD = 1024 * 1024  # multipart headers and fields allowed beyond the file itself
_WRITE_CHUNK = 1024 * 1024   # buffered before each write to disk (in a thread)
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")

LANGUAGE_NAMES = {"en": "english", "zh": "chinese", "yue": "cantonese", "ja": "japanese", "ko": "korean",
                  "de": "german", "fr": "french", "es": "spanish", "it": "italian", "pt": "portuguese",
                  "ru": "russian", "nl": "dutch", "ar": "arabic", "hi": "hindi", "pl": "polish", "tr": "turkish",
                  "sv": "swedish", "uk": "ukrainian", "vi": "vietnamese", "id": "indonesian", "th": "thai"}


# --- API keys ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ApiKey:
    key: str
    user: str = ""  # who owns the jobs sent with it; "" : the local user (no logins) or "api"


def parse_api_keys(lines: Iterable[str]) -> list[ApiKey]:
    """`key[:user]` a line or item (blank lines and # comments skipped); ValueError for a bad one.
    A key cannot contain ':'."""
    keys = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, user = line.partition(":")
        key, user = key.strip(), user.strip()
        if len(key) < 8 or any(c.isspace() for c in key):
            raise ValueError(f"an API key must be at least 8 characters without spaces (in {line[:12]!r}…)")
        keys.append(ApiKey(key, user))
    return keys


class ApiKeys:
    """The operator's keys and who each one belongs to."""

    def __init__(self, keys: Sequence[ApiKey] = (), logins: bool = False) -> None:
        self.keys = tuple(keys)
        self.logins = logins

    @property
    def required(self) -> bool:
        """Keys are required once the server has logins or the operator configured keys."""
        return self.logins or bool(self.keys)

    def user_of(self, authorization: str | None) -> str | None:
        """The job owner for an Authorization header; None when it is not accepted."""
        if not self.required:
            return LOCAL
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        found = None
        for entry in self.keys:  # compare with every key, in constant time each
            if secrets.compare_digest(token.encode(), entry.key.encode()):
                found = entry
        if found is None:
            return None
        return found.user or (API_USER if self.logins else LOCAL)


# --- errors -----------------------------------------------------------------------------

class OpenAIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.type, "param": self.param,
                                       "code": self.code}}, status_code=self.status, headers=self.headers)


def unauthorized(required_keys: bool) -> OpenAIError:
    message = ("Incorrect or missing API key: send 'Authorization: Bearer KEY' with a key the operator issued."
               if required_keys else
               "This server has logins but no API keys: the operator issues them with --api-key-file.")
    return OpenAIError(401, message, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


# --- the upload, streamed to disk -----------------------------------------------------------

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
            if len(state["data"]) > _FIELD_LIMIT:
                fail(OpenAIError(400, f"Form field {state['name'][:40]!r} is too long.", param=state["name"][:40]))

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


def _too_large(max_bytes: int) -> OpenAIError:
    return OpenAIError(413, f"The file is larger than this server's limit of {max_bytes / 1e6:g} MB.",
                       param="file", code="file_too_large")


# --- the request's options ----------------------------------------------------------------

@dataclass(frozen=True)
class Asked:
    model: str            # a name from ctx.models() ("" : the default)
    language: str
    script: str
    hotwords: str
    response_format: str
    words: bool


def read_options(ctx: AppContext, form: Form) -> Asked:
    """The job's options from the form fields (OpenAIError 400 naming the bad one)."""
    model = form.get("model").strip()
    offered = [m.name for m in ctx.models()]
    if model in OPENAI_MODELS:
        model = ""
    elif model and model not in offered:
        raise OpenAIError(400, f"The model {model[:80]!r} does not exist on this server; choose one of: "
                               f"{', '.join(offered)} (or whisper-1 for the default).", param="model",
                          code="model_not_found")
    fmt = form.get("response_format", "json").strip().lower() or "json"
    if fmt not in RESPONSE_FORMATS:
        raise OpenAIError(400, f"response_format {fmt[:40]!r} is not supported; use one of "
                               f"{', '.join(RESPONSE_FORMATS)}.", param="response_format")
    if form.get("stream").strip().lower() in ("true", "1"):
        raise OpenAIError(400, "Streaming is not supported; send stream=false.", param="stream")
    temperature = form.get("temperature").strip()
    if temperature:
        try:
            float(temperature)  # accepted and ignored: decoding is deterministic here
        except ValueError:
            raise OpenAIError(400, f"temperature {temperature[:20]!r} is not a number.", param="temperature") from None
    granularities = [g.strip().lower() for g in form.all("timestamp_granularities[]", "timestamp_granularities")]
    for g in granularities:
        if g not in GRANULARITIES:
            raise OpenAIError(400, f"timestamp_granularities {g[:20]!r} must be 'segment' or 'word'.",
                              param="timestamp_granularities")
    language = form.get("language").strip().replace("_", "-")
    chinese = ""
    if language.lower().startswith("zh-"):
        chinese = script_mod.canonical(language)
        if chinese not in script_mod.SCRIPTS:
            raise OpenAIError(400, f"language {language[:20]!r}: use zh, zh-CN, zh-TW or zh-HK.", param="language")
        language = "zh"
    language = language.lower()
    if language and language != "auto" and not _LANGUAGE.match(language):
        raise OpenAIError(400, f"language {language[:20]!r} must be an ISO-639-1 code such as 'en', or 'auto'.",
                          param="language")
    chosen = form.get("script").strip()
    if chosen:
        chinese = script_mod.canonical(chosen)
        if chinese not in script_mod.SCRIPTS:
            raise OpenAIError(400, f"script {chosen[:20]!r} must be one of {', '.join(script_mod.SCRIPTS)}.",
                              param="script")
    hotwords = " ".join(p.strip() for p in [form.get("prompt"), *form.all("keywords[]", "keywords")] if p.strip())
    return Asked(model, language, chinese, hotwords, fmt, "word" in granularities)


# --- responses ----------------------------------------------------------------------------

def words_of(start: float, end: float, text: str) -> list[dict]:
    """A line's words with its time shared out in proportion to their length (not aligned)."""
    tokens = []
    for part in text.split():
        run = ""
        for ch in part:  # CJK: each character a word; others: the run of characters between spaces
            if is_cjk(ch):
                if run:
                    tokens.append(run)
                    run = ""
                tokens.append(ch)
            else:
                run += ch
        if run:
            tokens.append(run)
    total = sum(len(t) for t in tokens)
    words, at, span = [], start, max(0.0, end - start)
    for i, token in enumerate(tokens):
        stop = end if i == len(tokens) - 1 else at + span * len(token) / total
        words.append({"word": token, "start": round(at, 3), "end": round(stop, 3)})
        at = stop
    return words


def verbose_segment(i: int, s: TimedText) -> dict:
    """One line as an OpenAI segment: the model's scores where the engine reported them (see
    transcript.Scores for what they mean for a line), left out where not; never `seek`."""
    segment = {"id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.display_text}
    if s.scores is not None:
        if s.scores.tokens is not None:
            segment["tokens"] = list(s.scores.tokens)
        segment.update(temperature=s.scores.temperature, avg_logprob=s.scores.avg_logprob,
                       compression_ratio=s.scores.compression_ratio, no_speech_prob=s.scores.no_speech_prob)
    return segment


def verbose_json(t: Transcript, with_words: bool) -> dict:
    segments = [verbose_segment(i, s) for i, s in enumerate(t.segments)]
    body = {"task": "transcribe", "language": LANGUAGE_NAMES.get(t.language, t.language or "unknown"),
            "duration": round(t.duration, 3), "text": t.text_itn or t.text, "segments": segments,
            "usage": {"type": "duration", "seconds": round(t.duration, 3)}}
    if with_words:
        # The model's own word times (raw words, before ITN) where the engine gave them; a line
        # without them shares its time out over its words, each marked "interpolated".
        words, kinds = [], set()
        for s in t.segments:
            if s.words:
                words += [w.to_dict() for w in s.words]
                kinds.add("model")
            else:
                words += [{**w, "interpolated": True} for w in words_of(s.start, s.end, s.display_text)]
                kinds.add("interpolated")
        body["words"] = words
        body["word_timestamps"] = kinds.pop() if len(kinds) == 1 else "mixed" if kinds else "model"
    return body


def respond(t: Transcript, fmt: str, with_words: bool) -> Response:
    if fmt == "json":
        return JSONResponse({"text": t.text_itn or t.text, "usage": {"type": "duration", "seconds": round(t.duration, 3)}})
    if fmt == "verbose_json":
        return JSONResponse(verbose_json(t, with_words))
    if fmt == "text":
        return PlainTextResponse((t.text_itn or t.text) + "\n")
    if fmt == "vtt":
        return PlainTextResponse(render(t, "vtt"), media_type="text/vtt")
    return PlainTextResponse(render(t, "srt"))


# --- the routes ---------------------------------------------------------------------------

def router(ctx: AppContext, keys: ApiKeys) -> APIRouter:
    routes = APIRouter()

    def owner_of(request: Request) -> str:
        user = keys.user_of(request.headers.get("authorization"))
        if user is None:
            raise unauthorized(bool(keys.keys))
        return user

    @routes.get("/v1/models")
    def list_models(request: Request) -> Response:
        try:
            owner_of(request)
        except OpenAIError as exc:
            return exc.response()
        return JSONResponse({"object": "list", "data": [_model(m.name) for m in ctx.models()]})

    @routes.get("/v1/models/{name:path}")
    def get_model(name: str, request: Request) -> Response:
        try:
            owner_of(request)
            if name not in [m.name for m in ctx.models()]:
                raise OpenAIError(404, f"The model {name[:80]!r} does not exist on this server.", param="model",
                                  code="model_not_found")
        except OpenAIError as exc:
            return exc.response()
        return JSONResponse(_model(name))

    @routes.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        try:
            return await _transcribe(request, owner_of(request))
        except OpenAIError as exc:
            return exc.response()
        except ClientDisconnect:
            log.info("a client went away during its upload")
            return Response(status_code=499)

    async def _transcribe(request: Request, owner: str) -> Response:
        folder = Path(ctx.settings.upload_dir).resolve() / "api"
        max_bytes = int(ctx.settings.max_upload_mb * 1e6)
        form = await read_form(request, folder, max_bytes, check=lambda f: read_options(ctx, f))
        try:
            asked = read_options(ctx, form)
            options = ctx.job_options(model=asked.model, language=asked.language, hotwords=asked.hotwords,
                                      script=asked.script)
            jid = await run_in_threadpool(ctx.queue.submit, form.path, options, owner=owner, name=form.filename)
        except InputError as exc:
            await run_in_threadpool(shutil.rmtree, form.path.parent, True)
            raise OpenAIError(400, f"Cannot transcribe {form.filename}: {exc.reason}", param="file",
                              code="invalid_file") from None
        except LimitError as exc:
            await run_in_threadpool(shutil.rmtree, form.path.parent, True)
            active = sum(1 for j in ctx.queue.jobs(owner=owner) if not j.finished)
            limit = ctx.queue.limits.max_jobs_per_owner
            if limit and active >= limit:
                raise OpenAIError(429, str(exc), type_="requests", code="rate_limit_exceeded",
                                  headers={"Retry-After": "30"}) from None
            raise OpenAIError(400, str(exc), param="file", code="audio_too_long") from None
        except ValueError as exc:  # a model or script the server refuses
            await run_in_threadpool(shutil.rmtree, form.path.parent, True)
            raise OpenAIError(400, str(exc)) from None
        except RuntimeError as exc:  # the queue is shutting down
            await run_in_threadpool(shutil.rmtree, form.path.parent, True)
            raise OpenAIError(503, f"The server is shutting down ({exc}); try again later.", type_="server_error",
                              headers={"Retry-After": "30"}) from None
        state = await wait_for(request, ctx, jid)
        if state is None:  # the client went away: its job was cancelled
            return Response(status_code=499)
        if state.status != DONE or state.transcript is None:
            if state.error.startswith("Cannot transcribe"):
                raise OpenAIError(400, state.error, param="file", code="invalid_file")
            raise OpenAIError(500, state.error or f"The job ended {state.status}.", type_="server_error",
                              code=f"job_{state.status}")
        return respond(state.transcript, asked.response_format, asked.words)

    return routes


def _model(name: str) -> dict:
    return {"id": name, "object": "model", "created": _STARTED, "owned_by": "local"}


_STARTED = int(time.time())


async def wait_for(request: Request, ctx: AppContext, jid: str, poll: float = POLL_SECONDS) -> JobState | None:
    """The job's final state, polled without holding a thread; None (and the job cancelled)
    when the client disconnects first."""
    while True:
        state = ctx.queue.get(jid)
        if state is None:
            raise OpenAIError(500, "The job was lost (the server forgot it).", type_="server_error")
        if state.finished:
            return state
        if await request.is_disconnected():
            ctx.queue.cancel(jid)
            log.info("job %s cancelled: its API client disconnected", jid)
            return None
        await asyncio.sleep(poll)
