#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (initdb, postgres, pg_basebackup) are
# installed. Looks where test/pgcluster looks: `pg_config --bindir`, then
# /usr/lib/postgresql/*/bin. Installs Debian's postgresql package when none is
# found and we are root.
set -euo pipefail
have_server() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && return 0
  fi
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && return 0
  done
  return 1
}
if have_server; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries not found; installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql postgresql-contrib >/dev/null
  # Debian starts a cluster of its own on 5432; we never use it.
  have_server && exit 0
fi
echo "PostgreSQL server binaries (initdb, postgres) not found: install PostgreSQL >= 15 server packages" >&2
exit 1
