#!/usr/bin/env bash
# ensure-drivers.sh installs what test/e2e/drivers_test.go runs: psycopg 3,
# psycopg2, asyncpg, SQLAlchemy and Django for the system Python, a JDK and pgjdbc (Debian
# packages), node-postgres, postgres.js and Sequelize (npm ci from
# test/e2e/drivers/node/package-lock.json). It changes nothing when they are
# already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

apt_install() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-drivers: cannot install $* (needs root and apt-get)" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  }
}

if ! /usr/bin/python3 -c 'import psycopg, psycopg2, asyncpg, django, sqlalchemy' 2>/dev/null; then
  echo "ensure-drivers: installing python3-psycopg, python3-psycopg2, python3-asyncpg, python3-django and python3-sqlalchemy"
  apt_install python3 python3-psycopg python3-psycopg2 python3-asyncpg python3-django python3-sqlalchemy
fi
if ! command -v javac >/dev/null 2>&1 || [ ! -f /usr/share/java/postgresql.jar ]; then
  echo "ensure-drivers: installing a JDK and pgjdbc (libpostgresql-jdbc-java)"
  apt_install default-jdk-headless libpostgresql-jdbc-java
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "ensure-drivers: installing nodejs and npm"
  apt_install nodejs npm
fi
dir=test/e2e/drivers/node
if [ ! -d "$dir/node_modules/pg" ] || [ ! -d "$dir/node_modules/postgres" ] || [ ! -d "$dir/node_modules/sequelize" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
  echo "ensure-drivers: npm ci in $dir"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
