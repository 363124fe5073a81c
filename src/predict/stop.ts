/** Long work (a slide's reads, a job) stops between its steps once its signal says so. */
import { PathotypeError } from '../errors.js';

/** Throws ERR_CANCELLED (a cancelled job) or ERR_ABORTED (a closing server) once `signal` is aborted. */
export function throwIfStopped(signal: AbortSignal | undefined): void {
  if (signal?.aborted)
    throw new PathotypeError(
      signal.reason === 'cancelled' ? 'ERR_CANCELLED' : 'ERR_ABORTED',
      signal.reason === 'cancelled' ? 'the slide job was cancelled' : 'the slide prediction was stopped',
    );
}
