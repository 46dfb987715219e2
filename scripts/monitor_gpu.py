"""Watch the GPU's memory (NVML) and ask the running app for a Deep GPU cleanup when it is high.

    .venv/bin/python scripts/monitor_gpu.py --once --threshold-percent 85          # from cron
    .venv/bin/python scripts/monitor_gpu.py --interval 60 --threshold-gb 60       # a loop (systemd)
    .venv/bin/python scripts/monitor_gpu.py --dry-run -v                          # what it would do

Each check reads the card's used memory from NVML (every process on the card, as nvidia-smi
shows it). At or above the threshold it calls POST /api/deep_cleanup on the app, which returns
the memory torch (and the loaded model) cache but no longer use to the driver, and logs one
line with the bytes freed. After a cleanup it waits --cooldown seconds before the next one.
With -v every check is logged too.

The app is asked GET /api/health once at the start, so a wrong --url or login fails at once.
Logins: the app's --auth-file (one user:password a line; the first is used) or $WEBUI_AUTH
(user:password[,...]), sent as HTTP Basic; none when the app runs without logins.

Exit status: 0 fine, 1 the app is unreachable or refused the call, 2 bad arguments, 3 no NVML
(no NVIDIA driver or pynvml) and no --used-bytes. --dry-run reads the memory and the app's
health and says what it would do; without NVML it says so and still shows the rule.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("monitor_gpu")

GB = 1e9
DEFAULT_PERCENT = 85.0


class AppError(Exception):
    """The app cannot be reached, refused the login or answered with an error."""


class NoNvml(Exception):
    """No NVML here (no NVIDIA driver, or pynvml missing)."""


@dataclass(frozen=True)
class Reading:
    used: int
    total: int | None  # None when only --used-bytes is known


@dataclass(frozen=True)
class Rule:
    percent: float | None = None
    bytes: int | None = None

    def limit(self, total: int | None) -> int | None:
        """The threshold in bytes; None when a percentage has no card total to apply to."""
        if self.bytes is not None:
            return self.bytes
        return None if total is None else int(total * self.percent / 100)

    def describe(self) -> str:
        return f"{self.bytes / GB:.2f} GB ({self.bytes} bytes)" if self.bytes is not None else f"{self.percent:g} % of the card"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitor_gpu.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7860", help="the app (default http://127.0.0.1:7860)")
    parser.add_argument("--auth-file", type=Path, metavar="FILE",
                        help="the app's login file (user:password lines; the first login is used); "
                             "default $WEBUI_AUTH, else no login")
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--threshold-percent", type=float, metavar="P",
                       help=f"clean up at or above P %% of the card's memory in use (default {DEFAULT_PERCENT:g})")
    limit.add_argument("--threshold-gb", type=float, metavar="G", help="clean up at or above G GB (10^9 bytes) in use")
    limit.add_argument("--threshold-bytes", type=int, metavar="N", help="clean up at or above N bytes in use")
    parser.add_argument("--gpu", type=int, default=0, metavar="INDEX",
                        help="the CUDA device index the app uses (default 0; CUDA_VISIBLE_DEVICES applies as for the app)")
    parser.add_argument("--once", action="store_true", help="check once and exit (cron)")
    parser.add_argument("--interval", type=float, default=60.0, metavar="SECONDS",
                        help="seconds between checks in the loop (default 60)")
    parser.add_argument("--cooldown", type=float, default=300.0, metavar="SECONDS",
                        help="in the loop, no second cleanup within this many seconds of one (default 300)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="HTTP timeout for the app (default 60)")
    parser.add_argument("--used-bytes", type=int, metavar="N",
                        help="take N bytes as the memory in use instead of asking NVML (tests, or a "
                             "machine without a GPU)")
    parser.add_argument("--total-bytes", type=int, metavar="N",
                        help="the card's size for --threshold-percent (default: NVML's figure; needed with --used-bytes)")
    parser.add_argument("--dry-run", action="store_true", help="log what would be done; never call the cleanup")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every check")
    return parser


def rule_from(args: argparse.Namespace) -> Rule:
    if args.threshold_bytes is not None:
        return Rule(bytes=args.threshold_bytes)
    if args.threshold_gb is not None:
        return Rule(bytes=int(args.threshold_gb * GB))
    return Rule(percent=DEFAULT_PERCENT if args.threshold_percent is None else args.threshold_percent)


def login(auth_file: Path | None) -> tuple[str, str] | None:
    """The first login of the app's --auth-file, else of $WEBUI_AUTH (the server's own reader)."""
    if auth_file is None and not os.environ.get("WEBUI_AUTH", "").strip():
        return None  # no login: spare the import of the server (and torch) for a cron job
    from webui.server import read_logins

    logins = read_logins(auth_file, None)
    return logins[0] if logins else None


# --- NVML ------------------------------------------------------------------------------


class Nvml:
    """The card's memory through webui.modules.gpu (the app's own NVML handle lookup)."""

    def __init__(self, index: int) -> None:
        try:
            from webui.modules import gpu

            self._pynvml = gpu._nvml()  # imports pynvml and initialises NVML
            self._handle = gpu._nvml_handle(index)  # same card as the app's cuda:INDEX
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound / DriverNotLoaded, ...
            raise NoNvml(f"{type(exc).__name__}: {exc}") from None
        name = self._pynvml.nvmlDeviceGetName(self._handle)
        self.name = name.decode() if isinstance(name, bytes) else str(name)

    def read(self) -> Reading:
        try:
            info = self._pynvml.nvmlDeviceGetMemoryInfo(self._handle)
        except Exception as exc:  # the driver went away, the card fell off the bus
            raise NoNvml(f"{type(exc).__name__}: {exc}") from None
        return Reading(used=int(info.used), total=int(info.total))


# --- the app ---------------------------------------------------------------------------


class App:
    def __init__(self, url: str, credentials: tuple[str, str] | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Accept": "application/json"}
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def call(self, method: str, route: str) -> dict:
        url = f"{self.url}{route}"
        request = urllib.request.Request(url, method=method, headers=self._headers,
                                         data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise AppError(f"{method} {url}: the app wants a login (401): check --auth-file or $WEBUI_AUTH") from None
            raise AppError(f"{method} {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AppError(f"cannot reach the app at {self.url} ({reason}); is it running? (--url)") from None
        except json.JSONDecodeError:
            raise AppError(f"{method} {url}: the answer is not JSON; is --url the transcription app?") from None

    def health(self) -> dict:
        return self.call("GET", "/api/health")

    def deep_cleanup(self) -> dict:
        return self.call("POST", "/api/deep_cleanup")


# --- the checks ------------------------------------------------------------------------


def _gb(n: int | None) -> str:
    return "?" if n is None else f"{n / GB:.2f} GB"


class Monitor:
    def __init__(self, args: argparse.Namespace, app: App, nvml: Nvml | None) -> None:
        self.args, self.app, self.nvml = args, app, nvml
        self.rule = rule_from(args)
        self.last_cleanup: float | None = None

    def reading(self) -> Reading:
        if self.nvml is None:  # --used-bytes
            return Reading(self.args.used_bytes, self.args.total_bytes)
        measured = self.nvml.read()
        return Reading(measured.used, measured.total if self.args.total_bytes is None else self.args.total_bytes)

    def check(self) -> None:
        """One check: read, compare, maybe clean up (AppError propagates)."""
        now = time.monotonic()
        reading = self.reading()
        limit = self.rule.limit(reading.total)
        assert limit is not None, "main() checks that a percentage has a total"
        card = f" of {_gb(reading.total)}" if reading.total is not None else ""
        state = f"used {_gb(reading.used)}{card}, threshold {_gb(limit)}"
        if reading.used < limit:
            log.debug("check: %s: below the threshold, nothing to do", state)
            return
        if self.last_cleanup is not None and now - self.last_cleanup < self.args.cooldown:
            log.debug("check: %s: at or above the threshold, but the last cleanup was %.0f s ago "
                      "(cooldown %g s)", state, now - self.last_cleanup, self.args.cooldown)
            return
        if self.args.dry_run:
            log.info("dry run: %s: would POST %s/api/deep_cleanup", state, self.app.url)
            return
        result = self.app.deep_cleanup()
        self.last_cleanup = time.monotonic()
        freed = int(result.get("freed_bytes", 0))
        after = (result.get("after") or {}).get("nvml_used")
        note = f"; {result['note']}" if result.get("note") else ""
        log.info("deep_cleanup: %s: freed %d bytes (%s); card now %s%s", state, freed, _gb(freed),
                 _gb(after) if after is not None else "unknown", note)


def _stop_on_signals() -> list[int]:
    """SIGINT and SIGTERM end the loop after the current check. A flag, not KeyboardInterrupt:
    Python drops an exception raised while a finalizer runs (a socket closed by the garbage
    collector), and a monitor that then ignores one Ctrl-C or systemd's stop is a stuck service."""
    received: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: received.append(number))
    return received


def _sleep_unless(stopping: list[int], seconds: float) -> None:
    end = time.monotonic() + seconds
    while not stopping and (left := end - time.monotonic()) > 0:
        time.sleep(min(0.2, left))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s monitor_gpu: %(message)s", stream=sys.stdout)
    if args.interval <= 0 or args.cooldown < 0 or args.timeout <= 0:
        parser.error("--interval and --timeout must be above 0, --cooldown 0 or more")
    for name in ("threshold_bytes", "used_bytes", "total_bytes", "threshold_gb", "threshold_percent"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more")
    try:
        credentials = login(args.auth_file)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    app = App(args.url, credentials, args.timeout)
    rule = rule_from(args)

    nvml: Nvml | None = None
    if args.used_bytes is not None:
        log.debug("memory in use taken from --used-bytes: %d", args.used_bytes)
        if rule.bytes is None and args.total_bytes is None:
            parser.error("--threshold-percent needs the card's size: with --used-bytes give --total-bytes, "
                         "or use --threshold-gb / --threshold-bytes")
    else:
        try:
            nvml = Nvml(args.gpu)
            log.debug("NVML: GPU %d is %s", args.gpu, nvml.name)
        except NoNvml as exc:
            message = f"NVML is not available here ({exc}): no GPU memory to watch"
            if not args.dry_run:
                print(f"error: {message}; run it where the app's NVIDIA GPU is, or give --used-bytes",
                      file=sys.stderr)
                return 3
            log.info("dry run: %s. On a GPU machine it would POST %s/api/deep_cleanup whenever the "
                     "memory in use is at or above %s, checking %s.", message, app.url, rule.describe(),
                     "once" if args.once else f"every {args.interval:g} s (cooldown {args.cooldown:g} s)")

    try:
        health = app.health()
        log.debug("app at %s: %s, device %s, model %s, %s", app.url, health.get("status"), health.get("device"),
                  health.get("model") or "none loaded", "a job running" if health.get("running") else "idle")
        if args.dry_run:
            log.info("dry run: the app at %s answers /api/health (device %s)", app.url, health.get("device"))
        if nvml is None and args.used_bytes is None:
            return 0  # the dry run without NVML: the rule and the app's reachability were shown
        monitor = Monitor(args, app, nvml)
        stopping = _stop_on_signals()
        while not stopping:
            monitor.check()
            if args.once:
                return 0
            _sleep_unless(stopping, args.interval)
        log.debug("stopped by a signal")
        return 0
    except AppError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except NoNvml as exc:
        print(f"error: NVML stopped answering ({exc})", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
