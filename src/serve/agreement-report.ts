/**
 * The agreement an admin audits: between the first two readers of each case, and between each
 * reader and the model version that answered the case (overall and per version), from every
 * reader's current review; and the cases whose readers disagree, listed for a third reader.
 */
import { agreementOf, type AgreementSummary, type PairedOpinion } from '../evaluate/agreement.js';
import { OTHER_LABEL, type Review } from '../store/reviews.js';
import type { ServerStore } from '../store/open.js';
import { consensusOf, requiredReaders, reviewsByCase, type RequiredReaders } from '../store/review-cases.js';

/** Current reviews the report reads at most (each reader's latest of each case). */
const REPORT_REVIEWS = 20_000;

export interface Disagreement {
  caseKind: Review['caseKind'];
  caseId: string;
  patient: string | null;
  opinions: { reviewer: string; label: string }[];
}

// A type, not an interface: the API's response schema types take it as an open record.
export type AgreementReport = {
  required: RequiredReaders;
  cases: number;
  readers: AgreementSummary | null;
  model: AgreementSummary | null;
  byModel: { modelId: string; summary: AgreementSummary | null }[];
  disagreements: Disagreement[];
};

const labelOf = (r: Review): string =>
  r.label === OTHER_LABEL ? `${OTHER_LABEL}: ${r.otherText ?? ''}` : r.label;

export async function agreementReport(
  store: ServerStore,
  classes: readonly string[],
): Promise<AgreementReport> {
  const required = await requiredReaders(store.db);
  const cases = [...reviewsByCase(await store.reviews.list({ limit: REPORT_REVIEWS })).values()];
  const betweenReaders: PairedOpinion[] = [];
  const withModel: (PairedOpinion & { modelId: string })[] = [];
  const disagreements: Disagreement[] = [];
  for (const reviews of cases) {
    const first = reviews[0];
    if (!first) continue;
    // A patient's cases move together in the bootstrap; a case without one is its own group.
    const group =
      [...reviews].reverse().find((r) => r.patient)?.patient ?? `${first.caseKind}:${first.caseId}`;
    const second = reviews[1];
    if (second) betweenReaders.push({ group, a: labelOf(first), b: labelOf(second) });
    for (const r of reviews)
      if (r.predicted !== null) withModel.push({ group, a: labelOf(r), b: r.predicted, modelId: r.modelId });
    if (consensusOf(reviews, required).status === 'disagreement')
      disagreements.push({
        caseKind: first.caseKind,
        caseId: first.caseId,
        patient: group.includes(':') ? null : group,
        opinions: reviews.map((r) => ({ reviewer: r.reviewer, label: labelOf(r) })),
      });
  }
  const models = [...new Set(withModel.map((p) => p.modelId))].sort();
  return {
    required,
    cases: cases.length,
    readers: agreementOf(betweenReaders, classes),
    model: agreementOf(withModel, classes),
    byModel: models.map((modelId) => ({
      modelId,
      summary: agreementOf(
        withModel.filter((p) => p.modelId === modelId),
        classes,
      ),
    })),
    disagreements,
  };
}
