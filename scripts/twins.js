// Measures: how far a package's answer on each full- or half-resolution sample is from its answer on
// the sample's 0.3x twin (node scripts/twins.js MODEL [SAMPLE_DIR...] after a build; fp32). Prints
// each pair, then per format and overall the largest and median difference of the calibrated
// probabilities and of the mean patch probabilities.
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Predictor } from '../dist/src/predict/predictor.js';

const shared = new URL('../../shared/data/', import.meta.url).pathname;
const [model, ...dirs] = process.argv.slice(2);
if (!model) throw new Error('usage: node scripts/twins.js MODEL [SAMPLE_DIR...]');
const samples = dirs.length
  ? dirs
  : ['iicbu2008-lymphoma-fullres-sample', 'iicbu2008-lymphoma-halfres-sample'].map((d) =>
      path.join(shared, d),
    );
const twins = path.join(shared, 'iicbu2008-lymphoma-0.3x');
const predictor = await Predictor.load(model, { bf16: false });
const largest = (a, b) => Math.max(...predictor.classes.map((c) => Math.abs(a[c] - b[c])));
const summary = (rows) => {
  const figure = (key) => {
    const v = rows.map((r) => r[key]).sort((x, y) => x - y);
    return `max ${v.at(-1).toFixed(4)}, median ${v[Math.floor(v.length / 2)].toFixed(4)}`;
  };
  return `${rows.length} pairs: calibrated ${figure('calibrated')}; mean patch probability ${figure('mean')}`;
};
for (const dir of samples) {
  const rows = [];
  for (const c of predictor.classes)
    for (const file of readdirSync(path.join(dir, c))
      .filter((f) => /\.(png|jpe?g|webp|tiff?)$/i.test(f))
      .sort()) {
      const twin = path.join(twins, c, file.replace(/\.[^.]+$/, '.png'));
      const [a, b] = await predictor.predictImages([{ source: path.join(dir, c, file) }, { source: twin }]);
      const row = {
        name: `${c}/${file}`,
        format: path.extname(file).slice(1).replace('jpeg', 'jpg'),
        calibrated: largest(a.probabilities, b.probabilities),
        mean: largest(a.meanProbabilities, b.meanProbabilities),
        same: a.predicted === b.predicted,
      };
      rows.push(row);
      console.log(
        `${row.name}\t${row.calibrated.toFixed(4)}\t${row.mean.toFixed(4)}\t${row.same ? 'same class' : 'other class'}`,
      );
    }
  console.log(`${path.basename(dir)}: ${summary(rows)}`);
  for (const format of [...new Set(rows.map((r) => r.format))].sort())
    console.log(`  ${format}: ${summary(rows.filter((r) => r.format === format))}`);
}
await predictor.close();
