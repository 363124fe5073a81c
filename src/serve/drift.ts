/**
 * Drift, week by week, for one model version: the share of its inputs unlike the training data
 * (atypicality beyond the 99th percentile), and the scale, stain (haematoxylin and eosin
 * densities) and focus of its inputs against the training images' distributions that its package
 * keeps: each week's median and quartiles, and the share outside the training images' 1st to 99th
 * percentiles. A scanner, stainer or protocol that changes shows here before the answers degrade.
 */
import { REFERENCE_QUANTILES, type ModelManifest, type Quantiles } from '../model/package.js';
import { UNLIKE_PERCENTILE, type ReferenceUnit } from '../predict/atypicality.js';
import { LIMITS } from '../limits.js';
import { quantile } from '../stats.js';
import type { CaseSignals, InputSignals } from '../store/case-signals.js';
import type { ServerStore } from '../store/open.js';

export const DRIFT_MEASURES = ['scale', 'haematoxylin', 'eosin', 'focus'] as const;
export type DriftMeasure = (typeof DRIFT_MEASURES)[number];

/** A week's values of one measure against the training images'. */
export type MeasureSummary = {
  median: number;
  low: number;
  high: number;
  /** Share outside the training images' 1st to 99th percentile (null: the training range is unknown). */
  outside: number | null;
};

export type WeekSummary = {
  /** The Monday (UTC) the week starts on. */
  week: string;
  cases: number;
  /** Cases unlike the training data, and cases whose atypicality is unknown. */
  unlike: number;
  unknown: number;
  measures: Record<DriftMeasure, MeasureSummary | null>;
};

// A type, not an interface: the API's response schema types take it as an open record.
export type DriftReport = {
  modelId: string;
  unlikePercentile: number;
  weeks: WeekSummary[];
  /** The training images' (or slides') distributions (quantiles at `quantiles`); null: the package keeps none. */
  training:
    | (Record<DriftMeasure, Quantiles | null> & {
        images: number;
        patients: number;
        /** What `images` counts: training images, or a slide-trained package's slides. */
        unit: ReferenceUnit;
      })
    | null;
  quantiles: readonly number[];
};

function mondayOf(time: string): string {
  const day = new Date(time);
  day.setUTCHours(0, 0, 0, 0);
  day.setUTCDate(day.getUTCDate() - ((day.getUTCDay() + 6) % 7));
  return day.toISOString().slice(0, 10);
}

function summarise(values: number[], training: Quantiles | null): MeasureSummary | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const first = training?.[0];
  const last = training?.[training.length - 1];
  const round = (v: number): number => Number(v.toPrecision(4));
  return {
    median: round(quantile(sorted, 0.5)),
    low: round(quantile(sorted, 0.25)),
    high: round(quantile(sorted, 0.75)),
    outside:
      first === undefined || last === undefined
        ? null
        : Number((sorted.filter((v) => v < first || v > last).length / sorted.length).toFixed(4)),
  };
}

const valueOf = (inputs: InputSignals | null, measure: DriftMeasure): number | null =>
  inputs?.[measure] ?? null;

function weekOf(week: string, cases: readonly CaseSignals[], training: DriftReport['training']): WeekSummary {
  const measures = Object.fromEntries(
    DRIFT_MEASURES.map((m) => [
      m,
      summarise(
        cases.map((c) => valueOf(c.inputs, m)).filter((v): v is number => v !== null),
        training?.[m] ?? null,
      ),
    ]),
  ) as Record<DriftMeasure, MeasureSummary | null>;
  return {
    week,
    cases: cases.length,
    unlike: cases.filter((c) => c.atypicality !== null && c.atypicality > UNLIKE_PERCENTILE).length,
    unknown: cases.filter((c) => c.atypicality === null).length,
    measures,
  };
}

export async function driftReport(
  store: ServerStore,
  modelId: string,
  manifest: ModelManifest | null,
  weeks: number,
): Promise<DriftReport> {
  const since = new Date(Date.now() - weeks * 7 * 86_400_000).toISOString();
  // The inputs of the kind its reference holds (a slide-trained package's: slides), each
  // judged against its own kind's ranges.
  const unit: ReferenceUnit =
    manifest?.reference?.atypicality.unit ?? (manifest?.slides ? 'slides' : 'images');
  const cases = await store.signals.since(
    modelId,
    unit === 'slides' ? 'slide' : 'prediction',
    since,
    LIMITS.driftCases,
  );
  const byWeek = new Map<string, CaseSignals[]>();
  for (const c of cases) {
    const week = mondayOf(c.createdAt);
    byWeek.set(week, [...(byWeek.get(week) ?? []), c]);
  }
  const reference = manifest?.reference;
  const training = reference
    ? {
        scale: reference.inputs.scale,
        haematoxylin: reference.inputs.haematoxylin,
        eosin: reference.inputs.eosin,
        focus: reference.inputs.focus,
        images: reference.atypicality.images,
        patients: reference.atypicality.patients,
        unit,
      }
    : null;
  return {
    modelId,
    unlikePercentile: UNLIKE_PERCENTILE,
    weeks: [...byWeek].map(([week, list]) => weekOf(week, list, training)),
    training,
    quantiles: REFERENCE_QUANTILES,
  };
}
