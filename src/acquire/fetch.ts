/**
 * `pathotype data fetch`: the IICBU 2008 lymphoma tarball from its official address (or the
 * published mirror), verified, extracted safely and imported.
 */
import path from 'node:path';

import type { Catalog } from './catalog.js';
import { download, type DownloadResult } from '../io/download.js';
import type { GroupRule } from './grouping.js';
import { importImages, type ImportReport } from './import.js';
import type { Workspace } from '../workspace.js';

export const LYMPHOMA = {
  file: 'lymphoma.tar.gz',
  urls: [
    'http://ome.grc.nia.nih.gov/iicbu2008/lymphoma.tar.gz',
    'http://andrewjanowczyk.com/wp-static/lymphoma.tar.gz',
  ],
  sha1: '5af6bf000a9f7d0bb9b54ae0558fbeccc1758fe6',
} as const;

export interface FetchOptions {
  urls?: readonly string[];
  sha1?: string;
  groupBy: GroupRule;
  idleTimeoutMs?: number;
  onProgress?: (received: number, total: number | undefined) => void;
  onImportProgress?: (done: number, total: number) => void;
}

export async function fetchLymphoma(
  catalog: Catalog,
  workspace: Workspace,
  options: FetchOptions,
): Promise<{ download: DownloadResult; imported: ImportReport }> {
  const destination = path.join(workspace.downloadsDir, LYMPHOMA.file);
  const result = await download({
    urls: options.urls && options.urls.length > 0 ? options.urls : LYMPHOMA.urls,
    destination,
    checksum: { algorithm: 'sha1', digest: options.sha1 ?? LYMPHOMA.sha1 },
    ...(options.idleTimeoutMs ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
    offlineHint:
      `Copy ${LYMPHOMA.file} (SHA-1 ${LYMPHOMA.sha1}) onto this machine and run ` +
      `'pathotype data import ${LYMPHOMA.file}', or import a class-per-folder directory ` +
      `('pathotype data import DIR').`,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  catalog.record('fetch', {
    url: result.url,
    bytes: result.bytes,
    resumedFrom: result.resumedFrom,
    alreadyThere: result.alreadyThere,
  });
  const imported = await importImages(catalog, workspace, destination, {
    groupBy: options.groupBy,
    ...(options.onImportProgress ? { onProgress: options.onImportProgress } : {}),
  });
  return { download: result, imported };
}
