/**
 * Where the data files shipped with @disco/data live. The package runs from its sources
 * (`src/`, under vitest) and from its build (`dist/`, ESM and CJS), so the assets folder is
 * found by walking up from this module's own folder rather than by a fixed relative path.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** This module's folder, in the ESM build (import.meta.url) or the CJS one (__dirname). */
function moduleDir(): string {
  // tsup's CJS output leaves `import.meta` empty, so its `url` is undefined there.
  const url: string | undefined = import.meta.url;
  if (typeof url === 'string' && url.startsWith('file:')) return dirname(fileURLToPath(url));
  if (typeof __dirname === 'string') return __dirname;
  return process.cwd();
}

/**
 * The absolute path of `assets/<name>` in the @disco/data package.
 * @param name a folder under `assets/`, e.g. `fashion-mnist-subset`.
 * @throws when no folder above this module holds `assets/<name>`, naming where it looked.
 */
export function assetPath(name: string): string {
  const start = moduleDir();
  let dir = start;
  for (;;) {
    const candidate = join(dir, 'assets', name);
    if (existsSync(candidate)) return candidate;
    const parent = resolve(dir, '..');
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(
    `assetPath: no folder assets/${name} in ${start} or any folder above it; ` +
      `the @disco/data package ships it next to src/ and dist/`,
  );
}
