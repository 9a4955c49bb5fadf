// Runs a TypeScript benchmark of bench/ without a build step: bundles it with esbuild (taken
// from tsup's dependencies) into a temporary .mjs next to it, runs that, and removes it.
// Usage: node bench/run.mjs <name> [args...]   (runs bench/<name>.ts)
import { createRequire } from 'node:module';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [name, ...rest] = process.argv.slice(2);
if (name === undefined) {
  console.error('bench/run.mjs: name a benchmark, e.g. `node bench/run.mjs kernels`');
  process.exit(2);
}
const require = createRequire(import.meta.url);
const esbuild = require(require.resolve('esbuild', { paths: [dirname(require.resolve('tsup'))] }));
// Bare imports (tfjs) stay external, resolved to absolute paths as @disco/core sees them,
// so the wasm backend still finds its .wasm files next to its own module.
const fromCore = createRequire(join(here, '..', 'packages', 'core', 'package.json'));
const externalFromCore = {
  name: 'external-from-core',
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (a) =>
      a.path.startsWith('node:')
        ? { path: a.path, external: true }
        : { path: pathToFileURL(fromCore.resolve(a.path)).href, external: true },
    );
  },
};
const out = join(here, `.${name}.bundle.mjs`);
await esbuild.build({
  entryPoints: [join(here, `${name}.ts`)],
  outfile: out,
  bundle: true,
  platform: 'node',
  format: 'esm',
  plugins: [externalFromCore],
  logLevel: 'warning',
});
process.argv = [process.argv[0], out, ...rest];
try {
  await import(pathToFileURL(out).href);
} finally {
  rmSync(out, { force: true });
}
