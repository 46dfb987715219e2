"""Each user's share of the upload area: Gradio's upload route takes any number of files from any
login, so a user could fill the disk for everyone. This middleware knows whose each upload is
(the login cookie), refuses an upload that would take the user's files on disk past
`upload_quota_gb` (413, before the body is read), and remembers the stored paths so housekeeping
and the quota see them. Files a user's jobs use are counted too, until housekeeping removes them."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse

UPLOAD_ROUTE = "/gradio_api/upload"


class UploadLedger:
    """Which user uploaded which stored file (in memory: after a restart old files count for no
    one, and housekeeping removes those no job uses within the hour)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, set[Path]] = {}

    def add(self, user: str, paths: list[Path]) -> None:
        with self._lock:
            self._files.setdefault(user, set()).update(paths)

    def owners_of(self, path: Path) -> set[str]:
        """Who uploaded the file at `path` (resolved)."""
        with self._lock:
            owned = [(user, list(files)) for user, files in self._files.items()]
        return {user for user, files in owned if any(f == path or f.resolve() == path for f in files)}

    def bytes_of(self, user: str) -> int:
        with self._lock:
            files = list(self._files.get(user, ()))
        total, gone = 0, []
        for path in files:
            try:
                total += path.stat().st_size
            except OSError:
                gone.append(path)
        if gone:
            with self._lock:
                self._files.get(user, set()).difference_update(gone)
        return total


class UploadQuota:
    """Plain ASGI middleware (BaseHTTPMiddleware would wrap every response, the event streams and
    /v1's disconnect detection included); it touches nothing but POST /gradio_api/upload."""

    def __init__(self, app, ledger: UploadLedger, user_of: Callable[[Request], str | None],
                 quota_bytes: Callable[[], int]) -> None:
        self.app, self.ledger, self.user_of, self.quota_bytes = app, ledger, user_of, quota_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != UPLOAD_ROUTE:
            return await self.app(scope, receive, send)
        user = self.user_of(Request(scope))  # headers and cookies only: the body stays unread
        if user is None:  # not logged in: Gradio answers 401 itself
            return await self.app(scope, receive, send)
        incoming = int(Headers(scope=scope).get("content-length") or 0)
        used, quota = self.ledger.bytes_of(user), self.quota_bytes()
        if used + incoming > quota:
            refusal = JSONResponse({"detail": f"Your uploads on this server would exceed your quota of "
                                              f"{quota / 1e9:g} GB ({used / 1e9:.2f} GB stored). Wait until your "
                                              "jobs have finished and old uploads are removed."}, status_code=413)
            return await refusal(scope, receive, send)
        status: list[int] = []
        body: list[bytes] = []

        async def keep_answer(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, keep_answer)
        if status == [200]:
            try:
                stored = [Path(p) for p in json.loads(b"".join(body)) if isinstance(p, str)]
            except (ValueError, TypeError):
                stored = []
            self.ledger.add(user, stored)
