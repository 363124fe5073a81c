/**
 * Predictions for whole images from a patch store: the images' stored patches through the
 * network in batches, then the vote. Used by validation during training and by evaluate.
 */
import type { PatchStore, StoredImage } from '../prepare/patch-store.js';
import { batchedPatchOutputs, type PatchModel } from './patch-outputs.js';
import { vote, type ImageVote } from './vote.js';
import type { VoteRule } from '../engine/pooling.js';

export interface StoredImagePrediction {
  image: StoredImage;
  label: number;
  vote: ImageVote;
  /** Patch grid cells of the image's patches: col, row, ... */
  cells: Int32Array;
}

export async function predictStoredImages(
  network: PatchModel,
  store: PatchStore,
  images: readonly StoredImage[],
  options: { rule: VoteRule; batchSize?: number; bf16?: boolean },
): Promise<StoredImagePrediction[]> {
  const classes = store.manifest.classes.length;
  const batchSize = options.batchSize ?? 256;
  const out: StoredImagePrediction[] = [];
  for (const image of images) {
    const ids = store.patchesOf(image.imageId);
    const outputs = await batchedPatchOutputs(
      network,
      ids.length,
      batchSize,
      async (start, end) => (await store.read(ids.subarray(start, end))).patches,
      { bf16: options.bf16 ?? false, rule: options.rule },
    );
    const cells = new Int32Array(ids.length * 2);
    ids.forEach((id, k) => {
      cells[k * 2] = store.cols[id] ?? 0;
      cells[k * 2 + 1] = store.rows[id] ?? 0;
    });
    out.push({
      image,
      label: store.manifest.classes.indexOf(image.className),
      vote: vote(
        outputs.probabilities,
        ids.length,
        classes,
        options.rule,
        outputs.logProbabilities,
        outputs.attention,
      ),
      cells,
    });
  }
  return out;
}
