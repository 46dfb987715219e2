"""API keys: who a Bearer token belongs to."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..context import LOCAL

API_USER = "api"  # owner of a job sent with a key that names no user, on a server with logins


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


