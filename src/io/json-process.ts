/**
 * A Node script in a child process whose result is the JSON it writes to stdout: the benchmark
 * workers, and the data-parallel ranks `run --nproc` launches.
 */
import { spawn, type ChildProcess } from 'node:child_process';

export function startJsonProcess<T>(
  args: readonly string[],
  options: {
    /** Names the process in the error when it fails. */
    what: string;
    env?: NodeJS.ProcessEnv;
    /** 'capture' puts the child's stderr into the error; 'inherit' shows it as it comes. */
    stderr?: 'capture' | 'inherit';
  },
): { child: ChildProcess; result: Promise<T> } {
  const capture = options.stderr === 'capture';
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', capture ? 'pipe' : 'inherit'],
    ...(options.env ? { env: options.env } : {}),
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const result = new Promise<T>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(JSON.parse(out) as T);
      else reject(new Error(`${options.what} failed (exit ${String(code)})${capture ? `: ${err}` : ''}`));
    });
  });
  return { child, result };
}
