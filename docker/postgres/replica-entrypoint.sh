#!/bin/bash
# Entrypoint of a streaming replica built on the official postgres image:
# on first start it clones the primary with pg_basebackup (writing
# standby.signal and primary_conninfo, -R) through the slot the primary's
# init script created, then hands over to the image's own entrypoint, which
# finds a data directory and starts postgres as a hot standby.
# Environment: PRIMARY_HOST, PRIMARY_PORT (5432), REPLICATION_PASSWORD,
# REPLICA_SLOT.
set -euo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
: "${PRIMARY_PORT:=5432}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    export PGPASSWORD="$REPLICATION_PASSWORD"
    until pg_isready -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U replicator -q; do
        echo "replica: waiting for $PRIMARY_HOST:$PRIMARY_PORT"
        sleep 1
    done
    # The slot may not exist yet if the primary is still running its init scripts.
    until gosu postgres pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U replicator \
            -D "$PGDATA" -X stream -R -S "$REPLICA_SLOT" --checkpoint=fast; do
        echo "replica: pg_basebackup failed, retrying"
        rm -rf "${PGDATA:?}"/*
        sleep 2
    done
    unset PGPASSWORD
fi

exec docker-entrypoint.sh "$@"
