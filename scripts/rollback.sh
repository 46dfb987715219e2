#!/usr/bin/env bash
# Put .venv back to exactly what last passed CI: requirements.lock (scripts/lock_requirements.sh),
# every file checked against its sha256.
#
#   bash scripts/rollback.sh --dry-run     # what would change (installed versions vs the lock); changes nothing
#   bash scripts/rollback.sh               # install the lock's versions, remove packages it does not list
#   bash scripts/rollback.sh --verify      # dry run, then let pip fetch and hash-check every locked file
#
# Options: --keep-extra (leave packages the lock does not list), --force (reinstall every package,
# not only those that differ), --venv DIR (default .venv), --lock FILE (default requirements.lock).
# pip, setuptools and wheel are never touched (the lock leaves them out, as pip freeze does).
# Exit status: 0 done or no change, 1 an error (pip failed, no venv or lock), 2 bad arguments.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
LOCK=requirements.lock
DRY=0 VERIFY=0 KEEP=0 FORCE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run|-n) DRY=1; shift ;;
    --verify) DRY=1; VERIFY=1; shift ;;
    --keep-extra) KEEP=1; shift ;;
    --force) FORCE=1; shift ;;
    --venv) VENV=${2:?--venv needs a folder}; shift 2 ;;
    --lock) LOCK=${2:?--lock needs a file}; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "rollback.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "error: no virtual environment at $VENV (run scripts/setup.sh)" >&2; exit 1; }
[ -f "$LOCK" ] || { echo "error: no lock file $LOCK (run scripts/lock_requirements.sh)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip list --format=json --exclude pip --exclude setuptools --exclude wheel --exclude distribute \
  > "$work/installed.json"

# The plan: one line per difference, "install NAME VERSION", "change NAME OLD NEW", "remove NAME OLD".
"$PY" - "$LOCK" "$work/installed.json" "$KEEP" > "$work/plan.txt" <<'PY'
import json, re, sys

def key(name):
    return re.sub(r"[-_.]+", "-", name).lower()

lock_path, installed_path, keep_extra = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
locked, logical = {}, ""
for raw in open(lock_path, encoding="utf-8"):
    line = raw.split("#", 1)[0].rstrip() if raw.lstrip().startswith("#") else raw.rstrip("\n")
    logical += line.rstrip("\\").strip() + " "
    if line.endswith("\\"):
        continue
    spec, logical = logical.split("--hash", 1)[0].strip(), ""
    if not spec:
        continue
    m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", spec)
    if not m:
        sys.exit(f"error: {lock_path}: not a pinned requirement: {spec!r}")
    locked[key(m.group(1))] = (m.group(1), m.group(2))
installed = {key(d["name"]): (d["name"], d["version"]) for d in json.load(open(installed_path))}
for k, (name, version) in sorted(locked.items()):
    if k not in installed:
        print(f"install {name} {version}")
    elif installed[k][1] != version:
        print(f"change {name} {installed[k][1]} {version}")
for k, (name, version) in sorted(installed.items()):
    if k not in locked and not keep_extra:
        print(f"remove {name} {version}")
PY

changes=$(grep -c . "$work/plan.txt" || true)
if [ "$DRY" = 1 ]; then
  if [ "$changes" = 0 ]; then
    if [ "$KEEP" = 1 ]; then
      echo "no change: $VENV has every package of $LOCK at its locked version ($(grep -c '^[A-Za-z0-9]' "$LOCK") packages; others left alone)"
    else
      echo "no change: $VENV matches $LOCK ($(grep -c '^[A-Za-z0-9]' "$LOCK") packages)"
    fi
  else
    echo "dry run: $changes change(s) would bring $VENV back to $LOCK:"
    awk '$1 == "install" {print "  install " $2 "==" $3 " (missing)"}
         $1 == "change"  {print "  change  " $2 " " $3 " -> " $4}
         $1 == "remove"  {print "  remove  " $2 " " $3 " (not in the lock)"}' "$work/plan.txt"
  fi
  if [ "$VERIFY" = 1 ]; then
    echo "verify: fetching and hash-checking every file in $LOCK (nothing is installed) ..."
    if "$PY" -m pip install --dry-run --ignore-installed --no-deps --require-hashes -q -r "$LOCK" \
         2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); then
      echo "verify: every locked file is available and matches its hash"
    else
      echo "error: the lock cannot be installed as it stands (see pip's message above)" >&2
      exit 1
    fi
  fi
  exit 0
fi

if [ "$changes" = 0 ] && [ "$FORCE" = 0 ]; then
  echo "no change: $VENV matches $LOCK"
  exit 0
fi
extra=()
if [ "$FORCE" = 1 ]; then extra+=(--force-reinstall); fi
echo "installing $LOCK into $VENV (hashes required) ..."
"$PY" -m pip install --require-hashes --no-deps "${extra[@]}" -r "$LOCK" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
mapfile -t remove < <(awk '$1 == "remove" {print $2}' "$work/plan.txt")
if [ ${#remove[@]} -gt 0 ]; then
  echo "removing packages the lock does not list: ${remove[*]}"
  "$PY" -m pip uninstall -y "${remove[@]}"
fi
"$PY" -m pip check || echo "warning: pip check reports the problems above" >&2
echo "done: $VENV is $LOCK"
