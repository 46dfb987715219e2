"""Logins that survive a restart.

Gradio keeps its login tokens in a dict and names its cookie after a random id, both made anew
at every start, so a restart logs everyone out (in the middle of following a resumed job). Here
the cookie name comes from a secret kept on disk, and the tokens live in a file: both are created
readable by the server's user only (0600), and a token is honoured only while its user is still
one of the logins and for at most `MAX_AGE_DAYS`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path

log = logging.getLogger(__name__)

MAX_AGE_DAYS = 30


def load_secret(path: Path) -> bytes:
    """The server's secret, created on first use (0600); a file others can read is tightened."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s was readable by others; now 0600", path)
            path.chmod(0o600)
        value = path.read_text().strip()
        if len(value) >= 32:
            return value.encode()
        raise RuntimeError(f"{path} does not hold a secret (delete it to make a new one)") from None
    value = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value.encode()


def cookie_id(secret: bytes) -> str:
    """Gradio's cookie-name suffix, the same at every start (from the secret, not guessable)."""
    return hmac.new(secret, b"gradio-cookie-id", hashlib.sha256).hexdigest()[:43]


class LoginSessions(MutableMapping):
    """Gradio's `App.tokens` (token → user name), stored in a 0600 JSON file."""

    def __init__(self, path: Path, users: set[str], max_age_days: float = MAX_AGE_DAYS) -> None:
        self.path = path
        self.users = users
        self.max_age = max_age_days * 86400
        self._lock = threading.Lock()
        self._tokens: dict[str, list] = self._read()

    def _read(self) -> dict[str, list]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("login sessions in %s unreadable (%s): everyone logs in again", self.path, exc)
            return {}
        now = time.time()
        return {t: v for t, v in data.items() if isinstance(v, list) and len(v) == 2 and now - v[1] < self.max_age}

    def _write(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self._tokens, fh)
        os.replace(tmp, self.path)

    def _valid(self, entry: list | None) -> str | None:
        if entry is None:
            return None
        user, issued = entry
        return user if user in self.users and time.time() - issued < self.max_age else None

    def __getitem__(self, token: str) -> str:
        with self._lock:
            user = self._valid(self._tokens.get(token))
        if user is None:
            raise KeyError(token)
        return user

    def __setitem__(self, token: str, user: str) -> None:
        with self._lock:
            self._tokens[token] = [user, time.time()]
            try:
                self._write()
            except OSError as exc:  # the login still works until the next restart
                log.warning("could not keep the login in %s: %s", self.path, exc)

    def __delitem__(self, token: str) -> None:
        with self._lock:
            del self._tokens[token]
            try:
                self._write()
            except OSError as exc:
                log.warning("could not drop the login from %s: %s", self.path, exc)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter([t for t, v in self._tokens.items() if self._valid(v) is not None])

    def __len__(self) -> int:
        return len(list(iter(self)))


def mounted_gradio(app):
    """The Gradio App mounted in the FastAPI `app` (it holds the login tokens)."""
    from starlette.routing import Mount

    return next(r.app for r in app.routes if isinstance(r, Mount) and hasattr(r.app, "tokens"))


def login_of(gradio_app, request) -> str | None:
    """The user a request's Gradio login cookie belongs to; None when it has none."""
    token = (request.cookies.get(f"access-token-{gradio_app.cookie_id}")
             or request.cookies.get(f"access-token-unsecure-{gradio_app.cookie_id}"))
    return gradio_app.tokens.get(token) if token else None


def keep_logins(app, folder: Path, users: set[str]) -> None:
    """Give the Gradio app mounted in `app` (FastAPI) persistent logins kept in `folder`."""
    gradio_app = mounted_gradio(app)
    secret = load_secret(folder / ".webui-secret")
    gradio_app.cookie_id = cookie_id(secret)
    gradio_app.tokens = LoginSessions(folder / ".webui-logins.json", users)
