#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  console.error("pathotype is not built yet: run 'bash scripts/setup.sh' (or 'npm run build') first");
  process.exit(1);
}
await import(main.href);
