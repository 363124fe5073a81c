import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  bootstrapOverGroups,
  compareCrossValidations,
  crossValidationReport,
} from '../../src/evaluate/cross-validation.js';
import { chooseThreshold, coverageCurve, fitTemperature } from '../../src/evaluate/calibration.js';
import type { EvaluationReport } from '../../src/evaluate/report.js';
import { classificationMetrics, metricsFromConfusion } from '../../src/evaluate/metrics.js';
import { vote } from '../../src/predict/vote.js';

const close = (a: number, b: number, what: string): void =>
  assert.ok(Math.abs(a - b) < 1e-6, `${what}: ${a} vs ${b}`);

describe('voting', () => {
  it('takes the majority of patch classes, and the mean probability as the other rule', () => {
    // Three patches, two classes: two weak votes for class 0, one strong vote for class 1.
    const probs = Float32Array.from([0.6, 0.4, 0.55, 0.45, 0.05, 0.95]);
    const v = vote(probs, 3, 2);
    assert.equal(v.byMajority, 0);
    assert.equal(v.predicted, 0);
    assert.deepEqual(
      v.voteShares.map((x) => Number(x.toFixed(4))),
      [0.6667, 0.3333],
    );
    close(v.meanProbabilities[0] ?? 0, (0.6 + 0.55 + 0.05) / 3, 'mean 0');
    assert.equal(v.byMean, 1, 'mean probability favours class 1 (0.6 vs 0.4)');
    assert.equal(vote(probs, 3, 2, 'mean').predicted, 1);
    assert.deepEqual([...v.patchClasses], [0, 0, 1]);
  });

  it('breaks a tied vote by mean probability', () => {
    const probs = Float32Array.from([0.51, 0.49, 0.1, 0.9]);
    const v = vote(probs, 2, 2);
    assert.deepEqual(v.voteShares, [0.5, 0.5]);
    assert.equal(v.byMajority, 1);
  });
});

describe('metrics', () => {
  it('matches a hand-computed three-class case', () => {
    // truth:     A A A A B B B C C C
    // predicted: A A A B B B C C C A
    const truth = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
    const predicted = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0];
    const m = classificationMetrics(truth, predicted, ['A', 'B', 'C']);
    assert.deepEqual(m.confusion, [
      [3, 1, 0],
      [0, 2, 1],
      [1, 0, 2],
    ]);
    close(m.accuracy, 0.7, 'accuracy');
    close(m.balancedAccuracy, (3 / 4 + 2 / 3 + 2 / 3) / 3, 'balanced accuracy');
    // pe = (4*4 + 3*3 + 3*3) / 100 = 0.34; kappa = (0.7 - 0.34) / 0.66
    close(m.kappa, 0.36 / 0.66, 'kappa');
    const a = m.perClass[0];
    assert.ok(a);
    close(a.precision, 3 / 4, 'precision A');
    close(a.recall, 3 / 4, 'recall A');
    close(m.perClass[1]?.precision ?? 0, 2 / 3, 'precision B');
    close(m.perClass[2]?.f1 ?? 0, 2 / 3, 'F1 C');
  });

  it('handles perfect agreement and absent classes', () => {
    const m = classificationMetrics([0, 1, 1], [0, 1, 1], ['A', 'B', 'C']);
    close(m.accuracy, 1, 'accuracy');
    close(m.kappa, 1, 'kappa');
    close(m.balancedAccuracy, 1, 'balanced accuracy over present classes');
    assert.equal(m.perClass[2]?.support, 0);
  });

  it('pools cross-validation folds by summing their confusion matrices', () => {
    // The hand-computed case above, cut into two folds: pooled, it must give the same figures.
    const fold = (truth: number[], predicted: number[]) =>
      ({
        rule: 'majority',
        image: classificationMetrics(truth, predicted, ['A', 'B', 'C']),
        imageMajority: classificationMetrics(truth, predicted, ['A', 'B', 'C']),
        imageMean: classificationMetrics(truth, truth, ['A', 'B', 'C']),
        patch: classificationMetrics(truth, predicted, ['A', 'B', 'C']),
        model: { name: 'm', version: 1, dir: '', syntheticWeights: false },
        images: truth.map((t, i) => ({
          caseId: `case${i % 2}`,
          className: 'ABC'[t] ?? '',
          predicted: 'ABC'[predicted[i] ?? 0] ?? '',
          scores: [0, 1, 2].map((k) => (k === predicted[i] ? 1 : 0)),
        })),
      }) as unknown as EvaluationReport;
    const cv = crossValidationReport('cv', [
      { fold: 1, report: fold([0, 0, 0, 0, 1], [0, 0, 0, 1, 1]) },
      { fold: 2, report: fold([1, 1, 2, 2, 2], [1, 2, 2, 2, 0]) },
    ]);
    const whole = classificationMetrics(
      [0, 0, 0, 0, 1, 1, 1, 2, 2, 2],
      [0, 0, 0, 1, 1, 1, 2, 2, 2, 0],
      ['A', 'B', 'C'],
    );
    assert.deepEqual(cv.imageMajority, whole);
    assert.deepEqual(cv.image, whole, "the model's own rule is pooled the same way");
    assert.deepEqual(
      metricsFromConfusion(whole.confusion, ['A', 'B', 'C']),
      whole,
      'metrics from a confusion matrix are the metrics of its labels',
    );
    close(cv.imageMean.accuracy, 1, 'mean rule pooled');
    close(cv.foldAccuracy.mean, (4 / 5 + 3 / 5) / 2, 'mean of fold accuracies');
    close(cv.foldAccuracy.sd, Math.SQRT2 * 0.1, 'sample sd of 0.8 and 0.6');
    assert.deepEqual(
      cv.folds.map((f) => [f.fold, f.images, f.groups]),
      [
        [1, 5, 2],
        [2, 5, 2],
      ],
    );
    assert.equal(cv.images.length, 10);
    // Groups: case0 holds images 0,2,4 of each fold; per-group results add up to the whole.
    assert.equal(
      cv.groups.reduce((n, g) => n + g.correct, 0),
      7,
    );
    assert.ok(cv.accuracyInterval.low <= 0.7 && cv.accuracyInterval.high >= 0.7);
  });

  it('bootstraps over groups, not images: one group decides everything, so the interval is wide', () => {
    // Two patients, all of one right and all of the other wrong: 50%, and resampling patients
    // gives anything from 0% to 100%; by images it would look far more certain.
    const images = [
      ...Array.from({ length: 20 }, () => ({ group: 'p1', label: 0, predicted: 0 })),
      ...Array.from({ length: 20 }, () => ({ group: 'p2', label: 1, predicted: 0 })),
    ];
    const { accuracy } = bootstrapOverGroups(images, ['A', 'B']);
    close(accuracy.estimate, 0.5, 'point estimate');
    close(accuracy.low, 0, 'low end');
    close(accuracy.high, 1, 'high end');
    const again = bootstrapOverGroups(images, ['A', 'B']);
    assert.deepEqual(again.accuracy, accuracy, 'seeded: the same interval every time');
  });

  it('compares two cross-validations of the same images paired by patient, and refuses different images', () => {
    // Ten patients of four images; recipe a gets one more image right than b in each of six.
    const report = (name: string, right: (patient: number, k: number) => boolean) =>
      ({
        name,
        images: Array.from({ length: 40 }, (_, i) => {
          const patient = Math.floor(i / 4);
          return {
            fileName: `p${patient}-${i % 4}.png`,
            caseId: `p${patient}`,
            className: 'A',
            predicted: right(patient, i % 4) ? 'A' : 'B',
          };
        }),
      }) as unknown as Parameters<typeof compareCrossValidations>[0];
    const a = report('a', (p, k) => k < 2 + (p < 6 ? 1 : 0));
    const b = report('b', (_, k) => k < 2);
    const c = compareCrossValidations(a, b);
    close(c.difference.estimate, 6 / 40, 'difference');
    assert.ok(c.difference.low > 0 && c.difference.high <= 0.25, JSON.stringify(c.difference));
    assert.deepEqual([c.onlyA, c.onlyB, c.groups, c.images], [6, 0, 10, 40]);
    close(c.a.accuracy - c.b.accuracy, c.difference.estimate, 'the same difference');
    const fewer = { ...b, images: b.images.slice(1) } as typeof b;
    assert.throws(() => compareCrossValidations(a, fewer), { code: 'ERR_EVALUATE', message: /same images/ });
  });
});

describe('calibration and abstention', () => {
  it('fits a temperature above 1 for an over-confident model and below 1 for an under-confident one', () => {
    // Over-confident: huge scores, but right only 60% of the time.
    const over = Array.from({ length: 100 }, (_, i) => ({ scores: [10, -10], label: i % 5 < 3 ? 0 : 1 }));
    assert.ok(fitTemperature(over) > 5, `temperature ${fitTemperature(over)}`);
    // Under-confident: tiny scores, always right.
    const under = Array.from({ length: 100 }, (_, i) => ({
      scores: i % 2 ? [0.1, -0.1] : [-0.1, 0.1],
      label: i % 2 ? 0 : 1,
    }));
    assert.ok(fitTemperature(under) < 0.2, `temperature ${fitTemperature(under)}`);
  });

  it('chooses the lowest threshold whose answered images reach the target, or none', () => {
    // Confidence sorts the right answers above the wrong ones except one.
    const confidences = [0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.9, 0.8, 0.7, 0.6];
    const correct = [true, true, true, true, true, true, false, true, false, false];
    assert.equal(chooseThreshold(confidences, correct, 0.95), 0.94);
    assert.equal(chooseThreshold(confidences, correct, 0.8), 0.8, '7 of 8 right is 87.5%');
    assert.ok(
      chooseThreshold(
        confidences,
        correct.map(() => false),
        0.5,
      ) > 1,
      'never right: never answers',
    );
    const curve = coverageCurve(confidences, correct);
    assert.deepEqual(curve[0], { threshold: 0.6, coverage: 1, accuracy: 0.7 });
    assert.deepEqual(curve[curve.length - 1], { threshold: 0.99, coverage: 0.1, accuracy: 1 });
  });
});
