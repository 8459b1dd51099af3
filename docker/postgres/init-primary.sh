#!/bin/bash
# Runs once, from /docker-entrypoint-initdb.d, when the official postgres
# image initialises a primary's data directory: a replication role, a
# physical slot per replica, and pg_hba entries for streaming replication.
# Environment (from compose.yaml): REPLICATION_PASSWORD, REPLICA_SLOTS
# (space-separated slot names).
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v repl_password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'repl_password';
SQL

for slot in ${REPLICA_SLOTS:-}; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -c "SELECT pg_create_physical_replication_slot('$slot')"
done

# "all" in pg_hba.conf does not match replication connections.
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
