"""Starting the app: the command line, logins, admins, allowed paths, the FastAPI mount, the
housekeeping timer and the server itself.

    python -m webui.app [--host 127.0.0.1] [--port 7860] [--auth-file FILE] [--admin USER] [--settings FILE]
                        [--api-key-file FILE]

Logins come from a file (--auth-file, one `user:password` a line) or $WEBUI_AUTH
(`user:password,user2:password2`), never from the command line by default: argv is visible in `ps`.
API keys for /v1/* (OpenAI-compatible) likewise: --api-key-file (one `key[:user]` a line) or
$WEBUI_API_KEYS (`key:user,key2`).
"""

from __future__ import annotations

from .offline import enforce_offline

enforce_offline()

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no version check or telemetry at import/launch

from .context import LOCAL, AppContext  # noqa: E402  (imports no gradio: the upload folder is set first)
from .modules import settings as settings_mod  # noqa: E402

log = logging.getLogger(__name__)
Logins = list[tuple[str, str]]


def parse_auth(values: list[str] | None) -> Logins:
    pairs = []
    for value in values or []:
        user, sep, password = value.strip().partition(":")
        if not sep or not user or not password:
            raise argparse.ArgumentTypeError(f"a login must be user:password, not {value.strip()[:40]!r}")
        pairs.append((user, password))
    return pairs


def read_logins(auth_file: Path | None, argv_auth: list[str] | None) -> Logins:
    """Logins from --auth-file, else $WEBUI_AUTH, else (discouraged) --auth."""
    if auth_file is not None:
        try:
            lines = auth_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read --auth-file {auth_file}: {exc.strerror}") from None
        return parse_auth([ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")])
    if os.environ.get("WEBUI_AUTH", "").strip():
        return parse_auth(os.environ["WEBUI_AUTH"].split(","))
    if argv_auth:
        print("warning: --auth puts passwords where `ps` shows them; use --auth-file or WEBUI_AUTH",
              file=sys.stderr)
    return parse_auth(argv_auth)


def read_api_keys(key_file: Path | None) -> list:
    """API keys from --api-key-file, else $WEBUI_API_KEYS (openai_api.ApiKey each)."""
    from .openai_api import parse_api_keys

    if key_file is not None:
        try:
            lines = key_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read --api-key-file {key_file}: {exc.strerror}") from None
    else:
        lines = os.environ.get("WEBUI_API_KEYS", "").split(",")
    try:
        return parse_api_keys(lines)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m webui.app",
        description="Start the web application (Gradio page plus /api/health, /api/deep_cleanup, /metrics "
                    "and the OpenAI-compatible /v1/audio/transcriptions).",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--auth-file", type=Path, default=None, metavar="FILE",
                        help="require a login: FILE holds one user:password a line (or set WEBUI_AUTH="
                             "'user:password,user2:password2'); HTTP Basic with the same logins for /api/*")
    parser.add_argument("--auth", action="append", metavar="USER:PASS",
                        help="a login on the command line (visible in `ps`: prefer --auth-file)")
    parser.add_argument("--admin", action="append", default=[], metavar="USER",
                        help="a login that may change the server's settings in the page and sees every "
                             "user's History (repeat for more); without logins the local user is the admin")
    parser.add_argument("--api-key-file", type=Path, default=None, metavar="FILE",
                        help="API keys for /v1/* (OpenAI-compatible): FILE holds one key[:user] a line (or set "
                             "WEBUI_API_KEYS='key:user,key2'); the user owns the key's jobs. Keys are required "
                             "once there are logins or keys")
    parser.add_argument("--settings", type=Path, default=None,
                        help="settings file (default $WEBUI_SETTINGS or ./settings.json)")
    parser.add_argument("--history", default=None, help="history database (default: the settings' history_path)")
    return parser


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def create_server(settings_path: Path | None = None, history_path: str | None = None,
                  auth: Logins | None = None, admins: list[str] | None = None, host: str = "127.0.0.1",
                  api_keys: list | None = None):
    """(FastAPI app, context): everything main() runs, without starting the server."""
    from .modules.history_db import ServerLock

    local = is_loopback(host)
    ctx = AppContext.create(settings_path or settings_mod.default_path(), history_path, logins=bool(auth),
                            admins=frozenset(admins or ()), local_admin=local)
    ctx.server_lock = ServerLock(ctx.history.path)  # ServedElsewhere: another server resumes its jobs
    upload_dir = Path(ctx.settings.upload_dir).resolve()
    upload_dir.mkdir(parents=True, exist_ok=True)
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(upload_dir)  # before gradio is imported: uploads land here

    from . import api
    from .app import build_ui
    from .ui.common import CSS

    import gradio as gr

    # Downloads are served from where they are written (not copied into Gradio's cache, which
    # has no owners): file_guard serves each download folder to its owner only.
    gr.set_static_paths([str(ctx.results_dir)])
    demo = build_ui(ctx)
    demo.queue(default_concurrency_limit=8)
    # Errors of our own (gr.Error) always show; unexpected ones show their text only to a local admin.
    app = api.create_app(demo, ctx.queue, device=lambda: ctx.settings.device, auth=auth,
                         allowed_paths=[str(ctx.results_dir)], css=CSS, show_error=local and not auth,
                         max_file_size=int(ctx.settings.max_upload_mb * 1e6), ctx=ctx, api_keys=api_keys or ())
    from .logins import keep_logins, login_of, mounted_gradio
    from .upload_quota import UploadQuota

    if auth:  # a restart keeps everyone logged in (the secret and sessions beside the settings file)
        keep_logins(app, Path(ctx.settings_path).resolve().parent, {user for user, _ in auth})
    gradio_app = mounted_gradio(app)
    user_of = (lambda request: login_of(gradio_app, request)) if auth else (lambda request: LOCAL)
    app.add_middleware(UploadQuota, ledger=ctx.uploads, user_of=user_of,
                       quota_bytes=lambda: int(ctx.settings.upload_quota_gb * 1e9))
    if auth:  # with one user there is nobody else's file to keep out
        from .file_guard import OwnFilesOnly

        app.add_middleware(OwnFilesOnly, ctx=ctx, user_of=user_of)
    resumed = ctx.queue.resume_unfinished()  # jobs a crash or kill left queued or running
    if resumed:
        log.info("resuming %d unfinished job(s) from %s", resumed, ctx.history.path)
    return app, ctx


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        auth = read_logins(args.auth_file, args.auth)
        api_keys = read_api_keys(args.api_key_file)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.admin) - {user for user, _ in auth})
    if unknown:
        print(f"error: --admin {', '.join(unknown)}: no such login", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .modules.history_db import ServedElsewhere

    try:
        app, ctx = create_server(args.settings, args.history, auth, args.admin, args.host, api_keys)
    except ServedElsewhere as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from . import api
    from .metrics import Sampler
    from .modules.housekeeping import Housekeeper

    url_host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"Web UI on http://{url_host}:{args.port}  (history: {ctx.history.path.resolve()}; "
          f"settings: {Path(ctx.settings_path).resolve()})", flush=True)
    if not is_loopback(args.host) and not auth:
        print("\n" + "!" * 78 + f"\nWARNING: listening on {args.host} WITHOUT logins: anyone who can reach this "
              "machine can\nupload files and read every transcript. Add --auth-file FILE (and --admin USER).\n"
              + "!" * 78 + "\n", file=sys.stderr, flush=True)
    keeper = Housekeeper(ctx.housekeeping, every=600).start()  # unused uploads go within the hour
    sampler = Sampler(ctx.queue).start()  # the System tab's chart: GPU memory and queue depth
    try:
        api.serve(app, args.host, args.port)
    finally:
        sampler.stop()
        keeper.stop()
        ctx.queue.shutdown(timeout=2.0, keep_unfinished=True)  # the next start resumes them
    return 0


if __name__ == "__main__":
    sys.exit(main())
