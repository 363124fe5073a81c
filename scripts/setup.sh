#!/usr/bin/env bash
# Installs everything pathotype needs on a Debian/Ubuntu machine, then builds it. Idempotent:
# each step is skipped when its result is already there, so a second run takes seconds.
#   PATHOTYPE_APT_EXTRA="pkg ..."  more Debian packages to install (the test set-up adds chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*"; }

# 1. Debian packages: libtorch (the engine) and the Gloo headers of its c10d, OpenSlide
# (whole-slide images), a C++ toolchain.
packages=(libtorch-dev libgloo-dev libopenslide-dev g++ make python3 ${PATHOTYPE_APT_EXTRA:-})
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=''
  [ "$(id -u)" = 0 ] || sudo='sudo'
  log "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Node.js 20 or newer.
if ! command -v node >/dev/null || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
  echo "setup: Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

# 3. npm packages, when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log 'installing npm packages (npm ci)'
  # onnxruntime-node ships its CPU binary in the package; its install script would fetch the
  # CUDA build from nuget.org (npm 11 skips it already: allowScripts in package.json says no).
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.package-lock.json
fi

# 4. The native engine and the TypeScript build (each skips itself when up to date).
node scripts/build-native.js
log 'compiling TypeScript'
rm -rf dist  # no stale output from deleted sources
npx tsc -p tsconfig.json
log 'ready'
