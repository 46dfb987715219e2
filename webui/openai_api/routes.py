"""The routes: GET /v1/models, POST /v1/audio/transcriptions; a job goes through the page's
queue and is waited for asynchronously, and a client that disconnects cancels it."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ..context import AppContext
from ..modules.audio import InputError
from ..modules.jobs import DONE, JobState, LimitError
from .errors import OpenAIError, unauthorized
from .keys import ApiKeys
from .references import known_speakers
from .request import read_options
from .responses import respond
from .upload import read_form

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


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
            diarize = asked.diarize
            if asked.references and diarize is not None:  # their voices, decoded and embedded in a thread
                known = await run_in_threadpool(known_speakers, asked.references, folder / "references")
                diarize = replace(diarize, known=known)
            options = replace(ctx.job_options(model=asked.model, language=asked.language, hotwords=asked.hotwords,
                                              script=asked.script), diarize=diarize, accurate=asked.accurate)
            jid = await run_in_threadpool(ctx.queue.submit, form.path, options, owner=owner, name=form.filename)
        except OpenAIError:  # a bad field (a reference clip ...): the upload goes too
            await run_in_threadpool(shutil.rmtree, form.path.parent, True)
            raise
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
