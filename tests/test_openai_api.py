"""The OpenAI-compatible API (/v1/audio/transcriptions, /v1/models) on the real server, driven
by the official `openai` package and by plain `curl -F`; one server for the module, with
logins and API keys (so every request carries a key), and the option parsing in-process."""

from __future__ import annotations

import base64
import io
import json
import secrets
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import DATA
from tests.test_api import Server, start_server
from webui.modules.history import History

openai = pytest.importorskip("openai")

KEY = "sk-test-ann-" + "0" * 12
OTHER_KEY = "sk-test-bob-" + "1" * 12
JFK = DATA / "jfk.flac"
GO = DATA / "goforward.wav"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("openai-server")
    (workdir / "logins").write_text("ann:ann-password\nbob:bob-password\n")
    (workdir / "keys").write_text(f"# key:user\n{KEY}:ann\n{OTHER_KEY}:bob\n")
    srv = start_server(workdir, "--auth-file", str(workdir / "logins"), "--api-key-file", str(workdir / "keys"),
                       settings={"max_upload_mb": 20, "max_jobs_per_user": 1})
    yield srv
    srv.stop()


def client(server: Server, key: str = KEY, timeout: float = 120.0):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=timeout)


def curl(server: Server, *args: str, key: str = KEY) -> tuple[int, str]:
    """curl -F ... against /v1/audio/transcriptions: (HTTP status, body)."""
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {key}", *args,
                          f"{server.url}/v1/audio/transcriptions"], capture_output=True, text=True, timeout=120)
    body, _, code = out.stdout.rpartition("\n")
    return int(code), body


def uploads_left(server: Server) -> list[Path]:
    return [p for p in (server.workdir / "uploads" / "api").rglob("*") if p.is_file()]


def test_models_lists_the_allow_list_and_needs_a_key(server: Server) -> None:
    assert [m.id for m in client(server).models.list()] == ["whisper-base"]
    assert client(server).models.retrieve("whisper-base").id == "whisper-base"
    with pytest.raises(openai.NotFoundError):
        client(server).models.retrieve("gpt-5")
    with pytest.raises(openai.AuthenticationError) as err:
        client(server, key="sk-wrong-key-000000").models.list()
    assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"


def test_every_response_format_through_the_openai_client(server: Server) -> None:
    api = client(server)
    with open(JFK, "rb") as f:
        result = api.audio.transcriptions.create(file=f, model="whisper-1", language="en", temperature=0.2)
    assert "ask not what your country can do for you" in result.text.lower()
    assert result.usage.seconds == pytest.approx(11.0, abs=0.1)

    with open(JFK, "rb") as f:
        text = api.audio.transcriptions.create(file=f, model="whisper-base", language="en", response_format="text")
    assert isinstance(text, str) and "ask not what your country" in text.lower()

    with open(JFK, "rb") as f:
        srt = api.audio.transcriptions.create(file=f, model="whisper-1", language="en", response_format="srt")
    assert srt.startswith("1\n00:00:") and " --> " in srt and "country" in srt

    with open(JFK, "rb") as f:
        vtt = api.audio.transcriptions.create(file=f, model="whisper-1", language="en", response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:") and "country" in vtt

    with open(JFK, "rb") as f:
        verbose = api.audio.transcriptions.create(file=f, model="whisper-1", language="en",
                                                  response_format="verbose_json",
                                                  timestamp_granularities=["word", "segment"])
    assert verbose.language == "english" and verbose.duration == pytest.approx(11.0, abs=0.1)
    assert "ask not what your country" in verbose.text.lower()
    segments = verbose.segments
    assert segments and all(s.start < s.end <= 11.1 for s in segments)
    assert [s.id for s in segments] == list(range(len(segments)))
    words = verbose.words
    assert " ".join(w.word for w in words) == " ".join(" ".join(s.text for s in segments).split())
    # The model's own word times (Whisper's alignment), not the line's time shared out.
    assert verbose.model_extra["word_timestamps"] == "model"
    assert all(not (w.model_extra or {}).get("interpolated") for w in words)
    assert all(a.start <= b.start for a, b in zip(words, words[1:])) and all(w.start <= w.end for w in words)
    assert segments[0].start - 0.5 <= words[0].start and words[-1].end <= segments[-1].end + 0.5
    shared = [round(s.start + (s.end - s.start) * k / 4, 3) for s in segments for k in range(4)]
    assert sum(w.start in shared for w in words) < len(words) / 2  # not an even split of each line

    records = History(server.history_path).search(name="jfk.flac", limit=10)
    assert len(records) == 5 and {r.owner for r in records} == {"ann"}  # the key's user owns them
    assert {r.status for r in records} == {"done"}
    assert uploads_left(server)  # kept like the page's uploads (housekeeping prunes them)


def test_curl_multipart_with_prompt_script_and_words(server: Server) -> None:
    code, body = curl(server, "-F", f"file=@{GO}", "-F", "model=whisper-1", "-F", "language=en",
                      "-F", "prompt=Forward Meters", "-F", "script=zh-TW", "-F", "response_format=verbose_json",
                      "-F", "timestamp_granularities[]=word", key=OTHER_KEY)
    assert code == 200, body
    data = json.loads(body)
    assert "forward" in data["text"].lower() and data["segments"] and data["words"]
    record = History(server.history_path).search(name="goforward.wav", limit=1)[0]
    assert record.owner == "bob" and record.status == "done"
    assert record.settings["script"] == "zh-TW"  # the extra field reaches the job's options
    assert record.settings["engine"]["hotwords"] == "Forward Meters"  # prompt = hotwords
    code, body = curl(server, "-F", f"file=@{GO}", "-F", "model=whisper-1", "-F", "language=en",
                      "-F", "response_format=text")
    assert code == 200 and "forward" in body.lower()


def test_errors_have_openais_shape_and_status(server: Server, tmp_path: Path) -> None:
    api = client(server)
    history = History(server.history_path)
    before = history.count()
    with pytest.raises(openai.BadRequestError) as err:
        api.audio.transcriptions.create(file=("a.wav", GO.read_bytes()), model="large-v9")
    assert err.value.body["param"] == "model" and err.value.body["code"] == "model_not_found"
    assert set(err.value.response.json()["error"]) == {"message", "type", "param", "code"}

    with pytest.raises(openai.BadRequestError) as err:
        api.audio.transcriptions.create(file=("a.wav", GO.read_bytes()), model="whisper-1",
                                        response_format="docx")
    assert err.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as err:
        api.audio.transcriptions.create(file=("a.wav", GO.read_bytes()), model="whisper-1",
                                        response_format="diarized_json", extra_body={"min_speakers": "3",
                                                                                     "max_speakers": "2"})
    assert "above max_speakers" in err.value.body["message"]

    with pytest.raises(openai.BadRequestError) as err:
        api.audio.transcriptions.create(file=("notes.wav", b"definitely not audio\n" * 50), model="whisper-1")
    assert err.value.body["code"] == "invalid_file" and "not a readable audio" in err.value.body["message"]

    with pytest.raises(openai.APIStatusError) as err:  # Content-Length over the limit: refused unread
        api.audio.transcriptions.create(file=("big.wav", io.BytesIO(bytes(21_000_000))), model="whisper-1")
    assert err.value.status_code == 413 and err.value.body["code"] == "file_too_large"

    code, body = curl(server, "-F", "model=whisper-1")  # no file
    assert code == 400 and json.loads(body)["error"]["param"] == "file"
    code, body = curl(server, "-F", f"file=@{GO}", "-F", "language=Klingon")
    assert code == 400 and json.loads(body)["error"]["param"] == "language"
    code, body = curl(server, "-F", f"file=@{GO}", key="sk-not-a-key-0000")
    assert code == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"

    # Chunked (no Content-Length): the limit is enforced as the upload streams in.
    import httpx

    def body_chunks():
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        for _ in range(21_000_000 // 65536 + 1):
            yield bytes(65536)
        yield b"\r\n--xyz--\r\n"

    response = httpx.post(f"{server.url}/v1/audio/transcriptions", content=body_chunks(), timeout=60,
                          headers={"content-type": "multipart/form-data; boundary=xyz",
                                   "authorization": f"Bearer {KEY}"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "file_too_large"
    headers = {"content-type": "multipart/form-data; boundary=xyz", "authorization": f"Bearer {KEY}"}
    cut_short = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + GO.read_bytes()
    response = httpx.post(f"{server.url}/v1/audio/transcriptions", content=cut_short, headers=headers, timeout=60)
    assert response.status_code == 400 and "cut short" in response.json()["error"]["message"]
    response = httpx.post(f"{server.url}/v1/audio/transcriptions", content=b"garbage", headers=headers, timeout=60)
    assert response.status_code == 400 and "malformed" in response.json()["error"]["message"]
    assert history.count() == before  # nothing refused reached History
    assert not [p for p in uploads_left(server) if p.name in ("a.wav", "notes.wav", "big.wav")]


def test_a_client_that_disconnects_cancels_its_job(server: Server, tmp_path: Path) -> None:
    """Also: while it runs, its user's next request is over the per-user job limit (429)."""
    from tests.recordings import build, load_clips

    recording = tmp_path / "meeting.wav"
    build(recording, 3.5, seed=5, clips=load_clips())
    boundary = secrets.token_hex(8)
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="language"\r\n\r\nen\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="meeting.wav"\r\n'
            f'Content-Type: audio/wav\r\n\r\n').encode() + recording.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    host, port = server.url.removeprefix("http://").split(":")
    history = History(server.history_path)
    sock = socket.create_connection((host, int(port)), timeout=30)
    try:
        sock.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: Bearer {KEY}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 60
        record = None
        while time.monotonic() < deadline:
            found = history.search(name="meeting.wav", limit=1)
            record = found[0] if found else None
            if record is not None and record.status == "running":
                break
            time.sleep(0.1)
        assert record is not None and record.status == "running", "the job never started"
        with pytest.raises(openai.RateLimitError) as err:  # max_jobs_per_user is 1 on this server
            client(server).audio.transcriptions.create(file=("go.wav", GO.read_bytes()), model="whisper-1")
        assert err.value.body["code"] == "rate_limit_exceeded" and "limit is 1" in err.value.body["message"]
    finally:
        sock.close()  # the client goes away mid-job
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and history.get(record.id).status == "running":
        time.sleep(0.2)
    final = history.get(record.id)
    assert final.status == "cancelled" and final.owner == "ann"
    assert "cancelled" in final.error
    assert "cancelled: its API client disconnected" in server.log()


def test_metrics_and_health_take_a_login_or_a_key(server: Server) -> None:
    import urllib.error
    import urllib.request

    def status(path: str, authorization: str | None) -> int:
        request = urllib.request.Request(f"{server.url}{path}", headers={"Authorization": authorization} if
                                         authorization else {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    basic = "Basic " + base64.b64encode(b"ann:ann-password").decode()
    assert status("/metrics", None) == 401
    assert status("/metrics", "Bearer sk-wrong-key-000000") == 401
    assert status("/metrics", basic) == 200
    assert status("/metrics", f"Bearer {KEY}") == 200
    assert status("/api/health", f"Bearer {KEY}") == 200
    assert status("/v1/models", basic) == 401  # /v1 takes API keys only


# --- in-process: options and keys ------------------------------------------------------------

def _ctx():
    from webui.modules.models import ModelChoice

    return SimpleNamespace(models=lambda: [ModelChoice("whisper-base", ""), ModelChoice("sense", "/m/sense")])


def _form(**fields):
    from webui.openai_api import Form

    return Form(fields={k.replace("__", "[]"): v if isinstance(v, list) else [v] for k, v in fields.items()})


def test_options_map_models_languages_scripts_and_prompt() -> None:
    from webui.openai_api import OpenAIError, read_options

    asked = read_options(_ctx(), _form(model="whisper-1", language="zh-TW", prompt="Kennedy"))
    assert (asked.model, asked.language, asked.script, asked.hotwords) == ("", "zh", "zh-TW", "Kennedy")
    assert read_options(_ctx(), _form(language="zh_HK")).script == "zh-HK"
    assert (read_options(_ctx(), _form(language="zh-CN")).language, read_options(_ctx(), _form(language="zh-CN")).script) == ("zh", "zh")
    assert read_options(_ctx(), _form(language="zh-TW", script="keep")).script == "keep"  # the explicit field wins
    assert read_options(_ctx(), _form(model="sense", language="EN")).model == "sense"
    assert read_options(_ctx(), _form(language="en")).language == "en"
    asked = read_options(_ctx(), _form(response_format="verbose_json", timestamp_granularities__=["word"],
                                       keywords__=["Boston"], prompt="Kennedy"))
    assert asked.words and asked.hotwords == "Kennedy Boston"
    assert read_options(_ctx(), _form()).response_format == "json"
    for bad, param in ((dict(model="gpt-5"), "model"), (dict(response_format="xml"), "response_format"),
                       (dict(language="zh-XX"), "language"), (dict(language="english"), "language"),
                       (dict(script="cyrillic"), "script"), (dict(temperature="hot"), "temperature"),
                       (dict(stream="true"), "stream"), (dict(timestamp_granularities__=["char"]),
                                                          "timestamp_granularities")):
        with pytest.raises(OpenAIError) as err:
            read_options(_ctx(), _form(**bad))
        assert err.value.status == 400 and err.value.param == param


def test_words_share_a_lines_time_by_length() -> None:
    from webui.openai_api import words_of

    words = words_of(1.0, 3.0, "ask not")
    assert [w["word"] for w in words] == ["ask", "not"]
    assert words[0]["start"] == 1.0 and words[-1]["end"] == 3.0 and words[0]["end"] == words[1]["start"] == 2.0
    cjk = words_of(0.0, 4.0, "你好 AI")
    assert [w["word"] for w in cjk] == ["你", "好", "AI"] and cjk[-1]["end"] == 4.0
    assert words_of(0.0, 1.0, "") == []


def test_api_keys_owners_and_when_they_are_required() -> None:
    from webui.context import LOCAL
    from webui.openai_api import API_USER, ApiKeys, parse_api_keys

    keys = parse_api_keys(["# comment", "", "sk-aaaaaaaa:ann", "  sk-bbbbbbbb  "])
    assert [(k.key, k.user) for k in keys] == [("sk-aaaaaaaa", "ann"), ("sk-bbbbbbbb", "")]
    with pytest.raises(ValueError):
        parse_api_keys(["short:ann"])
    assert ApiKeys().user_of(None) == LOCAL  # no logins, no keys: open, the local user
    assert ApiKeys(logins=True).user_of("Bearer anything") is None  # logins without keys: closed
    with_logins = ApiKeys(keys, logins=True)
    assert with_logins.user_of("Bearer sk-aaaaaaaa") == "ann"
    assert with_logins.user_of("bearer sk-bbbbbbbb") == API_USER
    assert ApiKeys(keys).user_of("Bearer sk-bbbbbbbb") == LOCAL
    for header in (None, "", "Bearer", "Bearer sk-aaaaaaa", "Basic c2stYWFhYWFhYWE=", "Bearer sk-aaaaaaaa:ann"):
        assert with_logins.user_of(header) is None


def test_verbose_json_carries_the_models_own_scores_per_line(server: Server) -> None:
    """avg_logprob, no_speech_prob, compression_ratio, temperature and tokens come from the
    model: two_cities (44 s) is decoded as two inputs, so the values differ between lines; each
    line has its own tokens; History keeps them, so its transcript answers the same; no `seek`."""
    from webui.openai_api import verbose_json

    with open(DATA / "two_cities.wav", "rb") as f:
        verbose = client(server).audio.transcriptions.create(file=f, model="whisper-1", language="en",
                                                             response_format="verbose_json")
    segments = verbose.segments
    assert len(segments) >= 2
    for s in segments:
        assert s.avg_logprob < 0 and 0 <= s.no_speech_prob <= 1 and s.compression_ratio > 0, s
        assert s.temperature == 0.0  # the decoder's (greedy, no temperature fallback)
        assert s.tokens and all(isinstance(t, int) and t >= 0 for t in s.tokens), s
        assert "seek" not in s.model_fields_set
    assert len({s.avg_logprob for s in segments}) > 1 and len({s.no_speech_prob for s in segments}) > 1
    assert len({s.compression_ratio for s in segments}) > 1
    assert len({tuple(s.tokens) for s in segments}) == len(segments)
    record = History(server.history_path).search(name="two_cities.wav", limit=1)[0]
    stored = verbose_json(record.to_transcript(), False)["segments"]
    assert stored == [s.model_dump(exclude_unset=True) for s in segments]


def test_diarized_json_labels_two_readers(server: Server, tmp_path: Path) -> None:
    """OpenAI's diarizing shape through the official client: two real readers taking turns."""
    import numpy as np
    import soundfile as sf

    from tests.test_diarize_pipeline import FEMALE, MALE, _decode

    parts = []
    for her, his in zip(FEMALE[:2], MALE[:2]):
        parts += [_decode(DATA / her), np.zeros(8000, np.float32), _decode(DATA / his), np.zeros(8000, np.float32)]
    path = tmp_path / "two.wav"
    sf.write(path, np.concatenate(parts), 16000)
    with open(path, "rb") as f:
        raw = client(server).audio.transcriptions.with_raw_response.create(
            file=f, model="whisper-1", language="en", response_format="diarized_json")
    body = raw.http_response.json()
    speakers = [s["speaker"] for s in body["segments"]]
    assert set(speakers) == {"Speaker 1", "Speaker 2"} and speakers[0] == "Speaker 1", speakers
    assert all(s["type"] == "transcript.text.segment" and s["start"] < s["end"] for s in body["segments"])
    assert "dashwood" in body["text"].lower() and body["speakers"]
    with open(path, "rb") as f:  # any format, with a count: verbose_json segments carry the speaker
        verbose = client(server).audio.transcriptions.create(file=f, model="whisper-1", language="en",
                                                              response_format="verbose_json",
                                                              extra_body={"num_speakers": "2"})
    assert {s.model_extra["speaker"] for s in verbose.segments} == {"Speaker 1", "Speaker 2"}


def _data_url(path: Path) -> str:
    kind = {".wav": "wav", ".flac": "flac"}[path.suffix]
    return f"data:audio/{kind};base64," + base64.b64encode(path.read_bytes()).decode()


def test_known_speakers_name_their_voices(server: Server, tmp_path: Path) -> None:
    """known_speaker_names[] with a reference clip each (clips that are not in the recording):
    each reader's lines carry the name given for their voice."""
    import numpy as np
    import soundfile as sf

    from tests.test_diarize_pipeline import FEMALE, MALE, _decode

    parts, truth, at = [], [], 0.0
    for her, his in zip(FEMALE[:2], MALE[:2]):
        for name, who in ((her, "Elinor"), (his, "Gabriel")):
            clip = _decode(DATA / name)
            truth.append((at, at + clip.size / 16000, who))
            parts += [clip, np.zeros(8000, np.float32)]
            at += clip.size / 16000 + 0.5
    path = tmp_path / "two.wav"
    sf.write(path, np.concatenate(parts), 16000)
    references = [DATA / "librivox_sense_and_sensibility_01_austen_64kb-0920.wav", DATA / "1089-134691-0001.flac"]
    with open(path, "rb") as f:
        body = client(server).audio.transcriptions.with_raw_response.create(
            file=f, model="whisper-1", language="en", response_format="diarized_json",
            known_speaker_names=["Elinor", "Gabriel"], known_speaker_references=[_data_url(p) for p in references],
        ).http_response.json()
    for s in body["segments"]:
        middle = (s["start"] + s["end"]) / 2
        assert s["speaker"] == next(w for a, b, w in truth if a - 0.5 <= middle <= b + 0.5), (s, truth)
    assert {t["speaker"] for t in body["speakers"]} == {"Elinor", "Gabriel"}
    with open(path, "rb") as f:  # the names without [] (speaches' spelling), in verbose_json
        verbose = client(server).audio.transcriptions.create(
            file=f, model="whisper-1", language="en", response_format="verbose_json",
            extra_body={"known_speaker_names": "Elinor", "known_speaker_references": _data_url(references[0])})
    assert {s.model_extra["speaker"] for s in verbose.segments} == {"Elinor", "Speaker 2"}


def test_known_speakers_bad_input_is_a_400_naming_the_field(server: Server) -> None:
    api = client(server)
    before = uploads_left(server)
    good = _data_url(DATA / "1089-134691-0001.flac")
    cases = [
        ({"known_speaker_names": ["A", "B"], "known_speaker_references": [good]}, "known_speaker_names", "2 name(s)"),
        ({"known_speaker_names": ["A"], "known_speaker_references": ["https://example.com/a.wav"]},
         "known_speaker_references", "must be a data URL"),
        ({"known_speaker_names": ["A"], "known_speaker_references": ["data:audio/wav;base64,!!not base64!!"]},
         "known_speaker_references", "not valid base64"),
        ({"known_speaker_names": ["A"],
          "known_speaker_references": ["data:audio/wav;base64," + base64.b64encode(b"not audio " * 100).decode()]},
         "known_speaker_references", "known_speaker_references[0] cannot be read"),
        ({"known_speaker_names": list("ABCDE"), "known_speaker_references": [good] * 5},
         "known_speaker_references", "At most 4"),
        ({"known_speaker_names": ["\x07bell"], "known_speaker_references": [good]}, "known_speaker_names", "control"),
        ({"known_speaker_names": ["A"], "known_speaker_references": ["data:audio/wav;base64," + "A" * 1_500_000]},
         "known_speaker_references", "send 2-10 s of the voice"),
    ]
    # A reference clip that names a server file (a playlist, a concat list) must not read it.
    server_file = DATA / "1089-134691-0001.flac"
    for text in (f"#EXTM3U\n#EXT-X-TARGETDURATION:30\n#EXTINF:30.0,\n{server_file}\n#EXT-X-ENDLIST\n",
                 f"ffconcat version 1.0\nfile '{server_file}'\n"):
        playlist = "data:audio/x-mpegurl;base64," + base64.b64encode(text.encode()).decode()
        cases.append(({"known_speaker_names": ["A"], "known_speaker_references": [playlist]},
                      "known_speaker_references", "known_speaker_references[0] cannot be read"))
    for fields, param, message in cases:
        with pytest.raises(openai.BadRequestError) as err:
            api.audio.transcriptions.create(file=("go.wav", GO.read_bytes()), model="whisper-1", **fields)
        assert err.value.body["param"] == param and message in err.value.body["message"], err.value.body
        assert "Traceback" not in err.value.response.text
    # the names without [] are the same fields (speaches' and curl's spelling)
    code, body = curl(server, "-F", f"file=@{GO}", "-F", "known_speaker_names=A", "-F", "known_speaker_names=B",
                      "-F", f"known_speaker_references={good}")
    assert code == 400 and json.loads(body)["error"]["param"] == "known_speaker_names"
    assert uploads_left(server) == before  # every refused upload is gone
