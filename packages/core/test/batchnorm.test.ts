import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchNorm, Params, Rng, tf } from '@disco/core';

// Reference: BN written with plain ops, differentiated by tfjs's autodiff.
function reference(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, groups: number, eps: number) {
  const shape = x.shape;
  const xg = tf.reshape(x, [groups, shape[0]! / groups, ...shape.slice(1)]);
  const axes = xg.shape.map((_, i) => i).slice(1, -1);
  const { mean, variance } = tf.moments(xg, axes, true);
  const y = tf.add(tf.mul(tf.div(tf.sub(xg, mean), tf.sqrt(tf.add(variance, eps))), gamma), beta);
  return tf.reshape(y, shape);
}

const AUTODIFF_CASES = [
  ['2-D, one group', [6, 4, 5, 3], undefined],
  ['2-D, ghost groups of 2', [6, 4, 5, 3], 2],
  ['2-D, ghost groups of 4, 16 channels', [8, 6, 6, 16], 4],
  ['1-D, ghost groups of 4', [8, 5], 4],
] as const;

function autodiffCases(): void {
  for (const [label, shape, groupSize] of AUTODIFF_CASES) {
    it(`matches autodiff of the plain formula: ${label}`, () => {
      const rng = new Rng(5);
      const bn = new BatchNorm('bn', { channels: shape[shape.length - 1]!, eps: 1e-3 });
      const p = new Params();
      bn.init(p);
      p.get('bn.weight').assign(tf.tensor1d(rng.normalArray(shape[shape.length - 1]!, 1, 0.3)));
      p.get('bn.bias').assign(tf.tensor1d(rng.normalArray(shape[shape.length - 1]!, 0, 0.3)));
      const size = shape.reduce((a, b) => a * b, 1);
      const x = tf.tensor(rng.normalArray(size, 0.5, 2), [...shape]);
      const w = tf.tensor(rng.normalArray(size), [...shape]); // random upstream gradient
      const groups = groupSize ? shape[0] / groupSize : 1;
      const ctx = { training: true, bnGroupSize: groupSize };
      const loss = (xx: tf.Tensor, g: tf.Tensor, b: tf.Tensor, ours: boolean) =>
        tf.sum(
          tf.mul(
            ours
              ? bn.apply(
                  Object.assign(Object.create(Object.getPrototypeOf(p)), p, {
                    get: (n: string) => (n === 'bn.weight' ? g : n === 'bn.bias' ? b : p.get(n)),
                  }),
                  xx,
                  ctx,
                )
              : reference(xx, g, b, groups, 1e-3),
            w,
          ),
        ) as tf.Scalar;
      const gamma = p.get('bn.weight');
      const beta = p.get('bn.bias');
      const ours = tf.grads((a, b, c) => loss(a!, b!, c!, true))([x, gamma, beta]);
      const ref = tf.grads((a, b, c) => loss(a!, b!, c!, false))([x, gamma, beta]);
      for (let i = 0; i < 3; i++) {
        const diff = tf.max(tf.abs(tf.sub(ours[i]!, ref[i]!))).dataSync()[0]!;
        const scale = tf.max(tf.abs(ref[i]!)).dataSync()[0]!;
        expect(diff / scale).toBeLessThan(1e-5);
      }
      const y = bn.apply(p, x, ctx);
      const yRef = reference(x, gamma, beta, groups, 1e-3);
      expect(tf.max(tf.abs(tf.sub(y, yRef))).dataSync()[0]).toBeLessThan(1e-5);
    });
  }
}

// The channel means of a feature map take an average pool on every backend; on wasm the
// pool and the matMul are XNNPACK's.
describe('BatchNorm on wasm', () => {
  beforeAll(async () => {
    expect(await tf.setBackend('wasm')).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });
  autodiffCases();
});

describe('BatchNorm', () => {
  autodiffCases();

  it('updates running statistics as PyTorch: momentum 0.1, unbiased variance', () => {
    const bn = new BatchNorm('bn', { channels: 1 });
    const p = new Params();
    bn.init(p);
    // One channel, values 1, 2, 3, 6: mean 3, biased var 3.5, unbiased var 14/3.
    bn.apply(p, tf.tensor2d([[1], [2], [3], [6]]), { training: true });
    expect(p.get('bn.running_mean').dataSync()[0]).toBeCloseTo(0.3, 6);
    expect(p.get('bn.running_var').dataSync()[0]).toBeCloseTo(0.9 + 0.1 * (14 / 3), 6);
    // Eval mode uses them: (x - 0.3) / sqrt(rv + eps).
    const y = bn.apply(p, tf.tensor2d([[1.3]]), { training: false }).dataSync()[0]!;
    expect(y).toBeCloseTo(1 / Math.sqrt(0.9 + 0.1 * (14 / 3) + 1e-5), 5);
  });

  it('rejects a batch its group size does not divide', () => {
    const bn = new BatchNorm('bn', { channels: 2 });
    const p = new Params();
    bn.init(p);
    expect(() => bn.apply(p, tf.zeros([6, 2]), { training: true, bnGroupSize: 4 })).toThrow(
      /batch 6 is not divisible by the BN group size 4/,
    );
  });
});
