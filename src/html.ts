/** Small helpers shared by the pages pathotype renders (the evaluation report and the portal). */
export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
}

/** A fraction as a percentage with one decimal: 0.5 -> '50.0%'. */
export function percent(value: number): string {
  return `${(value * 100).toFixed(1)}%`;
}
