"""Media files that name other files: every playlist, list, sequence and reference format that
ffmpeg's demuxers offer, each crafted to read a `target` recording the uploader must never hear.

Each builder writes one file into `folder` and returns its path. `target` may or may not exist:
the product's refusal must not tell which.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable


def hls(folder: Path, target: Path, name: str = "playlist.m3u8", url: bool = False) -> Path:
    where = target.as_uri() if url else str(target)
    text = f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:30\n#EXTINF:30.0,\n{where}\n#EXT-X-ENDLIST\n"
    return _write(folder / name, text)


def ffconcat(folder: Path, target: Path, name: str = "list.ffconcat") -> Path:
    return _write(folder / name, f"ffconcat version 1.0\nfile '{target}'\n")


def dash(folder: Path, target: Path, name: str = "manifest.mpd") -> Path:
    return _write(folder / name, f"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT30S"
     minBufferTime="PT1S" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
 <Period><AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="64000" codecs="mp4a.40.2">
  <BaseURL>{target.as_uri()}</BaseURL></Representation></AdaptationSet></Period>
</MPD>
""")


def sdp(folder: Path, target: Path, name: str = "session.sdp") -> Path:
    # An RTP session: ffmpeg would listen on a local port (the target plays no part, but the file names an address).
    return _write(folder / name, "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
                                 "m=audio 5004 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n")


def image_sequence(folder: Path, target: Path, name: str = "frame%03d.png") -> Path:
    """A file whose name is an image2 pattern: ffmpeg would read frame001.png, frame002.png, … beside it."""
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
           + _png_chunk(b"IDAT", bytes.fromhex("789c6360000000020001")) + _png_chunk(b"IEND", b""))
    path = folder / name
    path.write_bytes(png)
    return path


def mov_alias(folder: Path, target: Path, name: str = "alias.m4a", source: Path | None = None) -> Path:
    """An MP4 whose audio track lives in another file: `source` (an .m4a of the target's audio,
    moov at the end) with its own samples zeroed and its data reference replaced by a Mac alias
    record naming `target` beside the upload (nlvl 1/1, the form ffmpeg's mov demuxer follows
    when `enable_drefs` is on)."""
    data = bytearray((source or target).read_bytes())
    for start, size, kind in _boxes(data, 0, len(data)):
        if kind == b"mdat":
            data[start + 8:start + size] = bytes(size - 8)  # the upload itself holds no speech
    path_bytes = f"/{target.name}".encode()
    record = bytearray(150)
    record[10] = 0                                   # volume name length
    record[10 + 1 + 27 + 12] = min(len(target.name), 63)
    name_at = 10 + 1 + 27 + 12 + 1
    record[name_at:name_at + min(len(target.name), 63)] = target.name.encode()[:63]
    struct.pack_into(">HH", record, name_at + 63 + 16, 1, 1)  # nlvl_from, nlvl_to
    padded = path_bytes + (b"\0" if len(path_bytes) % 2 else b"")
    record += struct.pack(">hH", 2, len(path_bytes)) + padded + struct.pack(">hH", -1, 0)
    alis = struct.pack(">I4sI", 12 + len(record), b"alis", 0) + bytes(record)
    out = _replace_dref(bytes(data), alis)
    dest = folder / name
    dest.write_bytes(out)
    return dest


# kind -> builder(folder, target): each a way a media file can name another file
KINDS: dict[str, Callable[[Path, Path], Path]] = {
    "hls path": lambda f, t: hls(f, t),
    "hls file URL": lambda f, t: hls(f, t, url=True),
    "hls named .wav": lambda f, t: hls(f, t, name="x_m3u8.wav"),
    "ffconcat": ffconcat,
    "ffconcat named .mp3": lambda f, t: ffconcat(f, t, name="list.mp3"),
    "dash": dash,
    "sdp": sdp,
    "image sequence": image_sequence,
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"dinf"}


def _boxes(data: bytes | bytearray, start: int, end: int):
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        if size == 1:
            size = struct.unpack_from(">Q", data, at + 8)[0]
        elif size == 0:
            size = end - at
        yield at, size, kind
        at += size


def _replace_dref(data: bytes, entry: bytes) -> bytes:
    """`data` with the first track's dref entries replaced by `entry`, every enclosing size grown."""
    def rebuild(start: int, end: int) -> bytes:
        out = b""
        for at, size, kind in _boxes(data, start, end):
            if kind in _CONTAINERS:
                body = rebuild(at + 8, at + size)
                out += struct.pack(">I4s", 8 + len(body), kind) + body
            elif kind == b"dref":
                body = data[at + 8:at + 12] + struct.pack(">I", 1) + entry  # version/flags, one entry
                out += struct.pack(">I4s", 8 + len(body), kind) + body
            else:
                out += data[at:at + size]
        return out

    return rebuild(0, len(data))
