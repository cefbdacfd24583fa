#!/bin/sh
# The compose file's one-shot `pilot-token` job (runs in hposteer/service, as uid 1000): create a pilot
# token once and leave it in the shared `tokens` volume, from which the pilot reads it
# (HPOSTEER_TOKEN_FILE). A second `up` finds it there and does nothing. The database is reached through
# HPOSTEER_DATABASE_URL, as the service's; `hposteer token create` prints only the secret on stdout.
set -eu
file=/run/hposteer/pilot-token
if [ -s "$file" ]; then
  echo "pilot-token: $file exists; nothing to do (rotate: docs/operator.md, Tokens)"
  exit 0
fi
umask 077
hposteer token create --role pilot --owner "${PILOT_OWNER:-compose-site}" --label "compose pilot" > "$file.tmp"
mv "$file.tmp" "$file"
echo "pilot-token: created $file"
