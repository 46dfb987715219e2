"""A media file must never make the server open another file or address (issue 16, item 1).

Every playlist, list, sequence and reference format of ffmpeg's demuxer list (tests/media_refs.py)
is uploaded through the running server, by the page's own upload route (gradio_client) and by
/v1/audio/transcriptions with the official openai client, each naming a recording outside every
allowed folder. Each must be refused, the target's words must be in no output, and the answer
must be the same whether the named file exists or not (else the server tells who asks which
files exist). The first tests show, with ffmpeg alone, that the crafted files are real attacks.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import openai
import pytest

from tests import media_refs
from tests.conftest import DATA, ffmpeg
from tests.test_api import Server, start_server
from webui.modules import audio

SECRET = DATA / "goforward.wav"  # "Go forward 10 meters." — words no answer may contain
SECRET_WORDS = ("forward", "meters", "10")
KEY = "sk-media-bob-" + "2" * 12


def _raw_decode(path: Path, *options: str) -> np.ndarray:
    """ffmpeg as an unguarded program would call it (local files allowed, any demuxer)."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-protocol_whitelist", "file", *options,
                           "-i", str(path), "-ac", "1", "-ar", "16000", "-f", "s16le", "-"], capture_output=True)
    return np.frombuffer(proc.stdout, dtype="<i2")


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("outside")
    ffmpeg("-i", str(SECRET), "-ar", "16000", "-ac", "1", str(folder / "secret.wav"))
    ffmpeg("-i", str(SECRET), "-ar", "16000", "-ac", "1", str(folder / "secret.m4a"))
    ffmpeg("-i", str(SECRET), "-ar", "16000", "-ac", "1", str(folder / "secret.flac"))
    return folder


def test_the_crafted_files_are_real_attacks_without_the_guard(secrets_dir: Path, tmp_path: Path) -> None:
    secret = _raw_decode(secrets_dir / "secret.wav")
    assert secret.size > 16_000
    # relative names, as ffmpeg's concat demuxer takes them without -safe 0
    (secrets_dir / "rel.ffconcat").write_text("ffconcat version 1.0\nfile 'secret.wav'\n")
    assert np.array_equal(_raw_decode(secrets_dir / "rel.ffconcat"), secret)
    playlist = media_refs.hls(tmp_path, secrets_dir / "secret.flac")  # an absolute path
    assert np.array_equal(_raw_decode(playlist), secret)
    alias = media_refs.mov_alias(secrets_dir, secrets_dir / "secret.m4a", name="alias.m4a")
    leaked = _raw_decode(alias, "-enable_drefs", "1")
    assert leaked.size > 16_000 and np.abs(leaked).mean() > 100  # the sibling's speech
    assert np.abs(_raw_decode(alias)).max(initial=0) == 0          # its own samples are zeros


@pytest.mark.parametrize("kind", sorted(media_refs.KINDS))
def test_probe_refuses_every_reference_format_alike_whether_the_target_exists(kind: str, secrets_dir: Path,
                                                                              tmp_path: Path) -> None:
    build = media_refs.KINDS[kind]
    reasons = []
    for target in (secrets_dir / "secret.flac", secrets_dir / "missing.flac"):
        folder = tmp_path / target.stem
        folder.mkdir()
        with pytest.raises(audio.InputError) as err:
            audio.probe(build(folder, target))
        reasons.append(err.value.reason)
    assert reasons[0] == reasons[1], reasons
    assert "refused" in reasons[0] or "not accepted" in reasons[0], reasons[0]


def test_the_guarded_decoder_does_not_follow_a_mov_data_reference(secrets_dir: Path) -> None:
    alias = media_refs.mov_alias(secrets_dir, secrets_dir / "secret.m4a", name="alias2.m4a")
    try:
        samples = np.concatenate(list(audio._pcm_blocks(alias)) or [np.zeros(0, np.int16)])
    except audio.InputError:
        return  # refused outright: fine
    assert np.abs(samples).max(initial=0) == 0  # only the upload's own (zeroed) bytes were read


# --- through the running server ------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("media-attacks")
    (work / "logins").write_text("ann:ann-Pw-5521-q\nbob:bob-Pw-8810-z\n")
    (work / "keys").write_text(f"{KEY}:bob\n")
    srv = start_server(work / "srv", "--auth-file", str(work / "logins"), "--api-key-file", str(work / "keys"),
                       "--admin", "ann", settings={"max_upload_mb": 5})
    yield srv
    srv.stop()


def _page_answer(server: Server, path: Path) -> str:
    from gradio_client import Client, handle_file

    api = Client(server.url, auth=("bob", "bob-Pw-8810-z"), verbose=False)
    try:
        result = api.predict(handle_file(str(path)), "", "auto", "", True, api_name="/transcribe")
    except Exception as exc:  # the page's refusal
        return f"refused: {exc}"
    return f"accepted: {result!r}"


def _api_answer(server: Server, path: Path) -> str:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)
    try:
        with path.open("rb") as fh:
            text = client.audio.transcriptions.create(model="whisper-base", file=(path.name, fh.read()),
                                                      response_format="text")
    except openai.APIStatusError as exc:
        return f"refused {exc.status_code}: {exc.body}"
    return f"accepted: {text!r}"


KINDS_OVER_HTTP = sorted(media_refs.KINDS) + ["mov data reference"]


@pytest.mark.parametrize("kind", KINDS_OVER_HTTP)
def test_no_reference_format_reads_a_server_file_through_the_page_or_the_api(kind: str, server: Server,
                                                                             secrets_dir: Path, tmp_path: Path) -> None:
    rows_before = _rows(server)
    answers = {}
    for target in (secrets_dir / "secret.flac", secrets_dir / "missing.flac"):
        folder = tmp_path / target.stem
        folder.mkdir()
        if kind == "mov data reference":
            crafted = media_refs.mov_alias(folder, target.with_suffix(".m4a"), name="alias.m4a",
                                           source=secrets_dir / "secret.m4a")
        else:
            crafted = media_refs.KINDS[kind](folder, target)
        answers[target.stem] = (_page_answer(server, crafted), _api_answer(server, crafted))
    for page, api in answers.values():
        for answer in (page, api):
            assert not any(word in answer.lower() for word in SECRET_WORDS), answer
            assert "Traceback" not in answer
        assert page.startswith("refused"), page
        assert api.startswith("refused 400"), api
    # the same answer whether the named file exists or not
    assert answers["secret"] == answers["missing"], answers
    assert _rows(server) == rows_before  # nothing was queued


def _rows(server: Server) -> int:
    from webui.modules.history import History

    return History(server.history_path).count()
