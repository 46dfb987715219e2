"""The real server (python -m webui.app) on a free loopback port: /api/health, /api/deep_cleanup
and Gradio's own transcription API through gradio_client."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DATA
from webui.modules.history import History

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    workdir: Path
    history_path: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(workdir: Path, *extra: str, settings: dict | None = None, timeout: float = 90.0) -> Server:
    """`python -m webui.app` in `workdir` (its settings, history, uploads and results all live there)."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings_path = workdir / "settings.json"
    history_path = workdir / "history.db"
    base = {"device": "cpu", "history_path": str(history_path), "upload_dir": str(workdir / "uploads"),
            "results_dir": str(workdir / "results")}
    settings_path.write_text(json.dumps({**base, **(settings or {})}))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WEBUI_SETTINGS": str(settings_path)}
    env.pop("GRADIO_TEMP_DIR", None)
    log_path = workdir / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "webui.app", "--host", "127.0.0.1", "--port", str(port), *extra],
        cwd=workdir, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", process, workdir, history_path, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"server did not answer within {timeout} s:\n{server.log()}")


def get_json(url: str, method: str = "GET", headers: dict | None = None) -> dict:
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["content-type"].startswith("application/json")
        return json.loads(response.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = start_server(tmp_path_factory.mktemp("api-server"))
    yield srv
    srv.stop()


def test_health_reports_model_device_memory_and_queue(server: Server) -> None:
    health = get_json(f"{server.url}/api/health")
    assert health["status"] == "ok"
    assert health["device"] == "cpu"  # from the settings file
    assert isinstance(health["model_loaded"], bool)
    assert health["queue_length"] == 0 and health["running"] is False
    assert health["oom_backoffs"] == 0  # no GPU, nothing ever halved
    assert {"allocated", "reserved", "peak", "free", "total"} <= set(health["memory"])


def test_deep_cleanup_returns_bytes_freed_and_memory_before_and_after(server: Server) -> None:
    result = get_json(f"{server.url}/api/deep_cleanup", method="POST")
    assert isinstance(result["freed_bytes"], int) and result["freed_bytes"] >= 0
    for key in ("before", "after"):
        assert {"allocated", "reserved", "peak", "free", "device"} <= set(result[key])
    with pytest.raises(urllib.error.HTTPError) as err:  # it changes state, so GET is refused
        get_json(f"{server.url}/api/deep_cleanup")
    assert err.value.code in (404, 405)  # falls through to the Gradio mount: not served


def test_gradio_client_transcribes_jfk(server: Server) -> None:
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False)
    assert "/transcribe" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    text, srt, transcript = client.predict(handle_file(str(DATA / "jfk.flac")), "", "auto", "", True,
                                           api_name="/transcribe")
    assert "ask not what your country can do for you" in text.lower()
    assert srt.startswith("1\n00:00:")
    assert transcript["file"] == "jfk.flac" and transcript["segments"]
    health = get_json(f"{server.url}/api/health")
    assert health["model_loaded"] is True and health["queue_length"] == 0
    done = History(server.history_path).search(status="done")
    assert [r.file_name for r in done] == ["jfk.flac"]  # API jobs land in History too


def test_gradio_client_asks_for_speaker_labels_and_a_bad_count_is_one_line(server: Server) -> None:
    from gradio_client import Client, handle_file

    client = Client(server.url, verbose=False)
    _, srt, transcript = client.predict(handle_file(str(DATA / "jfk.flac")), "", "auto", "", True, "", "auto",
                                        api_name="/transcribe")
    assert {s.get("speaker") for s in transcript["segments"]} == {"Speaker 1"}  # one voice, every line labelled
    assert "Speaker 1:" in srt
    with pytest.raises(Exception, match="whole number from 1 to 20"):
        client.predict(handle_file(str(DATA / "jfk.flac")), "", "auto", "", True, "", "0", api_name="/transcribe")


def test_gradio_client_asks_for_the_accurate_mode(server: Server) -> None:
    """The endpoint's tenth input picks the accurate mode for that job (its stored options)."""
    from gradio_client import Client, handle_file

    from webui.modules.options import options_from_record

    client = Client(server.url, verbose=False)
    text, _, _ = client.predict(handle_file(str(DATA / "goforward.wav")), "", "auto", "", True, "", "", "", "", True,
                                api_name="/transcribe")
    assert text.strip()
    newest = max(History(server.history_path).search(status="done"), key=lambda r: r.id)
    assert newest.file_name == "goforward.wav" and options_from_record(newest.settings).accurate is True


def test_bad_upload_gives_a_clear_error_and_the_server_stays_up(server: Server, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    bogus = tmp_path / "not_audio.wav"
    bogus.write_text("definitely not a recording\n" * 20)
    before = History(server.history_path).count()
    client = Client(server.url, verbose=False)
    with pytest.raises(Exception, match="not a readable audio or video file"):
        client.predict(handle_file(str(bogus)), "", "auto", "", True, api_name="/transcribe")
    assert get_json(f"{server.url}/api/health")["status"] == "ok"
    assert History(server.history_path).count() == before


def test_api_routes_take_the_auth_credentials() -> None:
    """--auth guards /api/* with HTTP Basic (checked in-process on the same app factory)."""
    import gradio as gr
    from fastapi.testclient import TestClient

    from webui.api import create_app
    from webui.modules.jobs import JobQueue

    with gr.Blocks() as blocks:
        gr.Markdown("x")
    app = create_app(blocks, JobQueue(), device=lambda: "cpu", auth=[("ann", "s3cret")])
    client = TestClient(app)
    assert client.get("/api/health").status_code == 401
    wrong = base64.b64encode(b"ann:nope").decode()
    assert client.get("/api/health", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    right = base64.b64encode(b"ann:s3cret").decode()
    response = client.post("/api/deep_cleanup", headers={"Authorization": f"Basic {right}"})
    assert response.status_code == 403  # a login, but no admin: operator actions are refused
    assert client.get("/api/health", headers={"Authorization": f"Basic {right}"}).json()["status"] == "ok"


def test_cli_documents_host_port_and_auth() -> None:
    from webui.server import build_parser, parse_auth

    parser = build_parser()
    text = parser.format_help()
    for flag in ("--host", "--port", "--auth", "--settings", "--history"):
        assert flag in text
    args = parser.parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7860)  # loopback unless asked otherwise
    assert parse_auth(["ann:pa:ss"]) == [("ann", "pa:ss")]
    with pytest.raises(Exception, match="user:password"):
        parse_auth(["nopassword"])


def test_starting_the_app_reaches_nothing_off_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Build and start the real app in-process (lifespan included) and record every connection
    and name lookup: none may leave loopback (no analytics, version check or CDN)."""
    from fastapi.testclient import TestClient

    from tests.conftest import _is_loopback

    attempts: list = []
    guarded_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def recording_connect(self, address):
        if not _is_loopback(address):
            attempts.append(address)
        return guarded_connect(self, address)

    def recording_getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in (None, "", "localhost", "127.0.0.1", "::1", "testserver") and not str(name).startswith("127."):
            attempts.append(name)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-tmp"))  # restored after the test
    settings_path = tmp_path / "settings.json"
    settings_path.write_text(json.dumps({"upload_dir": str(tmp_path / "uploads"),
                                         "results_dir": str(tmp_path / "results")}))

    from webui.server import create_server

    app, ctx = create_server(settings_path, history_path=str(tmp_path / "h.db"))
    try:
        with TestClient(app) as client:  # runs Gradio's startup events
            assert client.get("/").status_code == 200
            assert client.get("/config").status_code == 200
            assert client.get("/api/health").json()["queue_length"] == 0
            time.sleep(1.0)  # room for any background thread (analytics, version check) to try
    finally:
        ctx.queue.shutdown()
    assert attempts == []
    assert ctx.history.path == tmp_path / "h.db"  # --history overrides the settings file


@pytest.mark.slow
def test_a_server_killed_mid_job_resumes_it_on_restart(tmp_path: Path) -> None:
    """kill -9 while a job runs; the next start finishes it from its checkpoint, keeping the
    windows already done (their text is the start of the final transcript)."""
    from gradio_client import Client, handle_file

    from tests.recordings import build, load_clips

    recording = tmp_path / "meeting.flac"
    build(recording, 6, seed=3, clips=load_clips())  # over one 5-minute window: it has a short first one
    workdir = tmp_path / "srv"
    server = start_server(workdir)
    history = History(server.history_path)
    try:
        Client(server.url, verbose=False).submit(handle_file(str(recording)), "", "en", "", False,
                                                 api_name="/transcribe")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (history.count() and history.checkpoint(1)[1]):
            time.sleep(0.1)
        head, windows = history.checkpoint(1)
        assert windows, "no window was checkpointed"
    finally:
        server.process.kill()  # SIGKILL: no shutdown code runs
        server.process.wait(10)
    assert history.get(1).status == "running"
    first_text = " ".join(p[2] for r in windows[0]["results"] for p in r["pieces"])
    server = start_server(workdir)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and history.get(1).status != "done":
            time.sleep(0.2)
        record = history.get(1)
        assert record.status == "done", server.log()
        assert "resuming 1 unfinished job" in server.log()
        assert first_text and record.text.startswith(first_text.split(".")[0])
        assert history.checkpoint(1) == (None, [])
    finally:
        server.stop()
