import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { augmentStain } from '../../src/image/augment.js';
import { MACENKO_DEFAULT, symmetricEigen3 } from '../../src/image/macenko.js';
import { applyNormaliser, describeStains, fitNormaliser } from '../../src/image/normalise.js';
import { seededRandom } from '../../src/random.js';
import { heImage } from '../fixtures.js';

function cosine(a: readonly number[], b: readonly number[]): number {
  const dot = a.reduce((s, v, i) => s + v * (b[i] ?? 0), 0);
  return dot / Math.hypot(...a) / Math.hypot(...b);
}

describe('stain normalisation', () => {
  it('stretches each channel between its percentiles', () => {
    const image = heImage(64, 64, 1);
    const out = applyNormaliser(fitNormaliser({ method: 'percentile', percentiles: [1, 99] }), image);
    for (let c = 0; c < 3; c++) {
      const values = [...out.data].filter((_, i) => i % 3 === c);
      assert.ok(
        Math.min(...values) <= 3 && Math.max(...values) >= 252,
        `channel ${c} spans ${Math.min(...values)}-${Math.max(...values)}`,
      );
    }
  });

  it('grey keeps luminance alone, stretched: a stain tint or brightness change gives the same image', () => {
    const normaliser = fitNormaliser({ method: 'grey' });
    const image = heImage(64, 64, 1);
    const out = applyNormaliser(normaliser, image);
    for (let i = 0; i < out.data.length; i += 3) {
      assert.equal(out.data[i], out.data[i + 1]);
      assert.equal(out.data[i], out.data[i + 2]);
    }
    const values = [...out.data].filter((_, i) => i % 3 === 0);
    assert.ok(Math.min(...values) <= 3 && Math.max(...values) >= 252);
    // Darker by a fifth everywhere: the stretch takes it back.
    const darker = { ...image, data: image.data.map((v) => Math.round(v * 0.8)) };
    const again = applyNormaliser(normaliser, darker);
    const differ = again.data.filter((v, i) => Math.abs(v - (out.data[i] ?? 0)) > 4).length;
    assert.ok(differ < out.data.length * 0.02, `${differ} values differ`);
  });

  it('Reinhard matches the reference L*a*b* statistics', () => {
    const reference = heImage(80, 80, 2, 1.4);
    const source = heImage(80, 80, 3, 0.5);
    const out = applyNormaliser(fitNormaliser({ method: 'reinhard' }, reference), source);
    const want = describeStains(reference).lab;
    const got = describeStains(out).lab;
    for (let c = 0; c < 3; c++) {
      assert.ok(
        Math.abs((got.mean[c] ?? 0) - (want.mean[c] ?? 0)) < 2.5,
        `mean ${c}: ${got.mean[c]} vs ${want.mean[c]}`,
      );
      assert.ok(
        Math.abs((got.std[c] ?? 0) - (want.std[c] ?? 0)) < 2.5,
        `std ${c}: ${got.std[c]} vs ${want.std[c]}`,
      );
    }
    assert.throws(() => fitNormaliser({ method: 'reinhard' }), /needs a reference image/);
  });

  it('Macenko recovers the haematoxylin and eosin vectors and re-renders with the reference stains', () => {
    const image = heImage(120, 120, 4);
    const fit = describeStains(image).stains;
    assert.ok(fit);
    assert.ok(cosine(fit.stains[0], [0.65, 0.7, 0.29]) > 0.98, `H ${fit.stains[0].join(',')}`);
    assert.ok(cosine(fit.stains[1], [0.07, 0.99, 0.11]) > 0.98, `E ${fit.stains[1].join(',')}`);
    const pale = heImage(120, 120, 5, 0.4);
    const normalised = applyNormaliser(MACENKO_DEFAULT, pale);
    const after = describeStains(normalised).stains;
    assert.ok(after);
    assert.ok(cosine(after.stains[0], MACENKO_DEFAULT.stains[0]) > 0.97);
    assert.ok(cosine(after.stains[1], MACENKO_DEFAULT.stains[1]) > 0.97);
    // Empty glass stays empty glass, and an image without tissue is left as it is.
    const glass = { data: new Uint8Array(32 * 32 * 3).fill(240), width: 32, height: 32 };
    assert.deepEqual(applyNormaliser(MACENKO_DEFAULT, glass).data, glass.data);
  });

  it('solves symmetric eigenproblems', () => {
    const { values, vectors } = symmetricEigen3([
      [2, 1, 0],
      [1, 2, 0],
      [0, 0, 5],
    ]);
    assert.deepEqual(
      values.map((v) => Math.round(v * 1e6) / 1e6),
      [5, 3, 1],
    );
    assert.ok(Math.abs(Math.abs(vectors[2]?.[0] ?? 0) - 1) < 1e-9);
  });
});

describe('stain augmentation', () => {
  const batch = (): Uint8Array => {
    const a = heImage(16, 16, 6);
    const b = heImage(16, 16, 7);
    return Uint8Array.from([...a.data, ...b.data]);
  };

  it('is the identity at zero strength', () => {
    const data = batch();
    const copy = Uint8Array.from(data);
    augmentStain(data, 2, 256, { hedScale: 0, hedShift: 0, brightness: 0 }, seededRandom(1));
    assert.deepEqual(data, copy);
  });

  it('keeps pixels nearly unchanged through the HED round trip at tiny strength', () => {
    const data = batch();
    const copy = Uint8Array.from(data);
    augmentStain(data, 2, 256, { hedScale: 1e-9 }, seededRandom(1));
    assert.ok(data.every((v, i) => Math.abs(v - (copy[i] ?? 0)) <= 1));
  });

  it('varies staining per patch, repeatably for a seed', () => {
    const a = batch();
    const b = batch();
    const options = {
      hedScale: 0.1,
      hedShift: 0.05,
      brightness: 0.1,
      contrast: 0.1,
      saturation: 0.1,
      hue: 0.03,
    };
    augmentStain(a, 2, 256, options, seededRandom(9));
    augmentStain(b, 2, 256, options, seededRandom(9));
    assert.deepEqual(a, b);
    const original = batch();
    const changed = a.reduce((n, v, i) => n + (v !== original[i] ? 1 : 0), 0);
    assert.ok(changed > a.length / 2, `${changed} of ${a.length} values changed`);
    assert.throws(() => augmentStain(a, 2, 256, { hedScale: 2 }, seededRandom(1)), /between 0 and 1/);
    assert.throws(() => augmentStain(a, 3, 256, {}, seededRandom(1)), /does not match/);
  });
});
