#!/usr/bin/env bash
# Create one virtual environment per peer library under bench/.venvs/.
#
# Idempotent: an environment whose stamp matches its requirement line is left
# alone, so `make bench` can call this every time. Peers are benchmark-only:
# nothing in the package or its tests imports them.
#
# Usage: bench/setup_peers.sh [keras] [torch] [sklearn]   (default: all three)
set -euo pipefail

PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "$0")" && pwd)"
VENVS="$HERE/.venvs"

# name -> pip requirements (kept on one line; the stamp stores this text)
declare -A REQS=(
    [keras]="tensorflow numpy threadpoolctl"
    [torch]="torch==2.13.0 numpy threadpoolctl"
    [sklearn]="scikit-learn numpy scipy threadpoolctl"
)

make_env() {
    local name="$1" reqs="${REQS[$1]}"
    local env="$VENVS/$name" stamp="$VENVS/$name/.bench-stamp"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$reqs" ]]; then
        echo "peer env '$name' is up to date ($env)"
        return
    fi
    echo "creating peer env '$name' with: $reqs"
    rm -rf "$env"
    "$PYTHON" -m venv "$env"
    "$env/bin/python" -m pip install --quiet --upgrade pip
    # shellcheck disable=SC2086  # the requirement list is meant to split
    "$env/bin/python" -m pip install --quiet $reqs
    printf '%s' "$reqs" > "$stamp"
}

mkdir -p "$VENVS"
if [[ $# -eq 0 ]]; then
    set -- sklearn torch keras
fi
for name in "$@"; do
    if [[ -z "${REQS[$name]+set}" ]]; then
        echo "unknown peer env '$name'; expected one of: ${!REQS[*]}" >&2
        exit 2
    fi
    make_env "$name"
done
