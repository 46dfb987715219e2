"""Bounded disk per user (issue 16, item 5): uploads no job uses are removed within the hour, each
user has an upload quota on the page's upload route, and the upload area is never a batch root."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from tests.test_api import start_server
from webui.context import AppContext
from webui.modules import housekeeping

HOUR = 3600


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_uploads_no_job_uses_are_removed_within_the_hour(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    for name in ("old-unused", "old-used", "new-unused"):
        (uploads / name).mkdir(parents=True)
        (uploads / name / "a.wav").write_bytes(b"x" * 1000)
    _age(uploads / "old-unused" / "a.wav", 55 * 60)
    _age(uploads / "old-used" / "a.wav", 5 * HOUR)
    (tmp_path / "settings.json").write_text(f'{{"upload_dir": "{uploads}", "results_dir": "{tmp_path / "r"}"}}')
    ctx = AppContext.create(tmp_path / "settings.json", str(tmp_path / "h.db"))
    job = ctx.history.create_job("a.wav", str(uploads / "old-used" / "a.wav"), "m", {}, status="done")
    ctx.housekeeping(daily=False)
    assert not (uploads / "old-unused").exists()            # nobody's job: gone
    assert (uploads / "old-used" / "a.wav").exists()        # a job in History still plays it
    assert (uploads / "new-unused" / "a.wav").exists()      # just uploaded, the job may come yet
    assert ctx.history.get(job) is not None
    assert housekeeping.ORPHAN_SECONDS <= HOUR - 600         # checked every 10 minutes: within the hour


def test_each_user_has_an_upload_quota_on_the_page_route(tmp_path: Path) -> None:
    logins = tmp_path / "logins"
    logins.write_text("ann:ann-Pw-0001-a\nbob:bob-Pw-0002-b\n")
    server = start_server(tmp_path / "srv", "--auth-file", str(logins), settings={"upload_quota_gb": 0.0001})
    try:
        def session(user: str, password: str) -> httpx.Client:
            client = httpx.Client(base_url=server.url, timeout=60)
            assert client.post("/login", data={"username": user, "password": password}).status_code == 200
            return client

        bob, ann = session("bob", "bob-Pw-0002-b"), session("ann", "ann-Pw-0001-a")
        blob = os.urandom(60_000)
        first = bob.post("/gradio_api/upload", files={"files": ("a.wav", blob)})
        assert first.status_code == 200, first.text
        second = bob.post("/gradio_api/upload", files={"files": ("b.wav", blob)})
        assert second.status_code == 413 and "quota of 0.0001 GB" in second.text, second.text
        assert ann.post("/gradio_api/upload", files={"files": ("c.wav", blob)}).status_code == 200  # ann's own share
        Path(first.json()[0]).unlink()  # housekeeping removed bob's file: room again
        assert bob.post("/gradio_api/upload", files={"files": ("d.wav", blob)}).status_code == 200
    finally:
        server.stop()
