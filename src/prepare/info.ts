/** `pathotype data info`: what the workspace holds. */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';

import type { Catalog } from '../acquire/catalog.js';
import { PatchStore } from './patch-store.js';
import { summarizeSplit, type SplitSummary } from '../acquire/split.js';
import type { Workspace } from '../workspace.js';

export interface WorkspaceInfo {
  workspace: string;
  images: number;
  classes: Record<string, { images: number; cases: number }>;
  /** Slides from manifests, per label: how many and of how many patients. */
  slides: Record<string, { slides: number; patients: number }>;
  splits: (SplitSummary & { kind: string; seed: number; params: Record<string, unknown> })[];
  patchStores: {
    name: string;
    patches: number;
    images: number;
    patchSize: number;
    split: string | null;
    bytes: number;
    perClass: Record<string, number>;
    perPartition: Record<string, number>;
  }[];
}

export async function workspaceInfo(catalog: Catalog, workspace: Workspace): Promise<WorkspaceInfo> {
  const images = catalog.images();
  const classes: WorkspaceInfo['classes'] = {};
  const cases = new Map<string, Set<string>>();
  for (const image of images) {
    const entry = (classes[image.className] ??= { images: 0, cases: 0 });
    entry.images++;
    const set = cases.get(image.className) ?? new Set<string>();
    set.add(image.caseId);
    cases.set(image.className, set);
    entry.cases = set.size;
  }
  const slides: WorkspaceInfo['slides'] = {};
  const slidePatients = new Map<string, Set<string>>();
  for (const slide of catalog.slides()) {
    const entry = (slides[slide.label] ??= { slides: 0, patients: 0 });
    entry.slides++;
    const set = slidePatients.get(slide.label) ?? new Set<string>();
    set.add(slide.patient);
    slidePatients.set(slide.label, set);
    entry.patients = set.size;
  }
  const splits = catalog.splits().map((s) => ({
    ...summarizeSplit(images, catalog.splitMembers(s.name), s.name),
    kind: s.kind,
    seed: s.seed,
    params: s.params,
  }));
  const patchStores: WorkspaceInfo['patchStores'] = [];
  if (existsSync(workspace.patchesDir)) {
    for (const name of readdirSync(workspace.patchesDir).sort()) {
      const dir = path.join(workspace.patchesDir, name);
      if (!PatchStore.exists(dir)) continue;
      const store = PatchStore.open(dir);
      const perClass: Record<string, number> = {};
      const perPartition: Record<string, number> = {};
      for (const image of store.images) {
        perClass[image.className] = (perClass[image.className] ?? 0) + image.patches;
        const part = image.partition ?? (image.fold !== null ? `fold ${image.fold}` : 'unsplit');
        perPartition[part] = (perPartition[part] ?? 0) + image.patches;
      }
      patchStores.push({
        name,
        patches: store.count,
        images: store.manifest.images,
        patchSize: store.patchSize,
        split: store.manifest.split,
        bytes: await store.diskBytes(),
        perClass,
        perPartition,
      });
      await store.close();
    }
  }
  return { workspace: workspace.root, images: images.length, classes, slides, splits, patchStores };
}
