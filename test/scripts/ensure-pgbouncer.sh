#!/usr/bin/env bash
# Installs PgBouncer from the Debian package when it is missing (the
# benchmarks compare shardproxy with it), without starting its system
# service.
set -euo pipefail
if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then
	exit 0
fi
echo "installing pgbouncer (Debian package)..." >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
if ! $SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y pgbouncer >/dev/null; then
	$SUDO apt-get update >/dev/null
	$SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y pgbouncer >/dev/null
fi
