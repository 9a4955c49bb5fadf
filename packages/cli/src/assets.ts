/**
 * Files shipped with @disco/cli (the pre-trained teacher), found relative to this module
 * both from `src/` (tests) and from `dist/` (the built binary).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function moduleDir(): string {
  // tsup's CJS build has __dirname; the ESM build and vitest have import.meta.url.
  if (typeof __dirname === 'string') return __dirname;
  return dirname(fileURLToPath(import.meta.url));
}

/** Absolute path of `assets/<name>` of this package. */
export function cliAssetPath(name: string): string {
  let dir = moduleDir();
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'assets', name);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  return join(dirname(moduleDir()), 'assets', name);
}

/** The teacher shipped with the repo: MoCo v2 ResNet-18 trained by `disco pretrain`. */
export const SHIPPED_TEACHER = 'teacher/encoder.safetensors';
