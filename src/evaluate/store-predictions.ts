/**
 * Predictions for whole images from a patch store: the images' stored patches through the
 * network in batches, then the vote. Used by validation during training and by evaluate.
 */
import type { Network } from '../engine/network.js';
import type { PatchStore, StoredImage } from '../data/patch-store.js';
import { patchOutputs } from '../predict/patch-outputs.js';
import { vote, type ImageVote, type VoteRule } from '../predict/vote.js';

export interface StoredImagePrediction {
  image: StoredImage;
  label: number;
  vote: ImageVote;
  /** Patch grid cells of the image's patches: col, row, ... */
  cells: Int32Array;
}

export async function predictStoredImages(
  network: Network,
  store: PatchStore,
  images: readonly StoredImage[],
  options: { rule: VoteRule; batchSize?: number; bf16?: boolean },
): Promise<StoredImagePrediction[]> {
  const classes = store.manifest.classes.length;
  const batchSize = options.batchSize ?? 256;
  const out: StoredImagePrediction[] = [];
  for (const image of images) {
    const ids = store.patchesOf(image.imageId);
    const probabilities = new Float32Array(ids.length * classes);
    const logits = options.rule === 'logit' ? new Float32Array(ids.length * classes) : undefined;
    for (let i = 0; i < ids.length; i += batchSize) {
      const chunk = ids.subarray(i, Math.min(ids.length, i + batchSize));
      const { patches } = await store.read(chunk);
      const outputs = await patchOutputs(network, patches, {
        bf16: options.bf16 ?? false,
        rule: options.rule,
      });
      probabilities.set(outputs.probabilities, i * classes);
      if (logits && outputs.logits) logits.set(outputs.logits, i * classes);
    }
    const cells = new Int32Array(ids.length * 2);
    ids.forEach((id, k) => {
      cells[k * 2] = store.cols[id] ?? 0;
      cells[k * 2 + 1] = store.rows[id] ?? 0;
    });
    out.push({
      image,
      label: store.manifest.classes.indexOf(image.className),
      vote: vote(probabilities, ids.length, classes, options.rule, logits),
      cells,
    });
  }
  return out;
}
