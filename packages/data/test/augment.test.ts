import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, tf } from '@disco/core';
import {
  applyAugment,
  blurRadius,
  colorJitter,
  cropBoxes,
  gaussianBlurBatch,
  mocoV2Augment,
  randomGrayscale,
  resolveAugmentConfig,
  sampleAugmentParams,
  sampleResizedCrop,
  type AugmentConfig,
  type CropWindow,
} from '@disco/data';
import { imageOf, maxDiff, refBlur, refJitterOp } from './reference.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** A settings override that turns every random operation off and normalisation into identity. */
const PLAIN: Partial<AugmentConfig> = {
  scale: [1, 1],
  ratio: [1, 1],
  flipP: 0,
  jitterP: 0,
  grayscaleP: 0,
  blurP: 0,
  mean: [0],
  std: [1],
};

function randomImages(seed: number, shape: [number, number, number, number]): tf.Tensor4D {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor4d(new Rng(seed).uniformArray(n), shape);
}

/** An Rng stand-in that returns scripted uniforms, to test the sampling arithmetic. */
function scripted(values: number[]): Rng {
  const queue = [...values];
  const fake = {
    uniform: () => {
      if (queue.length === 0) throw new Error('scripted rng ran out');
      return queue.shift()!;
    },
    range: (lo: number, hi: number) => lo + (hi - lo) * fake.uniform(),
    int: (n: number) => Math.floor(fake.uniform() * n),
  };
  return fake as unknown as Rng;
}

describe('sampleResizedCrop', () => {
  it('follows torchvision: area share, log-uniform ratio, uniform placement', () => {
    // share 0.2 + 0.8 * 0.5 = 0.6 -> 6000 px, ratio exp(0) = 1 -> 77x77; top 0.5 * 24, left 0.25 * 24.
    const w = sampleResizedCrop(
      scripted([0.5, 0.5, 0.5, 0.25]),
      100,
      100,
      [0.2, 1],
      [3 / 4, 4 / 3],
    );
    expect(w).toEqual({ top: 12, left: 6, height: 77, width: 77 });
    // First attempt too wide (share ~1, ratio ~4/3 -> width 115), second: share 0.2, ratio 3/4.
    const r = sampleResizedCrop(
      scripted([0.9999, 0.9999, 0, 0, 0.999, 0]),
      100,
      100,
      [0.2, 1],
      [3 / 4, 4 / 3],
    );
    // sqrt(2000 * 0.75) = 38.73 -> 39 wide, sqrt(2000 / 0.75) = 51.64 -> 52 high.
    expect(r).toEqual({ top: 48, left: 0, height: 52, width: 39 });
  });

  it('falls back to a central crop at the nearest allowed ratio', () => {
    const rng = new Rng(1);
    // A share of 2-3 never fits, so all 10 attempts fail. Too wide: full height, width
    // round(10 * 4/3) = 13, centred at (40 - 13) // 2.
    expect(sampleResizedCrop(rng, 10, 40, [2, 3], [3 / 4, 4 / 3])).toEqual({
      top: 0,
      left: 13,
      height: 10,
      width: 13,
    });
    // Too tall: full width, height round(10 / (3/4)) = 13, centred at (40 - 13) // 2.
    expect(sampleResizedCrop(rng, 40, 10, [2, 3], [3 / 4, 4 / 3])).toEqual({
      top: 13,
      left: 0,
      height: 13,
      width: 10,
    });
  });

  it('keeps windows inside the image with the configured shares', () => {
    const rng = new Rng(4);
    let shareSum = 0;
    for (let i = 0; i < 2000; i++) {
      const w = sampleResizedCrop(rng, 28, 32, [0.2, 1], [3 / 4, 4 / 3]);
      expect(w.top >= 0 && w.left >= 0 && w.top + w.height <= 28 && w.left + w.width <= 32).toBe(
        true,
      );
      const share = (w.height * w.width) / (28 * 32);
      expect(share).toBeGreaterThan(0.17);
      expect(share).toBeLessThanOrEqual(1);
      shareSum += share;
    }
    expect(shareSum / 2000).toBeGreaterThan(0.5);
    expect(shareSum / 2000).toBeLessThan(0.62);
  });
});

describe('crop boxes', () => {
  it('a full-image box reproduces an align-corners resize', () => {
    const x = randomImages(1, [3, 28, 28, 1]);
    const out = mocoV2Augment(x, new Rng(0), { ...PLAIN, size: 20 });
    const ref = tf.image.resizeBilinear(x, [20, 20], true);
    expect(out.shape).toEqual([3, 20, 20, 1]);
    expect(maxDiff(out.dataSync(), ref.dataSync())).toBeLessThan(1e-3);
    tf.dispose([x, out, ref]);
  });

  it('a window of the output size copies its pixels; a flipped one mirrors them', () => {
    const x = randomImages(2, [1, 28, 28, 3]);
    const cfg = resolveAugmentConfig({ ...PLAIN, size: 10 }, 28, 3);
    const window: CropWindow = { top: 3, left: 5, height: 10, width: 10 };
    const base = sampleAugmentParams(new Rng(0), 1, 28, 28, cfg);
    const plain = applyAugment(x, { ...base, windows: [window] }, cfg);
    const block = x.slice([0, 3, 5, 0], [1, 10, 10, 3]);
    expect(maxDiff(plain.dataSync(), block.dataSync())).toBeLessThan(1e-3);

    const flipped = applyAugment(x, { ...base, windows: [window], flip: Uint8Array.of(1) }, cfg);
    const mirrored = tf.reverse(block, 2);
    expect(maxDiff(flipped.dataSync(), mirrored.dataSync())).toBeLessThan(1e-3);
    expect(maxDiff(flipped.dataSync(), block.dataSync())).toBeGreaterThan(0.1);
    tf.dispose([x, plain, block, flipped, mirrored]);
  });

  it('flipP 1 mirrors the whole resized image', () => {
    const x = randomImages(3, [2, 16, 16, 1]);
    const out = mocoV2Augment(x, new Rng(0), { ...PLAIN, flipP: 1 });
    const ref = tf.reverse(x, 2);
    expect(maxDiff(out.dataSync(), ref.dataSync())).toBeLessThan(1e-3);
    tf.dispose([x, out, ref]);
  });

  it('swaps x1 and x2 of a flipped box', () => {
    const boxes = cropBoxes([{ top: 0, left: 0, height: 11, width: 21 }], 11, 21, Uint8Array.of(1));
    expect(boxes[0]).toBeCloseTo(0, 4);
    expect(boxes[1]).toBeCloseTo(1, 4);
    expect(boxes[2]).toBeCloseTo(1, 4);
    expect(boxes[3]).toBeCloseTo(0, 4);
  });
});

describe('colour operations', () => {
  const n = 6;
  const [h, w] = [5, 4];

  it('jitter matches a per-pixel reference, each image in its own order', () => {
    for (const c of [3, 1]) {
      const x = randomImages(10 + c, [n, h, w, c]);
      const rng = new Rng(c);
      const factors = new Float32Array(n * 4);
      const order = new Uint8Array(n * 4);
      for (let i = 0; i < n; i++) {
        factors.set([rng.range(0.6, 1.4), rng.range(0.6, 1.4), rng.range(0.6, 1.4)], i * 4);
        factors[i * 4 + 3] = rng.range(-0.5, 0.5);
        order.set(rng.permutation(4), i * 4);
      }
      const apply = Uint8Array.from([1, 1, 0, 1, 1, 1]);
      const out = colorJitter(x, { factors, order, apply });
      const xs = x.dataSync() as Float32Array;
      const got = out.dataSync();
      for (let i = 0; i < n; i++) {
        let img = imageOf(xs, i, h, w, c);
        if (apply[i]) {
          for (let s = 0; s < 4; s++) {
            const op = order[i * 4 + s]!;
            img = refJitterOp(img, op, factors[i * 4 + op]!);
          }
        }
        const size = h * w * c;
        expect(maxDiff(got.slice(i * size, (i + 1) * size), img.data)).toBeLessThan(2e-5);
      }
      tf.dispose([x, out]);
    }
  });

  it('hue shifts a pure red to green by a third of a turn', () => {
    const x = tf.tensor4d([1, 0, 0, 0.5, 0.25, 0.25], [2, 1, 1, 3]);
    const out = colorJitter(x, {
      factors: Float32Array.from([1, 1, 1, 1 / 3, 1, 1, 1, -1 / 3]),
      order: Uint8Array.from([3, 0, 1, 2, 3, 0, 1, 2]),
      apply: Uint8Array.from([1, 1]),
    });
    // Red -> green; (0.5, 0.25, 0.25) shifted back a third -> (0.25, 0.25, 0.5).
    expect(maxDiff(out.dataSync(), [0, 1, 0, 0.25, 0.25, 0.5])).toBeLessThan(1e-6);
    tf.dispose([x, out]);
  });

  it('grayscale sets every channel to the luma of flagged images only', () => {
    const x = tf.tensor4d([0.2, 0.4, 0.6, 0.9, 0.1, 0.3], [2, 1, 1, 3]);
    const out = randomGrayscale(x, Uint8Array.from([1, 0]));
    const g = 0.2989 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6;
    expect(maxDiff(out.dataSync(), [g, g, g, 0.9, 0.1, 0.3])).toBeLessThan(1e-6);
    tf.dispose([x, out]);
  });
});

describe('gaussianBlurBatch', () => {
  it('matches a 2-D reference with reflect padding, per-image sigma', () => {
    const x = randomImages(20, [3, 9, 11, 3]);
    const sigmas = Float32Array.from([0.8, 0, 2.5]);
    const out = gaussianBlurBatch(x, sigmas);
    const xs = x.dataSync() as Float32Array;
    const got = out.dataSync();
    const size = 9 * 11 * 3;
    for (let i = 0; i < 3; i++) {
      const img = imageOf(xs, i, 9, 11, 3);
      const r = blurRadius(sigmas[i]!, 9, 11);
      const ref = sigmas[i] === 0 ? img : refBlur(img, sigmas[i]!, r);
      expect(maxDiff(got.slice(i * size, (i + 1) * size), ref.data)).toBeLessThan(1e-5);
    }
    expect(blurRadius(2.5, 9, 11)).toBe(8); // ceil(7.5) = 8, within 9 - 1
    expect(blurRadius(5, 9, 11)).toBe(8); // capped at the image
    tf.dispose([x, out]);
  });

  it('preserves a constant image', () => {
    const x = tf.fill([2, 12, 12, 1], 0.7) as tf.Tensor4D;
    const out = gaussianBlurBatch(x, Float32Array.from([1.5, 0.3]));
    expect(maxDiff(out.dataSync(), new Float32Array(288).fill(0.7))).toBeLessThan(1e-6);
    tf.dispose([x, out]);
  });
});

describe('mocoV2Augment', () => {
  it('gives the output shape and repeats for a seed', () => {
    for (const c of [1, 3] as const) {
      const x = randomImages(30 + c, [4, 28, 28, c]);
      const opts = { size: 24, mean: [0.5], std: [0.25] };
      const a = mocoV2Augment(x, new Rng(9), opts);
      const b = mocoV2Augment(x, new Rng(9), opts);
      const rng = new Rng(10);
      const view1 = mocoV2Augment(x, rng, opts);
      const view2 = mocoV2Augment(x, rng, opts);
      expect(a.shape).toEqual([4, 24, 24, c]);
      expect([...a.dataSync()]).toEqual([...b.dataSync()]);
      expect(maxDiff(a.dataSync(), view1.dataSync())).toBeGreaterThan(0.1);
      expect(maxDiff(view1.dataSync(), view2.dataSync())).toBeGreaterThan(0.1);
      tf.dispose([x, a, b, view1, view2]);
    }
  });

  it('normalises with the given mean and std', () => {
    const x = randomImages(40, [4, 16, 16, 3]);
    const moments = tf.moments(x, [0, 1, 2]);
    const mean = [...moments.mean.dataSync()];
    const std = [...moments.variance.sqrt().dataSync()];
    const out = mocoV2Augment(x, new Rng(1), { ...PLAIN, mean, std });
    const outMoments = tf.moments(out, [0, 1, 2]);
    expect(maxDiff(outMoments.mean.dataSync(), [0, 0, 0])).toBeLessThan(1e-3);
    expect(maxDiff(outMoments.variance.dataSync(), [1, 1, 1])).toBeLessThan(2e-3);
    tf.dispose([x, moments.mean, moments.variance, out, outMoments.mean, outMoments.variance]);
  });

  it('draws each choice at the configured rate and scales sigma by size / 224', () => {
    const cfg = resolveAugmentConfig({ size: 56 }, 28, 3);
    const p = sampleAugmentParams(new Rng(5), 4000, 28, 28, cfg);
    const rate = (flags: Uint8Array) => flags.reduce((a, b) => a + b, 0) / flags.length;
    expect(rate(p.flip)).toBeCloseTo(0.5, 1);
    expect(rate(p.jitter.apply)).toBeCloseTo(0.8, 1);
    expect(rate(p.grayscale)).toBeCloseTo(0.2, 1);
    const blurred = p.sigma.filter((s) => s > 0);
    expect(blurred.length / 4000).toBeCloseTo(0.5, 1);
    expect(Math.min(...blurred)).toBeGreaterThanOrEqual(0.1 * 0.25);
    expect(Math.max(...blurred)).toBeLessThan(2 * 0.25);
    for (let i = 0; i < 4000; i++) {
      const f = p.jitter.factors.subarray(i * 4, i * 4 + 4);
      expect(f[0]! >= 0.6 && f[0]! < 1.4 && f[2]! >= 0.6 && f[2]! < 1.4).toBe(true);
      expect(Math.abs(f[3]!)).toBeLessThanOrEqual(0.1);
      expect([...p.jitter.order.subarray(i * 4, i * 4 + 4)].sort()).toEqual([0, 1, 2, 3]);
    }
  });

  it('leaks no tensors over 20 calls', () => {
    const x = randomImages(50, [8, 20, 20, 3]);
    const rng = new Rng(2);
    mocoV2Augment(x, rng, { size: 16 }).dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++)
      mocoV2Augment(x, rng, { size: 16, blurReferenceSize: 16 }).dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('refuses bad input and settings, naming them', () => {
    const x = randomImages(60, [1, 8, 8, 1]);
    expect(() => mocoV2Augment(x, new Rng(0))).toThrow(/mean must hold 1 or 1 values.*0\.485/);
    expect(() => mocoV2Augment(x, new Rng(0), { ...PLAIN, flipP: 2 })).toThrow(/flipP.*got 2/);
    expect(() => mocoV2Augment(x, new Rng(0), { ...PLAIN, scale: [0.9, 0.1] })).toThrow(
      /scale must be \[lo, hi\].*\[0\.9,0\.1\]/,
    );
    const four = tf.zeros([1, 8, 8, 4]) as tf.Tensor4D;
    expect(() => mocoV2Augment(four, new Rng(0), PLAIN)).toThrow(/C = 1 or 3.*\[1,8,8,4\]/);
    tf.dispose([x, four]);
  });
});
