"""The host allocator: CTranslate2's large per-batch buffers are reused, not mapped afresh.

Each case runs in a fresh interpreter (glibc fixes its arena limit when the second thread first
allocates), and allocates, touches and frees a 256 MB buffer ten times on a worker thread, as
CTranslate2 does with its encoder buffers, counting the page faults of the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import ctypes, json, resource, threading
import webui

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 256 << 20

def touched():  # malloc and write every byte, as CTranslate2 fills its buffers (no huge pages)
    p = libc.malloc(SIZE)
    ctypes.memset(p, 1, SIZE)
    return p

def churn(out):
    libc.free(touched())  # the first one faults its pages in either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        libc.free(touched())
    out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

out = []
t = threading.Thread(target=churn, args=(out,)); t.start(); t.join()
print(json.dumps({"tuned": webui.ALLOCATOR_TUNED, "faults": out[0]}))
"""


def _run(extra_env: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(extra_env)
    done = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_large_buffers_of_a_worker_thread_are_reused_not_refaulted():
    tuned = _run({})
    default = _run({"WEBUI_MALLOC": "default"})
    assert tuned["tuned"] is True and default["tuned"] is False
    pages = (256 << 20) // os.sysconf("SC_PAGE_SIZE")
    # glibc's defaults: every buffer a fresh mapping, each of its pages faulted in again
    assert default["faults"] > 5 * pages
    # tuned: the freed buffer stays in the heap and the next one reuses its pages
    assert tuned["faults"] < pages // 2


def test_an_allocator_set_from_outside_is_left_alone():
    assert _run({"MALLOC_ARENA_MAX": "4"})["tuned"] is False


_BLAS_CHILD = r"""
import json, sys
if sys.argv[1:] == ["numpy-first"]:
    import numpy
import webui, numpy
from threadpoolctl import threadpool_info
print(json.dumps([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]))
"""


@pytest.mark.parametrize("given, expected, first", [(None, 1, "webui-first"), ("2", 2, "webui-first"),
                                                    (None, 1, "numpy-first")])
def test_numpys_blas_runs_one_thread_for_the_whole_process_unless_the_user_sets_it(given, expected, first):
    """The speaker encoder limits numpy's BLAS to one thread for its block, process-wide; a
    window's feature extraction running meanwhile in another thread then got one thread or two
    by timing, and two --diarize runs of a 65-minute recording differed in a few words. One
    thread throughout makes the run repeat itself (measured byte for byte, README)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    out = subprocess.run([sys.executable, "-c", _BLAS_CHILD, first], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    threads = json.loads(out)
    assert threads and set(threads) == {expected}
