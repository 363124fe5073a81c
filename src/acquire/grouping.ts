/**
 * Group ids for images: the patient or case (biopsy) each image comes from. Images of one
 * patient share staining and tissue, so every split keeps a group on one side. The original
 * IICBU release names files `sj-YY-NNNN[-Rk]_XXX.tif`: the accession `sj-YY-NNNN` is the patient
 * (two biopsies `-R3` and `-R4` of one patient share it), the whole stem before `_XXX` the case.
 * Other copies need a rule.
 */
import path from 'node:path';

import { ConfigError } from '../errors.js';

export type GroupRule =
  | { kind: 'auto' }
  | { kind: 'patient' }
  | { kind: 'case' }
  | { kind: 'runs'; size: number }
  | { kind: 'regex'; pattern: RegExp }
  | { kind: 'folder' }
  | { kind: 'none' };

export const GROUP_RULE_HELP =
  'auto (the patient accession sj-YY-NNNN in the name, else a case folder, else one group per image), ' +
  "patient (the accession sj-YY-NNNN; 'sj' is the same), case (the biopsy, sj-YY-NNNN[-Rk]), 'runs:N' " +
  "(integer file names, N consecutive indices per group), 'regex:PATTERN' (the first capture group), " +
  'folder (class/GROUP/image), none (one group per image)';

/** The rule that `data import` and `run` use unless told otherwise. */
export const DEFAULT_GROUP_RULE = 'auto';

export function parseGroupRule(text: string): GroupRule {
  const [kind = '', ...rest] = text.split(':');
  const arg = rest.join(':');
  switch (kind) {
    case 'sj':
      return { kind: 'patient' };
    case 'auto':
    case 'patient':
    case 'case':
    case 'folder':
    case 'none':
      return { kind };
    case 'runs': {
      const size = Number(arg);
      if (!Number.isInteger(size) || size < 1)
        throw new ConfigError(`--group-by runs:N needs a positive integer N (got '${arg}')`);
      return { kind: 'runs', size };
    }
    case 'regex':
      try {
        return { kind: 'regex', pattern: new RegExp(arg) };
      } catch (cause) {
        throw new ConfigError(`--group-by regex: '${arg}' is not a valid regular expression`, { cause });
      }
    default:
      throw new ConfigError(`unknown --group-by rule '${text}': use ${GROUP_RULE_HELP}`);
  }
}

export function formatGroupRule(rule: GroupRule): string {
  if (rule.kind === 'runs') return `runs:${rule.size}`;
  if (rule.kind === 'regex') return `regex:${rule.pattern.source}`;
  return rule.kind;
}

const PATIENT = /sj-\d{2}-\d+/i;
const CASE = /sj-\d{2}-\d+(?:-R\d+)?/i;

/**
 * The case id of an image, from its path relative to its class folder. Ids are prefixed by the
 * class where the rule alone could collide across classes (runs, none).
 */
export function caseIdFor(rule: GroupRule, className: string, relativePath: string): string {
  const stem = path.basename(relativePath).replace(/\.[^.]+$/, '');
  const folder = path.dirname(relativePath);
  switch (rule.kind) {
    case 'patient':
    case 'case': {
      const match = (rule.kind === 'patient' ? PATIENT : CASE).exec(stem);
      if (!match)
        throw new ConfigError(
          `'${relativePath}' has no sj-YY-NNNN accession in its name; choose another --group-by rule`,
        );
      return match[0].toLowerCase();
    }
    case 'runs': {
      if (!/^\d+$/.test(stem))
        throw new ConfigError(`'${relativePath}' is not an integer file name, as --group-by runs:N needs`);
      return `${className}/run-${Math.floor(Number(stem) / rule.size)}`;
    }
    case 'regex': {
      const match = rule.pattern.exec(relativePath);
      if (!match)
        throw new ConfigError(`'${relativePath}' does not match --group-by regex:${rule.pattern.source}`);
      return match[1] ?? match[0];
    }
    case 'folder':
      if (folder === '.')
        throw new ConfigError(`'${relativePath}' is not in a case folder (class/CASE/image)`);
      return `${className}/${folder}`;
    case 'none':
      return `${className}/${stem}`;
    case 'auto': {
      const match = PATIENT.exec(stem);
      if (match) return match[0].toLowerCase();
      return folder === '.' ? `${className}/${stem}` : `${className}/${folder}`;
    }
  }
}

/**
 * True when every image is a group of its own because nothing in its name or folder said whose
 * it is (the one-group-per-image fallback: CLASS/stem). Images that carry patient ids are not:
 * a set with one image per patient is grouped by patient all the same.
 */
export function groupsWithoutIds(
  images: readonly { caseId: string; className: string; fileName: string }[],
): boolean {
  if (images.length < 2 || new Set(images.map((i) => i.caseId)).size < images.length) return false;
  return images.every(
    (i) => i.caseId === `${i.className}/${path.basename(i.fileName).replace(/\.[^.]+$/, '')}`,
  );
}
