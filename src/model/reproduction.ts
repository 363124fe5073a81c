/**
 * Everything outside the ONNX graph that turns an image file into pathotype's answer, stated in
 * the sidecar so that a reimplementation needs no pathotype code: decoding, how the pixel scale is
 * found, the resampling (sharp's lanczos3, i.e. libvips' vips_resize, step by step and bit-exact
 * on 8-bit RGB), the normaliser, the patch grid, the background filter, the input checks with
 * their thresholds, the vote, the calibration and what its threshold means.
 * integrations/python/predict_onnx.py is a reimplementation from this section alone.
 */
import { LIMITS } from '../limits.js';
import {
  FOLD_BLOCK,
  FOLD_DENSITY_RATIO,
  INK_CHROMA,
  INK_LUMINANCE,
  MAX_RIM_ASPECT,
  MAX_RIM_CENTRE_SHARE,
  MAX_RIM_FILL,
  MIN_RIM_SIDE,
  RIM_CHROMA,
  RIM_LUMINANCE,
} from '../image/artefacts.js';
import { checkList, type CheckName } from '../image/input-checks.js';
import { JUDGING_SCALE } from '../image/judged-pixels.js';
import type { PreprocessConfig } from '../image/preprocess.js';
import { maxUpsamplingOf } from '../image/resampling.js';
import { ORIGINAL_HEIGHT, ORIGINAL_MPP, ORIGINAL_WIDTH } from '../image/scale.js';
import { RGB_FROM_HED } from '../image/stain-vectors.js';
import { BACKGROUND_MAX_CHROMA } from '../image/tiling.js';
import { GLASS_CHROMA, GLASS_LUMINANCE, GREEN_MARGIN, PEN_CHROMA, TISSUE_SAMPLES } from '../image/tissue.js';
import type { VoteRule } from '../engine/pooling.js';
import type { Calibration } from './package.js';

/** One input check: what is measured, the bound beyond which the image is refused, and the code. */
export interface InputCheck {
  code: string;
  /** A measure named in `measures`, or one of the geometry values the rule explains. */
  measure: string;
  /** Refused when the measure is above this (or below `refusedBelow`). */
  refusedAbove?: number;
  refusedBelow?: number;
  rule: string;
}

/**
 * How the sidecar names each input check's measure (the key a reimplementation computes, as
 * `measures` describes it) and which part of `measures` says how: one entry per row of the
 * input-check table (image/input-checks.ts), which the type keeps complete.
 */
const SIDECAR_MEASURES: Record<CheckName, { measure: string; rule: string }> = {
  tissue: { measure: 'tissueFraction', rule: 'measures.tissue' },
  stain: { measure: 'stainFraction', rule: 'measures.tissue' },
  ink: { measure: 'inkFraction', rule: 'measures.tissue' },
  blackInk: { measure: 'blackInkFraction', rule: 'measures.judged' },
  fold: { measure: 'foldFraction', rule: 'measures.judged' },
  bubble: { measure: 'bubbleFraction', rule: 'measures.judged' },
  patches: { measure: 'patches', rule: 'patches kept after the background filter' },
  focus: { measure: 'focus', rule: 'measures.judged' },
};

/**
 * The input checks in the order pathotype applies them (the first that fails refuses the image):
 * the work an image implies, from its header, then the rows of the input-check table with their
 * limits for a field image.
 */
export function inputChecks(preprocess: PreprocessConfig): InputCheck[] {
  const above = (code: string, measure: string, bound: number, rule: string): InputCheck => ({
    code,
    measure,
    refusedAbove: bound,
    rule,
  });
  const below = (code: string, measure: string, bound: number, rule: string): InputCheck => ({
    code,
    measure,
    refusedBelow: bound,
    rule,
  });
  return [
    above(
      'ERR_IMAGE_TOO_LARGE',
      'filePixels',
      LIMITS.imagePixels,
      'width x height of the upright image, from the header',
    ),
    below(
      'ERR_SCALE',
      'scaleKnown',
      1,
      '0 when the model has a targetScale and the image scale is unknown, else 1',
    ),
    above(
      'ERR_UPSAMPLING',
      'enlargement',
      maxUpsamplingOf(preprocess),
      'targetScale / scale (no targetScale: 1)',
    ),
    above('ERR_IMAGE_TOO_LARGE', 'modelPixels', LIMITS.imagePixels, 'width x height at the model scale'),
    above(
      'ERR_TOO_MUCH_WORK',
      'gridCells',
      LIMITS.imagePatches,
      'cols x rows of the grid at the model scale',
    ),
    ...checkList().map((check) => {
      const { measure, rule } = SIDECAR_MEASURES[check.name];
      return (check.bound === 'min' ? below : above)(check.code, measure, check.field, rule);
    }),
  ];
}

const LUMINANCE = 'L = 0.299 R + 0.587 G + 0.114 B; chroma = max(R, G, B) - min(R, G, B)';

/** The measures' parameters, as numbers (their rules name them). */
function measureParameters(): Record<string, unknown> {
  return {
    tissueSamples: TISSUE_SAMPLES,
    glassLuminance: GLASS_LUMINANCE,
    glassChroma: GLASS_CHROMA,
    greenMargin: GREEN_MARGIN,
    penChroma: PEN_CHROMA,
    judgingScale: JUDGING_SCALE,
    foldBlock: FOLD_BLOCK,
    foldDensityRatio: FOLD_DENSITY_RATIO,
    inkLuminance: INK_LUMINANCE,
    inkChroma: INK_CHROMA,
    rimLuminance: RIM_LUMINANCE,
    rimChroma: RIM_CHROMA,
    minRimSide: MIN_RIM_SIDE,
    maxRimAspect: MAX_RIM_ASPECT,
    maxRimFill: MAX_RIM_FILL,
    maxRimCentreShare: MAX_RIM_CENTRE_SHARE,
    rgbFromHed: RGB_FROM_HED,
  };
}

/** How each measure of the checks is taken. */
function measures(): Record<string, unknown> {
  return {
    parameters: measureParameters(),
    pixels: LUMINANCE,
    opticalDensity: 'OD(v) = -log10(max(v, 1) / 255) per 8-bit channel value',
    tissue: {
      on: 'the decoded image at the model scale (before normalisation)',
      sampling:
        'pixels p = 0, k, 2k, ... in row-major order, k = max(1, floor(width x height / tissueSamples))',
      glass: 'L > glassLuminance and chroma < glassChroma',
      stained: 'G + greenMargin <= R and G + greenMargin <= B',
      tissueFraction: 'sampled pixels that are not glass / sampled pixels',
      stainFraction: 'stained tissue pixels / tissue pixels (0 without tissue)',
      inkFraction: 'sampled tissue pixels with chroma >= penChroma that are not stained / sampled pixels',
    },
    judged: {
      on:
        'the decoded image at the model scale, reduced (resize) to judgingScale, size max(3, round(side x ' +
        'judgingScale / modelScale)), when modelScale > judgingScale + 0.001; otherwise as it is (pixels are ' +
        "reduced to be judged, never enlarged); a model without a targetScale: the image's own scale (unknown: as it is)",
      focus:
        'variance (population) of the 4-neighbour Laplacian h[y][x-1] + h[y][x+1] + h[y-1][x] + h[y+1][x] - 4 h[y][x] over ' +
        'the interior pixels; h (float32) = OD(R) m00 + OD(G) m10 + OD(B) m20, m = the inverse of rgbFromHed',
      foldFraction:
        'blocks of foldBlock x foldBlock from the top-left (partial ones dropped) with more than half their pixels not glass; ' +
        'density = mean of OD(R) + OD(G) + OD(B) over those pixels; the share of such blocks whose density / the median ' +
        'block density (sorted ascending, element floor(n / 2)) > foldDensityRatio',
      blackInkFraction:
        'largest 4-connected component of pixels with L < inkLuminance and chroma < inkChroma, in pixels / all pixels',
      bubbleFraction:
        '4-connected components of rim pixels (L < rimLuminance and chroma < rimChroma); a component is a bubble rim when ' +
        'its bounding box is at least minRimSide px each way, w / h within maxRimAspect either way, pixels / box area < ' +
        "maxRimFill, and rim pixels (of any component) in the box's centre (the box less floor(w / 4), floor(h / 4) on " +
        'each side) / centre area < maxRimCentreShare; bubbleFraction = the largest such box area / all pixels (0: none)',
    },
  };
}

/** sharp 0.34 (libvips 8.17) resize(w, h, { fit: 'fill', kernel: 'lanczos3' }) on 8-bit RGB, exactly. */
function resize(): Record<string, unknown> {
  return {
    library: 'sharp 0.34 resize(width, height, { fit: fill, kernel: lanczos3 }) = libvips 8.17 vips_resize',
    on: '8-bit RGB values (after decoding, orientation and flattening), each channel alike',
    skipped: 'when the size at the model scale is the image size',
    shrink:
      'per axis s = 1 / (1 / (in / out)) (the double sharp passes); reduction when out < in, enlargement when out > in',
    reduction: {
      order: 'vertical pass, then horizontal pass, each rounded to 8 bits',
      boxFirst:
        'k = floor(in / out / 2); when k > 1 the axis is first averaged over runs of k pixels (the last run padded by repeating ' +
        'the edge pixel; value = floor((sum + floor(k / 2)) / k)), and s and e (below) become s / k and e / k over the ceil(in / k) pixels',
      taps: 'n = 2 round(3 s) + 1',
      position:
        'output pixel x centres on P = (x + 0.5) s - 0.5 - e / 2 with e = out s - in; X = P + 0.5, i = floor(X); the phase ' +
        'q = ((floor(X * 128) mod 128) + 1) >> 1, in 64ths (0 to 64)',
      weights:
        'for tap t = 0..n-1 on input pixel i - floor(n / 2) + t (indices outside repeat the edge pixel): ' +
        'w_t = L3((t - q / 64 - n / 2 + 1) / s) / sum of them, L3(0) = 1, L3(x) = 3 sin(pi x) sin(pi x / 3) / (pi x)^2 for ' +
        '|x| <= 3, else 0; fixed point c_t = trunc(w_t x 4096)',
      value: 'clamp((sum_t c_t v_t + 2048) >> 12, 0, 255), >> an arithmetic (floor) shift',
    },
    enlargement: {
      when: 'either axis grows: after any reduction above, both axes together (an axis of the same size too)',
      position:
        'output pixel x samples X = x / s - 0.5 (s = out / in of that axis), i = floor(X), phase q as above from X - i',
      weights:
        'Catmull-Rom on pixels i-1, i, i+1, i+2 (edges repeated): with f = q / 64, d = 1 - f, a = -0.5 d f: ' +
        'c0 = a d, c1 = d f (1 - 1.5 f) + d, c2 = 1 - (a + c1), c3 = a f; fixed point trunc(c x 4096)',
      value:
        'horizontal first on each of the 4 rows: r = (sum c v + 2048) >> 12 (not clamped); then vertical: ' +
        'clamp((sum c r + 2048) >> 12, 0, 255)',
    },
  };
}

/** The normaliser applied to each image at the model scale, before it is cut. */
function normalise(preprocess: PreprocessConfig): Record<string, unknown> {
  return {
    ...preprocess.normaliser,
    rules: {
      none: 'the pixels as they are',
      percentile:
        'per channel: lo, hi = the smallest values whose cumulative count reaches low% and high% of the pixels; ' +
        'v -> clamp(round((v - lo) x 255 / (max(lo + 1, hi) - lo)), 0, 255)',
      others:
        'reinhard, macenko, haematoxylin and grey: src/image/normalise.ts (not reimplemented in integrations/python)',
    },
  };
}

/** The vote, the calibration and the abstention rule. */
function verdict(rule: VoteRule, calibration: Calibration | undefined): Record<string, unknown> {
  const scores: Record<VoteRule, string> = {
    majority:
      's_c = log(max(share of patches whose argmax is c, 1e-7)); ties of the argmax go to the higher mean probability',
    mean: 's_c = log(max(mean over patches of softmax(logits)_c, 1e-7))',
    logit:
      's_c = mean over patches of log_softmax(logits)_c (from the logits, not from rounded probabilities)',
    attention:
      "s_c = sum over patches of a_i log_softmax(logits_i)_c, a = softmax over the image's patches of the graph output attention",
  };
  return {
    rule,
    scores: scores[rule],
    predicted: rule === 'majority' ? 'the majority class (ties: the higher mean probability)' : 'argmax of s',
    centre: 's_c - mean over classes of s',
    probabilities: 'softmax(s / temperature) (temperature 1 without calibration)',
    confidence: 'the largest of those probabilities',
    status: 'uncertain when confidence < threshold, else answered (no calibration: always answered)',
    temperature: calibration?.temperature ?? 1,
    threshold: calibration?.threshold ?? null,
    thresholdMeaning:
      calibration === undefined
        ? 'no threshold: every image is answered'
        : calibration.threshold > 1
          ? `${calibration.threshold} is above any probability: the model never answers, every image is uncertain (cross-validation found no threshold reaching its target accuracy ${calibration.target})`
          : `answers an image when its calibrated confidence reaches ${calibration.threshold}, fitted so that answered images are right ${calibration.target * 100}% of the time in cross-validation`,
    rounding: 'every probability, share and confidence rounded to 4 decimals',
  };
}

/** The sidecar's `reproduce` section for a package's preprocessing, vote and calibration. */
export function reproductionOf(
  preprocess: PreprocessConfig,
  rule: VoteRule,
  calibration: Calibration | undefined,
): Record<string, unknown> {
  const { patchSize, stride } = preprocess.tiles;
  return {
    decode: {
      to: '8-bit sRGB, 3 channels: EXIF orientation applied, alpha flattened onto white (255, 255, 255), grey as R = G = B, 16-bit to 8-bit, embedded ICC profiles applied',
      formats: ['tiff', 'png', 'jpeg', 'webp'],
      note: 'decoded at full size, never shrunk while decoding (no JPEG or WebP shrink-on-load)',
    },
    scale: {
      originalWidth: ORIGINAL_WIDTH,
      originalHeight: ORIGINAL_HEIGHT,
      originalMpp: ORIGINAL_MPP,
      modelScale: preprocess.targetScale,
      meaning:
        'pixel scale relative to the IICBU 2008 release, whose originalWidth x originalHeight fields are scale 1',
      given: '--scale X, or --mpp UM as scale = originalMpp / UM to 4 significant digits',
      inferred:
        'otherwise s = width / originalWidth rounded to 4 decimals, when |height / originalHeight - s| / s < 0.01; else unknown',
      size: 'at the model scale: max(1, round(width x f)) x max(1, round(height x f)), f = modelScale / scale, round half up; no model scale: as it is',
    },
    resize: resize(),
    normalise: normalise(preprocess),
    grid: {
      origin: 'the top-left pixel (0, 0)',
      cells: `cols = floor((width - ${patchSize}) / ${stride}) + 1 when width >= ${patchSize}, else 0; rows alike`,
      patch: `cell (col, row) is the ${patchSize}x${patchSize} block at x = col x ${stride}, y = row x ${stride}`,
      partial:
        'pixels right of and below the last whole patch are not analysed (no partial patch, no padding)',
      order: 'row by row, left to right: the order of the graph input and of the vote',
    },
    background: {
      ...preprocess.background,
      greyChroma: BACKGROUND_MAX_CHROMA,
      rule: `only when enabled: a patch is dropped when more than maxFraction of its pixels have L > brightness and chroma < greyChroma (${LUMINANCE})`,
    },
    checks: inputChecks(preprocess),
    measures: measures(),
    verdict: verdict(rule, calibration),
  };
}
