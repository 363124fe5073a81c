/**
 * Frozen-feature probes for choosing a recipe: ResNet50 features of every development image
 * (patches at a scale, normalised, mean-pooled per image), cached per setting, then
 * leave-one-patient-out logistic regression. Prints pooled image accuracy per setting.
 *   node dist/bench/probe.js DATA_DIR WEIGHTS_DIR [CACHE_DIR]
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { preprocessImage } from '../src/data/preprocess.js';
import { fitNormaliser, type NormalisationMethod } from '../src/data/normalise.js';
import { DEFAULT_BACKGROUND } from '../src/data/tiling.js';
import { Network, setThreads } from '../src/engine/network.js';
import { loadPretrained, readPretrained } from '../src/engine/weights/load.js';
import { CAFFE_INPUT, resnet50Base, resnet50Channels, type ResNetDepth } from '../src/engine/zoo.js';
import { fitLogistic, linearScores } from '../src/train/logistic.js';

const [dataDir = '', weightsDir = '', cacheDir = '/tmp/probe-cache'] = process.argv.slice(2);
interface Item { file: string; cls: number; patient: string; case: string }

async function listImages(): Promise<Item[]> {
  const items: Item[] = [];
  for (const [cls, name] of ['CLL', 'FL', 'MCL'].entries()) {
    for (const f of (await readdir(path.join(dataDir, name))).sort()) {
      if (!f.endsWith('.png')) continue;
      items.push({ file: path.join(dataDir, name, f), cls, patient: /sj-\d+-\d+/.exec(f)![0], case: f.replace(/_\d+\.png$/, '') });
    }
  }
  return items;
}

interface Setting { depth: ResNetDepth; scale: number; size: number; stride: number; norm: NormalisationMethod }

async function features(items: Item[], s: Setting): Promise<Float32Array> {
  const key = `${s.depth}-${s.scale}-${s.size}-${s.stride}-${s.norm}`;
  const file = path.join(cacheDir, `${key}.f32`);
  if (existsSync(file)) return new Float32Array((await readFile(file)).buffer.slice(0));
  const dims = resnet50Channels(s.depth);
  const spec = { name: 'probe', input: { height: s.size, width: s.size, channels: 3, ...CAFFE_INPUT }, classes: dims, layers: [...resnet50Base(s.depth), { type: 'globalAvgPool' as const }] };
  const net = await Network.create(spec);
  await loadPretrained(net, await readPretrained(weightsDir), weightsDir);
  const normaliser = fitNormaliser({ method: s.norm });
  const out = new Float32Array(items.length * dims * 2);
  const started = performance.now();
  let patchCount = 0;
  for (const [i, item] of items.entries()) {
    const img = await preprocessImage(item.file, { width: 417, height: 312, scale: 0.3 }, { normaliser, targetScale: s.scale, tiles: { size: s.size, stride: s.stride }, background: DEFAULT_BACKGROUND });
    const n = img.background.length;
    patchCount += n;
    const f = await net.predict(img.patches, { bf16: true, raw: true });
    for (let p = 0; p < n; p++) for (let d = 0; d < dims; d++) { out[i * dims * 2 + d]! += f[p * dims + d]! / n; }
    for (let p = 0; p < n; p++) for (let d = 0; d < dims; d++) { out[i * dims * 2 + dims + d]! += (f[p * dims + d]! - out[i * dims * 2 + d]!) ** 2 / n; }
  }
  console.log(`  features ${key}: ${patchCount} patches in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  await mkdir(cacheDir, { recursive: true });
  await writeFile(file, Buffer.from(out.buffer));
  return out;
}

function nuisanceBasis(items: Item[], rowsOf: (i: number) => Float64Array, idx: number[], dims: number, k: number): Float64Array[] {
  // Case means minus their class mean: the directions in which cases of one class differ.
  const cases = new Map<string, number[]>();
  for (const i of idx) cases.set(items[i]!.case, [...(cases.get(items[i]!.case) ?? []), i]);
  const classMean = [0, 1, 2].map(() => new Float64Array(dims));
  const classCount = [0, 0, 0];
  const caseMeans: [number, Float64Array][] = [];
  for (const members of cases.values()) {
    const m = new Float64Array(dims);
    for (const i of members) { const r = rowsOf(i); for (let d = 0; d < dims; d++) m[d]! += r[d]! / members.length; }
    const c = items[members[0]!]!.cls;
    caseMeans.push([c, m]);
    classCount[c]!++;
    for (let d = 0; d < dims; d++) classMean[c]![d]! += m[d]!;
  }
  for (let c = 0; c < 3; c++) for (let d = 0; d < dims; d++) classMean[c]![d]! /= Math.max(1, classCount[c]!);
  const devs = caseMeans.map(([c, m]) => m.map((v, d) => v - classMean[c]![d]!));
  // Top-k principal directions of the deviations by power iteration with deflation.
  const basis: Float64Array[] = [];
  for (let j = 0; j < Math.min(k, devs.length); j++) {
    let v = new Float64Array(dims).map((_, d) => Math.sin(d * 12.9898 + j * 78.233));
    for (let it = 0; it < 50; it++) {
      const next = new Float64Array(dims);
      for (const dv of devs) { let dot = 0; for (let d = 0; d < dims; d++) dot += dv[d]! * v[d]!; for (let d = 0; d < dims; d++) next[d]! += dot * dv[d]!; }
      for (const b of basis) { let dot = 0; for (let d = 0; d < dims; d++) dot += next[d]! * b[d]!; for (let d = 0; d < dims; d++) next[d]! -= dot * b[d]!; }
      const norm = Math.sqrt(next.reduce((a, b) => a + b * b, 0)) || 1;
      v = next.map((x) => x / norm);
    }
    basis.push(v);
  }
  return basis;
}

function lopo(items: Item[], x: Float32Array, dims: number, stride: number, l2: number, group: 'patient' | 'case', nuisance = 0, caseWeight = false): { acc: number; perGroup: string } {
  const groups = [...new Set(items.map((i) => i[group]))];
  let correct = 0;
  const per: string[] = [];
  for (const g of groups) {
    const train = items.map((it, i) => [it, i] as const).filter(([it]) => it[group] !== g);
    const test = items.map((it, i) => [it, i] as const).filter(([it]) => it[group] === g);
    const raw = (i: number): Float64Array => Float64Array.from(x.subarray(i * stride, i * stride + dims));
    const basis = nuisance > 0 ? nuisanceBasis(items, raw, train.map(([, i]) => i), dims, nuisance) : [];
    const project = (v: Float64Array): Float64Array => { for (const b of basis) { let dot = 0; for (let d = 0; d < dims; d++) dot += v[d]! * b[d]!; for (let d = 0; d < dims; d++) v[d]! -= dot * b[d]!; } return v; };
    const rows = (sel: typeof train): Float64Array => { const a = new Float64Array(sel.length * dims); sel.forEach(([, i], r) => { a.set(project(raw(i)), r * dims); }); return a; };
    const labels = Int32Array.from(train.map(([it]) => it.cls));
    const counts = [0, 0, 0]; labels.forEach((l) => counts[l]!++);
    const caseSize = new Map<string, number>(); for (const [it] of train) caseSize.set(it.case, (caseSize.get(it.case) ?? 0) + 1);
    const casesPerClass = [0, 0, 0]; for (const [c, n] of [...new Set(train.map(([it]) => `${it.cls}|${it.case}`))].map((k) => [Number(k.split('|')[0]), 1] as const)) casesPerClass[c]! += n;
    const weights = caseWeight ? Float64Array.from(train, ([it]) => 1 / caseSize.get(it.case)! / casesPerClass[it.cls]!) : Float64Array.from(labels, (l) => 1 / counts[l]!);
    const model = fitLogistic(rows(train), labels, 3, { l2, sampleWeights: weights });
    const scores = linearScores(model, rows(test));
    let ok = 0;
    test.forEach(([it], r) => { let b = 0; for (let c = 1; c < 3; c++) if (scores[r * 3 + c]! > scores[r * 3 + b]!) b = c; if (b === it.cls) ok++; });
    correct += ok;
    per.push(`${(ok / test.length * 100).toFixed(0)}`);
  }
  return { acc: correct / items.length, perGroup: per.join(' ') };
}

setThreads(2);
const items = await listImages();
const settings: Setting[] = JSON.parse(process.env.PROBE_SETTINGS ?? '[]') as Setting[];
const l2s = (process.env.PROBE_L2 ?? '0.01,0.1,1').split(',').map(Number);
for (const s of settings) {
  const x = await features(items, s);
  const dims = resnet50Channels(s.depth);
  const both = x;
  const sqrtMean = new Float32Array(items.length * dims);
  for (let i = 0; i < items.length; i++) for (let d = 0; d < dims; d++) sqrtMean[i * dims + d] = Math.sqrt(Math.max(0, x[i * dims * 2 + d]!));
  const stdOnly = new Float32Array(items.length * dims);
  for (let i = 0; i < items.length; i++) for (let d = 0; d < dims; d++) stdOnly[i * dims + d] = Math.sqrt(x[i * dims * 2 + dims + d]!);
  void both; void stdOnly; void sqrtMean;
  const variants = JSON.parse(process.env.PROBE_VARIANTS ?? '[[0,false]]') as [number, boolean][];
  for (const l2 of l2s) for (const [k, cw] of variants) {
    const r = lopo(items, x, dims, dims * 2, l2, 'patient', k, cw);
    console.log(`${JSON.stringify(s)} l2=${l2} nuisance=${k} caseWeight=${cw} LOPO ${(r.acc * 100).toFixed(1)}%  [${r.perGroup}]`);
  }
}
