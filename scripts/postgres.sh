#!/usr/bin/env bash
# Install (if needed) and start a throwaway PostgreSQL cluster for the test suite.
# Prints the database URL on stdout; everything else goes to stderr.
set -euo pipefail

PGPORT="${BOT_TEST_PGPORT:-54329}"
PGDATA="${BOT_TEST_PGDATA:-/tmp/bot-test-pg}"

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [ -z "$(pg_bin)" ]; then
  echo "installing PostgreSQL (apt-get install postgresql)..." >&2
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
fi
BIN="$(pg_bin)"
[ -n "$BIN" ] || { echo "PostgreSQL is not installed and could not be installed" >&2; exit 1; }

# The server refuses to run as root: run it as the postgres user when we are root.
if [ "$(id -u)" = "0" ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
  AS=(runuser -u postgres --)
else
  AS=()
fi

if ! "${AS[@]}" "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    rm -rf "$PGDATA"
    mkdir -p "$PGDATA"
    [ "$(id -u)" = "0" ] && chown postgres "$PGDATA"
    "${AS[@]}" "$BIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  "${AS[@]}" "$BIN/pg_ctl" -D "$PGDATA" -w -t 60 -l "$PGDATA/server.log" \
    -o "-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2
fi

for db in bot_test bot_bench; do
  "${AS[@]}" "$BIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
    || "${AS[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres "$db"
done

echo "postgresql://postgres@127.0.0.1:$PGPORT/bot_test"
