/**
 * PyTorch parity of every registered backbone at full size, with "formula weights"
 * (fixtures/formula, see its README): each conv / linear tensor is rebuilt here from the closed
 * formula the generator used, the calibrated BatchNorm tensors are loaded from the fixture, and
 * the eval-mode `pooled` / `head` / `logits` on a [2, 64, 64, 3] input must match torchvision's
 * within 1e-3 of their scale. An architecture added to the registry fails here until it gets a
 * fixture. Runs on wasm: the file takes 7-13 s there and ~50 s on cpu, where ResNet-152 and wide
 * ResNet-50-2 take 11-13 s each. `DISCO_BACKEND=cpu` runs the same checks on cpu;
 * parity.test.ts covers both backends on the smaller fixtures.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend, loadTorchStateDict, Params, tf } from '@disco/core';
import type { BackendName, RawTensor, Rng } from '@disco/core';
import { createBackbone, listBackbones } from '@disco/backbones';
import { formulaStateDict, readFormulaCase, readFormulaMeta } from './formula-weights.js';
import { fixtureTensor, maxAbs, maxAbsDiff, readFixture } from './helpers.js';

/** The fixtures' rule: max |ours - torch| below 1e-3 of max |torch|, per output. */
const RELATIVE_TOLERANCE = 1e-3;

const META = readFormulaMeta();

/** Every parameter is overwritten by the strict load, so `init` needs no real draws. */
const ZERO_RNG = {
  normalArray: (n: number) => new Float32Array(n),
  uniformArray: (n: number) => new Float32Array(n),
} as unknown as Rng;

let input: Map<string, RawTensor> | null = null;
function inputTensor(): tf.Tensor4D {
  input ??= readFixture(`formula/${META.input.file}`);
  return fixtureTensor(input, META.input.key) as tf.Tensor4D;
}

/** max |ours - expected| / max |expected|, asserted below the tolerance. */
function relativeDiff(ours: tf.Tensor, expected: tf.Tensor, what: string): number {
  const diff = maxAbsDiff(ours, expected);
  const scale = maxAbs(expected);
  expect(scale, `${what}: reference is all zeros`).toBeGreaterThan(0);
  expect(diff, `${what}: max |diff| ${diff} vs scale ${scale}`).toBeLessThan(
    RELATIVE_TOLERANCE * scale,
  );
  return diff / scale;
}

let backend = '';
beforeAll(async () => {
  const forced = process.env.DISCO_BACKEND as BackendName | undefined;
  backend = await initBackend({ backend: forced || 'wasm' });
});
afterAll(async () => {
  expect(tf.getBackend()).toBe(backend);
  await tf.setBackend('cpu');
});

describe('formula-weight parity with torchvision', () => {
  it('meta.json lists exactly the registered backbones', () => {
    expect(Object.keys(META.archs).sort()).toEqual(listBackbones().sort());
  });

  it.each(listBackbones())('%s: eval-mode outputs', (arch) => {
    const meta = META.archs[arch];
    if (!meta) {
      throw new Error(
        `fixtures/formula/meta.json has no case '${arch}': add it to ARCHS in ` +
          `make_formula_fixtures.py and rerun it (see fixtures/formula/README.md)`,
      );
    }
    const start = performance.now();
    const formula = formulaStateDict(arch, meta.formula_tensors);

    // The formula evaluated here is the generator's, bit for bit: each tensor's last value.
    meta.formula_tensors.forEach(([name, shape, last]) => {
      const values = formula.get(name)!.values;
      expect(values.length, `${name}: element count`).toBe(shape.reduce((a, b) => a * b, 1));
      expect(values[values.length - 1], `${arch} ${name}: last formula value`).toBe(
        Math.fround(last),
      );
    });

    const { bn, expected } = readFormulaCase(arch);
    const net = createBackbone(arch, { withClassifier: 1000 });
    const params = new Params();
    try {
      net.init(params, ZERO_RNG);
      const source = `formula/${arch}`;
      const loaded = loadTorchStateDict(params, new Map([...formula, ...bn]), { source });
      expect(loaded.length).toBe(params.names().length);
      expect(params.names().length).toBe(formula.size + bn.size);
      formula.clear();

      const before = tf.memory().numTensors;
      const relative: Record<string, number> = {};
      tf.tidy(() => {
        const out = net.applyAll(params, inputTensor(), { training: false });
        for (const key of ['pooled', 'head', 'logits'] as const) {
          if (!expected.has(key)) {
            expect(out[key], `${arch}: ${key} should not exist`).toBeUndefined();
            continue;
          }
          expect(out[key], `${arch}: no ${key} output`).toBeDefined();
          relative[key] = relativeDiff(out[key]!, fixtureTensor(expected, key), `${arch} ${key}`);
        }
      });
      expect(tf.memory().numTensors).toBe(before);
      expect(Object.keys(relative)).toEqual(Object.keys(meta.outputs));

      const figures = Object.entries(relative)
        .map(([k, v]) => `${k} ${v.toExponential(2)}`)
        .join(', ');
      const seconds = ((performance.now() - start) / 1000).toFixed(1);
      console.log(`${backend} ${arch}: max |diff| / max |torch|: ${figures} (${seconds} s)`);
    } finally {
      params.dispose();
    }
  });
});
