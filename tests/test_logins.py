"""Logins survive a restart (issue 16, item 6): the cookie a user got before the restart still
opens the page after it; the secret and the sessions file are readable by the server's user only."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx

from tests.test_api import start_server
from webui.logins import LoginSessions, load_secret


def _logged_in(url: str, cookies) -> bool:
    response = httpx.get(f"{url}/gradio_api/login_check", cookies=cookies, timeout=30)
    return response.status_code == 200


def test_a_login_cookie_still_works_after_a_restart(tmp_path: Path) -> None:
    logins = tmp_path / "logins"
    logins.write_text("ann:ann-Pw-1234-k\n")
    args = ("--auth-file", str(logins))
    server = start_server(tmp_path / "srv", *args)
    try:
        session = httpx.Client(base_url=server.url, timeout=30)
        assert session.post("/login", data={"username": "ann", "password": "ann-Pw-1234-k"}).status_code == 200
        cookies = dict(session.cookies)
        assert _logged_in(server.url, cookies)
        assert not _logged_in(server.url, {name: "forged" for name in cookies})
    finally:
        server.stop()
    for name in (".webui-secret", ".webui-logins.json"):
        mode = (tmp_path / "srv" / name).stat().st_mode
        assert not mode & (stat.S_IRWXG | stat.S_IRWXO), (name, oct(mode))
    server = start_server(tmp_path / "srv", *args)  # the same folder, a new process
    try:
        assert _logged_in(server.url, cookies)
    finally:
        server.stop()
    logins.write_text("bob:bob-Pw-1234-k\n")  # ann's login removed: her cookie no longer opens the page
    server = start_server(tmp_path / "srv", *args)
    try:
        assert not _logged_in(server.url, cookies)
    finally:
        server.stop()


def test_sessions_expire_and_a_readable_secret_is_tightened(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    first = load_secret(secret)
    secret.chmod(0o644)
    assert load_secret(secret) == first and not secret.stat().st_mode & 0o077
    sessions = LoginSessions(tmp_path / "l.json", {"ann"}, max_age_days=0)
    sessions["t"] = "ann"
    assert sessions.get("t") is None  # expired at once
    kept = LoginSessions(tmp_path / "m.json", {"ann"})
    kept["t"] = "ann"
    assert LoginSessions(tmp_path / "m.json", {"ann"}).get("t") == "ann"
