/** How numbers are written for people, the same in the CLI, the reports and the portal. */

/** A fraction as a percentage with one decimal: 0.5 -> '50.0%'. */
export function percent(value: number): string {
  return `${(value * 100).toFixed(1)}%`;
}
