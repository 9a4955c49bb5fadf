import { describe, expect, it } from 'vitest';
import { Params, Rng, tf } from '@disco/core';
import { LinearClassifier, ProjectionHead } from '@disco/heads';

describe('ProjectionHead', () => {
  it('computes Linear -> ReLU -> Linear with MoCo checkpoint names', () => {
    const head = new ProjectionHead({ inDim: 2, hiddenDim: 2, outDim: 1, name: 'fc' });
    const p = new Params();
    head.init(p, new Rng(0));
    expect(p.names()).toEqual(['fc.0.weight', 'fc.0.bias', 'fc.2.weight', 'fc.2.bias']);
    // W0 = [[1, -1], [2, 1]] ([in, out]), b0 = [0, -10]; W2 = [[3], [5]], b2 = [1].
    p.get('fc.0.weight').assign(
      tf.tensor2d([
        [1, -1],
        [2, 1],
      ]),
    );
    p.get('fc.0.bias').assign(tf.tensor1d([0, -10]));
    p.get('fc.2.weight').assign(tf.tensor2d([[3], [5]]));
    p.get('fc.2.bias').assign(tf.tensor1d([1]));
    // x = [1, 2]: hidden = relu([1 + 4, -1 + 2 - 10]) = [5, 0]; out = 15 + 0 + 1 = 16.
    const y = head.apply(p, tf.tensor2d([[1, 2]]), { training: true });
    expect([...y.dataSync()]).toEqual([16]);
    expect(p.countParameters()).toBe(2 * 2 + 2 + 2 + 1);
    p.dispose();
  });

  it('has the DisCo student width by default and rejects bad widths', () => {
    const head = new ProjectionHead({ inDim: 576 });
    expect([head.hiddenDim, head.outDim]).toEqual([2048, 128]);
    expect(() => new ProjectionHead({ inDim: 0 })).toThrow(
      /inDim must be a positive integer, got 0/,
    );
    expect(() => new ProjectionHead({ inDim: 4, hiddenDim: -1 })).toThrow(/hiddenDim.*-1/);
    const single = new ProjectionHead({ inDim: 4, hiddenDim: 0, outDim: 3 });
    const p = new Params();
    single.init(p, new Rng(1));
    expect(p.names()).toEqual(['head.weight', 'head.bias']);
    p.dispose();
  });
});

describe('LinearClassifier', () => {
  it('initialises weights N(0, 0.01) with zero bias', () => {
    const clf = new LinearClassifier({ inDim: 200, numClasses: 50 });
    const p = new Params();
    clf.init(p, new Rng(2));
    const w = Array.from(p.get('fc.weight').dataSync());
    const std = Math.sqrt(w.reduce((s, v) => s + v * v, 0) / w.length);
    expect(std).toBeGreaterThan(0.0095);
    expect(std).toBeLessThan(0.0105);
    expect(
      p
        .get('fc.bias')
        .dataSync()
        .every((v) => v === 0),
    ).toBe(true);
    expect(() => new LinearClassifier({ inDim: 3, numClasses: 1 })).toThrow(/numClasses.*got 1/);
    p.dispose();
  });
});
