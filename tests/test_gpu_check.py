"""scripts/bench/gpu_check: the one-command GPU proof (issue 11, item 7), checked without a GPU.

The CPU dry run of its fastest steps (the table keeps every row; the steps run end to end and
none crashes), and the packing that carries the kit in parts under the device tool's 64 MiB
(split, checked and put back together). The whole dry run takes minutes on this machine:
`bash scripts/bench/gpu_check.sh --dry-run`, or GPU_CHECK_TEST_STEPS=all here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "gpu-kit"
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

import gpu_check

# The steps a CI run can afford (about a minute on two cores): the SenseVoice step covers the
# pipeline, release vs keep, the co-tenant process and the VRAM cap; nano builds Fun-ASR-Nano
# from funasr's own class.
FAST_STEPS = "sv_ours,nano"


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

    if "sv_ours" in selected:
        co = result["rows"]["co.sv"]
        assert co["all_segments"] and not co["error"]
        assert co["cotenant_at"] is not None, "the co-tenant must arrive mid-run, between batches"
        assert result["targets"]["co.sv"][0].endswith("PASS"), result["targets"]["co.sv"]
        assert result["rows"]["rk.keep"]["wall_s"] > 0 and result["rows"]["rk.release"]["wall_s"] > 0
    if "nano" in selected:
        assert result["rows"]["nano"]["all_segments"]
        assert "FunASRNano" in result["rows"]["nano"]["detail"]


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
