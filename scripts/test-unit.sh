#!/usr/bin/env bash
# The edit-test loop: compile the TypeScript and run every test but the browser one, without
# set-up (no apt, no npm ci, no native rebuild). Run `bash scripts/test.sh` once first, and
# before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
# fp32 on every CPU, so results do not depend on whether this one has native bf16 (the
# precision tests force both ways themselves).
export PATHOTYPE_BF16=off
mapfile -t files < <(find dist/test -name '*.test.js' ! -name '*.e2e.test.js' | sort)
exec node --test --test-concurrency=1 --test-timeout=600000 --test-force-exit "${files[@]}" "$@"
