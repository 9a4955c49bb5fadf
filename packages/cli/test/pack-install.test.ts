/**
 * The packages as a stranger gets them: every built @disco package is packed with `pnpm pack`
 * and the tarballs are installed with npm into fresh projects under the OS temp folder, outside
 * the workspace, so nothing can resolve back into this repo.
 *
 * 1. `@disco/core`, `@disco/backbones` and `@disco/eval` alone, npm adding core's tfjs peers
 *    as it would for a user. An ESM and a CJS script build ResNet-18 from a seed and embed
 *    four images through eval's `extractFeatures`: the features must equal the same
 *    computation on the workspace sources, all three packages must share one copy of core and
 *    of tfjs-core (one engine: the parameters show in core's memory count and eval's tidy
 *    frees backbones' tensors), and a small kNN must give the hand-computed answer.
 * 2. Every package README: its install line must name each peer the packages on it need, and
 *    its example is compiled with tsc against the installed types and run (the cli's commands
 *    are checked through `disco <command> --help`).
 *
 * Needs the build (`pnpm build`) and the npm registry (for TensorFlow.js itself).
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBackboneEncoder } from '@disco/backbones';
import { Rng, tf } from '@disco/core';
import { extractFeatures } from '@disco/eval';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const NAMES = readdirSync(join(repo, 'packages'))
  .filter((name) => existsSync(join(repo, 'packages', name, 'package.json')))
  .sort();
const INSTALL_FLAGS = ['install', '--prefer-offline', '--no-audit', '--no-fund'];

interface Manifest {
  name: string;
  main: string;
  module: string;
  types: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

const manifests = new Map(
  NAMES.map((name) => {
    const file = join(repo, 'packages', name, 'package.json');
    return [name, JSON.parse(readFileSync(file, 'utf8')) as Manifest];
  }),
);
const byPackageName = new Map([...manifests.values()].map((m) => [m.name, m]));

/** The environment without what a pnpm script or vitest adds, so npm and node run plain. */
function plainEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !/^(npm_|pnpm_|vitest|node_options$)/i.test(k)),
  );
}

/** Runs a command and returns its stdout; throws with the command, folder and output. */
function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: plainEnv() });
  if (r.status !== 0) {
    const output = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().slice(-4000);
    throw new Error(
      `pack-install: \`${cmd} ${args.join(' ')}\` in ${cwd} exited ${r.status}:\n${output}`,
    );
  }
  return r.stdout;
}

/** A fresh npm project in `dir` with `specs` (tarballs and registry names) installed. */
function installProject(dir: string, specs: string[], flags: string[] = []): void {
  mkdirSync(dir, { recursive: true });
  const manifest = { name: 'disco-pack-install', version: '0.0.0', private: true };
  writeFileSync(join(dir, 'package.json'), JSON.stringify(manifest));
  sh('npm', [...INSTALL_FLAGS, ...flags, ...specs], dir);
}

let work = '';
const tarballs = new Map<string, string>();

beforeAll(() => {
  for (const [name, m] of manifests) {
    for (const file of [m.main, m.module, m.types]) {
      if (!existsSync(join(repo, 'packages', name, file))) {
        throw new Error(
          `pack-install: packages/${name}/${file} (package.json main/module/types) is missing; ` +
            'run `pnpm build` first: this test packs the built packages',
        );
      }
    }
  }
  work = mkdtempSync(join(tmpdir(), 'disco-pack-install-'));
  for (const [name, m] of manifests) {
    const out = sh(
      'pnpm',
      ['pack', '--json', '--pack-destination', join(work, 'tarballs')],
      join(repo, 'packages', name),
    );
    tarballs.set(
      m.name,
      (JSON.parse(out.slice(out.indexOf('{'))) as { filename: string }).filename,
    );
  }
});

afterAll(() => {
  if (work !== '') rmSync(work, { recursive: true, force: true });
});

// Four 28x28 grayscale images of a fixed pattern, written to images.bin for both scripts; and a
// two-class kNN whose answer is worked out by hand: the third query lies nearer class 0 but
// is labelled 1, so top-1 is 2/3.
const IMAGES = Uint8Array.from({ length: 4 * 28 * 28 }, (_, i) => (i * 37) % 256);
const KNN = {
  train: [1, 0, 0.8, 0.2, 0, 1, 0.2, 0.8],
  trainLabels: [0, 0, 1, 1],
  test: [0.9, 0.1, 0.1, 0.9, 0.7, 0.3],
  testLabels: [0, 1, 1],
};

// The body both scripts run; `entry` is how this module system resolved @disco/core.
const BODY = `
await initBackend({ backend: 'cpu' });
const before = tf.memory().numTensors;
const encoder = buildBackboneEncoder('resnet18', { inChannels: 1 }, new Rng(0));
const paramTensors = tf.memory().numTensors - before;
const images = new Uint8Array(readFileSync('images.bin'));
const features = await extractFeatures(encoder, images, { count: 4, height: 28, width: 28, channels: 1, batchSize: 3 });
const leaked = tf.memory().numTensors - before - paramTensors;
const knn = await knnClassify({
  trainFeatures: Float32Array.from(${JSON.stringify(KNN.train)}),
  trainLabels: ${JSON.stringify(KNN.trainLabels)},
  testFeatures: Float32Array.from(${JSON.stringify(KNN.test)}),
  testLabels: ${JSON.stringify(KNN.testLabels)},
  numClasses: 2,
});
const manifest = join(process.cwd(), 'package.json');
const project = createRequire(manifest);
const packageDir = (from, name) => realpathSync(dirname(createRequire(from).resolve(name + '/package.json')));
const resolved = {
  core: packageDir(manifest, '@disco/core'),
  coreFromBackbones: packageDir(project.resolve('@disco/backbones'), '@disco/core'),
  coreFromEval: packageDir(project.resolve('@disco/eval'), '@disco/core'),
  tfjsCoreFromCore: packageDir(project.resolve('@disco/core'), '@tensorflow/tfjs-core'),
  tfjsCoreFromTfjs: packageDir(project.resolve('@tensorflow/tfjs'), '@tensorflow/tfjs-core'),
  tfjsCoreFromWasm: packageDir(project.resolve('@tensorflow/tfjs-backend-wasm'), '@tensorflow/tfjs-core'),
};
console.log('RESULT ' + JSON.stringify({
  entry, backend: tf.getBackend(), outDim: encoder.outDim, paramTensors, leaked,
  features: Array.from(features), knn: { predictions: Array.from(knn.predictions), top1: knn.top1, k: knn.k },
  resolved,
}));
`;

const ESM_SCRIPT = `import { createRequire } from 'node:module';
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend, Rng, tf } from '@disco/core';
import { buildBackboneEncoder } from '@disco/backbones';
import { extractFeatures, knnClassify } from '@disco/eval';
const entry = fileURLToPath(import.meta.resolve('@disco/core'));
${BODY}`;

const CJS_SCRIPT = `const { createRequire } = require('node:module');
const { readFileSync, realpathSync } = require('node:fs');
const { dirname, join } = require('node:path');
const { initBackend, Rng, tf } = require('@disco/core');
const { buildBackboneEncoder } = require('@disco/backbones');
const { extractFeatures, knnClassify } = require('@disco/eval');
const entry = require.resolve('@disco/core');
(async () => {
${BODY}
})().catch((err) => { console.error(err); process.exit(1); });`;

interface ScriptResult {
  entry: string;
  backend: string;
  outDim: number;
  paramTensors: number;
  leaked: number;
  features: number[];
  knn: { predictions: number[]; top1: number; k: number };
  resolved: Record<string, string>;
}

function runScript(dir: string, file: string): ScriptResult {
  const out = sh(process.execPath, [file], dir);
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (line === undefined) throw new Error(`pack-install: ${file} printed no RESULT line:\n${out}`);
  return JSON.parse(line.slice('RESULT '.length)) as ScriptResult;
}

describe('core, backbones and eval installed from their tarballs', () => {
  let dir = '';
  let expected: { features: Float32Array; paramTensors: number };

  beforeAll(async () => {
    dir = join(work, 'backbones-eval');
    const specs = ['@disco/core', '@disco/backbones', '@disco/eval'].map((n) => tarballs.get(n)!);
    installProject(dir, specs);
    writeFileSync(join(dir, 'check.mjs'), ESM_SCRIPT);
    writeFileSync(join(dir, 'check.cjs'), CJS_SCRIPT);
    writeFileSync(join(dir, 'images.bin'), IMAGES);

    // The same computation on the workspace sources (vitest runs them on the cpu backend).
    const encoder = buildBackboneEncoder('resnet18', { inChannels: 1 }, new Rng(0));
    const opts = { count: 4, height: 28, width: 28, channels: 1 };
    expected = {
      features: await extractFeatures(encoder, IMAGES, opts),
      paramTensors: encoder.params.names().length,
    };
    encoder.params.dispose();
    expect(tf.getBackend()).toBe('cpu');
  }, 300_000);

  it('installs only those three @disco packages, with registry ranges', () => {
    expect(readdirSync(join(dir, 'node_modules', '@disco')).sort()).toEqual([
      'backbones',
      'core',
      'eval',
    ]);
    for (const name of ['backbones', 'core', 'eval']) {
      const text = readFileSync(join(dir, 'node_modules', '@disco', name, 'package.json'), 'utf8');
      expect(text, `installed @disco/${name}/package.json`).not.toMatch(/workspace:/);
    }
  });

  for (const [kind, file, build] of [
    ['ESM', 'check.mjs', 'dist/index.js'],
    ['CJS', 'check.cjs', 'dist/index.cjs'],
  ] as const) {
    it(`runs a ${kind} script against the installed copies`, () => {
      const r = runScript(dir, file);
      expect(r.entry.endsWith(join('node_modules', '@disco', 'core', build))).toBe(true);
      expect(r.backend).toBe('cpu');

      // [4, 512] features equal to the sources' (same code, same cpu kernels).
      expect(r.outDim).toBe(512);
      expect(r.features).toHaveLength(4 * 512);
      let maxDiff = 0;
      r.features.forEach(
        (v, i) => (maxDiff = Math.max(maxDiff, Math.abs(v - expected.features[i]!))),
      );
      expect(
        maxDiff,
        'installed build vs workspace sources (stale dist? run pnpm build)',
      ).toBeLessThan(1e-6);
      expect(r.features.some((v) => v !== 0)).toBe(true);

      // One engine: backbones' parameters are core's tensors; eval's tidy freed every
      // intermediate of backbones' forward pass.
      expect(r.paramTensors).toBe(expected.paramTensors);
      expect(r.leaked).toBe(0);
      const { core, coreFromBackbones, coreFromEval, ...tfjsCore } = r.resolved;
      expect(coreFromBackbones).toBe(core);
      expect(coreFromEval).toBe(core);
      expect(new Set(Object.values(tfjsCore)).size).toBe(1);

      expect(r.knn).toEqual({ predictions: [0, 1, 0], top1: 2 / 3, k: 4 });
    });
  }
});

/** A README's install line (a `npm install ...` shell block, `\` continuations joined). */
function installLine(readme: string, where: string): string[] {
  const block = /```sh\n([\s\S]*?)```/.exec(readme);
  const line = block?.[1]!.replaceAll('\\\n', ' ').split('\n')[0] ?? '';
  const words = line.trim().split(/\s+/);
  if (words[0] !== 'npm' || words[1] !== 'install') {
    throw new Error(`${where}: the first sh block must start with 'npm install', got '${line}'`);
  }
  const stray = words.find((w) => w.includes('\\'));
  if (stray !== undefined) throw new Error(`${where}: stray '${stray}' on the install line`);
  return words.slice(2);
}

/** `@scope/name@range` -> `@scope/name`. */
const specName = (spec: string) => spec.replace(/(?!^)@.*$/, '');

/**
 * The non-optional peers that whoever installs `name` must provide: its own, and those of its
 * @disco dependencies that it does not itself depend on (its dependencies satisfy theirs).
 */
function peersNeeded(name: string, seen = new Set<string>()): Map<string, string> {
  const needed = new Map<string, string>();
  const m = byPackageName.get(name);
  if (m === undefined || seen.has(name)) return needed;
  seen.add(name);
  const deps = Object.keys(m.dependencies ?? {});
  for (const peer of Object.keys(m.peerDependencies ?? {})) {
    if (m.peerDependenciesMeta?.[peer]?.optional) continue;
    needed.set(peer, name);
    for (const [p, who] of peersNeeded(peer, seen)) needed.set(p, who);
  }
  for (const dep of deps) {
    for (const [p, who] of peersNeeded(dep, seen)) if (!deps.includes(p)) needed.set(p, who);
  }
  return needed;
}

// What each README example prints (parts of its output), as its comments say.
const PRINTS: Record<string, string[]> = {
  core: ["[ 2, 14, 14, 8 ] [ 'conv1.weight' ]"],
  backbones: ['[ 4, 512 ] 11170240'],
  heads: ['[ 8, 128 ]', '[ 8, 10 ]', "'fc.bias'"],
  data: ['5000 28 28 1', '[ 64, 28, 28, 1 ]'],
  moco: ['parts: { infonce:'],
  distill: ['infonce:', 'mse_v1:', 'mse_v2:'],
  eval: ['1 1', '[ 50, 0, 0, 50 ]'],
};

describe('the package READMEs', () => {
  const readmes = new Map(
    NAMES.map((name) => [name, readFileSync(join(repo, 'packages', name, 'README.md'), 'utf8')]),
  );
  const examples = new Map(
    NAMES.flatMap((name) => {
      const block = /```ts\n([\s\S]*?)```/.exec(readmes.get(name)!);
      return block ? [[name, block[1]!] as const] : [];
    }),
  );
  let dir = '';

  it('name every peer that their packages need on the install line', () => {
    for (const [name, readme] of readmes) {
      const where = `packages/${name}/README.md`;
      const named = new Set(installLine(readme, where).map(specName));
      const imported = [...(examples.get(name) ?? '').matchAll(/from '(@disco\/[a-z]+)'/g)];
      for (const pkg of [manifests.get(name)!.name, ...imported.map((m) => m[1]!)]) {
        expect(named.has(pkg), `${where}: the install line lacks ${pkg}`).toBe(true);
      }
      for (const pkg of named) {
        for (const [peer, who] of peersNeeded(pkg)) {
          expect(
            named.has(peer),
            `${where}: the install line lacks ${peer} (a peer of ${who})`,
          ).toBe(true);
        }
      }
    }
  });

  describe('installed from the tarballs and the install lines', () => {
    beforeAll(() => {
      dir = join(work, 'readmes');
      // Peers come only from what the install lines name (no automatic peer install).
      const registry = new Set(
        [...readmes].flatMap(([name, text]) =>
          installLine(text, `packages/${name}/README.md`).filter((s) => !s.startsWith('@disco/')),
        ),
      );
      installProject(dir, [...tarballs.values(), ...registry], ['--legacy-peer-deps']);
      for (const [name, code] of examples) writeFileSync(join(dir, `${name}.mts`), code);
      const compilerOptions = {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        outDir: 'out',
      };
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({ compilerOptions, include: ['*.mts'] }),
      );
      // Compiling type-checks each example against the installed .d.ts files.
      sh(
        process.execPath,
        [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'],
        dir,
      );
    }, 300_000);

    for (const name of NAMES.filter((n) => n !== 'cli')) {
      it(`runs the example of @disco/${name}`, () => {
        expect(
          PRINTS[name],
          `no expected output listed for packages/${name}/README.md`,
        ).toBeDefined();
        const out = sh(process.execPath, [join('out', `${name}.mjs`)], dir);
        for (const part of PRINTS[name]!)
          expect(out, `packages/${name}/README.md example`).toContain(part);
      });
    }

    it('has the commands and options that the cli README shows', () => {
      const block = /```sh\n[\s\S]*?```[\s\S]*?```sh\n([\s\S]*?)```/.exec(readmes.get('cli')!)!;
      const lines = block[1]!.split('\n').filter((l) => l.startsWith('npx disco'));
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) {
        const words = line.replace(/#.*$/, '').trim().split(/\s+/).slice(2);
        const command = words[0]!.startsWith('-') ? [] : [words[0]!];
        const help = sh(join(dir, 'node_modules', '.bin', 'disco'), [...command, '--help'], dir);
        expect(help).toMatch(/^Usage: disco/);
        for (const flag of words.filter((w) => w.startsWith('--') && w !== '--help')) {
          expect(help, `disco ${command.join(' ')} --help should list ${flag}`).toContain(flag);
        }
      }
    });
  });
});
