/**
 * The one way a verdict is written for people: the portal's pages and lists, the slide viewer,
 * and the CLI's text lines all call these, so a list row can never say something its page does
 * not (a vote share where the page shows the calibrated confidence, a class where it says
 * uncertain). Vote shares appear only under their own name.
 */
import { percent } from '../format.js';
import { escapeHtml } from '../html.js';
import type { Verdict } from './verdict.js';

/** What any view needs of a verdict (an image's, a slide's, a stored record's). */
export type ShownVerdict = Pick<Verdict, 'status' | 'predicted' | 'confidence' | 'threshold'>;

/** The headline of an uncertain verdict. */
export const UNCERTAIN_HEADLINE = 'Uncertain: refer to a pathologist';

/** The headline: the class when answered, the referral when uncertain. */
export function verdictHeadline(v: ShownVerdict): string {
  return v.status === 'uncertain' ? UNCERTAIN_HEADLINE : v.predicted;
}

/**
 * The confidence as named for what it is: without calibration the number is the vote's plain
 * softmax, which must not pass for a calibrated probability.
 */
export function confidenceText(v: ShownVerdict): string {
  return v.threshold === null
    ? `${percent(v.confidence)} confidence (uncalibrated)`
    : `${percent(v.confidence)} calibrated confidence`;
}

/** The verdict in one line: "FL, 85.7% calibrated confidence" or "uncertain (leans FL), 51.2% ...". */
export function verdictLine(v: ShownVerdict): string {
  const what = v.status === 'uncertain' ? `uncertain (leans ${v.predicted})` : v.predicted;
  return `${what}, ${confidenceText(v)}`;
}

/** Why an uncertain verdict is one: below the threshold, or a model that answers nothing. */
export function thresholdText(v: ShownVerdict): string {
  if (v.threshold === null) return 'this model carries no calibration, so it never abstains';
  return v.threshold > 1
    ? 'this model answers nothing: in cross-validation on patients it had not seen, no confidence level made it accurate enough to answer'
    : `it answers from ${percent(v.threshold)}`;
}

/** An image the model would not judge, in the same words everywhere. */
export function refusedLine(code: string, message: string): string {
  return `refused (${code}): ${message}`;
}

/** Vote shares, always under that name: "vote shares CLL 10.0%, FL 85.7%". */
export function voteSharesText(shares: Readonly<Record<string, number>>): string {
  return `vote shares ${Object.entries(shares)
    .map(([c, v]) => `${c} ${percent(v)}`)
    .join(', ')}`;
}

/**
 * The one-line verdict as HTML, with its status and numbers as data attributes so a page's tests
 * (and tools) can compare a list row with its page without parsing prose.
 */
export function verdictHtml(v: ShownVerdict): string {
  return `<span class="verdict" data-status="${v.status}" data-predicted="${escapeHtml(v.predicted)}" data-confidence="${v.confidence}">${escapeHtml(verdictLine(v))}</span>`;
}
