import { describe, expect, it } from 'vitest';
import {
  BatchNorm,
  bindEncoder,
  Conv2d,
  globalAvgPool,
  type Module,
  type Params,
  Rng,
  Sequential,
  tf,
} from '@disco/core';
import { ProjectionHead } from '@disco/heads';
import { MoCo } from '@disco/moco';
import { Seed, SEED_DEFAULTS, seedLoss, Teacher } from '@disco/distill';

function encoder(rng: Rng, width: number, outDim = 8) {
  const net: Module<tf.Tensor4D, tf.Tensor2D> = new Sequential([
    new Conv2d('conv1', { inChannels: 1, outChannels: width, kernelSize: 3, stride: 2 }),
    new BatchNorm('bn1', { channels: width }),
    {
      init: () => {},
      apply: (_p: Params, x: tf.Tensor) => globalAvgPool(tf.relu(x) as tf.Tensor4D),
    },
    new ProjectionHead({ inDim: width, hiddenDim: 32, outDim }),
  ]);
  return bindEncoder(net, outDim, rng);
}

// Plain float64 arithmetic, independent of the tf code under test.
const dot = (a: number[], b: number[]) => a.reduce((s, v, i) => s + v * b[i]!, 0);
const columns = (m: number[][]) => m[0]!.map((_, j) => m.map((row) => row[j]!));
function logSoftmax(x: number[]): number[] {
  const max = Math.max(...x);
  const lse = max + Math.log(x.reduce((s, v) => s + Math.exp(v - max), 0));
  return x.map((v) => v - lse);
}

/** SEED's loss and its gradient with respect to the student embeddings, in float64. */
function seedReference(
  s: number[][],
  t: number[][],
  queue: number[][],
  tauS: number,
  tauT: number,
) {
  const n = s.length;
  let loss = 0;
  const grad = s.map((si, i) => {
    const anchors = [t[i]!, ...columns(queue)];
    const p = logSoftmax(anchors.map((a) => dot(t[i]!, a) / tauT)).map(Math.exp);
    const logQ = logSoftmax(anchors.map((a) => dot(si, a) / tauS));
    loss -= p.reduce((acc, pj, j) => acc + pj * logQ[j]!, 0) / n;
    // d/ds_i of -sum_j p_j log q_j = (1 / tau_S) sum_j (q_j - p_j) a_j, over n for the mean.
    return si.map(
      (_, d) =>
        anchors.reduce((acc, a, j) => acc + (Math.exp(logQ[j]!) - p[j]!) * a[d]!, 0) / (tauS * n),
    );
  });
  return { loss, grad };
}

function unitRows(rng: Rng, n: number, dim: number): number[][] {
  return Array.from({ length: n }, () => {
    const v = Array.from(rng.normalArray(dim));
    const norm = Math.sqrt(dot(v, v));
    return v.map((x) => x / norm);
  });
}

const maxDiff = (a: number[], b: number[]) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe('seedLoss', () => {
  it('matches hand-computed values on one sample', () => {
    // t = (1, 0), s = (0, 1), queue = one column (0, 1). Anchors [t, queue]:
    // teacher logits (1, 0) / tau_T, student logits (0, 1) / tau_S.
    const s = tf.tensor2d([[0, 1]]);
    const t = tf.tensor2d([[1, 0]]);
    const queue = tf.tensor2d([[0], [1]]);
    // tau = 1: p = (e, 1) / (1 + e), log q = (-log(1 + e), 1 - log(1 + e)), so the loss is
    // log(1 + e) - 1 / (1 + e) = 1.3132617 - 0.2689414.
    const e = Math.E;
    expect(seedLoss(s, t, queue, 1, 1).dataSync()[0]).toBeCloseTo(Math.log(1 + e) - 1 / (1 + e), 6);
    // Defaults (tau_S 0.2, tau_T 1e-4): p is one-hot on t, so the loss is the cross-entropy
    // of the student logits (0, 5) with class 0: log(1 + e^5) = 5.0067153.
    expect(seedLoss(s, t, queue).dataSync()[0]).toBeCloseTo(Math.log(1 + Math.exp(5)), 5);
  });

  it('matches a float64 reference on 3 samples, dim 4, a queue of 3', () => {
    const rng = new Rng(11);
    const s = unitRows(rng, 3, 4);
    const t = unitRows(rng, 3, 4);
    const queue = columns(unitRows(rng, 3, 4)); // [dim 4, K 3]
    for (const [tauS, tauT] of [
      [0.2, 0.5],
      [SEED_DEFAULTS.studentTemperature, SEED_DEFAULTS.teacherTemperature],
    ] as const) {
      const ref = seedReference(s, t, queue, tauS, tauT);
      const [tt, qq] = [tf.tensor2d(t), tf.tensor2d(queue)];
      const lossOf = (x: tf.Tensor2D) => seedLoss(x, tt, qq, tauS, tauT);
      expect(lossOf(tf.tensor2d(s)).dataSync()[0]).toBeCloseTo(ref.loss, 5);
      const grad = tf.grad((x: tf.Tensor) => lossOf(x as tf.Tensor2D))(tf.tensor2d(s));
      expect(maxDiff([...grad.dataSync()], ref.grad.flat())).toBeLessThan(1e-5);
    }
  });

  it('pulls the student towards the teacher', () => {
    // Same case as above, defaults: the gradient is (1 / 0.2) (E_q[a] - t) = 5 (-q_1, q_1)
    // with q_1 = e^5 / (1 + e^5); a descent step moves s from (0, 1) towards t = (1, 0).
    const q1 = Math.exp(5) / (1 + Math.exp(5));
    const t = tf.tensor2d([[1, 0]]);
    const queue = tf.tensor2d([[0], [1]]);
    const g = tf.grad((x: tf.Tensor) => seedLoss(x as tf.Tensor2D, t, queue))(
      tf.tensor2d([[0, 1]]),
    );
    const [g0, g1] = g.dataSync();
    expect(g0).toBeCloseTo(-5 * q1, 4);
    expect(g1).toBeCloseTo(5 * q1, 4);
  });

  it('rejects bad temperatures and widths by name', () => {
    const x = tf.tensor2d([[1, 0]]);
    const q = tf.tensor2d([[1], [0]]);
    expect(() => seedLoss(x, x, q, 0, 1)).toThrow(
      /seedLoss: studentTemperature must be a finite number > 0, got 0/,
    );
    expect(() => seedLoss(x, x, q, 0.2, -1)).toThrow(/teacherTemperature .* got -1/);
    expect(() => seedLoss(tf.tensor2d([[1, 0, 0]]), x, q)).toThrow(
      /student's embedding width 3 \(MoCo's dim\).*student \[1,3\], teacher \[1,2\]/,
    );
  });
});

describe('Seed objective in MoCo.step', () => {
  const views = (rng: Rng, n: number) => [
    tf.tensor4d(rng.normalArray(n * 64), [n, 8, 8, 1]),
    tf.tensor4d(rng.normalArray(n * 64), [n, 8, 8, 1]),
  ];
  const ctx = { training: true, bnGroupSize: 4 };

  it('trains on the loss it reports and queues the teacher embeddings FIFO', () => {
    const rng = new Rng(0);
    const teacher = new Teacher(encoder(new Rng(9), 16), 'eval');
    const moco = new MoCo(encoder(rng, 8), rng, { dim: 8, queueSize: 32, bnGroupSize: 4 });
    const seed = new Seed(teacher, new Rng(3), { queueSize: 8, teacherTemperature: 0.1 });
    const data = new Rng(1);
    const written: number[][][] = [];
    for (let i = 0; i < 3; i++) {
      const [v1, v2] = views(data, 4) as [tf.Tensor4D, tf.Tensor4D];
      // The reported term is the loss of the student before the update, in float64.
      const s = moco.embed(v1, ctx);
      const t = teacher.embed(v1);
      const ref = seedReference(
        s.arraySync(),
        t.arraySync(),
        seed.queue.embeddings.arraySync(),
        0.2,
        0.1,
      ).loss;
      written.push(t.arraySync());
      tf.dispose([s, t]);

      const step = seed.prepare(v1, v2);
      const m = moco.step(v1, v2, 0.05, { extraLoss: step.extraLoss, contrastiveWeight: 0 });
      step.enqueue();
      step.dispose();
      tf.dispose([v1, v2]);
      expect(Object.keys(m.parts).sort()).toEqual(['infonce', 'seed']);
      expect(m.parts.seed).toBeCloseTo(ref, 4);
      expect(m.loss).toBeCloseTo(m.parts.seed!, 5);
    }
    // K = 8, batch 4: steps 1 and 3 wrote columns 0-3, step 2 columns 4-7; ptr 4.
    const cols = columns(seed.queue.embeddings.arraySync());
    const expected = [...written[2]!, ...written[1]!];
    expect(maxDiff(cols.flat(), expected.flat())).toBeLessThan(1e-6);
    expect(seed.queue.ptr).toBe(4);
    expect([...seed.state().get('seed.queue_ptr')!.dataSync()]).toEqual([4]);
    moco.dispose();
    seed.dispose();
    teacher.dispose();
  });

  it('micro-batch terms, weighted by their share, sum to the whole-batch loss', () => {
    const teacher = new Teacher(encoder(new Rng(9), 16), 'eval');
    const seed = new Seed(teacher, new Rng(3), { queueSize: 24, teacherTemperature: 0.1 });
    const [v1, v2] = views(new Rng(2), 6) as [tf.Tensor4D, tf.Tensor4D];
    const q = tf.tensor2d(unitRows(new Rng(5), 6, 8));
    const step = seed.prepare(v1, v2);
    const call = (start: number, end: number) => {
      const rows = { start, end };
      const qc = tf.slice(q, [start, 0], [end - start, -1]) as tf.Tensor2D;
      const embed = () => qc;
      const value = step.extraLoss({ embed, q: qc, view1: v1, view2: v2, rows }).seed!;
      return ((end - start) / 6) * value.dataSync()[0]!;
    };
    const whole = call(0, 6);
    expect(call(0, 2) + call(2, 4) + call(4, 6)).toBeCloseTo(whole, 5);
    expect(call(0, 3) + call(3, 6)).toBeCloseTo(whole, 5);
    step.dispose();
    seed.dispose();
    teacher.dispose();
  });

  it('micro-batched steps equal whole-batch steps (loss, weights, queue)', () => {
    const run = (microBatch?: number) => {
      const moco = new MoCo(encoder(new Rng(4), 6), new Rng(5), {
        dim: 8,
        queueSize: 32,
        bnGroupSize: 4,
      });
      const teacher = new Teacher(encoder(new Rng(6), 12), 'eval');
      const seed = new Seed(teacher, new Rng(7), { queueSize: 32, teacherTemperature: 0.05 });
      const data = new Rng(8);
      const out: number[][] = [];
      for (let i = 0; i < 2; i++) {
        const [v1, v2] = views(data, 16) as [tf.Tensor4D, tf.Tensor4D];
        const step = seed.prepare(v1, v2);
        const m = moco.step(v1, v2, 0.05, {
          extraLoss: step.extraLoss,
          contrastiveWeight: 0,
          microBatch,
        });
        step.enqueue();
        step.dispose();
        out.push([m.loss, m.parts.seed!]);
        tf.dispose([v1, v2]);
      }
      out.push([...moco.query.params.get('conv1.weight').dataSync()]);
      out.push([...seed.queue.embeddings.dataSync()]);
      moco.dispose();
      seed.dispose();
      teacher.dispose();
      return out.flat();
    };
    const whole = run();
    for (const micro of [4, 8]) {
      const got = run(micro);
      const worst = whole.reduce(
        (m, v, i) => Math.max(m, Math.abs(v - got[i]!) / (1 + Math.abs(v))),
        0,
      );
      expect(worst, `microBatch ${micro}`).toBeLessThan(1e-5);
    }
  });

  it('holds no tensors over repeated steps', () => {
    const rng = new Rng(0);
    const teacher = new Teacher(encoder(new Rng(9), 8), 'eval');
    const moco = new MoCo(encoder(rng, 8), rng, { dim: 8, queueSize: 16, bnGroupSize: 4 });
    const seed = new Seed(teacher, new Rng(3), { queueSize: 8 });
    const [v1, v2] = views(new Rng(1), 4) as [tf.Tensor4D, tf.Tensor4D];
    const once = () => {
      const step = seed.prepare(v1, v2);
      try {
        moco.step(v1, v2, 0.05, { extraLoss: step.extraLoss, contrastiveWeight: 0 });
        step.enqueue();
      } finally {
        step.dispose();
      }
    };
    once();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) once();
    expect(tf.memory().numTensors).toBe(before);
    moco.dispose();
    seed.dispose();
    teacher.dispose();
  });

  it('enqueues once, after the step, and not after dispose', () => {
    const teacher = new Teacher(encoder(new Rng(9), 8), 'eval');
    const seed = new Seed(teacher, new Rng(3), { queueSize: 8 });
    const [v1, v2] = views(new Rng(1), 4) as [tf.Tensor4D, tf.Tensor4D];
    const q = tf.tensor2d(unitRows(new Rng(5), 4, 8));
    const args = { embed: () => q, q, view1: v1, view2: v2, rows: { start: 0, end: 4 } };
    const step = seed.prepare(v1, v2);
    step.enqueue();
    expect(() => step.enqueue()).toThrow(/Seed: enqueue\(\) after the queue changed/);
    expect(() => step.extraLoss(args)).toThrow(/Seed: loss after the queue changed/);
    step.dispose();
    const late = seed.prepare(v1, v2);
    late.dispose();
    expect(() => late.enqueue()).toThrow(/after the step's dispose\(\)/);
    seed.dispose();
    teacher.dispose();
  });
});

describe('Seed state and settings', () => {
  it('round-trips its queue and pointer through state() and load()', () => {
    const teacher = new Teacher(encoder(new Rng(9), 8), 'eval');
    const a = new Seed(teacher, new Rng(3), { queueSize: 12 });
    const x = tf.tensor4d(new Rng(1).normalArray(4 * 64), [4, 8, 8, 1]);
    for (let i = 0; i < 2; i++) {
      const step = a.prepare(x, x);
      step.enqueue();
      step.dispose();
    }
    // As a checkpoint would: copies of the tensors, keyed by name, among MoCo's.
    const saved = new Map([...a.state()].map(([k, t]) => [k, t.clone()]));
    expect([...saved.keys()].sort()).toEqual(['seed.queue', 'seed.queue_ptr']);
    expect(saved.get('seed.queue')!.shape).toEqual([8, 12]);
    saved.set('queue.keys', tf.zeros([8, 16]));

    const b = new Seed(teacher, new Rng(99), { queueSize: 12 });
    b.load(saved, 'ckpt.safetensors');
    expect(b.queue.ptr).toBe(8);
    expect([...b.queue.embeddings.dataSync()]).toEqual([...a.queue.embeddings.dataSync()]);
    // Both write the next batch at columns 8-11.
    for (const s of [a, b]) {
      const step = s.prepare(x, x);
      step.enqueue();
      step.dispose();
    }
    expect([...b.queue.embeddings.dataSync()]).toEqual([...a.queue.embeddings.dataSync()]);
    expect(b.queue.ptr).toBe(0);

    const broken = (name: string, t: tf.Tensor) => new Map([...saved, [name, t]]);
    expect(() => b.load(new Map(), 'ckpt.safetensors')).toThrow(
      /Seed.load ckpt.safetensors: no tensor 'seed.queue'/,
    );
    expect(() => b.load(broken('seed.queue', tf.zeros([8, 16])), 'c')).toThrow(
      /tensor 'seed.queue' has shape \[8,16\], expected \[8,12\]/,
    );
    expect(() => b.load(broken('seed.queue_ptr', tf.tensor1d([4])), 'c')).toThrow(
      /tensor 'seed.queue_ptr' is float32, expected int32/,
    );
    expect(() => b.load(broken('seed.queue_ptr', tf.tensor1d([12], 'int32')), 'c')).toThrow(
      /tensor 'seed.queue_ptr' holds 12, outside \[0, 12\)/,
    );
    a.dispose();
    b.dispose();
    teacher.dispose();
  });

  it('rejects bad settings by name and value', () => {
    const teacher = new Teacher(encoder(new Rng(9), 8), 'eval');
    expect(() => new Seed(teacher, new Rng(0), { teacherTemperature: 0 })).toThrow(
      /Seed: teacherTemperature must be a finite number > 0, got 0/,
    );
    expect(() => new Seed(teacher, new Rng(0), { studentTemperature: -0.2 })).toThrow(
      /Seed: studentTemperature .* got -0.2/,
    );
    expect(() => new Seed(teacher, new Rng(0), { queueSize: 2.5 })).toThrow(
      /Seed: queueSize must be a positive integer, got 2.5/,
    );
    const seed = new Seed(teacher, new Rng(0), { queueSize: 10 });
    const x = tf.zeros([4, 8, 8, 1]) as tf.Tensor4D;
    expect(() => seed.prepare(x, x)).toThrow(
      /Seed: queueSize 10 is not a multiple of the batch size 4/,
    );
    seed.dispose();

    // A student of width 6 against a teacher of width 8.
    const rng = new Rng(0);
    const moco = new MoCo(encoder(rng, 8, 6), rng, { dim: 6, queueSize: 16, bnGroupSize: 4 });
    const ok = new Seed(teacher, new Rng(0), { queueSize: 8 });
    const step = ok.prepare(x, x);
    expect(() =>
      moco.step(x, x, 0.05, { extraLoss: step.extraLoss, contrastiveWeight: 0 }),
    ).toThrow(/embedding width 6 \(MoCo's dim\) must match the teacher's/);
    step.dispose();
    ok.dispose();
    moco.dispose();
    teacher.dispose();
  });
});
