#!/usr/bin/env bash
# Creates the role and database pgdog proxies to. Run once by the postgres image's entrypoint
# (mounted into /docker-entrypoint-initdb.d) on an empty data directory, as POSTGRES_USER.
#
# PGDOG_DB_USER / PGDOG_DB_NAME / PGDOG_DB_PASSWORD (defaults pgdog / pgdog / pgdog) must match
# users.toml. Safe to run again: an existing role gets the password, an existing database is kept.
set -euo pipefail

user=${PGDOG_DB_USER:-pgdog}
db=${PGDOG_DB_NAME:-pgdog}
password=${PGDOG_DB_PASSWORD:-pgdog}

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
     --dbname "${POSTGRES_DB:-postgres}" \
     -v user="$user" -v db="$db" -v password="$password" <<'SQL'
SET password_encryption = 'scram-sha-256';
SELECT format('CREATE ROLE %I LOGIN', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'user', :'password') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
