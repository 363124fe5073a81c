#!/usr/bin/env node
// Builds the libtorch engine addon (node-gyp) and the plain C++ baseline of `pathotype bench
// engine`, against Debian's libtorch-dev or the libtorch in $LIBTORCH. Skips the work when the
// sources, the libtorch and the Node version are those of the last successful build.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const native = path.join(root, 'native');
const build = path.join(native, 'build');
const stampFile = path.join(build, 'pathotype.stamp');
const addon = path.join(build, 'Release', 'pathotype_engine.node');
const slideAddon = path.join(build, 'Release', 'pathotype_slide.node');
const baseline = path.join(build, 'engine-bench');

function fail(message) {
  console.error(`build-native: ${message}`);
  process.exit(1);
}

function findLibtorch() {
  if (process.env.LIBTORCH) {
    const dir = path.resolve(process.env.LIBTORCH);
    const include = path.join(dir, 'include');
    const lib = path.join(dir, 'lib');
    if (!existsSync(path.join(include, 'torch/csrc/api/include/torch/torch.h'))) {
      fail(`LIBTORCH=${dir} has no include/torch/csrc/api/include/torch/torch.h`);
    }
    return { include, lib };
  }
  const include = '/usr/include';
  if (!existsSync(path.join(include, 'torch/csrc/api/include/torch/torch.h'))) {
    fail(
      "libtorch was not found. Install Debian's libtorch-dev (sudo apt-get install libtorch-dev) " +
        'or point LIBTORCH at an unpacked libtorch (with include/ and lib/).',
    );
  }
  let multiarch = '';
  try {
    multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim();
  } catch {
    // no gcc multiarch: fall through to the usual places
  }
  const candidates = [
    multiarch && `/usr/lib/${multiarch}`,
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib',
  ];
  const lib = candidates.find((dir) => dir && existsSync(path.join(dir, 'libtorch.so')));
  if (!lib) fail('libtorch headers are installed but libtorch.so is not: reinstall libtorch-dev');
  return { include, lib };
}

// node-gyp needs Node's headers; offline it cannot download them, so use the installed ones.
function nodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (existsSync(path.join(prefix, 'include/node/node_api.h'))) return prefix;
  return undefined;
}

function stampOf(libtorch) {
  const hash = createHash('sha256');
  const files = [
    'binding.gyp',
    ...readdirSync(path.join(native, 'src')).map((f) => `src/${f}`),
    ...readdirSync(path.join(native, 'slide')).map((f) => `slide/${f}`),
    'bench/engine_bench.cc',
  ];
  for (const file of files.sort()) hash.update(file).update(readFileSync(path.join(native, file)));
  hash.update(JSON.stringify({ libtorch, node: process.version, arch: process.arch }));
  return hash.digest('hex');
}

if (!existsSync('/usr/include/gloo/algorithm.h') && !process.env.LIBTORCH) {
  fail("the Gloo headers of libtorch's c10d were not found: install Debian's libgloo-dev");
}
if (!existsSync('/usr/include/openslide/openslide.h')) {
  fail("OpenSlide was not found: install Debian's libopenslide-dev (sudo apt-get install libopenslide-dev)");
}
const libtorch = findLibtorch();
const stamp = stampOf(libtorch);
const force = process.argv.includes('--force');
if (
  !force &&
  existsSync(addon) &&
  existsSync(slideAddon) &&
  existsSync(baseline) &&
  existsSync(stampFile) &&
  readFileSync(stampFile, 'utf8') === stamp
) {
  console.log('build-native: up to date');
  process.exit(0);
}

const require = createRequire(import.meta.url);
const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
const args = [nodeGyp, 'rebuild', '--jobs', 'max', `--directory=${native}`];
const dir = nodeDir();
if (dir) args.push(`--nodedir=${dir}`);
args.push('--', `-Dlibtorch_include=${libtorch.include}`, `-Dlibtorch_lib=${libtorch.lib}`);
console.log(`build-native: building the addon against ${libtorch.lib}`);
try {
  execFileSync(process.execPath, args, { stdio: 'inherit' });
} catch {
  fail('the addon did not build (see the compiler output above)');
}

console.log('build-native: building the plain C++ baseline (native/build/engine-bench)');
mkdirSync(build, { recursive: true });
const cxx = process.env.CXX || 'g++';
try {
  execFileSync(
    cxx,
    [
      '-O2',
      '-std=c++17',
      path.join(native, 'bench/engine_bench.cc'),
      `-I${libtorch.include}`,
      `-I${path.join(libtorch.include, 'torch/csrc/api/include')}`,
      `-L${libtorch.lib}`,
      `-Wl,-rpath,${libtorch.lib}`,
      '-ltorch',
      '-ltorch_cpu',
      '-lc10',
      '-o',
      baseline,
    ],
    { stdio: 'inherit' },
  );
} catch {
  fail('the C++ baseline did not build (see the compiler output above)');
}
writeFileSync(stampFile, stamp);
console.log('build-native: done');
