"""HTTP API beside the Gradio page: GET /api/health, POST /api/deep_cleanup, GET /metrics
(Prometheus) and, given the app's context, the OpenAI-compatible /v1/audio/transcriptions and
/v1/models (the openai_api package).

The FastAPI app carries these routes and has the Gradio Blocks mounted at "/", so Gradio's own
API (gradio_client, /gradio_api/...) keeps working unchanged. With logins, /api/* and /metrics
take the same user names and passwords as HTTP Basic credentials, or an API key as a Bearer
token; /v1/* takes API keys only (required once there are logins or keys).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict
from typing import Callable, Sequence

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from .modules import gpu
from .modules.engines import EngineError, loaded_engine
from .modules.jobs import JobQueue

Credentials = Sequence[tuple[str, str]]


def memory_dict(stats: gpu.MemoryStats) -> dict:
    data = asdict(stats)
    data["fragmentation"] = stats.fragmentation
    return data


def deep_cleanup_json(queue: JobQueue) -> dict:
    """What the Deep GPU cleanup button and POST /api/deep_cleanup both run and show."""
    report, note = queue.deep_cleanup()
    return {
        "freed_bytes": int(report.freed_bytes),
        "before": memory_dict(report.before),
        "after": memory_dict(report.after),
        "note": note,
    }


def health_json(queue: JobQueue, requested_device: str = "auto") -> dict:
    engine = loaded_engine()
    if engine is not None:
        device = engine.device
    else:
        try:
            device = gpu.resolve_device(requested_device)
        except EngineError as exc:
            device = f"unavailable ({exc})"
    return {
        "status": "ok",
        "model_loaded": engine is not None,
        "model": engine.name if engine is not None else None,
        "device": device,
        "memory": memory_dict(gpu.memory_stats()),
        "oom_backoffs": gpu.oom_event_count(),  # batches halved after running out of GPU memory
        "queue_length": queue.queue_length(),
        "running": queue.busy(),
        "waiting": queue.waiting(),
    }


def _basic_auth(credentials: Credentials | None, api_keys=None):
    """A dependency that accepts any of `credentials` as HTTP Basic, or one of `api_keys`
    (openai_api.ApiKeys) as a Bearer token, and returns the user's name; None when there are no
    credentials (a server without logins)."""
    security = HTTPBasic(auto_error=False)

    def check(request: Request, given: HTTPBasicCredentials | None = Depends(security)) -> str | None:
        if not credentials:
            return None
        header = request.headers.get("authorization", "")
        if api_keys is not None and api_keys.keys and header.lower().startswith("bearer "):
            user = api_keys.user_of(header)
            if user is not None:
                return user
        elif given is not None:
            found = None
            for user, password in credentials:  # every login compared, in constant time each
                user_ok = secrets.compare_digest(given.username.encode(), user.encode())
                password_ok = secrets.compare_digest(given.password.encode(), password.encode())
                if user_ok and password_ok:
                    found = user
            if found is not None:
                return found
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "authentication required",
                            headers={"WWW-Authenticate": "Basic"})

    return check


class _NoAdmins:  # create_app without a context (tests): no login is an admin
    admins: frozenset[str] = frozenset()
    local_admin = True


_NO_ADMINS = _NoAdmins()


def _admin_only(guard, ctx):
    """A dependency for operator actions: the caller must be an admin login (or, without logins,
    the local user of a loopback-only server)."""

    def check(user: str | None = Depends(guard)) -> None:
        allowed = ctx.local_admin if user is None else user in ctx.admins
        if not allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "only an administrator may do this")

    return check


def create_app(blocks, queue: JobQueue, *, device: Callable[[], str] = lambda: "auto",
               auth: Credentials | None = None, allowed_paths: Sequence[str] = (),
               css: str | None = None, theme=None, head: str | None = None, show_error: bool = False,
               max_file_size: int | None = None, ctx=None, api_keys: Sequence = ()) -> FastAPI:
    """The FastAPI app: the API routes first, then the Gradio page mounted at '/'. With `ctx`
    (context.AppContext) the OpenAI-compatible routes too, keyed by `api_keys` (openai_api.ApiKey)."""
    import gradio as gr

    from . import metrics, openai_api

    app = FastAPI(title="Long-form transcription", docs_url=None, redoc_url=None, openapi_url=None)
    keys = openai_api.ApiKeys(api_keys, logins=bool(auth))
    guard = _basic_auth(auth, keys)
    registry = metrics.build_registry(queue)

    @app.get("/api/health", dependencies=[Depends(guard)])
    def health() -> dict:
        return health_json(queue, device())

    operator = _admin_only(guard, ctx if ctx is not None else _NO_ADMINS)

    @app.post("/api/deep_cleanup", dependencies=[Depends(operator)])
    def deep_cleanup() -> dict:
        return deep_cleanup_json(queue)

    @app.get("/metrics", dependencies=[Depends(guard)])
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(registry), media_type=metrics.CONTENT_TYPE)

    if ctx is not None:
        app.include_router(openai_api.router(ctx, keys))

    mounted = gr.mount_gradio_app(
        app, blocks, path="/", auth=list(auth) if auth else None, allowed_paths=list(allowed_paths),
        ssr_mode=False, mcp_server=False, show_error=show_error, css=css, theme=theme, head=head,
        max_file_size=max_file_size,
    )
    # Gradio checks that a file input was uploaded by a user only once the Blocks "launched";
    # mounted, it never is, and a raw call could name any server file (/etc/passwd, /dev/zero).
    blocks.has_launched = True
    return mounted


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 7860, log_level: str = "warning") -> None:
    import uvicorn

    # Short graceful shutdown: open event streams (browser tabs) would otherwise hold Ctrl+C up.
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=2)
