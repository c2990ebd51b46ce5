#!/usr/bin/env bash
# Installs everything, then runs the daemon on the embedded default (SQLite, local storage,
# offline PocketSphinx + rule checks) with a demo campaign and an SFTP user whose login it prints.
# Data lives in ./var (or INGESTD_DATA_DIR); run it again and it reuses both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

ING=.venv/bin/ingestd
DATA_DIR="${INGESTD_DATA_DIR:-./var}"
mkdir -p "$DATA_DIR"

if ! "$ING" campaign show demo >/dev/null 2>&1; then
  "$ING" campaign create "Demo" --slug demo --batch-window 60 >/dev/null
  "$ING" check add --campaign demo --name greeting --kind phrase \
    --phrase "thank you for calling" --speaker agent --within 15
  "$ING" check add --campaign demo --name recording_disclosure --kind phrase \
    --phrase "this call may be recorded for quality and training purposes" --speaker agent \
    --within 30 --critical
  "$ING" check add --campaign demo --name identity_verification --kind phrase \
    --phrase "verify your identity" --phrase "confirm your full name" \
    --phrase "confirm your date of birth" --speaker agent
  "$ING" check add --campaign demo --name closing_offer --kind phrase \
    --phrase "is there anything else I can help you with" --speaker agent
  "$ING" check add --campaign demo --name no_promises --kind forbidden_phrase \
    --phrase "I guarantee" --phrase "you will definitely make money" --critical
  # The test corpus's agents, so calls named like call_JS001_….mp3 link to them.
  "$ING" agent add JS001 --name "James Smith" >/dev/null 2>&1 || true
  "$ING" agent add JD002 --name "Julia Diaz" >/dev/null 2>&1 || true
  "$ING" agent add KL003 --name "Kevin Lee" >/dev/null 2>&1 || true
  "$ING" agent add RB004 --name "Rachel Brooks" >/dev/null 2>&1 || true
  "$ING" agent add ZL005 --name "Zoë Lefèvre" >/dev/null 2>&1 || true
fi

password_file="$DATA_DIR/demo-sftp-password"
if [ ! -s "$password_file" ]; then
  (umask 077; .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))' > "$password_file")
  "$ING" sftp-user remove demo >/dev/null 2>&1 || true
  "$ING" sftp-user add demo --password-stdin --campaign demo < "$password_file"
fi

port="${INGESTD_SFTP__PORT:-2222}"
cat <<EOT

  ingestd demo
  ------------
  SFTP:      sftp -P $port demo@127.0.0.1
  password:  $(cat "$password_file")      (also in $password_file)
  folder:    /demo   (campaign "demo", batch window 60 s, csv optional, 5 rule checks)

  Try:       sftp> cd demo
             sftp> put ../shared/corpus/calls/20260115_JS001_outbound.mp3
  Then:      .venv/bin/ingestd batch list
             .venv/bin/ingestd call list
             .venv/bin/ingestd call show <call id>

EOT
exec "$ING" serve
