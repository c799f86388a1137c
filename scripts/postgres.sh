#!/bin/sh
# Start Debian's PostgreSQL cluster for the coordinator's tests (without
# systemd: pg_ctlcluster) and give it the role the tests connect as:
#   postgres://kiln:kiln@127.0.0.1:5432/postgres
# (the default of KILN_TEST_POSTGRES). Each test creates and drops a
# database of its own. Idempotent; needs root.
set -eu

[ "$(id -u)" = 0 ] || { echo "postgres.sh: run as root" >&2; exit 1; }
case "${1:-start}" in
start) ;;
*) echo "usage: postgres.sh start" >&2; exit 2 ;;
esac

cluster=$(pg_lsclusters --no-header | awk 'NR == 1 { print $1 " " $2 }')
if [ -z "$cluster" ]; then
	# The package makes the cluster main unless told not to; make it here
	# otherwise.
	version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
	[ -n "$version" ] || { echo "postgres.sh: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
	pg_createcluster "$version" main
	cluster="$version main"
fi
# shellcheck disable=SC2086
set -- $cluster
if ! pg_lsclusters --no-header | awk -v v="$1" -v c="$2" '$1 == v && $2 == c { print $4 }' | grep -q online; then
	pg_ctlcluster "$1" "$2" start
fi
su postgres -c "psql -q -v ON_ERROR_STOP=1" <<'SQL'
SELECT 'CREATE ROLE kiln LOGIN CREATEDB'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kiln') \gexec
ALTER ROLE kiln PASSWORD 'kiln';
SQL
