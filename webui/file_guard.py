"""Gradio's file route serves whatever lies in its allowed folders to any login that names the
path. Two of those folders hold users' data: the results folder (one unguessable folder per set of
downloads) and the upload folder (each user's recordings, which the page's player plays). This
ASGI middleware lets a login fetch from them only what is its own; an admin may fetch anything.
Everything else (the page's own assets) goes to Gradio untouched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse

FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")


def requested_file(path: str) -> Path | None:
    """The server path a file-route URL names (decoded already), or None for other routes."""
    for prefix in FILE_ROUTES:
        if path.startswith(prefix):
            named = path[len(prefix):]
            return Path(os.path.abspath(named)) if named else None
    return None


class OwnFilesOnly:
    def __init__(self, app, ctx, user_of: Callable[[Request], str | None]) -> None:
        self.app, self.ctx, self.user_of = app, ctx, user_of

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            target = requested_file(scope["path"])
            if target is not None and not self.allowed(Request(scope), target):
                return await PlainTextResponse("Not found", status_code=404)(scope, receive, send)
        return await self.app(scope, receive, send)

    def allowed(self, request: Request, target: Path) -> bool:
        user = self.user_of(request)
        if user is None:
            return True  # not logged in: Gradio's own login check answers
        if user in self.ctx.admins:
            return True
        try:
            resolved = target.resolve()
        except OSError:
            return False
        results = self.ctx.results_dir
        if resolved.is_relative_to(results):
            parts = resolved.relative_to(results).parts
            return bool(parts) and self.ctx.download_owner(parts[0]) == user
        uploads = self.ctx.settings.upload_root()
        if resolved.is_relative_to(uploads):
            # Gradio also keeps its own copies of page outputs here, under content hashes no one can
            # guess without the content; what is known to be someone's stays theirs.
            owners = self.ctx.uploads.owners_of(resolved)
            for path in {str(target), str(resolved)}:
                owners |= self.ctx.history.recording_owners(path)
            return not owners or user in owners
        return True
