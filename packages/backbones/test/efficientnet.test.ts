/**
 * EfficientNet-B0/B1 against torchvision 0.14: eval-mode parity with the shared B0 fixture
 * (fixtures/efficientnet_b0, see fixtures/README.md), the state dict's names, order and shapes,
 * strict loading with and without the classifier, parameter counts, width scaling, the init,
 * and output shapes for the small-image options.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadTorchStateDict, Params, Rng, tf } from '@disco/core';
import type { RawTensor } from '@disco/core';
import { createBackbone, EFFICIENTNET_VARIANTS, listBackbones } from '@disco/backbones';
import type { BackboneOptions } from '@disco/backbones';
import {
  fixtureTensor,
  maxAbs,
  maxAbsDiff,
  readFixture,
  readFixtureJson,
  torchShape,
} from './helpers.js';

interface Meta {
  bn_eps: number[];
  outputs: Record<'pooled' | 'logits', { max_abs: number }>;
  tolerance: { pooled_max_abs_diff: number };
  param_counts: { params_total: number; params_without_classifier: number; bn_layers: number };
}
const META = readFixtureJson<Meta>('efficientnet_b0/meta.json');

/**
 * torchvision 0.14's counts, from `/usr/bin/python3` (Debian python3-torchvision):
 * `sum(p.numel() for p in efficientnet_b1(weights=None).parameters())`, and the same without
 * `classifier`; the state-dict tensors exclude `num_batches_tracked`.
 */
const TORCHVISION = {
  efficientnet_b0: { total: 5288548, withoutClassifier: 4007548, tensors: 311 },
  efficientnet_b1: { total: 7794184, withoutClassifier: 6513184, tensors: 439 },
};

let weightsCache: Map<string, RawTensor> | null = null;
function weights(): Map<string, RawTensor> {
  return (weightsCache ??= readFixture('efficientnet_b0/weights.safetensors'));
}

/** The fixture's state dict without `num_batches_tracked`, with `only` names kept. */
function fixtureWeights(only: (name: string) => boolean = () => true): Map<string, RawTensor> {
  return new Map([...weights()].filter(([n]) => !n.endsWith('num_batches_tracked') && only(n)));
}

const isClassifier = (name: string): boolean => name.startsWith('classifier.');

let params: Params | null = null;
afterEach(() => {
  params?.dispose();
  params = null;
});

/** An `Rng` stand-in whose draws are all zero: structure tests need names and shapes only. */
const ZERO_RNG = {
  normalArray: (n: number) => new Float32Array(n),
  uniformArray: (n: number) => new Float32Array(n),
} as unknown as Rng;

function build(arch: string, opts: BackboneOptions, rng: Rng = ZERO_RNG): Params {
  params = new Params();
  createBackbone(arch, opts).init(params, rng);
  return params;
}

function stateDict(p: Params): [string, number[]][] {
  return p.names().map((n) => [n, torchShape(p.get(n).shape, p.layout(n))]);
}

describe('efficientnet torchvision parity', () => {
  it('efficientnet_b0: eval-mode pooled and logits on the cpu backend', () => {
    expect(tf.getBackend()).toBe('cpu');
    expect(META.bn_eps).toEqual([1e-5]);
    const net = createBackbone('efficientnet_b0', { withClassifier: 1000 });
    params = new Params();
    net.init(params, new Rng(0));
    const loaded = loadTorchStateDict(params, weights(), { source: 'efficientnet_b0' });
    expect(loaded.length).toBe(params.names().length);

    const expected = readFixture('efficientnet_b0/expected.safetensors');
    const before = tf.memory().numTensors;
    const start = performance.now();
    tf.tidy(() => {
      const x = fixtureTensor(readFixture('input.safetensors'), 'input_nhwc') as tf.Tensor4D;
      const out = net.applyAll(params!, x, { training: false });
      const relative: Record<string, number> = {};
      for (const key of ['pooled', 'logits'] as const) {
        const reference = fixtureTensor(expected, key);
        const scale = maxAbs(reference);
        expect(scale).toBeCloseTo(META.outputs[key].max_abs, 5);
        const diff = maxAbsDiff(out[key]!, reference);
        expect(diff, `${key}: max |diff| ${diff} vs scale ${scale}`).toBeLessThan(1e-3 * scale);
        relative[key] = diff / scale;
      }
      expect(maxAbsDiff(out.pooled, fixtureTensor(expected, 'pooled'))).toBeLessThan(
        META.tolerance.pooled_max_abs_diff,
      );
      expect(out.head).toBeUndefined();
      // apply() is the pooled feature and applyLogits() the logits of the same pass.
      expect(maxAbsDiff(net.apply(params!, x, { training: false }), out.pooled)).toBe(0);
      expect(maxAbsDiff(net.applyLogits(params!, x, { training: false }), out.logits!)).toBe(0);
      const ms = Math.round(performance.now() - start);
      console.log(`cpu efficientnet_b0: max |diff| / scale ${JSON.stringify(relative)}, ${ms} ms`);
    });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('efficientnet torchvision structure', () => {
  it('registers efficientnet_b0 and efficientnet_b1 after the other families', () => {
    expect(Object.keys(EFFICIENTNET_VARIANTS)).toEqual(['efficientnet_b0', 'efficientnet_b1']);
    expect(listBackbones().slice(-2)).toEqual(['efficientnet_b0', 'efficientnet_b1']);
  });

  it('efficientnet_b0: names, order and shapes equal the torchvision checkpoint', () => {
    const p = build('efficientnet_b0', { withClassifier: 1000 });
    const expected = [...fixtureWeights()].map(([n, t]): [string, number[]] => [n, t.shape]);
    expect(expected.length).toBe(TORCHVISION.efficientnet_b0.tensors);
    expect(stateDict(p)).toEqual(expected);
    // The BN running statistics are buffers, not parameters: 2 per BN layer.
    const buffers = p.names().filter((n) => !p.isParameter(n));
    expect(buffers.length).toBe(2 * META.param_counts.bn_layers);
    expect(buffers.every((n) => /running_(mean|var)$/.test(n))).toBe(true);
  });

  it.each(['efficientnet_b0', 'efficientnet_b1'] as const)(
    '%s: parameter counts equal torchvision with and without the classifier',
    (arch) => {
      const counts = TORCHVISION[arch];
      const full = build(arch, { withClassifier: 1000 });
      expect(full.countParameters()).toBe(counts.total);
      expect(full.names().length).toBe(counts.tensors);
      full.dispose();
      const p = build(arch, {});
      expect(p.countParameters()).toBe(counts.withoutClassifier);
      expect(p.names().some(isClassifier)).toBe(false);
    },
  );

  it('efficientnet_b0: the fixture counts agree with torchvision', () => {
    expect(META.param_counts.params_total).toBe(TORCHVISION.efficientnet_b0.total);
    expect(META.param_counts.params_without_classifier).toBe(
      TORCHVISION.efficientnet_b0.withoutClassifier,
    );
  });

  it('efficientnet_b0 without classifier: the checkpoint minus classifier.1 loads strictly', () => {
    const p = build('efficientnet_b0', {});
    const backbone = fixtureWeights((n) => !isClassifier(n));
    expect(loadTorchStateDict(p, backbone).length).toBe(p.names().length);
    expect(p.names()).toEqual([...backbone.keys()]);
    // The full checkpoint has tensors this model lacks: strict loading refuses it.
    expect(() => loadTorchStateDict(p, weights())).toThrow(
      /unexpected tensor 'classifier\.1\.weight'/,
    );
    // And a checkpoint that lacks one of the model's tensors is refused too.
    const missing = fixtureWeights((n) => !isClassifier(n) && n !== 'features.8.1.running_var');
    expect(() => loadTorchStateDict(p, missing)).toThrow(
      /missing tensors features\.8\.1\.running_var/,
    );
  });

  it('efficientnet_b1: blocks per stage are ceil(1.1 x B0), shapes as torchvision', () => {
    const p = build('efficientnet_b1', {});
    const blocks = [1, 2, 3, 4, 5, 6, 7].map(
      (s) =>
        new Set(
          p
            .names()
            .filter((n) => n.startsWith(`features.${s}.`))
            .map((n) => n.split('.')[2]),
        ).size,
    );
    // B0's 1, 2, 2, 3, 3, 4, 1 layers times 1.1, rounded up.
    expect(blocks).toEqual([2, 3, 3, 4, 4, 5, 2]);
    const shapes = new Map(stateDict(p));
    // Shapes printed by torchvision's efficientnet_b1().state_dict().
    expect(shapes.get('features.1.1.block.1.fc1.weight')).toEqual([4, 16, 1, 1]);
    expect(shapes.get('features.6.4.block.3.0.weight')).toEqual([192, 1152, 1, 1]);
    expect(shapes.get('features.7.1.block.0.0.weight')).toEqual([1920, 320, 1, 1]);
    expect(shapes.get('features.8.0.weight')).toEqual([1280, 320, 1, 1]);
  });

  it('efficientnet_b0 widthMultiplier 0.5 equals torchvision width_mult=0.5', () => {
    // References: torchvision EfficientNet(_efficientnet_conf('efficientnet_b0', width_mult=0.5,
    // depth_mult=1.0)[0], 0.2, num_classes=10); SE squeezes from the block's input width
    // (features.2.0: input 8, expanded 48, squeeze 2).
    const net = createBackbone('efficientnet_b0', { widthMultiplier: 0.5, withClassifier: 10 });
    expect(net.pooledDim).toBe(640);
    params = new Params();
    net.init(params, ZERO_RNG);
    expect(params.countParameters()).toBe(1077932);
    const shapes = new Map(stateDict(params));
    expect(shapes.get('features.0.0.weight')).toEqual([16, 3, 3, 3]);
    expect(shapes.get('features.1.0.block.0.0.weight')).toEqual([16, 1, 3, 3]);
    expect(shapes.get('features.1.0.block.1.fc1.weight')).toEqual([4, 16, 1, 1]);
    expect(shapes.get('features.2.0.block.2.fc1.weight')).toEqual([2, 48, 1, 1]);
    expect(shapes.get('features.6.3.block.2.fc1.weight')).toEqual([24, 576, 1, 1]);
    expect(shapes.get('features.7.0.block.3.0.weight')).toEqual([160, 576, 1, 1]);
    expect(shapes.get('features.8.0.weight')).toEqual([640, 160, 1, 1]);
    expect(shapes.get('classifier.1.weight')).toEqual([10, 640]);
  });

  it("refuses output 'head' and unknown variants, naming them", () => {
    expect(() => createBackbone('efficientnet_b0', { output: 'head' })).toThrow(
      /EfficientNet\('efficientnet_b0'\): output 'head' exists only/,
    );
    expect(() => createBackbone('efficientnet_b7')).toThrow(/unknown backbone 'efficientnet_b7'/);
  });
});

/** Sample mean and standard deviation of a variable's values. */
function stats(p: Params, name: string): { mean: number; std: number } {
  const v = p.get(name).dataSync();
  let s = 0;
  let s2 = 0;
  for (const x of v) {
    s += x;
    s2 += x * x;
  }
  const mean = s / v.length;
  return { mean, std: Math.sqrt(s2 / v.length - mean * mean) };
}

const allEqual = (p: Params, name: string, value: number): boolean =>
  p
    .get(name)
    .dataSync()
    .every((v) => v === value);

describe('efficientnet torchvision initialisation', () => {
  it('efficientnet_b0: fan-out convs (depthwise too), zero biases, U(+-1/sqrt(out)) Linear', () => {
    const p = build('efficientnet_b0', { withClassifier: 1000 }, new Rng(11));
    // features.6.0: depthwise [672, 1, 5, 5], PyTorch fan_out = 672 * 25; its expansion
    // [672, 112, 1, 1]; SE fc1 [28, 672, 1, 1]; the last conv [1280, 320, 1, 1].
    expect(p.layout('features.6.0.block.1.0.weight')).toBe('depthwise');
    for (const [name, fanOut] of [
      ['features.6.0.block.1.0.weight', 672 * 25],
      ['features.6.0.block.0.0.weight', 672],
      ['features.6.0.block.2.fc1.weight', 28],
      ['features.8.0.weight', 1280],
    ] as const) {
      const s = stats(p, name);
      expect(Math.abs(s.mean)).toBeLessThan(0.05 * Math.sqrt(2 / fanOut));
      expect(s.std / Math.sqrt(2 / fanOut), name).toBeCloseTo(1, 1);
    }
    expect(allEqual(p, 'features.6.0.block.2.fc1.bias', 0)).toBe(true);
    expect(allEqual(p, 'features.6.0.block.2.fc2.bias', 0)).toBe(true);
    expect(allEqual(p, 'features.0.1.weight', 1)).toBe(true);
    expect(allEqual(p, 'features.8.1.bias', 0)).toBe(true);
    expect(allEqual(p, 'features.8.1.running_var', 1)).toBe(true);
    // classifier.1: U(-1/sqrt(1000), 1/sqrt(1000)) (std = bound / sqrt(3)), bias 0.
    const bound = 1 / Math.sqrt(1000);
    const w = Array.from(p.get('classifier.1.weight').dataSync());
    expect(w.reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBeLessThanOrEqual(bound);
    expect(stats(p, 'classifier.1.weight').std / (bound / Math.sqrt(3))).toBeCloseTo(1, 2);
    expect(allEqual(p, 'classifier.1.bias', 0)).toBe(true);
  });
});

describe('efficientnet options and shapes', () => {
  it.each([
    // 32 -> stem 16 -> strides 1, 2, 2, 2, 1, 2, 1: 1x1.
    { opts: {}, size: 32, map: [1, 1, 1280] },
    // Stride-1 stem: 28 -> stem 28, stages 28, 14, 7, 4, 4, 2, 2.
    { opts: { smallStem: true, inChannels: 1 }, size: 28, map: [2, 2, 1280] },
    { opts: { smallStem: true, widthMultiplier: 0.25 }, size: 32, map: [2, 2, 320] },
  ])('efficientnet_b0 $opts at $size x $size', ({ opts, size, map }) => {
    const net = createBackbone('efficientnet_b0', opts);
    params = new Params();
    net.init(params, new Rng(3));
    const channels = (opts as BackboneOptions).inChannels ?? 3;
    expect(net.inChannels).toBe(channels);
    expect(net.featureDim).toBe(map[2]);
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const i = tf.range(0, 2 * size * size * channels).reshape([2, size, size, channels]);
      const x = tf.mul(tf.sin(tf.mul(i, 0.37)), 1.5) as tf.Tensor4D;
      expect(net.applyFeatureMap(params!, x, { training: false }).shape).toEqual([2, ...map]);
      const y = net.apply(params!, x, { training: true });
      expect(y.shape).toEqual([2, map[2]]);
      expect(y.dataSync().every(Number.isFinite)).toBe(true);
      // The two samples differ: the input reaches the output.
      expect(maxAbsDiff(y.slice([0, 0], [1, -1]), y.slice([1, 0], [1, -1]))).toBeGreaterThan(
        1e-4 * maxAbs(y),
      );
    });
    expect(tf.memory().numTensors).toBe(before);
  });
});
