"""Attacks on a server put on a network, each tried THROUGH THE RUNNING SERVER: raw HTTP (Gradio's
upload route and queue API, what the page itself calls), gradio_client, and the browser where it
is a UI path. Two logins, ann (admin) and bob, take turns as attacker and victim.

One server for the module (tests run in file order: the model tests come first, before any job
loads a model), plus two short-lived `python -m webui.server --host 0.0.0.0` processes at the end.
An attack that still succeeds is kept as `xfail(strict=True, raises=AttackSucceeded)`: only the
attack's own success counts as the expected failure, a broken precondition fails loudly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATA, ffmpeg
from tests.test_api import ROOT, Server, free_port, start_server
from tests.test_app_browser import browser, table_rows, upload  # noqa: F401  (browser: a fixture)
from tests.test_security import listener  # noqa: F401  (a fixture)
from webui.modules.history import History

USERS = {"ann": "ann-Pw-7491-x", "bob": "bob-Pw-2385-y"}
ENGLISH = DATA / "english.wav"       # 2.7 s, "1, 2, 3"
FORWARD = DATA / "goforward.wav"     # 2.8 s, "Go forward 10 meters."
MAX_HOURS = 0.01                     # 36 s: the server's longest recording (the page's minimum)
LIMITS = {"max_upload_mb": 1, "max_audio_hours": MAX_HOURS, "max_batch_files": 2, "max_jobs_per_user": 1}
ATTACK_NAMES = ["-rf.wav", "file:/etc/passwd", "concat:{data}/jfk.flac|{data}/jfk.flac", "http://127.0.0.1:{port}/x.wav"]


class AttackSucceeded(AssertionError):
    """Raised only where an attack got through (what an xfail'd test expects until the fix)."""


# --- the server and its visitors ---------------------------------------------------------

@dataclass
class Site:
    server: Server
    root: Path      # the one allowed batch folder
    outside: Path   # a folder under no root
    models: Path    # the settings' models_dir
    marker: Path    # what a crafted model's Python would write
    clips: Path     # recordings made for the limits

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def settings_file(self) -> Path:
        return self.server.workdir / "settings.json"

    @property
    def uploads(self) -> Path:
        return self.server.workdir / "uploads"

    @property
    def results(self) -> Path:
        return self.server.workdir / "results"

    def history(self) -> History:
        return History(self.server.history_path)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("attacks")
    root, outside, models, clips = (work / n for n in ("root", "outside", "models", "clips"))
    for folder in (root, outside, models, clips):
        folder.mkdir()
    shutil.copy(ENGLISH, root / "talk.wav")
    shutil.copy(FORWARD, outside / "secret.wav")
    (root / "link.wav").symlink_to(outside / "secret.wav")          # a file that leads out
    (root / "escape").symlink_to(outside, target_is_directory=True)  # a folder that leads out
    ffmpeg("-i", str(DATA / "two_cities.wav"), "-t", "40", "-ar", "16000", "-ac", "1", str(clips / "long.flac"))
    ffmpeg("-i", str(DATA / "two_cities.wav"), "-t", "30", "-ar", "16000", "-ac", "1", str(clips / "mid.flac"))
    logins = work / "logins"
    logins.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
    logins.chmod(0o600)
    server = start_server(work / "srv", "--auth-file", str(logins), "--admin", "ann",
                          settings={"batch_roots": [str(root)], "models_dir": str(models), **LIMITS})
    yield Site(server, root, outside, models, work / "MARKER", clips)
    server.stop()


class Session:
    """One visitor's HTTP session: the login cookie from POST /login, Gradio's upload route and
    its queue API (join, then read the event stream), as the page itself uses them. Events and
    their inputs are found by elem_id (or label) in /config, so added fields keep their defaults."""

    def __init__(self, url: str, user: str | None = None) -> None:
        self.http = httpx.Client(base_url=url, timeout=120)
        if user is not None:
            response = self.http.post("/login", data={"username": user, "password": USERS[user]})
            assert response.status_code == 200, response.text
        self._config: dict | None = None

    def upload(self, name: str, data: bytes) -> httpx.Response:
        return self.http.post("/gradio_api/upload", files={"files": (name, data)})

    def uploaded(self, name: str, data: bytes) -> str:
        response = self.upload(name, data)
        assert response.status_code == 200, response.text
        return response.json()[0]

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = self.http.get("/config").json()
        return self._config

    def _props(self, component_id: int) -> dict:
        return next((c.get("props", {}) for c in self.config["components"] if c["id"] == component_id), {})

    def _key(self, component_id: int) -> str | None:
        props = self._props(component_id)
        return props.get("elem_id") or props.get("label")

    def _default(self, component_id: int):
        return self._props(component_id).get("value")

    def event(self, elem_id: str | None = None, api_name: str | None = None) -> dict:
        """The server-side event that clicking `elem_id` runs (or the named endpoint)."""
        for dep in self.config["dependencies"]:
            if api_name and dep.get("api_name") == api_name:
                return dep
            if elem_id and dep.get("backend_fn") and any(self._key(t[0]) == elem_id and t[1] == "click"
                                                        for t in dep["targets"]):
                return dep
        raise LookupError(elem_id or api_name)

    def run(self, dep: dict, **values) -> Outcome:
        """Run the event with `values` by input elem_id/label (the others: their defaults)."""
        keys = [self._key(c) for c in dep["inputs"]]
        assert set(values) <= set(keys), (values, keys)  # a renamed field fails here, not silently
        data = [values[k] if k in values else self._default(c) for k, c in zip(keys, dep["inputs"])]
        return Outcome(self.call(dep["id"], data), [self._key(c) for c in dep["outputs"]])

    def call(self, fn: int, data: list) -> dict:
        """The 'process_completed' message of event `fn` run on `data`."""
        session = uuid.uuid4().hex[:12]
        joined = self.http.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn, "session_hash": session,
                                                               "trigger_id": None, "event_data": None})
        assert joined.status_code == 200, joined.text
        with self.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_completed":
                        return message
        raise AssertionError("the event stream ended without a result")


@dataclass
class Outcome:
    message: dict
    outputs: list

    @property
    def ok(self) -> bool:
        return bool(self.message.get("success"))

    @property
    def error(self) -> str:
        return (self.message.get("output") or {}).get("error") or ""

    def __getitem__(self, key: str | int):
        """An output by elem_id/label, or by position."""
        data = self.message["output"]["data"]
        return data[key if isinstance(key, int) else self.outputs.index(key)]


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}


def client(site: Site, user: str):
    from gradio_client import Client

    return Client(site.url, auth=(user, USERS[user]), verbose=False)


def transcribe(site: Site, user: str, path: Path, model: str = "") -> tuple:
    from gradio_client import handle_file

    return client(site, user).predict(handle_file(str(path)), model, "auto", "", True, api_name="/transcribe")


def health(site: Site) -> dict:
    response = httpx.get(f"{site.url}/api/health", auth=("bob", USERS["bob"]), timeout=30)
    assert response.status_code == 200
    return response.json()


def one_line(exc: BaseException) -> str:
    message = str(exc).strip()
    assert "\n" not in message and "Traceback" not in message, message
    return message


# --- the browser ---------------------------------------------------------------------------

def login_page(browser, site: Site, user: str):  # noqa: F811
    """A browser context of its own, logged in through Gradio's login page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(site.url)
    page.locator("input[type=password]").wait_for()  # Gradio's login form, not the app
    page.locator("input[type=text]").fill(user)
    page.locator("input[type=password]").fill(USERS[user])
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#tx-start")
    return context, page


@pytest.fixture(scope="module")
def bob_page(browser, site: Site):  # noqa: F811
    context, page = login_page(browser, site, "bob")
    yield page
    context.close()


@pytest.fixture(scope="module")
def ann_page(browser, site: Site):  # noqa: F811
    context, page = login_page(browser, site, "ann")
    yield page
    context.close()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def field(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


# --- crafted model folders -------------------------------------------------------------------

EVIL_PY = """import os, pathlib
pathlib.Path(os.environ.get("EVIL_MARKER", {marker!r})).write_text("the model folder's code ran")
"""


@pytest.fixture(scope="module")
def tiny_sensevoice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_models import build_tiny_sensevoice

    return build_tiny_sensevoice(tmp_path_factory.mktemp("models") / "tiny-sensevoice")


def make_evil(clean: Path, folder: Path, marker: Path) -> Path:
    """A valid SenseVoice folder whose config asks funasr to import its own evil.py."""
    shutil.copytree(clean, folder)
    (folder / "evil.py").write_text(EVIL_PY.format(marker=str(marker)))
    with (folder / "config.yaml").open("a") as config:
        config.write(f"trust_remote_code: true\nremote_code: {folder / 'evil.py'}\n")
    return folder


# --- 0. no login, no access --------------------------------------------------------------------

def test_nothing_answers_without_a_login(site: Site) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    anonymous = httpx.Client(base_url=site.url, timeout=30)
    assert anonymous.get("/config").status_code == 401
    assert anonymous.post("/gradio_api/upload", files={"files": ("a.wav", b"x")}).status_code == 401
    assert anonymous.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0,
                                                           "session_hash": "x"}).status_code == 401
    assert anonymous.get(f"/gradio_api/file={site.settings_file}").status_code == 401
    assert anonymous.get("/api/health").status_code == 401
    assert anonymous.post("/login", data={"username": "bob", "password": "guess"}).status_code == 400
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(site.url, verbose=False)
    with pytest.raises((AuthenticationError, ValueError), match="Could not login"):
        Client(site.url, auth=("bob", "guess"), verbose=False)


# --- 1. a model path outside the offered list -----------------------------------------------

def test_a_model_outside_the_offered_list_is_refused_and_nothing_loads(site: Site, tmp_path: Path) -> None:
    stray = tmp_path / "stray-model"  # a real-looking model folder, but not under models_dir
    stray.mkdir()
    (stray / "config.yaml").write_text("model: SenseVoiceSmall\n")
    loaded, rows = health(site)["model_loaded"], site.history().count()
    for model in ("/etc", str(site.server.workdir), str(stray), "stray-model", "../stray-model", "org/unlisted"):
        with pytest.raises(Exception) as err:
            transcribe(site, "bob", ENGLISH, model)
        message = one_line(err.value)
        assert "is not offered on this server; choose one of: whisper-base" in message, message
    assert health(site)["model_loaded"] is loaded is False
    assert site.history().count() == rows  # refused before anything was queued


# --- 2. crafted model folders with remote code ------------------------------------------------

def test_an_uploaded_model_folder_with_remote_code_is_refused(site: Site, tiny_sensevoice: Path) -> None:
    """Everything a funasr folder needs, uploaded through Gradio's upload route, with a config.yaml
    that asks funasr to import the uploaded evil.py. Named by its upload path the folder is not
    offered at all; gathered into a folder the server offers (the uploaded bytes, copied under the
    models folder as an operator copies a model in), the remote-code check is what refuses it."""
    bob = Session(site.url, "bob")
    evil_py = bob.uploaded("evil.py", EVIL_PY.format(marker=str(site.marker)).encode())
    parts = {name: bob.uploaded(name, (tiny_sensevoice / name).read_bytes())
             for name in ("model.pt", "bpe.model", "am.mvn", "configuration.json")}
    parts["config.yaml"] = bob.uploaded("config.yaml", ((tiny_sensevoice / "config.yaml").read_text()
                                                        + f"trust_remote_code: true\nremote_code: {evil_py}\n").encode())
    for name, uploaded in parts.items():
        assert Path(uploaded).is_relative_to(site.uploads.resolve()) and Path(uploaded).name == name
    with pytest.raises(Exception) as err:  # by its upload path: not offered
        transcribe(site, "bob", ENGLISH, str(Path(parts["config.yaml"]).parent))
    assert "is not offered on this server" in one_line(err.value)

    folder = site.models / "uploaded-sensevoice"
    folder.mkdir()
    try:
        for name, uploaded in parts.items():
            shutil.copyfile(uploaded, folder / name)
        with pytest.raises(Exception) as err:
            transcribe(site, "bob", ENGLISH, "no-such-model")
        assert "uploaded-sensevoice" in one_line(err.value)  # offered by name: the allow-list lets it through
        with pytest.raises(Exception) as err:
            transcribe(site, "bob", ENGLISH, "uploaded-sensevoice")
        message = one_line(err.value)
        assert "asks to run the model folder's own Python code (remote_code / trust_remote_code)" in message, message
        assert "never runs code that comes with a model" in message
        time.sleep(0.5)
        assert not site.marker.exists(), "the uploaded evil.py ran"
        assert health(site)["model_loaded"] is False
    finally:
        shutil.rmtree(folder)  # the next tests see the offered list without it


def test_an_operator_placed_model_folder_that_asks_to_run_code_fails_clearly(site: Site, tiny_sensevoice: Path,
                                                                            tmp_path: Path, monkeypatch) -> None:
    # Precondition: the crafted folder is a live exploit, funasr on its defaults runs its code.
    from funasr import AutoModel

    proof = tmp_path / "proof"
    monkeypatch.setenv("EVIL_MARKER", str(proof))
    probe = make_evil(tiny_sensevoice, tmp_path / "probe-copy", site.marker)
    import torch

    AutoModel(model=str(probe), device="cpu", disable_update=True, disable_log=True, disable_pbar=True,
              ncpu=torch.get_num_threads())
    assert proof.exists(), "the crafted folder does not run its code even under funasr's defaults"

    make_evil(tiny_sensevoice, site.models / "evil-sensevoice", site.marker)
    with pytest.raises(Exception) as err:
        transcribe(site, "bob", ENGLISH, "no-such-model")
    assert "choose one of: whisper-base, evil-sensevoice." in one_line(err.value)  # it IS offered by name
    with pytest.raises(Exception) as err:
        transcribe(site, "bob", ENGLISH, "evil-sensevoice")
    message = one_line(err.value)
    assert "asks to run the model folder's own Python code" in message, message
    assert "never runs code that comes with a model" in message
    time.sleep(0.5)
    assert not site.marker.exists()
    assert health(site)["model_loaded"] is False


def test_an_operator_placed_model_folder_naming_files_outside_it_is_refused(site: Site, tiny_sensevoice: Path) -> None:
    folder = site.models / "leaky-sensevoice"
    shutil.copytree(tiny_sensevoice, folder)
    conf = json.loads((folder / "configuration.json").read_text())
    conf["file_path_metas"]["tokenizer_conf"]["bpemodel"] = "/etc/passwd"
    (folder / "configuration.json").write_text(json.dumps(conf))
    with pytest.raises(Exception) as err:
        transcribe(site, "bob", ENGLISH, "leaky-sensevoice")
    message = one_line(err.value)
    assert "names '/etc/passwd'" in message and "outside the model folder; refused" in message, message
    assert health(site)["model_loaded"] is False


# --- 3. the operator's settings, edited by a non-admin ----------------------------------------

@pytest.mark.browser
def test_only_the_admin_saves_settings(site: Site, bob_page, ann_page) -> None:
    from playwright.sync_api import expect

    before = site.settings_file.read_bytes()
    page = bob_page
    open_tab(page, "System")
    page.get_by_text("as the administrator set them (read-only)").wait_for()
    for elem in ("sys-roots", "sys-history", "sys-hotwords"):  # values to read, no field to type in
        expect(field(page, elem)).to_be_disabled()
    for button in ("#sys-save", "#sys-cleanup", "#sys-unload"):  # no operator controls at all
        expect(page.locator(button)).to_be_hidden()

    # The same save straight to Gradio's queue API (the event is api_visibility="private": Gradio
    # still runs it for any logged-in session, so the refusal must come from the server's own check).
    bob = Session(site.url, "bob")
    result = bob.run(bob.event("sys-save"), **{"sys-roots": "/", "sys-history": str(site.server.workdir / "stolen.db")})
    assert result.ok and "Not saved: Only an administrator" in result["sys-save-msg"], result.message
    assert site.settings_file.read_bytes() == before
    assert not (site.server.workdir / "stolen.db").exists()
    refused = bob.run(bob.event("batch-start"), **{"batch-folder": "/etc"})  # the roots in use are still the old ones
    assert "is not under an allowed folder" in refused["batch-status"]
    # Operator actions, from the page's own events and over HTTP: the admin's only.
    for event in ("sys-cleanup", "sys-unload"):
        result = bob.run(bob.event(event))
        assert result.ok and "Only an administrator" in result["sys-action"], result.message
    as_bob = httpx.post(f"{site.url}/api/deep_cleanup", auth=("bob", USERS["bob"]), timeout=30)
    assert as_bob.status_code == 403, as_bob.text
    as_ann = httpx.post(f"{site.url}/api/deep_cleanup", auth=("ann", USERS["ann"]), timeout=30)
    assert as_ann.status_code == 200 and "freed_bytes" in as_ann.json()

    # The admin saves from the page; the operator's limits and roots survive the round trip.
    page = ann_page
    open_tab(page, "System")
    expect(page.locator("#sys-save")).to_be_enabled()
    field(page, "sys-hotwords").fill("Kennedy, Boston")
    page.click("#sys-save")
    page.locator("#sys-save-msg").get_by_text("Saved to").wait_for()
    saved = json.loads(site.settings_file.read_text())
    assert saved["hotwords"] == "Kennedy, Boston"
    assert saved["batch_roots"] == [str(site.root)] and saved["models_dir"] == str(site.models)
    assert {k: saved[k] for k in LIMITS} == LIMITS


# --- markup a user sent, shown to another user --------------------------------------------------

MARKUP = "<img src=x onerror=alert(7)><b>bold<b>"


@pytest.mark.browser
def test_markup_a_user_sent_is_shown_as_text_in_the_admins_history(site: Site, ann_page, tmp_path: Path) -> None:
    from gradio_client import handle_file

    named = tmp_path / f"{MARKUP} *x* [l](#e).wav"
    shutil.copy(ENGLISH, named)
    client(site, "bob").predict(handle_file(str(named)), "", "auto", f"{MARKUP} _hot_", True, api_name="/transcribe")
    record = next(r for r in site.history().search(owner="bob") if "onerror" in r.settings["engine"]["hotwords"])
    page = ann_page
    page.reload()
    page.wait_for_selector("#tx-start")
    open_tab(page, "History")
    field(page, "hist-id").fill(str(record.id))
    page.click("#hist-view")
    details = page.locator("#hist-details")
    details.get_by_text(f"Job {record.id}:").wait_for()
    text = details.inner_text()
    assert "<img src=x onerror=alert(7)><b>bold<b> _hot_" in text, text  # the hotwords, as typed
    assert record.file_name in text, (record.file_name, text)           # the name, as uploaded
    for selector in ("img", "b", "a", "em"):  # no element made from what bob sent
        assert page.locator(f"#hist-details {selector}, #hist-table {selector}").count() == 0, selector


# --- 4. another user's History ----------------------------------------------------------------

def anns_job(site: Site) -> int:
    mine = [r for r in site.history().search(owner="ann") if r.file_name == "goforward.wav" and r.status == "done"]
    if not mine:
        text = transcribe(site, "ann", FORWARD)[0]
        assert "forward" in text.lower()
        mine = [r for r in site.history().search(owner="ann") if r.file_name == "goforward.wav"]
    return mine[0].id


@pytest.mark.browser
def test_another_users_history_id_finds_nothing(site: Site, bob_page) -> None:
    job = anns_job(site)
    page = bob_page
    page.reload()
    page.wait_for_selector("#tx-start")
    open_tab(page, "History")
    assert all(row[0] != str(job) for row in table_rows(page, "#hist-table"))  # not listed on opening
    field(page, "hist-text").fill("forward")
    page.click("#hist-search")
    page.locator("#hist-msg").get_by_text("0 job(s) found.").wait_for()
    field(page, "hist-text").fill("")
    page.click("#hist-search")
    page.locator("#hist-msg").get_by_text("job(s) found.").wait_for()
    assert all(row[2] != "goforward.wav" for row in table_rows(page, "#hist-table"))

    field(page, "hist-id").fill(str(job))
    page.click("#hist-view")
    page.locator("#hist-details").get_by_text(f"No job {job} in History.").wait_for()
    assert page.locator("#hist-transcript .tv-line").count() == 0  # no lines of hers shown
    field(page, "hist-id").fill("987654")  # a different message first, so the next one is new
    page.click("#hist-view")
    page.locator("#hist-details").get_by_text("No job 987654 in History.").wait_for()
    field(page, "hist-id").fill(str(job))
    page.click("#hist-delete")
    page.locator("#hist-details").get_by_text(f"No job {job} in History.").wait_for()
    record = site.history().get(job)
    assert record is not None and record.owner == "ann" and "forward" in record.text.lower()

    bob = Session(site.url, "bob")  # the same through the queue API
    shown = bob.run(bob.event("hist-view"), **{"hist-id": str(job)})
    assert shown["hist-details"] == f"No job {job} in History." and "forward" not in json.dumps(shown.message).lower()


def served_paths(message: dict, name: str) -> list[str]:
    """The server paths of the files named `name` in an event's result (what the page links to)."""
    found: list[str] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            path = value.get("path")
            if isinstance(path, str) and Path(path).name == name:
                found.append(path)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(message.get("output"))
    return sorted(set(found))


def test_another_users_transcript_cannot_be_fetched_by_its_download_path(site: Site) -> None:
    job = anns_job(site)
    ann = Session(site.url, "ann")
    shown = ann.run(ann.event("hist-view"), **{"hist-id": str(job)})  # ann opens her job: downloads written
    assert shown.ok and "goforward" in shown["hist-details"], shown.message
    written = sorted(str(p) for p in site.results.rglob("goforward.txt"))
    assert written, "the downloads were not written"
    for path in written:  # in folders no one can guess: not named after the job
        folder = Path(path).parent.name
        # A random token (it may hold the job's digits by chance), not a name built from the job.
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", folder) and folder not in (str(job), f"history-{job}", f"batch-{job}"), folder
    served = served_paths(shown.message, "goforward.txt")  # what ann's page links to (Gradio's copy)
    assert served, f"ann's page got no .txt download: {shown.message}"
    links = written + served
    for link in links:
        own = ann.http.get(f"/gradio_api/file={link}")  # the path is real: its owner reads it
        assert own.status_code == 200 and "forward" in own.text.lower(), (own.status_code, own.text[:200])

    bob = Session(site.url, "bob")  # the other login, with its own session
    for guessed in (site.results / f"history-{job}" / "goforward.txt", site.results / str(job) / "goforward.txt"):
        response = bob.http.get(f"/gradio_api/file={guessed}")
        if response.status_code == 200 and "forward" in response.text.lower():
            raise AttackSucceeded(f"bob read ann's transcript at a guessed path {guessed}: {response.text.strip()!r}")
        assert response.status_code in (403, 404)
    for link in links:  # the real path, as if bob had seen ann's link
        response = bob.http.get(f"/gradio_api/file={link}")
        if response.status_code == 200 and "forward" in response.text.lower():
            raise AttackSucceeded(f"bob read ann's transcript at its real download path {link}: {response.text.strip()!r}")
        assert response.status_code in (403, 404), (response.status_code, response.text[:200])


# --- 5. an oversized upload -------------------------------------------------------------------

@pytest.mark.browser
def test_an_oversized_upload_is_refused_and_the_server_stays_up(site: Site, bob_page, tmp_path: Path) -> None:
    from webui.modules.settings import AppSettings

    bob = Session(site.url, "bob")
    response = bob.upload("big.wav", os.urandom(2_000_000))
    assert response.status_code == 413 and "maximum allowed size of 1000000 bytes" in response.text
    assert not [p for p in site.uploads.rglob("*") if p.is_file() and p.stat().st_size >= 1_000_000]
    assert bob.upload("small.wav", ENGLISH.read_bytes()).status_code == 200  # the limit, not uploads, refused
    assert health(site)["status"] == "ok"
    big = tmp_path / "big.wav"
    big.write_bytes(os.urandom(2_000_000))
    page = bob_page
    open_tab(page, "Transcribe")
    page.locator("#tx-upload input[type=file]").set_input_files([str(big)])
    page.get_by_text("exceed the maximum allowed size").first.wait_for()
    # The default lets a 10-hour 48 kHz stereo WAV (6.9 GB) through.
    assert AppSettings().max_upload_mb >= 7000


# --- 6. a symlink out of a root ---------------------------------------------------------------

@pytest.mark.browser
def test_a_symlink_cannot_lead_a_batch_out_of_its_root(site: Site, bob_page) -> None:
    page = bob_page
    open_tab(page, "Batch")
    status = page.locator("#batch-status")
    field(page, "batch-folder").fill(str(site.root / "escape"))
    page.click("#batch-start")
    status.get_by_text("is not under an allowed folder").wait_for()
    assert str(site.outside) in status.inner_text()  # the link's real target is named
    field(page, "batch-folder").fill(str(site.root))
    page.click("#batch-start")
    status.get_by_text("1 of 1 finished").wait_for(timeout=120_000)
    assert [(r[1], r[2]) for r in table_rows(page, "#batch-table")] == [("talk.wav", "done")]
    names = {r.file_name for r in site.history().search(owner="bob", include_archived=True)}
    assert "talk.wav" in names and not names & {"link.wav", "secret.wav"}


# --- 7. protocol and option names -----------------------------------------------------------

@pytest.mark.browser
def test_protocol_and_option_names_as_the_batch_folder_are_refused(site: Site, bob_page, listener) -> None:  # noqa: F811
    port, hits = listener
    page = bob_page
    open_tab(page, "Batch")
    rows = site.history().count()
    for name in (n.format(port=port, data=DATA) for n in ATTACK_NAMES):
        field(page, "batch-folder").fill(name)
        page.click("#batch-start")
        page.locator("#batch-status").get_by_text(f"folder not found: {name}").wait_for()
    time.sleep(0.3)
    assert hits == []
    assert site.history().count() == rows


def test_protocol_and_option_names_as_the_transcribe_audio_are_refused(site: Site, listener) -> None:  # noqa: F811
    port, hits = listener
    rows = site.history().count()
    names = [n.format(port=port, data=DATA) for n in ATTACK_NAMES]
    api = client(site, "bob")
    for name in names + ["/etc/passwd"]:  # gradio_client with a raw path string
        with pytest.raises(Exception) as err:
            api.predict(name, "", "auto", "", True, api_name="/transcribe")
        assert "input_value" not in str(err.value)  # internals stay hidden with logins
    bob = Session(site.url, "bob")
    endpoint = bob.event(api_name="transcribe")
    for name in names:  # FileData naming them, straight to the queue API
        result = bob.run(endpoint, audio=file_data(name))
        assert not result.ok, result.message  # refused by Gradio (never uploaded) before our handler sees it
        assert "Traceback" not in json.dumps(result.message)
    response = bob.http.get(f"/gradio_api/file=http://127.0.0.1:{port}/x.wav")  # Gradio's file route as a proxy
    assert response.status_code != 200
    time.sleep(0.3)
    assert hits == []
    assert site.history().count() == rows


def test_a_server_file_that_was_never_uploaded_is_refused(site: Site) -> None:
    bob = Session(site.url, "bob")
    endpoint = bob.event(api_name="transcribe")
    found = []
    secret = site.outside / "secret.wav"  # audio outside every root and the uploads
    result = bob.run(endpoint, audio=file_data(str(secret)))
    if result.ok:
        found.append(f"transcribed {secret}: {result['text']!r}")
    result = bob.run(endpoint, audio=file_data("/etc/passwd"))
    assert not result.ok  # not audio either way
    copies = [p for p in site.uploads.rglob("passwd") if p.read_bytes() == Path("/etc/passwd").read_bytes()]
    if copies:
        found.append(f"/etc/passwd copied into the upload cache as {copies[0]}")
    if found:
        raise AttackSucceeded("; ".join(found))


# --- 8. limits --------------------------------------------------------------------------------

@pytest.mark.browser
def test_a_recording_over_the_longest_allowed_is_refused_in_one_line(site: Site, bob_page) -> None:
    long = site.clips / "long.flac"  # 40 s > 36 s
    rows = site.history().count()
    expected = f"this server takes recordings of up to {MAX_HOURS:g} hours."
    with pytest.raises(Exception) as err:
        transcribe(site, "bob", long)
    message = one_line(err.value)
    assert message.startswith("long.flac is ") and message.endswith(expected), message
    page = bob_page
    open_tab(page, "Transcribe")
    upload(page, "#tx-upload", [long])
    page.locator("#tx-progress").get_by_text("Ready · long.flac").wait_for()
    page.click("#tx-start")
    line = page.locator("#tx-progress .error")
    line.get_by_text(expected).wait_for()
    assert line.inner_text().count("\n") == 0
    assert site.history().count() == rows


def test_one_users_queue_limit_leaves_the_other_user_alone(site: Site) -> None:
    from gradio_client import handle_file

    ann = client(site, "ann")
    first = ann.submit(handle_file(str(site.clips / "mid.flac")), "", "en", "", True, api_name="/transcribe")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [r for r in site.history().search(owner="ann", name="mid.flac")
                                               if r.status in ("queued", "running")]:
        time.sleep(0.05)
    with pytest.raises(Exception) as err:
        ann.predict(handle_file(str(ENGLISH)), "", "en", "", True, api_name="/transcribe")
    message = one_line(err.value)
    assert "You already have 1 jobs waiting or running (the limit is 1)" in message, message
    assert [r.status for r in site.history().search(owner="ann", name="mid.flac")] in (["queued"], ["running"])
    text, _, transcript = transcribe(site, "bob", ENGLISH)  # bob is not held by ann's limit
    assert transcript["file"] == "english.wav" and text
    assert "best of times" in first.result(timeout=180)[0].lower()


@pytest.mark.browser
def test_a_batch_over_the_file_limit_is_refused_in_one_line(site: Site, bob_page) -> None:
    page = bob_page
    open_tab(page, "Batch")
    rows = site.history().count()
    field(page, "batch-folder").fill("")
    upload(page, "#batch-files", [ENGLISH, FORWARD, DATA / "1089-134691-0000.flac"])
    page.click("#batch-start")
    page.locator("#batch-status").get_by_text("3 files: a batch on this server takes at most 2. Split it up.").wait_for()
    assert site.history().count() == rows
    bob = Session(site.url, "bob")  # the same through the queue API, with a folder of 3
    folder = site.root / "three"
    folder.mkdir()
    for f in (ENGLISH, FORWARD, DATA / "1089-134691-0000.flac"):
        shutil.copy(f, folder / f.name)
    refused = bob.run(bob.event("batch-start"), **{"batch-folder": str(folder)})
    assert "3 files: a batch on this server takes at most 2." in refused["batch-status"]
    assert site.history().count() == rows


# --- 9. binding beyond loopback -------------------------------------------------------------

def test_binding_beyond_loopback_warns_without_logins_and_keeps_passwords_out_of_ps(tmp_path: Path) -> None:
    """Two real `python -m webui.server --host 0.0.0.0` processes (connected to on 127.0.0.1 only):
    without logins a loud warning, nobody is admin, and the housekeeping timer prunes old uploads
    at start; with --auth-file no warning and no password in the command line."""
    logins = tmp_path / "logins"
    logins.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))

    def launch(name: str, *extra: str):
        work = tmp_path / name
        (work / "uploads" / "old").mkdir(parents=True)
        old, fresh = work / "uploads" / "old" / "old.wav", work / "uploads" / "fresh.wav"
        for f in (old, fresh):
            f.write_bytes(b"x" * 1000)
        os.utime(old, (time.time() - 30 * 86400,) * 2)
        settings = work / "settings.json"
        settings.write_text(json.dumps({"device": "cpu", "history_path": str(work / "history.db"),
                                        "upload_dir": str(work / "uploads"), "results_dir": str(work / "results")}))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for var in ("WEBUI_AUTH", "GRADIO_TEMP_DIR", "WEBUI_SETTINGS"):
            env.pop(var, None)
        port = free_port()
        with open(work / "out", "wb") as out, open(work / "err", "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "webui.server", "--host", "0.0.0.0", "--port", str(port), "--settings",
                 str(settings), *extra], cwd=work, env=env, stdout=out, stderr=err)
        return process, port, work, old, fresh

    def listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    open_, guarded = launch("open"), launch("guarded", "--auth-file", str(logins), "--admin", "ann")
    try:
        for process, port, work, _, _ in (open_, guarded):
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not listening(port):
                assert process.poll() is None, (work / "err").read_text()
                time.sleep(0.2)
            assert listening(port), (work / "err").read_text()

        process, port, work, old, fresh = open_
        out, err = (work / "out").read_text(), (work / "err").read_text()
        assert f"Web UI on http://0.0.0.0:{port}" in out
        assert "WARNING: listening on 0.0.0.0 WITHOUT logins" in err and "Add --auth-file FILE" in err
        anyone = Session(f"http://127.0.0.1:{port}")  # on the network, the local user is no admin
        saved = anyone.run(anyone.event("sys-save"), **{"sys-roots": "/", "sys-history": str(work / "stolen.db")})
        assert "Not saved: Only an administrator" in saved["sys-save-msg"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and old.exists():
            time.sleep(0.1)
        assert not old.exists() and fresh.exists()  # the housekeeping timer ran at start

        process, port, work, _, _ = guarded
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert str(logins).encode() in cmdline
        assert not any(p.encode() in arg for p in USERS.values() for arg in cmdline)
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
        assert not any(p in ps for p in USERS.values())
        out, err = (work / "out").read_text(), (work / "err").read_text()
        assert f"Web UI on http://0.0.0.0:{port}" in out
        assert "WITHOUT logins" not in err and "WARNING: listening" not in err
        assert httpx.get(f"http://127.0.0.1:{port}/config").status_code == 401
    finally:
        for process, *_ in (open_, guarded):
            process.terminate()
        for process, *_ in (open_, guarded):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
