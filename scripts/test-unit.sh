#!/usr/bin/env bash
# The edit-test loop: compile the TypeScript and run every test but the browser one, without
# set-up (no apt, no npm ci, no native rebuild). Run `bash scripts/test.sh` once first, and
# before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
mapfile -t files < <(find dist/test -name '*.test.js' ! -name '*.e2e.test.js' | sort)
exec node --test --test-concurrency=1 --test-timeout=600000 --test-force-exit "${files[@]}" "$@"
