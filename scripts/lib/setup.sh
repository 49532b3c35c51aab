# Shared set-up for scripts/serve, scripts/test and scripts/bench (sourced, not run).
# Creates .venv and installs the project with the extras asked for; a second run with an
# unchanged pyproject.toml does nothing, so it takes well under a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
cd "$ROOT"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  echo "streamchat needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

# Run a long command quietly, printing a heartbeat so a slow first install never looks stuck.
with_heartbeat() {
  local label="$1" log="$2"; shift 2
  local start=$SECONDS
  "$@" >"$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null && say "$label … $((SECONDS - start))s"
  done
  if ! wait "$pid"; then
    echo "---- last lines of $log ----" >&2
    tail -n 40 "$log" >&2
    say "$label failed (full log: $log)"
    return 1
  fi
  say "$label done in $((SECONDS - start))s"
}

# ensure_venv EXTRAS  e.g. ensure_venv local,dev  (ensure_venv "": the base install only)
ensure_venv() {
  local extras="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    say "Creating virtual environment in .venv"
    "$(find_python)" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel >/dev/null 2>&1
  fi
  # One stamp per extra, holding the pyproject.toml hash it was installed from: `serve` after
  # `test` (or the other way round) installs nothing new.
  local want extra missing=""
  want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
  for extra in base ${extras//,/ }; do
    [ "$(cat "$VENV/.installed-$extra" 2>/dev/null)" = "$want" ] || missing="$missing $extra"
  done
  # The embedded model's stack first, so that pip finds llama-cpp-python installed and never compiles
  # it itself: a wheel built once per machine (see install_local.py); a no-op when nothing changed.
  if [[ ",$extras," == *",local,"* ]]; then
    "$VENV/bin/python" scripts/lib/install_local.py install
  fi
  [ -n "$missing" ] || return 0
  local spec="."
  [ -z "$extras" ] || spec=".[$extras]"
  say "Installing streamchat${spec#.}"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
    with_heartbeat "pip install" "$VENV/install.log" \
    "$VENV/bin/python" -m pip install --progress-bar off -e "$spec"
  for extra in base ${extras//,/ }; do echo "$want" >"$VENV/.installed-$extra"; done
}

# The chat page's browser libraries (markdown-it, DOMPurify, highlight.js): `npm ci` from
# src/streamchat/web/package-lock.json, then vendor.mjs copies their minified builds into
# src/streamchat/web/static/vendor/ (served from there, and package data in a wheel). The stamp
# holds the hash of what they came from, so a second run does nothing.
ensure_page_assets() {
  local web="$ROOT/src/streamchat/web"
  local stamp="$web/static/vendor/.stamp" want
  want="$(cat "$web/package-lock.json" "$web/vendor.mjs" | sha256sum | cut -d' ' -f1)"
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  command -v npm >/dev/null || {
    echo "npm is needed once, to install the chat page's Markdown libraries (install Node.js 20+)" >&2; return 1; }
  say "Installing the chat page's libraries (npm ci in src/streamchat/web)"
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error && node vendor.mjs)
  echo "$want" >"$stamp"
}
