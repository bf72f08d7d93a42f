#!/bin/sh
# One-shot job (docker-compose.yml service "temporal-schema", image temporalio/admin-tools):
# create Temporal's two PostgreSQL databases and bring both schemas to the version that the
# admin-tools image ships, which must be the server's version (both are pinned together in
# docker-compose.yml). Every step is idempotent, so the job runs again on every `up`:
#   create          - an existing database is left alone;
#   setup-schema    - only initialises a database that has no schema version yet;
#   update-schema   - applies only the versioned migrations newer than the database's.
# Upgrading Temporal = bump both image tags; this job migrates before the server starts.
#
# Environment: POSTGRES_SEEDS (host), DB_PORT, POSTGRES_USER, SQL_PASSWORD (read by
# temporal-sql-tool itself, so the password never appears in a command line).
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS (the PostgreSQL host) is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD is required}"
PORT=${DB_PORT:-5432}
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

sql_tool() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$PORT" -u "$POSTGRES_USER" "$@"
}

# The compose healthcheck already waited for PostgreSQL; this covers a restart in between.
attempt=1
until nc -z -w 5 "$POSTGRES_SEEDS" "$PORT"; do
    if [ "$attempt" -ge 30 ]; then
        echo "temporal-schema: PostgreSQL at $POSTGRES_SEEDS:$PORT is unreachable" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 2
done

# database name : schema directory
for pair in temporal:temporal temporal_visibility:visibility; do
    db=${pair%%:*}
    dir=$SCHEMA_ROOT/${pair#*:}/versioned
    echo "temporal-schema: database $db"
    sql_tool --db "$db" create
    sql_tool --db "$db" setup-schema -v 0.0
    sql_tool --db "$db" update-schema -d "$dir"
done
echo "temporal-schema: both databases are up to date"
