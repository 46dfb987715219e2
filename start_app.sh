#!/usr/bin/env bash
# Set up if needed, then start the web application on 127.0.0.1:7860 (pass --host/--port/--auth to change).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/python -m webui.server "$@"
