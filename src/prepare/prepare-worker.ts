/** Worker-thread task of `prepare`: one image to patches. */
import { preprocessImage, type PreprocessConfig, type PreprocessedImage } from '../image/preprocess.js';

export interface PrepareTask {
  path: string;
  width: number;
  height: number;
  scale: number | null;
  config: PreprocessConfig;
}

export default async function prepareImage(task: PrepareTask): Promise<PreprocessedImage> {
  return preprocessImage(task.path, task, task.config);
}
