#!/usr/bin/env bash
# Installs everything ingestd needs on a fresh Debian machine, idempotently:
# system packages (ffmpeg for audio; OpenSSH's sftp, rclone, lftp and curl for the client tests)
# and a virtualenv in .venv with the package and its test extra. Re-runs are fast: pip runs only
# when pyproject.toml changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v sftp >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v rclone >/dev/null 2>&1 || need_apt+=(rclone)
command -v lftp >/dev/null 2>&1 || need_apt+=(lftp)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# espeak-ng and sox let the bulk-upload test generate its 200 calls with the corpus generator.
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
command -v sox >/dev/null 2>&1 || need_apt+=(sox)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing system packages: ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.ingestd-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing Python packages into .venv" >&2
  log=.venv/pip-install.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip && \
         .venv/bin/python -m pip install -q -e '.[test]'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "bootstrap: pip install failed (log above, also in $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
