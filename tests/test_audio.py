"""Input stage: any ffmpeg-readable container, rate and channel count → 16 kHz mono; bad input → InputError."""

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DATA, SR, ffmpeg, quiet, tone, write_wav
from webui.modules.audio import InputError, decode, probe, stream_ranges

SOURCE = DATA / "jfk.flac"

CONVERSIONS = {
    "stereo44k.wav": ["-ac", "2", "-ar", "44100"],
    "clip.flac": [],
    "clip.mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
    "clip.m4a": ["-c:a", "aac", "-b:a", "64k"],
    "clip.ogg": ["-c:a", "libopus", "-b:a", "32k"],
    "clip.webm": ["-c:a", "libopus", "-b:a", "32k"],
    "surround48k.mkv": ["-ac", "6", "-ar", "48000", "-c:a", "flac"],
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("formats")
    files = {}
    for name, args in CONVERSIONS.items():
        ffmpeg("-i", str(SOURCE), *args, str(out / name))
        files[name] = out / name
    video = out / "lecture video.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=160x120:r=10", "-i", str(SOURCE), "-shortest",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(video))
    files[video.name] = video
    return files


def test_every_format_decodes_to_16k_mono(converted):
    reference = decode(SOURCE)
    for name, path in converted.items():
        info = probe(path)
        assert info.duration == pytest.approx(11.0, abs=0.15), name
        samples = decode(path)
        assert samples.dtype == np.float32 and samples.ndim == 1, name
        assert samples.size / SR == pytest.approx(reference.size / SR, abs=0.1), name
        assert 0.05 < float(np.abs(samples).max()) <= 1.0, name


def test_video_probe_reports_its_audio_track(converted):
    info = probe(converted["lecture video.mp4"])
    assert info.codec == "aac" and info.channels >= 1


def test_stream_ranges_slices_one_decode(tmp_path):
    signal = np.concatenate([tone(2.0, 200), tone(2.0, 800), tone(2.0, 1600)])
    path = write_wav(tmp_path / "three.wav", signal)
    ranges = [(0.0, 2.0), (2.0, 4.0), (4.5, 6.0)]
    pieces = list(stream_ranges(path, ranges))
    assert [p.size for p in pieces] == [2 * SR, 2 * SR, int(1.5 * SR)]
    np.testing.assert_allclose(pieces[1], signal[2 * SR:4 * SR], atol=1 / 16384)
    np.testing.assert_allclose(pieces[2], signal[int(4.5 * SR):6 * SR], atol=1 / 16384)


def test_stream_ranges_past_the_end_gives_what_exists(tmp_path):
    path = write_wav(tmp_path / "short.wav", tone(1.0))
    pieces = list(stream_ranges(path, [(0.5, 1.0), (1.0, 3.0)]))
    assert pieces[0].size == SR // 2 and pieces[1].size == 0


def _file(name: str, content: bytes):
    def make(folder):
        (folder / name).write_bytes(content)
        return folder / name
    return make


@pytest.mark.parametrize("make, reason", [
    (lambda d: d / "missing.wav", "file not found"),
    (lambda d: d, "is a directory"),
    (_file("empty.wav", b""), "empty"),
    (_file("notes.txt", b"hello, not audio\n" * 50), "audio"),
    (_file("corrupt.mp3", b"\xff\xfb\x90\x00" + bytes(range(256)) * 40), "not a readable audio"),
    (_file("truncated.wav", b"RIFF\x24\x00\x00\x00WAVEfmt "), "not a readable audio"),
])
def test_bad_input_is_a_clear_error(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(InputError) as err:
        probe(path)
        decode(path)
    assert str(path) in str(err.value)
    assert reason in err.value.reason


def test_video_without_audio_track(tmp_path):
    video = tmp_path / "silent film.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x64:r=5:d=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(video))
    with pytest.raises(InputError, match="no audio stream"):
        probe(video)


def test_zero_length_audio(tmp_path):
    path = tmp_path / "zero.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0", str(path))
    with pytest.raises(InputError):
        probe(path)


@pytest.mark.parametrize("name", ["with space.wav", "quote's \"here\".wav", "$(touch pwned).wav", "中文 录音.wav", "-dash.wav"])
def test_odd_names_are_plain_arguments(tmp_path, name, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_wav(tmp_path / name, np.concatenate([quiet(0.5), tone(1.0)]))
    path = Path(name)  # relative, as a user types it: '-dash.wav' must not read as an option
    assert probe(path).duration == pytest.approx(1.5, abs=0.01)
    assert decode(path).size == pytest.approx(1.5 * SR, abs=2)
    assert not (tmp_path / "pwned").exists()


def test_the_scan_writes_the_same_samples_into_the_spool_as_a_streamed_decode(converted):
    """ffmpeg writes straight into the spool's file; what lands there, the envelope and the
    silences must be those of the streamed (piped) decode."""
    from webui.modules.audio import ENVELOPE_HOP, _pcm_blocks, scan_silences
    from webui.modules.spool import Spool

    path = converted["clip.mp3"]
    piped = np.concatenate(list(_pcm_blocks(Path(path))))
    with Spool() as spool:
        spool.keep(np.zeros(SR // 2, np.int16))  # something already there stays first
        scan = scan_silences(path, into=spool)
        assert spool.samples == SR // 2 + piped.size
        np.testing.assert_array_equal(spool.read(0.5, spool.samples / SR), piped.astype(np.float32) / 32768)
    hop = int(ENVELOPE_HOP * SR)
    assert scan.duration == pytest.approx(piped.size / SR)
    assert scan.envelope_db.size == -(-piped.size // hop)
    power = np.mean((piped[:hop].astype(np.float64) / 32768) ** 2)
    assert scan.envelope_db[0] == pytest.approx(10 * np.log10(max(power, 1e-10)), abs=0.01)
    assert scan.silences == scan_silences(path).silences  # the same with a spool of its own


def test_a_file_that_breaks_mid_way_is_a_clear_error_in_the_scan(tmp_path):
    from webui.modules.audio import scan_silences

    good = write_wav(tmp_path / "good.wav", tone(4.0, 300))
    broken = tmp_path / "broken.flac"
    ffmpeg("-i", str(good), str(broken))
    data = bytearray(broken.read_bytes())
    data[200:] = bytes(len(data) - 200)  # the stream info survives, the frames do not
    broken.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        scan_silences(broken)
    assert "broken.flac" in str(err.value)


def test_the_scan_finds_the_silences_ffmpeg_silencedetect_finds(tmp_path):
    """sample_scan replaces ffmpeg's silencedetect filter (it sat on the decoder's path): the
    same silences, across the scan's 32 s read blocks, in a 16-bit WAV and after an MP3 round
    trip at 44.1 kHz stereo (ffmpeg compares the decoder's floats there: within 10 ms)."""
    from webui.modules.audio import _pcm_blocks, parse_silences, scan_silences

    speech = decode(SOURCE)
    gap = np.zeros(int(25.0 * SR), np.float32)  # 11–36 s: runs over the first block's end (32 s)
    quiet_hiss = (np.random.default_rng(1).standard_normal(int(3.0 * SR)) * 0.003).astype(np.float32)
    signal = np.concatenate([speech, gap, speech[: 4 * SR], quiet_hiss, speech, np.zeros(int(0.8 * SR), np.float32),
                             speech[: 2 * SR], gap[: int(2.5 * SR)]])  # ends in an open silence
    wav = write_wav(tmp_path / "gaps.wav", signal)
    mp3 = tmp_path / "gaps.mp3"
    ffmpeg("-i", str(wav), "-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "96k", str(mp3))
    for path, tolerance in ((wav, 5e-4), (mp3, 0.01)):  # wav: ffmpeg prints 6 significant digits
        lines: list[str] = []
        for _ in _pcm_blocks(Path(path), "silencedetect=noise=-30dB:d=1.2", lines):
            pass
        ours = scan_silences(path)
        reference = parse_silences(lines, ours.duration)
        assert len(reference) >= 3, reference  # the gap, the hiss, the open end (0.8 s is too short)
        assert len(ours.silences) == len(reference), (path.name, ours.silences, reference)
        for a, b in zip(ours.silences, reference):
            assert abs(a.start - b.start) <= tolerance and abs(a.end - b.end) <= tolerance, (path.name, a, b)


def test_file_writing_children_die_with_us_where_setpriv_can_and_run_plainly_where_it_cannot(tmp_path, monkeypatch):
    """util-linux before 2.33 has setpriv without --pdeathsig: the prefix is tried once, and a
    setpriv that refuses it leaves the command as it is (every decode would fail otherwise)."""
    import os
    import shutil
    import sys

    from webui.modules import audio

    audio._pdeathsig_prefix.cache_clear()
    try:
        if sys.platform.startswith("linux") and shutil.which("setpriv"):
            assert audio.dies_with_us(["ffmpeg", "-i", "x"])[-3:] == ["ffmpeg", "-i", "x"]
            assert "--pdeathsig" in audio.dies_with_us(["ffmpeg"])
        old = tmp_path / "setpriv"
        old.write_text("#!/bin/sh\necho \"setpriv: unrecognized option '--pdeathsig'\" >&2\nexit 1\n")
        old.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
        audio._pdeathsig_prefix.cache_clear()
        assert audio.dies_with_us(["ffmpeg", "-i", "x"]) == ["ffmpeg", "-i", "x"]
    finally:
        audio._pdeathsig_prefix.cache_clear()
