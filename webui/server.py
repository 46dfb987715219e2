"""Starting the app: the command line, auth, allowed paths, the FastAPI mount and the server itself.

    python -m webui.app [--host 127.0.0.1] [--port 7860] [--auth user:pass] [--settings FILE] [--history FILE]
"""

from __future__ import annotations

from .offline import enforce_offline

enforce_offline()

import os  # noqa: E402

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no version check or telemetry at import/launch

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from . import api  # noqa: E402
from .app import build_ui  # noqa: E402
from .context import AppContext  # noqa: E402
from .modules import settings as settings_mod  # noqa: E402
from .ui.common import CSS  # noqa: E402


def parse_auth(values: list[str] | None) -> list[tuple[str, str]]:
    pairs = []
    for value in values or []:
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            raise argparse.ArgumentTypeError(f"--auth wants user:password, not {value!r}")
        pairs.append((user, password))
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m webui.app",
        description="Start the web application (Gradio page plus /api/health and /api/deep_cleanup).",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--auth", action="append", metavar="USER:PASS",
                        help="require a login (Gradio auth; HTTP Basic for /api/*); repeat for more users")
    parser.add_argument("--settings", type=Path, default=None,
                        help="settings file (default $WEBUI_SETTINGS or ./settings.json)")
    parser.add_argument("--history", default=None, help="history database (default: the settings' history_path)")
    return parser


def create_server(settings_path: Path | None = None, history_path: str | None = None,
                  auth: list[tuple[str, str]] | None = None):
    """(FastAPI app, context): everything main() runs, without starting the server."""
    ctx = AppContext.create(settings_path or settings_mod.default_path(), history_path)
    upload_dir = Path(ctx.settings.upload_dir).resolve()
    upload_dir.mkdir(parents=True, exist_ok=True)
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(upload_dir)  # uploads land here (an allowed batch root)
    demo = build_ui(ctx)
    demo.queue(default_concurrency_limit=8)
    app = api.create_app(demo, ctx.queue, device=lambda: ctx.settings.device, auth=auth,
                         allowed_paths=[str(ctx.results_dir)], css=CSS)
    resumed = ctx.queue.resume_unfinished()  # jobs a crash or kill left queued or running
    if resumed:
        logging.getLogger(__name__).info("resuming %d unfinished job(s) from %s", resumed, ctx.history.path)
    return app, ctx


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        auth = parse_auth(args.auth)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, ctx = create_server(args.settings, args.history, auth)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(f"Web UI on http://{shown}:{args.port}  (history: {ctx.history.path.resolve()}; "
          f"settings: {Path(ctx.settings_path).resolve()})",
          flush=True)
    try:
        api.serve(app, args.host, args.port)
    finally:
        ctx.queue.shutdown(timeout=2.0, keep_unfinished=True)  # the next start resumes them
    return 0


if __name__ == "__main__":
    sys.exit(main())
