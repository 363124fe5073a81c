#!/usr/bin/env bash
# Sets up the machine if needed, then runs the pathotype CLI with the given arguments.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bash "$root/scripts/setup.sh" >&2
exec node "$root/bin/pathotype.js" "$@"
