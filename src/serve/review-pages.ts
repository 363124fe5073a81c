/**
 * The review form on a result page and in the slide viewer: the pathologist's diagnosis (a
 * model class or "other" with its text), the patient id where the upload had none, a comment.
 * assets/portal/review.js sends it to the REST API with the page's CSRF token; viewers, who may
 * not review, get no form.
 */
import { escapeHtml } from '../html.js';
import { isRole, roleAllows } from '../store/users.js';
import { OTHER_LABEL, type CaseKind, type Review } from '../store/reviews.js';
import type { CaseStatus } from '../store/review-cases.js';
import type { CaseReviewView } from './review-views.js';

export const REVIEW_SCRIPT = '/static/portal/review.js';

/** The part of a page's context the form needs (the portal's PageContext fits; no import back into portal.ts). */
interface ReviewerContext {
  user: { name: string; role: string } | null;
  csrfToken: string | null;
}

export function reviewForm(
  ctx: ReviewerContext,
  kind: CaseKind,
  id: string,
  classes: readonly string[],
): string {
  if (ctx.user && !(isRole(ctx.user.role) && roleAllows(ctx.user.role, 'pathologist'))) return '';
  const action = `/api/v1/${kind === 'slide' ? 'slides' : 'predictions'}/${encodeURIComponent(id)}/review`;
  const options = [...classes, OTHER_LABEL]
    .map((c) => `<option value="${escapeHtml(c)}">${escapeHtml(c)}</option>`)
    .join('');
  return `<form class="panel" id="review-form" data-action="${escapeHtml(action)}" aria-label="Your review">
<h2>Your diagnosis</h2>
<p><label>Diagnosis <select name="label" id="review-label" required>${options}</select></label></p>
<p><label>If other: <input name="other" id="review-other" maxlength="2000"></label></p>
<p><label>Patient id <input name="patient" id="review-patient" pattern="[A-Za-z0-9][A-Za-z0-9.\\-]{0,63}" placeholder="sj-05-1234"></label></p>
<p><label>Comment <textarea name="comment" id="review-comment" maxlength="2000" rows="2"></textarea></label></p>
<p><button type="submit">Record the review</button> <span id="review-status" role="status"></span></p>
</form>`;
}

const STATUS_TEXT: Record<CaseStatus, string> = {
  unreviewed: 'Not reviewed yet.',
  'second-reading': 'Read once: this deployment needs a second, independent reader.',
  disagreement: "The readers disagree: a third reader's review settles it.",
  settled: 'Settled.',
};

function reviewItem(r: Review): string {
  const label = r.label === OTHER_LABEL ? `${OTHER_LABEL}: ${r.otherText ?? ''}` : r.label;
  return `<li data-reviewer="${escapeHtml(r.reviewer)}"><strong>${escapeHtml(label)}</strong> by ${escapeHtml(r.reviewer)}, ${escapeHtml(r.createdAt.replace('T', ' ').slice(0, 16))} UTC${r.patient ? `, patient ${escapeHtml(r.patient)}` : ''}${r.comment ? `: ${escapeHtml(r.comment)}` : ''}</li>`;
}

/**
 * A case's reviews as this reader may see them, where the case stands, and the form: under
 * double reading a second reader sees that a review exists, never what it says, until theirs is in.
 */
export function reviewSection(
  ctx: ReviewerContext,
  kind: CaseKind,
  id: string,
  classes: readonly string[],
  view: CaseReviewView,
): string {
  const status = view.consensus
    ? `${STATUS_TEXT[view.status]}${view.status === 'settled' ? ` The readers' diagnosis: <strong id="consensus">${escapeHtml(view.consensus.label)}</strong> (${view.consensus.agreement}).` : ''}`
    : STATUS_TEXT[view.status];
  const hidden =
    view.hidden > 0
      ? `<p id="reviews-hidden">${view.hidden === 1 ? "Another reader's review is" : `${view.hidden} other readers' reviews are`} hidden until you record yours: the two readings stay independent.</p>`
      : '';
  const list = view.visible.length > 0 ? `<ul>${view.visible.map(reviewItem).join('')}</ul>` : '';
  return `<section class="panel" id="reviews" aria-label="Reviews"><h2>Reviews</h2>
<p id="review-status-line" data-status="${view.status}">${status}</p>${hidden}${list}</section>${reviewForm(ctx, kind, id, classes)}`;
}
