/**
 * The review form on a result page and in the slide viewer: the pathologist's diagnosis (a
 * model class or "other" with its text), the patient id where the upload had none, a comment.
 * assets/portal/review.js sends it to the REST API with the page's CSRF token; viewers, who may
 * not review, get no form.
 */
import { escapeHtml } from '../html.js';
import { isRole, roleAllows } from '../store/users.js';
import { OTHER_LABEL, type CaseKind } from '../store/reviews.js';

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
