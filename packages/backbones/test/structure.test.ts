/**
 * Architecture structure against torchvision: every state-dict name, in order, with its torch
 * shape (fixtures/keys.json, written by scripts/make-fixture.py from torchvision 0.14), the
 * parameter counts, strict checkpoint loading without the final classifier, and the init.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { loadTorchStateDict, Params, Rng, tf } from '@disco/core';
import { createBackbone, listBackbones } from '@disco/backbones';
import type { BackboneOptions } from '@disco/backbones';
import { readFixture, readFixtureJson, torchShape } from './helpers.js';

interface KeysEntry {
  params_total: number;
  state_dict: [string, number[]][];
}
const KEYS = readFixtureJson<Record<string, KeysEntry>>('keys.json');

/** torchvision's parameter counts with the 1000-class classifier (from the task statement). */
const TORCHVISION_COUNTS: Record<string, number> = {
  resnet18: 11689512,
  resnet34: 21797672,
  resnet50: 25557032,
  resnet101: 44549160,
  resnet152: 60192808,
  wide_resnet50_2: 68883240,
  mobilenet_v3_small: 2542856,
  mobilenet_v3_large: 5483032,
};

/** The final classifier's names: not built without `withClassifier`. */
function isFinalClassifier(name: string): boolean {
  return /^(fc|classifier\.3)\./.test(name);
}

let params: Params | null = null;
afterEach(() => {
  params?.dispose();
  params = null;
});

/**
 * A stand-in for `Rng` whose draws are all zero: the structure tests need names and shapes,
 * and skipping the ~240M normal draws of the big ResNets keeps them fast.
 */
const ZERO_RNG = {
  normalArray: (n: number) => new Float32Array(n),
  uniformArray: (n: number) => new Float32Array(n),
} as unknown as Rng;

function build(arch: string, opts: BackboneOptions, rng: Rng = new Rng(7)): Params {
  params = new Params();
  createBackbone(arch, opts).init(params, rng);
  return params;
}

function stateDict(p: Params): [string, number[]][] {
  return p.names().map((n) => [n, torchShape(p.get(n).shape, p.layout(n))]);
}

describe('torchvision structure', () => {
  it('registers the ten architectures', () => {
    // EfficientNet's structure and counts are checked in efficientnet.test.ts.
    const efficientNets = ['efficientnet_b0', 'efficientnet_b1'];
    expect(listBackbones()).toEqual([...Object.keys(TORCHVISION_COUNTS), ...efficientNets]);
  });

  it.each(Object.keys(TORCHVISION_COUNTS))(
    '%s: names, order, shapes and parameter count equal torchvision',
    (arch) => {
      const p = build(arch, { withClassifier: 1000 }, ZERO_RNG);
      const expected = KEYS[arch]!;
      expect(stateDict(p)).toEqual(expected.state_dict);
      expect(p.countParameters()).toBe(TORCHVISION_COUNTS[arch]);
      expect(expected.params_total).toBe(TORCHVISION_COUNTS[arch]);
      // BN running statistics are buffers, not parameters.
      const buffers = p.names().filter((n) => !p.isParameter(n));
      expect(buffers.length).toBeGreaterThan(0);
      expect(buffers.every((n) => /running_(mean|var)$/.test(n))).toBe(true);
    },
  );

  it('mobilenet_v3_small with widthMultiplier 0.5 equals torchvision width_mult=0.5', () => {
    const p = build('mobilenet_v3_small', { widthMultiplier: 0.5, withClassifier: 1000 });
    const expected = KEYS['mobilenet_v3_small@width_mult=0.5']!;
    expect(stateDict(p)).toEqual(expected.state_dict);
    expect(p.countParameters()).toBe(expected.params_total);
  });

  it.each([
    ['resnet18', 'fc'],
    ['mobilenet_v3_small', 'classifier.3'],
  ])('%s without classifier: no %s, and the torchvision checkpoint loads strictly', (arch) => {
    const p = build(arch, {}, ZERO_RNG);
    const expected = KEYS[arch]!.state_dict.filter(([n]) => !isFinalClassifier(n));
    expect(stateDict(p)).toEqual(expected);
    const full = readFixture(`${arch}/weights.safetensors`);
    const weights = new Map([...full].filter(([n]) => !isFinalClassifier(n)));
    expect(loadTorchStateDict(p, weights).length).toBe(expected.length);
    // The full checkpoint has tensors this model lacks: strict loading refuses it.
    expect(() => loadTorchStateDict(p, full)).toThrow(
      /unexpected tensor '(fc|classifier\.3)\.weight'/,
    );
  });
});

/** Sample mean and standard deviation of a variable's values. */
function stats(p: Params, name: string): { mean: number; std: number; n: number } {
  const v = p.get(name).dataSync();
  let s = 0;
  let s2 = 0;
  for (const x of v) {
    s += x;
    s2 += x * x;
  }
  const mean = s / v.length;
  return { mean, std: Math.sqrt(s2 / v.length - mean * mean), n: v.length };
}

describe('torchvision initialisation', () => {
  it('resnet18: kaiming-normal fan-out convs, BN 1/0, default Linear', () => {
    const p = build('resnet18', { withClassifier: 1000 });
    // conv1 [64, 3, 7, 7]: fan_out = 64 * 49; layer4.1.conv2 [512, 512, 3, 3]: fan_out = 512 * 9.
    for (const [name, fanOut] of [
      ['conv1.weight', 64 * 49],
      ['layer4.1.conv2.weight', 512 * 9],
      ['layer2.0.downsample.0.weight', 128],
    ] as const) {
      const s = stats(p, name);
      expect(Math.abs(s.mean)).toBeLessThan(0.05 * Math.sqrt(2 / fanOut));
      expect(s.std / Math.sqrt(2 / fanOut)).toBeCloseTo(1, 1);
    }
    expect([...p.get('bn1.weight').dataSync()].every((v) => v === 1)).toBe(true);
    expect([...p.get('layer3.1.bn2.bias').dataSync()].every((v) => v === 0)).toBe(true);
    expect([...p.get('bn1.running_var').dataSync()].every((v) => v === 1)).toBe(true);
    // fc: U(-1/sqrt(512), 1/sqrt(512)) for weight and bias: std = bound / sqrt(3).
    const bound = 1 / Math.sqrt(512);
    const fc = Array.from(p.get('fc.weight').dataSync());
    expect(fc.reduce((m, v) => Math.max(m, Math.abs(v)), 0)).toBeLessThanOrEqual(bound);
    expect(stats(p, 'fc.weight').std / (bound / Math.sqrt(3))).toBeCloseTo(1, 1);
  });

  it('mobilenet_v3_small: fan-out convs (depthwise too), zero biases, Linear N(0, 0.01)', () => {
    const p = build('mobilenet_v3_small', { withClassifier: 1000 });
    // features.10 (row 5, 576, 96, SE): depthwise [576, 1, 5, 5], PyTorch fan_out = 576 * 25
    // (core's Conv2d alone would use 25); SE fc1 [144, 576, 1, 1]; last conv [576, 96, 1, 1].
    expect(p.layout('features.10.block.1.0.weight')).toBe('depthwise');
    for (const [name, fanOut] of [
      ['features.10.block.1.0.weight', 576 * 25],
      ['features.10.block.2.fc1.weight', 144],
      ['features.12.0.weight', 576],
    ] as const) {
      expect(stats(p, name).std / Math.sqrt(2 / fanOut)).toBeCloseTo(1, 1);
    }
    expect([...p.get('features.10.block.2.fc1.bias').dataSync()].every((v) => v === 0)).toBe(true);
    expect([...p.get('features.10.block.2.fc2.bias').dataSync()].every((v) => v === 0)).toBe(true);
    expect(stats(p, 'classifier.0.weight').std).toBeCloseTo(0.01, 3);
    expect([...p.get('classifier.3.bias').dataSync()].every((v) => v === 0)).toBe(true);
  });

  it('the same seed gives the same weights, another seed others', () => {
    const net = createBackbone('mobilenet_v3_small', { widthMultiplier: 0.5 });
    const [a, b, c] = [new Params(), new Params(), new Params()];
    try {
      net.init(a, new Rng(1));
      net.init(b, new Rng(1));
      net.init(c, new Rng(2));
      const name = 'features.4.block.1.0.weight';
      expect(tf.util.arraysEqual(a.get(name).dataSync(), b.get(name).dataSync())).toBe(true);
      expect(tf.util.arraysEqual(a.get(name).dataSync(), c.get(name).dataSync())).toBe(false);
    } finally {
      for (const p of [a, b, c]) p.dispose();
    }
  });
});
