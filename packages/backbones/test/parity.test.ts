/**
 * Parity with PyTorch: torchvision models with known weights (test/fixtures, see its README)
 * run here in eval mode, and in training mode for the generated cases, on the cpu and wasm
 * backends; every output must match torch's within 1e-3 of its scale.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTorchStateDict, Params, Rng, tf } from '@disco/core';
import type { RawTensor } from '@disco/core';
import { createBackbone } from '@disco/backbones';
import type { BackboneOptions } from '@disco/backbones';
import { fixtureTensor, maxAbs, maxAbsDiff, readFixture, readFixtureJson } from './helpers.js';

/** The README's rule: max |ours - torch| below 1e-3 of max |torch|. */
const RELATIVE_TOLERANCE = 1e-3;

const cache = new Map<string, Map<string, RawTensor>>();
function cached(relative: string): Map<string, RawTensor> {
  let t = cache.get(relative);
  if (!t) cache.set(relative, (t = readFixture(relative)));
  return t;
}

interface Case {
  name: string;
  arch: string;
  options: BackboneOptions;
  weights: string;
  expected: string;
  /** Where the input lives: the shared input file, or inside `expected`. */
  input: string;
  /** Expected contains `train.*` entries: a training-mode forward and BN running statistics. */
  training: boolean;
}

interface GeneratedMeta {
  options: BackboneOptions & { arch: string };
}

const SHARED: Case[] = ['resnet18', 'mobilenet_v3_small'].map((arch) => ({
  name: arch,
  arch,
  options: { withClassifier: 1000 },
  weights: `${arch}/weights.safetensors`,
  expected: `${arch}/expected.safetensors`,
  input: 'input.safetensors',
  training: false,
}));

const GENERATED: Case[] = [
  'resnet50_w0.25',
  'resnet18_small_w0.25_in1',
  'mobilenet_v3_large',
  'mobilenet_v3_small_w0.5_small_in1',
].map((name) => {
  const { arch, ...options } = readFixtureJson<GeneratedMeta>(
    `generated/${name}/meta.json`,
  ).options;
  return {
    name,
    arch,
    options,
    weights: `generated/${name}/weights.safetensors`,
    expected: `generated/${name}/expected.safetensors`,
    input: `generated/${name}/expected.safetensors`,
    training: true,
  };
});

function expectClose(ours: tf.Tensor, expected: tf.Tensor, what: string): number {
  const diff = maxAbsDiff(ours, expected);
  const scale = maxAbs(expected);
  expect(scale, `${what}: reference is all zeros`).toBeGreaterThan(0);
  expect(diff, `${what}: max |diff| ${diff} vs scale ${scale}`).toBeLessThan(
    RELATIVE_TOLERANCE * scale,
  );
  return diff / scale;
}

function loadCase(c: Case, opts: BackboneOptions = {}) {
  const net = createBackbone(c.arch, { ...c.options, ...opts });
  const params = new Params();
  // Parameters are created by the builder, then overwritten by the checkpoint (strict).
  net.init(params, new Rng(0));
  return { net, params };
}

describe.each(['cpu', 'wasm'])('torchvision parity on the %s backend', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
    await tf.ready();
  });
  afterAll(() => {
    expect(tf.getBackend()).toBe(backend);
  });

  it.each([...SHARED, ...GENERATED])('$name: eval-mode outputs', (c) => {
    const { net, params } = loadCase(c);
    try {
      const loaded = loadTorchStateDict(params, cached(c.weights), { source: c.weights });
      expect(loaded.length).toBe(params.names().length);
      const expected = cached(c.expected);
      const before = tf.memory().numTensors;
      tf.tidy(() => {
        const x = fixtureTensor(cached(c.input), 'input_nhwc') as tf.Tensor4D;
        const out = net.applyAll(params, x, { training: false });
        const relative: Record<string, number> = {};
        for (const key of ['pooled', 'head', 'logits'] as const) {
          if (!expected.has(key)) {
            expect(out[key], `${key} should not exist`).toBeUndefined();
            continue;
          }
          relative[key] = expectClose(out[key]!, fixtureTensor(expected, key), `${c.name} ${key}`);
        }
        // apply() returns the pooled feature; applyLogits() the logits, same numbers.
        expectClose(net.apply(params, x, { training: false }), out.pooled, `${c.name} apply`);
        expectClose(net.applyLogits(params, x, { training: false }), out.logits!, 'applyLogits');
        console.log(`${backend} ${c.name}: max |diff| / scale ${JSON.stringify(relative)}`);
      });
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      params.dispose();
    }
  });

  it('mobilenet_v3_small: output "head" returns the head feature', () => {
    const c = SHARED[1]!;
    const { net, params } = loadCase(c, { output: 'head' });
    try {
      loadTorchStateDict(params, cached(c.weights));
      expect(net.featureDim).toBe(1024);
      expect(net.pooledDim).toBe(576);
      tf.tidy(() => {
        const x = fixtureTensor(cached(c.input), 'input_nhwc') as tf.Tensor4D;
        const head = net.apply(params, x, { training: false });
        expect(head.shape).toEqual([2, 1024]);
        expectClose(head, fixtureTensor(cached(c.expected), 'head'), 'head');
      });
    } finally {
      params.dispose();
    }
  });

  it.each(GENERATED)('$name: training-mode forward and BN running statistics', (c) => {
    const { net, params } = loadCase(c);
    try {
      const weights = cached(c.weights);
      loadTorchStateDict(params, weights);
      const expected = cached(c.expected);
      tf.tidy(() => {
        // A batch of 4 at twice the eval size (see scripts/make-fixture.py for why).
        const x = fixtureTensor(expected, 'train.input_nhwc') as tf.Tensor4D;
        const out = net.applyAll(params, x, { training: true });
        expectClose(out.pooled, fixtureTensor(expected, 'train.pooled'), 'train pooled');
        if (expected.has('train.head')) {
          expectClose(out.head!, fixtureTensor(expected, 'train.head'), 'train head');
        }
      });

      // Every BN layer moved its running statistics as torch's did: compare the updates.
      const stats = params
        .names()
        .filter((n) => n.endsWith('running_mean') || n.endsWith('running_var'));
      expect(stats.length).toBeGreaterThan(10);
      let worst = 0;
      for (const name of stats) {
        tf.tidy(() => {
          const initial = fixtureTensor(weights, name);
          const ours = tf.sub(params.get(name), initial);
          const torch = tf.sub(fixtureTensor(expected, `train.${name}`), initial);
          const scale = maxAbs(torch);
          expect(scale, `${name} did not move in torch`).toBeGreaterThan(0);
          const diff = maxAbsDiff(ours, torch);
          worst = Math.max(worst, diff / scale);
          expect(diff, `${name}: update differs by ${diff}, scale ${scale}`).toBeLessThan(
            RELATIVE_TOLERANCE * scale,
          );
        });
      }
      console.log(
        `${backend} ${c.name}: ${stats.length} BN statistics, worst update diff/scale ${worst}`,
      );
    } finally {
      params.dispose();
    }
  });
});
