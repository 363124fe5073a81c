/**
 * Reviewed cases as a labelled data set: each reviewed image copied to `CLASS/PATIENT_CASE.ext`
 * (the patient first, so `data import` groups the files by patient: an sj-YY-NNNN accession
 * under its default rule, any other id under `--group-by 'regex:^([^_]+)_'`), `manifest.csv`
 * saying what became of every reviewed case, and the reviewed slides as a slide manifest
 * (slide,patient,label). A case the readers disagree on is left out unless asked for; a case
 * whose image the server did not keep, or without a patient, is named in the manifest.
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { ensureDir } from '../workspace.js';
import type { PredictionStore } from './predictions.js';
import { csvLine, OTHER_LABEL, type Review, type ReviewStore } from './reviews.js';
import type { Database } from './database.js';
import {
  consensusOf,
  requiredReaders,
  reviewsByCase,
  type Agreement,
  type CaseStatus,
} from './review-cases.js';

export interface ReviewExportOptions {
  since?: string;
  includeDisagreements?: boolean;
}

export type ExportStatus =
  'exported' | 'disagreement' | 'second-reading' | 'missing-image' | 'no-patient' | 'other';

export interface ExportedCase {
  caseKind: Review['caseKind'];
  caseId: string;
  /** The file written, relative to the export folder; null when none was. */
  image: string | null;
  patient: string | null;
  label: string;
  readers: string[];
  agreement: Agreement;
  status: ExportStatus;
}

export const MANIFEST_FILE = 'manifest.csv';
export const SLIDE_MANIFEST_FILE = 'slides.csv';

function statusOf(
  c: Omit<ExportedCase, 'status' | 'image'>,
  caseStatus: CaseStatus,
  options: ReviewExportOptions,
): ExportStatus {
  if (c.label === OTHER_LABEL) return 'other';
  if (c.agreement === 'disagree' && !options.includeDisagreements) return 'disagreement';
  // Under double reading a case read once is not finished: its second reader may differ.
  if (caseStatus === 'second-reading') return 'second-reading';
  if (!c.patient) return 'no-patient';
  return 'exported';
}

async function slidePathOf(db: Database, id: string): Promise<string | null> {
  const [row] = await db.query<{ slide_path: string }>('SELECT slide_path FROM slide_jobs WHERE id = ?', [
    id,
  ]);
  return row?.slide_path ?? null;
}

export async function exportReviews(
  stores: { db: Database; reviews: ReviewStore; predictions: PredictionStore },
  out: string,
  options: ReviewExportOptions = {},
): Promise<ExportedCase[]> {
  ensureDir(out);
  const cases: ExportedCase[] = [];
  const slideRows: string[] = [csvLine(['slide', 'patient', 'label'])];
  const reviews = await stores.reviews.list(options.since ? { since: options.since } : {});
  const required = await requiredReaders(stores.db);
  for (const group of reviewsByCase(reviews).values()) {
    const first = group[0];
    if (!first) continue;
    const patient = [...group].reverse().find((r) => r.patient)?.patient ?? null;
    const base = {
      caseKind: first.caseKind,
      caseId: first.caseId,
      patient,
      readers: group.map((r) => r.reviewer),
    };
    const { label, agreement, status: caseStatus } = consensusOf(group, required);
    const found = { ...base, label, agreement };
    let status = statusOf(found, caseStatus, options);
    let image: string | null = null;
    if (status === 'exported' && first.caseKind === 'slide') {
      const slide = await slidePathOf(stores.db, first.caseId);
      if (slide) slideRows.push(csvLine([slide, patient, found.label]));
      else status = 'missing-image';
    } else if (status === 'exported') {
      const record = await stores.predictions.get(first.caseId);
      const file = record ? stores.predictions.imagePath(record) : null;
      if (file && patient) {
        image = path.posix.join(found.label, `${patient}_${first.caseId.slice(0, 8)}${path.extname(file)}`);
        copyFileSync(file, path.join(ensureDir(path.join(out, found.label)), path.basename(image)));
      } else status = 'missing-image';
    }
    cases.push({ ...found, image, status });
  }
  const lines = cases
    .filter((c) => c.caseKind === 'prediction')
    .map((c) => csvLine([c.image, c.patient, c.label, c.readers.join(';'), c.agreement, c.status, c.caseId]));
  const header = ['image', 'patient', 'label', 'readers', 'agreement', 'status', 'case'];
  writeFileSync(path.join(out, MANIFEST_FILE), [csvLine(header), ...lines].join('\n') + '\n');
  if (slideRows.length > 1) writeFileSync(path.join(out, SLIDE_MANIFEST_FILE), slideRows.join('\n') + '\n');
  return cases;
}
