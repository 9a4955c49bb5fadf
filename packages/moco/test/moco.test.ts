import { describe, expect, it } from 'vitest';
import {
  bindEncoder,
  Conv2d,
  BatchNorm,
  globalAvgPool,
  type Module,
  Params,
  Rng,
  Sequential,
  tf,
} from '@disco/core';
import { ProjectionHead } from '@disco/heads';
import { infoNce, KeyQueue, MoCo, momentumUpdate, NonFiniteLossError } from '@disco/moco';

describe('infoNce', () => {
  it('matches a hand-computed value', () => {
    // q = [1, 0]; k = [0.6, 0.8]; queue columns [0, 1] and [-1, 0]; T = 0.5.
    // logits = [0.6, 0, -1] / 0.5 = [1.2, 0, -2]; loss = log(e^1.2 + 1 + e^-2) - 1.2.
    const q = tf.tensor2d([[1, 0]]);
    const k = tf.tensor2d([[0.6, 0.8]]);
    const queue = tf.tensor2d([
      [0, -1],
      [1, 0],
    ]);
    const expected = Math.log(Math.exp(1.2) + 1 + Math.exp(-2)) - 1.2;
    expect(infoNce(q, k, queue, 0.5).dataSync()[0]).toBeCloseTo(expected, 6);
    expect(() => infoNce(q, k, queue, 0)).toThrow(/temperature must be > 0, got 0/);
  });

  it('averages over the batch', () => {
    const q = tf.tensor2d([
      [1, 0],
      [0, 1],
    ]);
    const k = tf.tensor2d([
      [1, 0],
      [1, 0],
    ]);
    const queue = tf.tensor2d([[0], [1]]);
    // row 0: logits [1, 0]/T; row 1: logits [0, 1]/T with T = 1.
    const l0 = Math.log(Math.E + 1) - 1;
    const l1 = Math.log(1 + Math.E) - 0;
    expect(infoNce(q, k, queue, 1).dataSync()[0]).toBeCloseTo((l0 + l1) / 2, 6);
  });

  it('has the gradient of the cross-entropy: (softmax - onehot(0)) / (N T), chained', () => {
    const rng = new Rng(4);
    const unit = (t: tf.Tensor2D, axis: number) =>
      tf.div(t, tf.norm(t, 'euclidean', axis, true)) as tf.Tensor2D;
    const q = unit(tf.tensor2d(rng.normalArray(5 * 8), [5, 8]), 1);
    const k = unit(tf.tensor2d(rng.normalArray(5 * 8), [5, 8]), 1);
    const queue = unit(tf.tensor2d(rng.normalArray(8 * 12), [8, 12]), 0);
    // Reference: the same loss through tfjs's own logSumExp and autodiff. T = 0.05 makes
    // logits up to 20, where a logsumexp without its max shift would lose digits.
    const reference = (a: tf.Tensor, b: tf.Tensor) =>
      tf.tidy(() => {
        const pos = tf.sum(tf.mul(a, b), 1, true);
        const logits = tf.div(tf.concat([pos, tf.matMul(a as tf.Tensor2D, queue)], 1), 0.05);
        return tf.mean(tf.sub(tf.logSumExp(logits, 1), tf.div(tf.squeeze(pos, [1]), 0.05)));
      });
    const ours = tf.grads((a, b) => infoNce(a as tf.Tensor2D, b as tf.Tensor2D, queue, 0.05))([
      q,
      k,
    ]);
    const ref = tf.grads(reference)([q, k]);
    expect(infoNce(q, k, queue, 0.05).dataSync()[0]).toBeCloseTo(reference(q, k).dataSync()[0]!, 5);
    for (let i = 0; i < 2; i++) {
      const err = tf.max(tf.abs(tf.sub(ours[i]!, ref[i]!))).dataSync()[0]!;
      const scale = tf.max(tf.abs(ref[i]!)).dataSync()[0]!;
      expect(scale).toBeGreaterThan(0.1);
      expect(err / scale).toBeLessThan(1e-5);
    }
  });
});

describe('KeyQueue', () => {
  it('starts with unit columns, writes a ring buffer and wraps around', () => {
    const queue = new KeyQueue(2, 4, new Rng(0));
    const norms = tf.sqrt(tf.sum(tf.square(queue.keys), 0)).dataSync();
    for (const v of norms) expect(v).toBeCloseTo(1, 5);
    queue.enqueue(
      tf.tensor2d([
        [1, 2],
        [3, 4],
      ]),
    );
    expect(queue.ptr).toBe(2);
    queue.enqueue(
      tf.tensor2d([
        [5, 6],
        [7, 8],
      ]),
    );
    expect(queue.ptr).toBe(0);
    expect(queue.keys.arraySync()).toEqual([
      [1, 3, 5, 7],
      [2, 4, 6, 8],
    ]);
    queue.enqueue(
      tf.tensor2d([
        [9, 10],
        [11, 12],
      ]),
    );
    expect(queue.ptr).toBe(2);
    expect(queue.keys.arraySync()).toEqual([
      [9, 11, 5, 7],
      [10, 12, 6, 8],
    ]);
    expect(() =>
      queue.enqueue(
        tf.tensor2d([
          [1, 1],
          [1, 1],
          [1, 1],
        ]),
      ),
    ).toThrow(/K = 4 is not divisible by the batch size 3/);
    queue.dispose();
  });
});

describe('momentumUpdate', () => {
  it('moves parameters, not buffers, by (1 - m) towards the query', () => {
    const q = new Params();
    q.add('w', tf.tensor1d([1, 2]));
    q.add('running_mean', tf.tensor1d([5]), { buffer: true });
    const k = q.clone({ frozen: true });
    k.get('w').assign(tf.tensor1d([0, 0]));
    k.get('running_mean').assign(tf.tensor1d([0]));
    momentumUpdate(k, q, 0.9);
    const w = k.get('w').dataSync();
    expect(w[0]).toBeCloseTo(0.1, 6);
    expect(w[1]).toBeCloseTo(0.2, 6);
    expect(k.get('running_mean').dataSync()[0]).toBe(0);
    expect(k.get('w').trainable).toBe(false);
  });
});

function tinyEncoder(rng: Rng) {
  const backbone: Module<tf.Tensor4D, tf.Tensor2D> = new Sequential([
    new Conv2d('conv1', { inChannels: 1, outChannels: 8, kernelSize: 3, stride: 2 }),
    new BatchNorm('bn1', { channels: 8 }),
    {
      init: () => {},
      apply: (_p: Params, x: tf.Tensor) => globalAvgPool(tf.relu(x) as tf.Tensor4D),
    },
    new ProjectionHead({ inDim: 8, hiddenDim: 16, outDim: 4 }),
  ]);
  return bindEncoder(backbone, 4, rng);
}

describe('MoCo', () => {
  it('descends InfoNCE, moves the key encoder by EMA, enqueues keys, leaks nothing', () => {
    const rng = new Rng(0);
    const moco = new MoCo(tinyEncoder(rng), rng, {
      dim: 4,
      queueSize: 64,
      momentum: 0.9,
      bnGroupSize: 4,
    });
    const data = tf.tensor4d(new Rng(1).normalArray(8 * 8 * 8), [8, 8, 8, 1]);
    const v1 = tf.add(data, tf.randomNormal(data.shape, 0, 0.05, 'float32', 3)) as tf.Tensor4D;
    const v2 = tf.add(data, tf.randomNormal(data.shape, 0, 0.05, 'float32', 4)) as tf.Tensor4D;
    const ctx = { training: true, bnGroupSize: 4 };
    // The loss of this step's batch against this step's keys and queue, before and after it.
    const queue0 = moco.queue.keys.clone() as tf.Tensor2D;
    const lossWith = (k: tf.Tensor2D) =>
      tf.tidy(() => infoNce(moco.embed(v1, ctx), k, queue0, 0.2).dataSync()[0]!);
    const wq0 = moco.query.params.get('conv1.weight').clone();
    const first = moco.step(v1, v2, 0.05);
    // The step's keys are now the queue's first 8 columns.
    const k = tf.transpose(tf.slice(moco.queue.keys, [0, 0], [4, 8])) as tf.Tensor2D;
    expect(first.parts.infonce).toBeCloseTo(first.loss, 5);
    expect(lossWith(k)).toBeLessThan(first.loss);
    expect(moco.queue.ptr).toBe(8);
    // EMA at m = 0.9 after one step: key = 0.9 * key0 + 0.1 * query0 = query0 (they start equal).
    const wk = moco.key.params.get('conv1.weight');
    expect(tf.max(tf.abs(tf.sub(wk, wq0))).dataSync()[0]).toBeLessThan(1e-6);

    const before = tf.memory().numTensors;
    for (let i = 0; i < 20; i++) moco.step(v1, v2, 0.05);
    expect(tf.memory().numTensors).toBe(before);
    expect(moco.queue.ptr).toBe((8 * 21) % 64);
    expect(() => moco.step(v1.slice(0, 3), v2.slice(0, 3), 0.1)).toThrow(
      /not divisible by the batch size 3/,
    );
  });

  it('stops on a non-finite loss without updating', () => {
    const rng = new Rng(0);
    const moco = new MoCo(tinyEncoder(rng), rng, { dim: 4, queueSize: 16 });
    const bad = tf.fill([4, 8, 8, 1], NaN) as tf.Tensor4D;
    const w0 = moco.query.params.get('conv1.weight').dataSync().slice();
    expect(() => moco.step(bad, bad, 0.1)).toThrow(NonFiniteLossError);
    expect([...moco.query.params.get('conv1.weight').dataSync()]).toEqual([...w0]);
  });
});
