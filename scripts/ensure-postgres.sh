#!/usr/bin/env bash
# Make PostgreSQL's server binaries (initdb, pg_ctl, postgres) available, from
# Debian's `postgresql` package. The PostgreSQL-backed tests start their own
# throwaway cluster on 127.0.0.1 with these binaries; nothing here starts a server.
#
#   scripts/ensure-postgres.sh        # idempotent; prints the binaries' directory
#
# Installing needs root (CI runs as root) or sudo. Any failure stops with a message
# that says what to do; nothing is skipped silently.
set -euo pipefail

find_bindir() {
    local dir
    # Debian's layout: /usr/lib/postgresql/<major>/bin; the newest major wins.
    local candidates=()
    shopt -s nullglob
    candidates=(/usr/lib/postgresql/*/bin)
    shopt -u nullglob
    for dir in $(printf '%s\n' "${candidates[@]}" | sort -t/ -k5 -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    done
    # Elsewhere: whatever initdb is on PATH, if pg_ctl and postgres sit beside it.
    if command -v initdb >/dev/null 2>&1; then
        dir="$(dirname "$(readlink -f "$(command -v initdb)")")"
        if [[ -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            echo "$dir"
            return 0
        fi
    fi
    return 1
}

if bindir="$(find_bindir)"; then
    echo "PostgreSQL server binaries: $bindir ($("$bindir/postgres" --version))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-postgres: PostgreSQL's server binaries (initdb, pg_ctl, postgres) are missing" >&2
    echo "and this is not a Debian-like system (no apt-get): install the PostgreSQL server" >&2
    echo "(version 13 or newer) with your package manager and put initdb on PATH." >&2
    exit 1
fi

if [[ "$(id -u)" -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "ensure-postgres: installing Debian's postgresql package needs root; run" >&2
    echo "  apt-get update && apt-get install -y postgresql" >&2
    echo "as root, then run this script again." >&2
    exit 1
fi

echo "ensure-postgres: installing Debian's postgresql package (apt-get)"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q
"${as_root[@]}" apt-get install -y -q --no-install-recommends postgresql

if ! bindir="$(find_bindir)"; then
    echo "ensure-postgres: apt-get installed postgresql, but initdb, pg_ctl and postgres" >&2
    echo "were not found under /usr/lib/postgresql/*/bin: check the installation." >&2
    exit 1
fi
if [[ "$(id -u)" -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    echo "ensure-postgres: the package did not create the 'postgres' user, which the" >&2
    echo "tests run the server as when they run as root (PostgreSQL refuses root)." >&2
    exit 1
fi
echo "PostgreSQL server binaries: $bindir ($("$bindir/postgres" --version))"
