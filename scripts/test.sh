#!/usr/bin/env bash
# Runs every check on a fresh or prepared machine: set-up, lint, format, then the test suite.
# The last lines are the test runner's own summary.
set -euo pipefail
cd "$(dirname "$0")/.."
# python3-skimage: its sample photos (a cat, a cup of coffee) check the ImageNet weight import;
# chromium: the browser of the portal's end-to-end test (driven by playwright-core);
# postgresql: the record store tests start a throw-away cluster of it;
# openssl: the HTTPS test makes a throw-away certificate with it;
# python3-onnx, python3-opencv, python3-pil (with python3-numpy): the exported ONNX graphs pass
# onnx.checker and open in OpenCV's dnn, and integrations/python/predict_onnx.py is checked
# against predict.
PATHOTYPE_APT_EXTRA="python3-skimage chromium postgresql openssl python3-onnx python3-opencv python3-pil python3-numpy ${PATHOTYPE_APT_EXTRA:-}" bash scripts/setup.sh
echo 'test: lint, format and unused code'
npx eslint .
npx prettier --check . >/dev/null || { npx prettier --check .; exit 1; }
# Unused files, exports and dependencies (knip.jsonc says what is an entry point).
npx knip
echo 'test: test suite'
# fp32 on every CPU, so results do not depend on whether this one has native bf16 (the
# precision tests force both ways themselves).
export PATHOTYPE_BF16=off
mapfile -t files < <(find dist/test -name '*.test.js' | sort)
# A hung test must fail the run, not stall CI: each test gets 10 minutes, and the runner exits
# when the tests are done even if a handle (a server, a worker) was left open.
exec node --test --test-concurrency=1 --test-timeout=600000 --test-force-exit "${files[@]}"
