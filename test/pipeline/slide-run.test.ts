/**
 * Learning from slides, end to end on small mosaic slides of six development patients (two per
 * class, two slides each) with the small ImageNet MobileNet v1 0.25 as the frozen base: `run
 * --data MANIFEST.csv` cross-validates by patient and writes its report and package, which
 * answers a slide as its head answers the slide's bag; patient bags; the manifest's folds;
 * `compare` on two slide runs; `predict` on slides as text and CSV; a fine-tune recipe and a label outside the recipe's classes refused.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';

import { Catalog } from '../../src/acquire/catalog.js';
import { parseGroupRule } from '../../src/acquire/grouping.js';
import { writePatientSlides } from '../../src/acquire/slide-mosaic.js';
import type { SlideCrossValidationReport } from '../../src/evaluate/slide-cross-validation.js';
import { readManifest } from '../../src/model/package.js';
import { readTensors } from '../../src/model/tensors-file.js';
import { runSlidePipeline } from '../../src/pipeline/slide-run.js';
import { Predictor } from '../../src/predict/predictor.js';
import type { Atypicality } from '../../src/predict/atypicality.js';
import { predictSlide } from '../../src/predict/slide-predictor.js';
import { softmax } from '../../src/predict/vote.js';
import { buildServer } from '../../src/serve/app.js';
import { driftReport } from '../../src/serve/drift.js';
import { readBagRows } from '../../src/train/slide-bag-file.js';
import { tileBags } from '../../src/train/slide-training.js';
import type { SlideBag } from '../../src/train/slide-bags.js';
import { workspaceAt } from '../../src/workspace.js';
import { tempDir } from '../fixtures.js';
import { writeRestainedSlide } from '../restain.js';
import { hasShared, lymphomaDir, runCli, weightsDir } from '../helpers.js';

const mobilenet = path.join(weightsDir, 'mobilenet_v1_0.25_224_imagenet_tfjs');
const needsShared = { skip: !(hasShared(lymphomaDir) && hasShared(mobilenet)) && 'needs ../shared' };
const PATIENTS = ['sj-03-2810', 'sj-03-476', 'sj-05-1467', 'sj-05-1881', 'sj-04-3077', 'sj-04-4525'];

/** The presets' recipes on a small base: MobileNet v1 0.25 on 32 px tiles at the slides' 0.3x scale. */
const SMALL = {
  prepare: { normalisation: 'none', mpp: 1.0667, patchSize: 32, stride: 32 },
  train: { architecture: 'mobilenet_v1', alpha: 0.25, pretrained: mobilenet, bf16: false, threads: 2 },
};

let dir: string;
let ws: string;
let manifest: string;

function config(name: string, train: Record<string, unknown> = {}): string {
  return writeJson(path.join(dir, `${name}.json`), { ...SMALL, train: { ...SMALL.train, ...train } });
}

function writeJson(file: string, value: unknown): string {
  writeFileSync(file, JSON.stringify(value));
  return file;
}

function readReport(name: string): SlideCrossValidationReport {
  return JSON.parse(
    readFileSync(path.join(ws, 'runs', name, 'cross-validation.json'), 'utf8'),
  ) as SlideCrossValidationReport;
}

/** Each patient's folds among the report's slides: one each when no patient is split. */
function foldsOfPatients(report: SlideCrossValidationReport): Map<string, Set<number>> {
  const folds = new Map<string, Set<number>>();
  for (const s of report.slides) folds.set(s.patient, (folds.get(s.patient) ?? new Set()).add(s.fold));
  return folds;
}

describe('learning from slides (run --data MANIFEST.csv)', needsShared, () => {
  before(async () => {
    dir = tempDir();
    ws = path.join(dir, 'ws');
    ({ manifest } = await writePatientSlides(lymphomaDir, path.join(dir, 'slides'), {
      groupBy: parseGroupRule('patient'),
      patients: PATIENTS,
      maxFields: 2,
    }));
  });

  it('cross-validates a probe by patient, writes its report and package, and the package answers a slide as its head on the bag', async () => {
    const run = await runCli([
      ...['-w', ws, 'run', '--preset', 'resnet50-probe', '--data', manifest],
      ...['--config', config('probe'), '--folds', '2', '--name', 'probe'],
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      /2-fold cross-validation by patient \(6 patients, 12 slides, slide bags, logit vote\)/,
    );
    assert.match(run.stdout, /slide accuracy \d+\.\d% \(95% CI .*\), balanced/);
    assert.match(run.stdout, /patient accuracy \d+\.\d% \(95% CI/);
    assert.match(run.stdout, /no slide left out/);
    assert.match(run.stderr, /run: features: 12 slides extracted, 0 from the cache/);

    const report = readReport('probe');
    assert.equal(report.slides.length, 12);
    assert.equal(report.patients.length, 6);
    for (const [patient, folds] of foldsOfPatients(report))
      assert.equal(folds.size, 1, `${patient}'s slides are in one fold`);
    const html = readFileSync(path.join(ws, 'runs/probe/cross-validation.html'), 'utf8');
    assert.equal(html.match(/<img src="data:image\/png;base64,/g)?.length, 12, 'a thumbnail per slide');
    assert.match(html, /sj-03-2810-a\.tiff/);
    assert.match(html, /mm² tissue; \d+ of \d+ tiles usable/);

    const packageDir = path.join(ws, 'models/probe');
    const model = readManifest(packageDir);
    assert.equal(model.vote, 'logit');
    assert.deepEqual(
      [model.slides?.aggregation, model.slides?.slides, model.slides?.patients, model.slides?.maxTilesPerBag],
      ['slide', 12, 6, 512],
    );
    assert.ok(model.calibration, 'calibrated on the out-of-fold slides');
    assert.equal((model.metrics.crossValidation as { unit: string }).unit, 'slides');

    // The package's answer on a slide is its head on the slide's bag: the same tiles, the mean of their features.
    const slide = path.join(dir, 'slides', 'sj-05-1467-a.tiff');
    const catalog = Catalog.open(workspaceAt(ws));
    const record = catalog.slides().find((s) => s.path === slide);
    catalog.close();
    assert.ok(record);
    const bagDir = path.join(ws, 'features', model.slides?.encoder ?? '', 'slides');
    const bagFile = readdirSync(bagDir).find((f) => f.startsWith('sj-05-1467-a-') && f.endsWith('.h5'));
    const bag = await readBagRows(path.join(bagDir, bagFile ?? ''));
    const count = bag.regionLabels.length;
    const predictor = await Predictor.load(packageDir);
    const prediction = await predictSlide(predictor, slide, { slideMpp: record.mpp });
    const clear = prediction.tiles.filter((t) => !t.blurred && !t.folded);
    assert.equal(clear.length, count, "the predictor's clear tiles are the bag's");
    const coords = new Set(clear.map((t) => `${t.x},${t.y}`));
    for (let k = 0; k < count; k++) assert.ok(coords.has(`${bag.coords[2 * k]},${bag.coords[2 * k + 1]}`));
    const tensors = await readTensors(path.join(packageDir, 'weights'));
    const weight = tensors.find((t) => t.name === 'predictions.weight')?.data ?? new Float32Array();
    const bias = tensors.find((t) => t.name === 'predictions.bias')?.data ?? new Float32Array();
    const dims = bag.dims;
    const logits = model.classes.map((_, c) => {
      let s = bias[c] ?? 0;
      for (let d = 0; d < dims; d++) {
        let mean = 0;
        for (let k = 0; k < count; k++) mean += bag.features[k * dims + d] ?? 0;
        s += (weight[c * dims + d] ?? 0) * (mean / count);
      }
      return s;
    });
    const expected = softmax(logits, model.calibration?.temperature ?? 1);
    for (const [c, name] of model.classes.entries())
      assert.ok(
        Math.abs((prediction.result.probabilities[name] ?? 0) - (expected[c] ?? 0)) < 2e-3,
        `${name}: ${prediction.result.probabilities[name]} against the head's ${expected[c]}`,
      );

    // It keeps a reference of its training slides: a slide is scored against them, and a
    // re-stained copy of it lies beyond their stain.
    assert.equal(model.reference?.atypicality.unit, 'slides');
    assert.deepEqual([model.reference?.atypicality.images, model.reference?.atypicality.patients], [12, 6]);
    assert.ok(prediction.atypicality && prediction.inputs, 'a slide has its atypicality and measures');
    assert.equal(prediction.atypicality.unit, 'slides');
    // Twelve slides make a coarse reference (each one's own stain score is against a fit on ten
    // slides of five patients): a haematoxylin x1.6 copy moves up its stain scale, x3 is beyond it.
    const restainedCopy = async (haematoxylin: number): Promise<Atypicality> => {
      const copy = path.join(dir, `restained-${haematoxylin}.tiff`);
      await writeRestainedSlide(slide, copy, haematoxylin, 1);
      const answer = await predictSlide(predictor, copy, { slideMpp: record.mpp });
      assert.ok(answer.atypicality);
      return answer.atypicality;
    };
    const mild = await restainedCopy(1.6);
    const heavy = await restainedCopy(3);
    process.stdout.write(
      `# slide atypicality: ${JSON.stringify({ original: prediction.atypicality, mild, heavy })}\n`,
    );
    assert.ok(
      mild.stain > prediction.atypicality.stain + 30 && heavy.unlike && !prediction.atypicality.unlike,
      `re-stained ${JSON.stringify({ mild, heavy })} against ${JSON.stringify(prediction.atypicality)}`,
    );
    await predictor.close();

    // The server answers slides with it, as with any package, and records the slide's signals.
    const server = await buildServer({
      modelDir: packageDir,
      dataDir: tempDir(),
      slideRoot: path.join(dir, 'slides'),
    });
    try {
      const created = await server.app.inject({
        method: 'POST',
        url: '/api/v1/slides',
        payload: { path: 'sj-05-1467-a.tiff' },
      });
      assert.equal(created.statusCode, 202, created.body);
      let job = created.json<{ id: string; status: string; result: { predicted: string } | null }>();
      while (job.status !== 'done' && job.status !== 'failed') {
        await new Promise((resolve) => setTimeout(resolve, 100));
        job = (await server.app.inject(`/api/v1/slides/${job.id}`)).json<typeof job>();
      }
      assert.equal(job.status, 'done');
      assert.ok(model.classes.includes(job.result?.predicted ?? ''), JSON.stringify(job.result));
      const shown = (await server.app.inject(`/api/v1/slides/${job.id}`)).json<{
        atypicality: { known: boolean; unit: string; percentile: number };
        inputs: { focus: number; haematoxylin: number };
      }>();
      assert.deepEqual(
        [shown.atypicality.known, shown.atypicality.unit, shown.atypicality.percentile],
        [true, 'slides', prediction.atypicality.percentile],
      );
      assert.ok(shown.inputs.haematoxylin > 0 && shown.inputs.focus > 0);
      const viewer = await server.app.inject({ url: `/slides/${job.id}`, headers: { accept: 'text/html' } });
      assert.match(
        viewer.body,
        /id="atypicality" data-unlike="false">within the training data&#39;s range \(percentile [\d.]+ of the training slides&#39; own scores\)/,
      );
      // The drift page's report counts the slide against the training slides.
      const drift = await driftReport(server.store, `${model.name}@${model.version}`, model, 1);
      assert.equal(drift.training?.unit, 'slides');
      assert.deepEqual(
        drift.weeks.map((w) => [w.cases, w.unlike, w.unknown]),
        [[1, 0, 0]],
      );
      // The portal names what the figures are of: slides, not images.
      const page = await server.app.inject({ url: '/', headers: { accept: 'text/html' } });
      assert.match(page.body, /\d+\.\d% slide accuracy \(95% CI/);
      assert.doesNotMatch(page.body, /image accuracy/);
    } finally {
      await server.app.close();
    }
  });

  it("pools a patient's slides into one bag, and compares two slide runs paired by patient", async () => {
    const run = await runCli([
      ...['-w', ws, 'run', '--preset', 'resnet50-mil', '--data', manifest, '--name', 'mil', '--folds', '2'],
      ...[
        '--config',
        config('mil', {
          mil: { epochs: 3, projection: 16, attention: 8 },
          slides: { aggregation: 'patient', maxTilesPerBag: 64 },
        }),
      ],
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /0 slides extracted, 12 from the cache/, 'the probe run extracted them');
    assert.match(run.stdout, /patient bags, attention vote/);
    const model = readManifest(path.join(ws, 'models/mil'));
    assert.equal(model.slides?.aggregation, 'patient');
    assert.equal(model.training.bags, 6, 'one bag per patient');
    assert.equal(model.vote, 'attention');
    for (const [patient, folds] of foldsOfPatients(readReport('mil')))
      assert.equal(folds.size, 1, `${patient}'s slides are in one fold`);

    const compared = await runCli(['-w', ws, 'compare', 'probe', 'mil']);
    assert.equal(compared.code, 0, compared.stderr);
    assert.match(
      compared.stdout,
      /on the same 12 slides of 6 patients:\n {2}difference [+-]\d+\.\d points \(95% CI/,
    );

    const predicted = await runCli([
      '-w',
      ws,
      'predict',
      '--model',
      'mil',
      path.join(dir, 'slides', 'sj-03-476-b.tiff'),
    ]);
    assert.equal(predicted.code, 0, predicted.stderr);
    assert.match(predicted.stdout, /sj-03-476-b\.tiff: .*tissue tiles of 32 px/);
    // The CSV of slides: a row per slide, its verdict's columns and its atypicality.
    const table = await runCli([
      ...['-w', ws, 'predict', '--model', 'mil', '--format', 'csv'],
      path.join(dir, 'slides', 'sj-03-476-b.tiff'),
    ]);
    assert.equal(table.code, 0, table.stderr);
    const [header, row] = table.stdout.trim().split('\n');
    assert.match(header ?? '', /^slide,status,confidence,predicted,.*,atypicality$/);
    assert.match(row ?? '', /sj-03-476-b\.tiff,(answered|uncertain),.*,\d+(\.\d+)?$/);
  });

  it('makes one bag of a patient from its slides, tiles back to back', () => {
    const bag = (file: string, patient: string, values: number[]): SlideBag =>
      ({
        slide: { path: file, patient, label: 'FL' },
        dims: 2,
        count: values.length / 2,
        features: Float32Array.from(values),
      }) as unknown as SlideBag;
    const slides = [bag('a', 'p1', [1, 2, 3, 4]), bag('b', 'p1', [5, 6]), bag('c', 'p2', [7, 8])];
    const byPatient = tileBags(slides, 'patient', ['CLL', 'FL']);
    assert.deepEqual(
      byPatient.map((b) => [b.key, b.count, b.label, Array.from(b.features)]),
      [
        ['p1', 3, 1, [1, 2, 3, 4, 5, 6]],
        ['p2', 1, 1, [7, 8]],
      ],
    );
    assert.equal(tileBags(slides, 'slide', ['CLL', 'FL']).length, 3);
  });

  it("keeps the manifest's folds when every row has one", async () => {
    const lines = readFileSync(manifest, 'utf8').trim().split('\n');
    const foldOf = (patient: string): number => (PATIENTS.indexOf(patient) % 3) + 1;
    const fixed = path.join(dir, 'slides', 'folds.csv');
    writeFileSync(
      fixed,
      [`${lines[0]},fold`, ...lines.slice(1).map((l) => `${l},${foldOf(l.split(',')[1] ?? '')}`)].join('\n'),
    );
    // The same slides as the runs above: their bags come from the cache.
    const workspace = workspaceAt(ws);
    const catalog = Catalog.open(workspace);
    const result = await runSlidePipeline(catalog, workspace, {
      preset: 'resnet50-probe',
      manifest: fixed,
      name: 'fixed',
      overrides: JSON.parse(readFileSync(config('fixed'), 'utf8')) as Record<string, unknown>,
    }).finally(() => catalog.close());
    assert.equal(result.extraction.extracted, 0);
    const report = result.crossValidation.report;
    assert.equal(report.foldsFromManifest, true);
    assert.deepEqual(
      report.folds.map((f) => f.fold),
      [1, 2, 3],
    );
    for (const s of report.slides) assert.equal(s.fold, foldOf(s.patient), s.slide);

    const some = path.join(dir, 'slides', 'some-folds.csv');
    writeFileSync(some, readFileSync(fixed, 'utf8').replace(/,1$/m, ','));
    const refused = await runCli([
      '-w',
      path.join(dir, 'ws-some'),
      'run',
      '--preset',
      'resnet50-probe',
      '--data',
      some,
      '--config',
      config('some'),
    ]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /gives a fold for 11 of its 12 slides/);
  });

  it("refuses a fine-tune recipe and a label outside the recipe's classes before any work", async () => {
    const fresh = path.join(dir, 'ws-refused');
    const finetune = await runCli(['-w', fresh, 'run', '--preset', 'small-cnn', '--data', manifest]);
    assert.equal(finetune.code, 1);
    assert.match(finetune.stderr, /fine-tunes its network \(method: finetune\).*use method: probe or mil/);
    assert.equal(existsSync(path.join(fresh, 'features')), false, 'nothing extracted');

    const classes = await runCli([
      ...['-w', fresh, 'run', '--preset', 'resnet50-probe', '--data', manifest],
      ...['--config', config('two-classes', { slides: { classes: ['CLL', 'FL'] } })],
    ]);
    assert.equal(classes.code, 1);
    assert.match(classes.stderr, /ERR_MANIFEST/);
    assert.match(classes.stderr, /line \d+: label 'MCL' is not one of the classes CLL, FL/);
    assert.equal(existsSync(path.join(fresh, 'features')), false, 'nothing extracted');
  });
});
