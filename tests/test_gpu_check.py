"""scripts/bench/gpu_check: the one-command GPU proof (issue 11, item 7), checked without a GPU.

The CPU dry run of its fastest steps (the table keeps every row; the steps run end to end and
none crashes), and the packing that carries the kit in parts under the device tool's 64 MiB
(split, checked and put back together). The whole dry run takes minutes on this machine:
`bash scripts/bench/gpu_check.sh --dry-run`, or GPU_CHECK_TEST_STEPS=all here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "gpu-kit"
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

import gpu_check

# The steps a CI run can afford (about a minute on two cores): env imports every module the GPU
# run imports (pynvml, onnxruntime with a silero pass, ctranslate2, faster_whisper, funasr, ...);
# the SenseVoice step covers the pipeline, release vs keep, the co-tenant process and the VRAM
# cap; nano builds Fun-ASR-Nano from funasr's own class.
FAST_STEPS = "env,sv_ours,nano"


@pytest.mark.skipif(not (KIT / "vad" / "model.pt").is_file(), reason="needs ../shared/gpu-kit (fsmn-vad, base.flac)")
def test_dry_run_fills_every_row_and_no_step_crashes(tmp_path):
    steps = os.environ.get("GPU_CHECK_TEST_STEPS", FAST_STEPS)
    argv = [sys.executable, str(ROOT / "scripts" / "bench" / "gpu_check.py"), "run", "--dry-run", "--kit", str(KIT),
            "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--clips", "2"]
    if steps != "all":
        argv += ["--steps", steps]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "out" / "gpu_check.txt").read_text()
    result = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    log = (tmp_path / "out" / "gpu_check.log").read_text()

    assert table.startswith("CPU DRY RUN - not a GPU measurement")
    cfg = gpu_check.Config(**result["config"])
    expected = gpu_check.expected_rows(cfg)
    assert list(result["rows"]) == [rid for rid, _, _ in expected]
    for rid, step, run in expected:
        assert run in table, f"row {rid} missing from the table"

    selected = set(gpu_check.JOB_ROWS) if steps == "all" else set(steps.split(","))
    for job in selected:
        assert result["jobs"][job]["status"] == "ok", (job, result["jobs"][job])
        for rid in result["rows"]:
            if any(rid.startswith(p) for p in gpu_check.JOB_ROWS[job]):
                assert result["rows"][rid]["status"] == "ok", (rid, result["rows"][rid], log[-4000:])
    for rid, row in result["rows"].items():
        owner = next(j for j, prefixes in gpu_check.JOB_ROWS.items() if any(rid.startswith(p) for p in prefixes))
        if owner not in selected:
            assert row["status"] == "not selected", (rid, row)

    if "sv_ours" in selected:  # the CPU has no back-off to show: the co-tenant's effect is checked below
        co = result["rows"]["co.sv"]
        assert co["all_segments"] and not co["error"]
        assert co["cotenant_at"] is not None, "the co-tenant must arrive mid-run, between batches"
        assert result["targets"]["co.sv"][0].endswith("PASS"), result["targets"]["co.sv"]
        assert result["rows"]["rk.keep"]["wall_s"] > 0 and result["rows"]["rk.release"]["wall_s"] > 0
    if "nano" in selected:
        assert result["rows"]["nano"]["all_segments"]
        assert "FunASRNano" in result["rows"]["nano"]["detail"]
    if "env" in selected:
        imports = result["rows"]["env"]["imports"]
        assert {name for name, _ in gpu_check.REQUIRED_IMPORTS} <= set(imports), imports
        assert not [n for n, where in imports.items() if where.startswith("MISSING")], imports
        assert result["rows"]["env"]["silero_vad"].startswith("ran"), result["rows"]["env"]


@pytest.fixture(scope="module")
def cotenant_recording(tmp_path_factory) -> tuple[str, float]:
    import soundfile

    from tests.recordings import build

    path = tmp_path_factory.mktemp("cotenant") / "ten_minutes.wav"
    build(path, 10, seed=11, gap=(1.0, 3.0))
    return str(path), soundfile.info(str(path)).duration


def cotenant_step(tmp_path, monkeypatch, recording, takes: bool) -> tuple[dict, list[str], list[int]]:
    """gpu_check's co-tenant step (cotenant_run, then evaluate) on a simulated 24 GB card: the
    pipeline, the product's MemoryBudget and its CUDA probe as on the device; the co-tenant is the
    other process taking all but `cotenant_leave_gb` of the free memory (`takes`) or nothing at
    the same moment (the run to compare with). The cost model underestimates by 20 %, so OOMs
    are part of the run and must be absorbed."""
    from tests.gpu_sim import GB, SimulatedCard, SimulatedEngine
    from webui.modules.engines.base import EngineSettings

    card = SimulatedCard(total=24 * GB, base=2 * GB, per_second=100e6, fixed_per_item=150e6).install(monkeypatch)
    engine = SimulatedEngine(card, estimate=0.8)
    engine.settings = EngineSettings(device="cuda:0")
    sizes = gpu_check.counted_engine(engine)

    class SimulatedCoTenant:
        def __init__(self, cfg: gpu_check.Config) -> None:
            self.leave, self.held, self.at = int(cfg.cotenant_leave_gb * GB), None, None

        def grab(self, fraction: float) -> None:
            card.cotenant = max(0, card.card_free() - self.leave) if takes else 0
            self.held, self.at = card.cotenant, fraction

        def close(self) -> None:
            card.cotenant = 0

    monkeypatch.setattr(gpu_check, "CoTenant", SimulatedCoTenant)
    cfg = gpu_check.Config(dry=False, device="cuda:0", kit="", work=str(tmp_path), minutes=[10], warm_minutes=1,
                           cotenant_minutes=10, cap_minutes=10, keep_minutes=10, nano_minutes=10, clips=0,
                           nano_shape="tiny", nano_tokens=8, cotenant_leave_gb=8.0, recs={"10": list(recording)})
    row = {"id": "co.sv", "status": "ok", **gpu_check.cotenant_run(cfg, engine, sizes, retry=0.0)}
    return row, gpu_check.evaluate({"co.sv": row}, cfg)["co.sv"], sizes


def batches_after(row: dict) -> int:
    found = re.search(r"batches before max (\d+), after max (\d+)", row["detail"])
    assert found, row["detail"]
    return int(found.group(2))


def test_the_co_tenant_step_passes_only_when_the_batches_back_off(tmp_path, monkeypatch, cotenant_recording):
    alone, _, alone_sizes = cotenant_step(tmp_path / "alone", monkeypatch, cotenant_recording, takes=False)
    row, targets, sizes = cotenant_step(tmp_path / "shared", monkeypatch, cotenant_recording, takes=True)
    print(f"alone: {alone_sizes} ({alone['detail']})\nco-tenant: {sizes} ({row['detail']})")
    assert alone["cotenant_at"] is not None and row["cotenant_at"] is not None, "it must arrive mid-run"
    assert row["cotenant_gib"] > 10  # it took most of the card
    # No OOM escaped and every input was transcribed: the step's own target...
    assert not row["error"] and row["all_segments"], row["detail"]
    assert targets[0].endswith("PASS"), targets
    # ...because the batches backed off: after the co-tenant arrived they were smaller than the
    # same run planned at the same point without it.
    assert batches_after(row) < batches_after(alone), (row["detail"], alone["detail"])


def test_parts_split_check_and_reassemble(tmp_path, monkeypatch):
    """Items cut into parts under the limit (one item spans several); each part is checked on
    arrival and an item is installed once all its pieces are in, whatever order they came in."""
    monkeypatch.setattr(gpu_check, "PARTS", tmp_path / "parts")
    monkeypatch.setattr(gpu_check, "DEV", tmp_path / "dev")
    monkeypatch.setattr(gpu_check, "finish_install", lambda state: None)
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(700_000)
    (src / "big.bin").write_bytes(payload)
    (src / "small.txt").write_text("hello")
    big, small = tmp_path / "big.tar", tmp_path / "small.tar"
    with tarfile.open(big, "w") as tar:
        tar.add(src / "big.bin", arcname="big.bin")
    with tarfile.open(small, "w") as tar:
        tar.add(src / "small.txt", arcname="small.txt")
    items = [gpu_check.Item("small.tar", "tar", "a", "small", small), gpu_check.Item("big.tar", "tar", "b", "big", big)]
    manifest = gpu_check.pack(items, limit=300_000)

    assert len(manifest["parts"]) == 3
    assert all(size <= 300_000 for size in manifest["parts"].values())
    assert len(manifest["items"][1]["pieces"]) == 3  # the big item spans every part

    hidden = tmp_path / "later"
    hidden.mkdir()
    for k in ("1", "2"):  # part 3 has not arrived yet
        (tmp_path / "parts" / k).rename(hidden / k)
    state = gpu_check.receive(verbose=False)
    assert state["received"] == ["3"] and state["installed"] == []

    (hidden / "1").rename(tmp_path / "parts" / "1")
    state = gpu_check.receive(verbose=False)
    assert state["installed"] == ["small.tar"]
    assert (tmp_path / "dev" / "a" / "small.txt").read_text() == "hello"

    (hidden / "2").rename(tmp_path / "parts" / "2")
    piece = next((tmp_path / "parts" / "2").glob("big.tar.*"))
    good = piece.read_bytes()
    piece.write_bytes(bytes([good[0] ^ 1]) + good[1:])  # damaged on the way
    state = gpu_check.receive(verbose=False)
    assert "2" not in state["received"] and "big.tar" not in state["installed"]

    piece.write_bytes(good)  # carried again, intact
    state = gpu_check.receive(verbose=False)
    assert state["installed"] == ["small.tar", "big.tar"]
    assert (tmp_path / "dev" / "b" / "big.bin").read_bytes() == payload


def test_a_step_that_never_reported_fills_its_rows_with_the_reason(tmp_path):
    cfg = gpu_check.Config(dry=False, device="cuda", kit="", work=str(tmp_path), minutes=[10, 60, 150], warm_minutes=2,
                           cotenant_minutes=60, cap_minutes=10, keep_minutes=60, nano_minutes=10, clips=0,
                           nano_shape="qwen3-0.6b", nano_tokens=256)
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "sv_funasr.jsonl").write_text(json.dumps({"id": "sv.funasr.0", "status": "ok", "wall_s": 3.0}) + "\n")
    jobs = {"sv_funasr": {"status": "timed out after 85 s"}, "nano": {"status": "not run: the 345 s budget was spent"},
            "env": {"status": "ok"}}
    rows = gpu_check.collect_rows(tmp_path, cfg, jobs)
    assert rows["sv.funasr.0"]["status"] == "ok"
    assert rows["sv.funasr.2"]["status"] == "failed: step sv_funasr timed out after 85 s before this row"
    assert rows["nano"]["status"].startswith("not run: the 345 s budget")
    assert rows["env"]["status"].startswith("failed: the step ended without this row")
    table = gpu_check.render(rows, gpu_check.evaluate(rows, cfg), cfg, {}, 1.0)
    assert table.count("\n") > len(rows)
    assert "failed: step sv_funasr timed out" in table
    assert ">=5x faster than AutoModel: not measured" in table


# ----------------------------------------------------------------------------- issue 17: time, partial tables, cuBLAS


def test_the_steps_fit_their_budget_and_the_whole_plan_fits_nine_minutes():
    """Issue 17: the step estimates add up to the run's budget, in the order the product needs
    them proven, and start + staging calls + the run call leave room for a rerun out of 15 min."""
    estimates = {job[0]: job[1] for job in gpu_check.JOBS}
    assert sum(estimates.values()) <= gpu_check.TOTAL_BUDGET[False], (estimates, gpu_check.TOTAL_BUDGET)
    order = list(estimates)
    assert order.index("sv_funasr") < order.index("sv_ours") < order.index("pf_funasr") < order.index("wh_ours") \
        < order.index("nano"), order
    for job in gpu_check.JOBS:
        assert job.cap >= job.estimate, job
    plan = gpu_check.time_plan()
    assert plan["steps_s"] == gpu_check.TOTAL_BUDGET[False]
    assert plan["total_s"] <= 9 * 60, gpu_check.describe_plan(plan)
    assert plan["rerun_room_s"] >= 5 * 60, gpu_check.describe_plan(plan)
    assert "OVER" in gpu_check.describe_plan(gpu_check.time_plan(stage_calls=12))
    manifest = gpu_check.load_manifest()  # where `prepare` ran here: its parts match the plan
    if manifest is not None:
        assert len(manifest["parts"]) - 1 <= gpu_check.STAGE_CALLS, manifest["parts"]


def test_a_step_cut_off_still_leaves_the_earlier_rows_printed_and_written(tmp_path, monkeypatch, capsys):
    """Issue 17: every finished step's rows are printed and the table so far written to $OUT
    before the next step starts, so a step that times out, or a device call cut at its limit,
    still brings back the figures measured before it."""
    out, work = tmp_path / "out", tmp_path / "work"
    before: dict[str, str | None] = {}
    first = {"id": "sv.funasr.0", "status": "ok", "wall_s": 12.5, "rtfx": 48.0, "vram_gib": 2.47, "rss_gib": 3.1,
             "detail": "figures of the first step"}

    def fake_job(cmd, env, log, limit, on_tick=None, every=1.0):
        name = cmd[cmd.index("job") + 1]
        rows = work / "rows" / f"{name}.jsonl"
        if name == "sv_funasr":
            rows.write_text(json.dumps(first) + "\n")
            return 0, ""
        if name == "sv_ours":  # what a device call cut here would hand back
            table = out / "gpu_check.txt"
            before["txt"] = table.read_text() if table.exists() else None
            before["stdout"] = capsys.readouterr().out
            rows.write_text(json.dumps({"id": "sv.ours.0", "status": "ok", "wall_s": 2.0, "detail": "one row"}) + "\n")
            if on_tick is not None:
                on_tick()
            if os.environ.get("FAKE_KILL") == "1":
                raise SystemExit(143)  # the device's limit (SIGTERM) in the middle of the step
            return -9, f"timed out after {limit:.0f} s"
        return 0, ""

    monkeypatch.setattr(gpu_check, "run_job_process", fake_job)
    argv = ["run", "--dry-run", "--out", str(out), "--work", str(work), "--kit", str(tmp_path),
            "--steps", "sv_funasr,sv_ours,nano"]
    assert gpu_check.main(argv) == 0

    assert before["txt"] is not None, "nothing was written to $OUT before the second step started"
    assert "figures of the first step" in before["txt"] and "12.5" in before["txt"]
    assert "sv.funasr.0" in before["stdout"] and "figures of the first step" in before["stdout"]
    assert "partial table: sv_funasr ended" in before["stdout"] and "12.5" in before["stdout"]
    table = (out / "gpu_check.txt").read_text()
    assert "one row" in table  # the cut step's own row, printed and kept
    assert "failed: step sv_ours timed out after" in table
    assert json.loads((out / "gpu_check.json").read_text())["rows"]["sv.funasr.0"]["wall_s"] == 12.5

    # the whole call stopped in the middle of sv_ours: what came before is in $OUT all the same
    monkeypatch.setenv("FAKE_KILL", "1")
    with pytest.raises(SystemExit):
        gpu_check.main(argv)
    table = (out / "gpu_check.txt").read_text()
    assert "figures of the first step" in table and "one row" in table
    assert "not run: the run was stopped before this step" in table  # nano
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["rows"]["sv.funasr.0"]["status"] == "ok" and result["rows"]["nano"]["status"].startswith("not run")


def _build_fake_cublas(folder: Path) -> None:
    """libcublasLt.so.13 and libcublas.so.13 (which needs the Lt one, as the real one does), with
    the real sonames; cublasGetProperty() answers 1301 through the Lt library."""
    folder.mkdir(parents=True)
    (folder / "lt.c").write_text("int lt_major(void) { return 13; }\n")
    (folder / "cublas.c").write_text("int lt_major(void);\nint cublasGetProperty(void) { return lt_major() * 100 + 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / "libcublasLt.so.13"), "-Wl,-soname,libcublasLt.so.13",
                    str(folder / "lt.c")], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(folder / "libcublas.so.13"), "-Wl,-soname,libcublas.so.13",
                    str(folder / "cublas.c"), f"-L{folder}", "-l:libcublasLt.so.13"], check=True)


@pytest.mark.skipif(not shutil.which("gcc"), reason="builds two tiny shared libraries with gcc")
def test_the_cublas_12_shim_is_built_over_torchs_own_cuda_13_wheels(tmp_path, monkeypatch):
    """Issue 17: the cuBLAS folder is searched where torch is installed (the image's python3 has
    torch in /opt/torch/.venv, not in sysconfig's purelib), CUDA 13's nvidia/cu13/lib layout; where
    only libcublas(Lt).so.13 exist, the shim gives them the .so.12 names ctranslate2 loads, and
    the steps' LD_LIBRARY_PATH makes `libcublas.so.12` load, with what it needs, from there."""
    import importlib.util
    import types

    site = tmp_path / "torch-venv" / "site-packages"
    libs = site / "nvidia" / "cu13" / "lib"
    _build_fake_cublas(libs)
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text("")
    fake_torch = types.ModuleType("torch")
    fake_torch.__spec__ = importlib.util.spec_from_file_location("torch", site / "torch" / "__init__.py")
    fake_torch.__file__ = str(site / "torch" / "__init__.py")
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setattr(gpu_check, "DEV", tmp_path / "dev")
    monkeypatch.setattr(gpu_check, "SYSTEM_LIB_GLOBS", (), raising=False)      # this machine's own
    monkeypatch.setattr(gpu_check, "_ldconfig_lines", lambda: [], raising=False)  # folders stay out
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)

    env = gpu_check.child_env(dry=False)
    shim = tmp_path / "dev" / "cuda12shim"
    assert "shim" in env["GPU_CHECK_CUBLAS"], env["GPU_CHECK_CUBLAS"]
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[:2] == [str(shim), str(libs)]
    assert (shim / "libcublas.so.12").resolve() == (libs / "libcublas.so.13").resolve()
    assert (shim / "libcublasLt.so.12").resolve() == (libs / "libcublasLt.so.13").resolve()
    probe = "import ctypes; print(ctypes.CDLL('libcublas.so.12').cublasGetProperty())"
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
    assert proc.stdout.strip() == "1301", proc.stderr  # the .so.12 name, and .so.13's own needs, resolved

    again = gpu_check.child_env(dry=False)  # a second run replaces the links, same answer
    assert again["LD_LIBRARY_PATH"] == env["LD_LIBRARY_PATH"]

    (libs / "libcublas.so.12").symlink_to(libs / "libcublas.so.13")  # a real .so.12 there: no shim
    assert gpu_check.cublas_shim() == ([str(libs)], f"libcublas.so.12 in {libs}")


def test_the_run_part_carries_what_every_step_needs(tmp_path, monkeypatch):
    """Issue 17: `prepare` packs the items every step needs into the LAST part (the run call's own),
    the Whisper-only ones into the staging parts; a run on a machine that never got the stages
    skips only the Whisper steps, saying which parts they lacked."""
    monkeypatch.setattr(gpu_check, "PARTS", tmp_path / "parts")
    monkeypatch.setattr(gpu_check, "DEV", tmp_path / "dev")
    monkeypatch.setattr(gpu_check, "finish_install", lambda state: None)
    items = []
    for name, size, steps in (("core.tar", 200_000, ()), ("whisper.tar", 700_000, gpu_check.WHISPER_STEPS)):
        src = tmp_path / name.replace(".tar", ".bin")
        src.write_bytes(os.urandom(size))
        with tarfile.open(tmp_path / name, "w") as tar:
            tar.add(src, arcname=src.name)
        items.append(gpu_check.Item(name, "tar", name[:-4], name, tmp_path / name, steps))
    manifest = gpu_check.pack(items, limit=300_000, run_part_first=True)
    last = len(manifest["parts"])
    assert last == 4
    assert {p["part"] for p in manifest["items"][0]["pieces"]} == {last}

    hidden = tmp_path / "stages"
    hidden.mkdir()
    for k in range(1, last):
        (tmp_path / "parts" / str(k)).rename(hidden / str(k))
    blocked = gpu_check.blocked_steps(gpu_check.receive(verbose=False))
    assert set(blocked) == set(gpu_check.WHISPER_STEPS), blocked
    assert "whisper.tar (parts 1,2,3,4)" in blocked["wh_ours"]
    assert (tmp_path / "dev" / "core" / "core.bin").is_file()
