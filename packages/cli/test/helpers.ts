import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/** Runs the disco CLI from source in a child process; returns status and output. */
export function disco(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(`${root}node_modules/.bin/tsx`, [`${root}scripts/disco-dev.ts`, ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, DISCO_BACKEND: 'wasm', ...env },
    timeout: 300_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, all: `${r.stdout}\n${r.stderr}` };
}
