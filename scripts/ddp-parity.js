// Measures: accuracy of one training process against two data-parallel ranks with the same
// global batch, three seeds, on the generated pattern set (node scripts/ddp-parity.js after a build).
import { execFileSync } from 'node:child_process';
import { patternWorkspace } from '../dist/test/fixtures.js';
const { workspace, catalog } = await patternWorkspace(24, {
  testFraction: 0.34,
  validationFraction: 0,
  seed: 4,
});
catalog.close();
const cli = (...args) =>
  execFileSync(
    process.execPath,
    [new URL('../bin/pathotype.js', import.meta.url).pathname, '-w', workspace.root, ...args],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
for (const seed of [1, 2, 3]) {
  const row = [];
  for (const [label, extra] of [
    ['1 process', ['--threads', '2']],
    ['2 ranks x 8', ['--nproc', '2', '--batch-size', '8']],
  ]) {
    const name = `p${seed}-${extra[0].slice(2)}`;
    const started = Date.now();
    cli(
      'train',
      '--store',
      'patterns',
      '--name',
      name,
      '--architecture',
      'small_cnn',
      '--epochs',
      '2',
      '--batch-size',
      '16',
      '--learning-rate',
      '0.003',
      '--no-bf16',
      '--seed',
      String(seed),
      ...extra,
      '--json',
    );
    const seconds = (Date.now() - started) / 1000;
    const ev = JSON.parse(cli('evaluate', name, '--json'));
    row.push(
      `${label}: image ${(ev.report?.image?.accuracy ?? ev.image?.accuracy) * 100}% patch ${((ev.report?.patch?.accuracy ?? ev.patch?.accuracy) * 100).toFixed(1)}% (${seconds.toFixed(0)} s)`,
    );
  }
  console.log(`seed ${seed}: ${row.join('; ')}`);
}
