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
import { COMPRESS_DEFAULTS, CompRess, compressLoss, Teacher } from '@disco/distill';

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

/** KL(p_teacher || p_student) over the banks and its gradient in the student, in float64. */
function compressReference(
  s: number[][],
  t: number[][],
  studentBank: number[][],
  teacherBank: number[][],
  tauS: number,
  tauT: number,
) {
  const n = s.length;
  let loss = 0;
  const grad = s.map((si, i) => {
    const logP = logSoftmax(columns(teacherBank).map((a) => dot(t[i]!, a) / tauT));
    const logQ = logSoftmax(columns(studentBank).map((a) => dot(si, a) / tauS));
    loss += logP.reduce((acc, lp, j) => acc + Math.exp(lp) * (lp - logQ[j]!), 0) / n;
    // d/ds_i = (1 / tau_S) sum_j (q_j - p_j) b_j, over n for the batch mean.
    return si.map(
      (_, d) =>
        columns(studentBank).reduce(
          (acc, b, j) => acc + (Math.exp(logQ[j]!) - Math.exp(logP[j]!)) * b[d]!,
          0,
        ) /
        (tauS * n),
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

describe('compressLoss', () => {
  // t = (1, 0), s = (0, 1); the teacher's bank holds (1, 0) and (0, 1).
  const t = tf.tensor2d([[1, 0]]);
  const s = tf.tensor2d([[0, 1]]);
  const bank = tf.tensor2d([
    [1, 0],
    [0, 1],
  ]);

  it('matches hand-computed values (1q: both against the teacher bank)', () => {
    // Teacher logits (1, 0) / tau, student logits (0, 1) / tau: q is p reversed, so
    // KL = (p0 - p1) / tau = tanh(1 / (2 tau)) / tau.
    expect(compressLoss(s, t, bank, bank, 1, 1).dataSync()[0]).toBeCloseTo(Math.tanh(0.5), 6);
    const tau = COMPRESS_DEFAULTS.teacherTemperature;
    expect(tau).toBe(0.04);
    expect(compressLoss(s, t, bank, bank).dataSync()[0]).toBeCloseTo(
      Math.tanh(1 / (2 * tau)) / tau,
      4,
    );
  });

  it('is zero in 2q when the student keeps the teacher relations in its own bank', () => {
    // The student bank holds (0, 1) then (1, 0): s . b = (1, 0) = t . a, though s != t.
    const studentBank = tf.tensor2d([
      [0, 1],
      [1, 0],
    ]);
    const lossOf = (x: tf.Tensor2D) => compressLoss(x, t, studentBank, bank, 1, 1);
    expect(lossOf(s).dataSync()[0]).toBeCloseTo(0, 6);
    expect(
      maxDiff(
        [
          ...tf
            .grad((x: tf.Tensor) => lossOf(x as tf.Tensor2D))(s)
            .dataSync(),
        ],
        [0, 0],
      ),
    ).toBeLessThan(1e-6);
  });

  it('pulls the student towards the teacher relations', () => {
    // 1q, tau 1: the gradient is (q - p) . bank = (q0 - p0, q1 - p1) = tanh(0.5) (-1, 1);
    // a descent step moves s from (0, 1) towards t = (1, 0).
    const lossOf = (x: tf.Tensor) => compressLoss(x as tf.Tensor2D, t, bank, bank, 1, 1);
    const g = tf.grad(lossOf)(s).dataSync();
    expect(g[0]).toBeCloseTo(-Math.tanh(0.5), 5);
    expect(g[1]).toBeCloseTo(Math.tanh(0.5), 5);
  });

  it('matches a float64 reference on 3 samples and a bank of 3 (1q dim 4; 2q dims 3 and 4)', () => {
    const rng = new Rng(21);
    const t4 = unitRows(rng, 3, 4);
    const teacherBank = columns(unitRows(rng, 3, 4)); // [4, K 3]
    const cases = [
      { s: unitRows(rng, 3, 4), studentBank: teacherBank, tau: [0.5, 0.3] },
      { s: unitRows(rng, 3, 3), studentBank: columns(unitRows(rng, 3, 3)), tau: [0.04, 0.04] },
    ];
    for (const { s: sv, studentBank, tau } of cases) {
      const [tauS, tauT] = tau as [number, number];
      const ref = compressReference(sv, t4, studentBank, teacherBank, tauS, tauT);
      const [tt, sb, tb] = [tf.tensor2d(t4), tf.tensor2d(studentBank), tf.tensor2d(teacherBank)];
      const lossOf = (x: tf.Tensor2D) => compressLoss(x, tt, sb, tb, tauS, tauT);
      const got = lossOf(tf.tensor2d(sv)).dataSync()[0]!;
      expect(Math.abs(got - ref.loss) / (1 + ref.loss)).toBeLessThan(1e-5);
      const grad = tf.grad((x: tf.Tensor) => lossOf(x as tf.Tensor2D))(tf.tensor2d(sv));
      expect(maxDiff([...grad.dataSync()], ref.grad.flat())).toBeLessThan(1e-4);
    }
  });

  it('rejects bad temperatures and shapes by name', () => {
    expect(() => compressLoss(s, t, bank, bank, 0, 1)).toThrow(
      /compressLoss: studentTemperature must be a finite number > 0, got 0/,
    );
    expect(() => compressLoss(s, t, bank, bank, 1, NaN)).toThrow(/teacherTemperature .* NaN/);
    expect(() => compressLoss(tf.tensor2d([[1, 0, 0]]), t, bank, bank)).toThrow(
      /student \[1,3\] against its bank \[2,2\]/,
    );
  });
});

describe('CompRess objective in MoCo.step', () => {
  const views = (rng: Rng, n: number) =>
    [
      tf.tensor4d(rng.normalArray(n * 64), [n, 8, 8, 1]),
      tf.tensor4d(rng.normalArray(n * 64), [n, 8, 8, 1]),
    ] as [tf.Tensor4D, tf.Tensor4D];
  const ctx = { training: true, bnGroupSize: 4 };

  for (const variant of ['1q', '2q'] as const) {
    it(`${variant}: trains on the loss it reports; the teacher bank fills FIFO`, () => {
      const rng = new Rng(0);
      const teacher = new Teacher(encoder(new Rng(9), 16), 'eval');
      const moco = new MoCo(encoder(rng, 8), rng, { dim: 8, queueSize: 8, bnGroupSize: 4 });
      const compress = new CompRess(
        teacher,
        new Rng(3),
        { variant, queueSize: 8, studentTemperature: 0.1, teacherTemperature: 0.1 },
        moco.queue,
      );
      expect(compress.studentBank).toBe(variant === '2q' ? moco.queue : undefined);
      const data = new Rng(1);
      const written: number[][][] = [];
      for (let i = 0; i < 3; i++) {
        const [v1, v2] = views(data, 4);
        // The reported term is the loss of the student before the update, in float64.
        const s = moco.embed(v1, ctx);
        const t = teacher.embed(v1);
        const teacherBank = compress.teacherBank.embeddings.arraySync();
        const studentBank =
          variant === '2q' ? (moco.queue.keys as tf.Tensor2D).arraySync() : teacherBank;
        const args = [s.arraySync(), t.arraySync(), studentBank, teacherBank] as const;
        const ref = compressReference(...args, 0.1, 0.1).loss;
        // 2q fills the teacher bank with view 2, the images MoCo's keys encode.
        const queued = variant === '2q' ? teacher.embed(v2) : t.clone();
        written.push(queued.arraySync());
        tf.dispose([s, t, queued]);

        const step = compress.prepare(v1, v2);
        const m = moco.step(v1, v2, 0.05, { extraLoss: step.extraLoss, contrastiveWeight: 0 });
        step.enqueue();
        step.dispose();
        tf.dispose([v1, v2]);
        expect(Object.keys(m.parts).sort()).toEqual(['compress', 'infonce']);
        expect(m.parts.compress).toBeCloseTo(ref, 4);
        expect(m.loss).toBeCloseTo(m.parts.compress!, 5);
        expect(compress.teacherBank.ptr).toBe(moco.queue.ptr);
      }
      // K = 8, batch 4: steps 1 and 3 wrote columns 0-3, step 2 columns 4-7; ptr 4.
      const cols = columns(compress.teacherBank.embeddings.arraySync());
      expect(maxDiff(cols.flat(), [...written[2]!, ...written[1]!].flat())).toBeLessThan(1e-6);
      expect(compress.teacherBank.ptr).toBe(4);
      moco.dispose();
      compress.dispose();
      teacher.dispose();
    });
  }

  it('micro-batch terms, weighted by their share, sum to the whole-batch loss', () => {
    const teacher = new Teacher(encoder(new Rng(9), 16), 'eval');
    const compress = new CompRess(teacher, new Rng(3), { variant: '1q', queueSize: 12 });
    const [v1, v2] = views(new Rng(2), 6);
    const q = tf.tensor2d(unitRows(new Rng(5), 6, 8));
    const step = compress.prepare(v1, v2);
    const call = (start: number, end: number) => {
      const qc = tf.slice(q, [start, 0], [end - start, -1]) as tf.Tensor2D;
      const args = { embed: () => qc, q: qc, view1: v1, view2: v2, rows: { start, end } };
      return ((end - start) / 6) * step.extraLoss(args).compress!.dataSync()[0]!;
    };
    const whole = call(0, 6);
    expect(whole).toBeGreaterThan(0.1);
    expect(call(0, 2) + call(2, 4) + call(4, 6)).toBeCloseTo(whole, 4);
    step.dispose();
    compress.dispose();
    teacher.dispose();
  });

  it('2q: micro-batched steps equal whole-batch steps (loss, weights, banks)', () => {
    const run = (microBatch?: number) => {
      const moco = new MoCo(encoder(new Rng(4), 6), new Rng(5), {
        dim: 8,
        queueSize: 32,
        bnGroupSize: 4,
      });
      const teacher = new Teacher(encoder(new Rng(6), 12), 'eval');
      const compress = new CompRess(teacher, new Rng(7), {}, moco.queue);
      const data = new Rng(8);
      const out: number[][] = [];
      for (let i = 0; i < 2; i++) {
        const [v1, v2] = views(data, 16);
        const step = compress.prepare(v1, v2);
        const m = moco.step(v1, v2, 0.05, {
          extraLoss: step.extraLoss,
          contrastiveWeight: 0,
          microBatch,
        });
        step.enqueue();
        step.dispose();
        out.push([m.loss, m.parts.compress!]);
        tf.dispose([v1, v2]);
      }
      out.push([...moco.query.params.get('conv1.weight').dataSync()]);
      out.push([...compress.teacherBank.embeddings.dataSync()]);
      moco.dispose();
      compress.dispose();
      teacher.dispose();
      return out.flat();
    };
    const whole = run();
    const got = run(4);
    const worst = whole.reduce(
      (m, v, i) => Math.max(m, Math.abs(v - got[i]!) / (1 + Math.abs(v))),
      0,
    );
    expect(worst).toBeLessThan(1e-5);
  });

  it('holds no tensors over repeated steps (2q)', () => {
    const rng = new Rng(0);
    const teacher = new Teacher(encoder(new Rng(9), 8), 'eval');
    const moco = new MoCo(encoder(rng, 8), rng, { dim: 8, queueSize: 8, bnGroupSize: 4 });
    const compress = new CompRess(teacher, new Rng(3), { variant: '2q' }, moco.queue);
    const [v1, v2] = views(new Rng(1), 4);
    const once = () => {
      const step = compress.prepare(v1, v2);
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
    compress.dispose();
    teacher.dispose();
  });

  it('2q keeps the two banks in lockstep', () => {
    const rng = new Rng(0);
    const teacher = new Teacher(encoder(new Rng(9), 8), 'eval');
    const moco = new MoCo(encoder(rng, 8), rng, { dim: 8, queueSize: 8, bnGroupSize: 4 });
    const compress = new CompRess(teacher, new Rng(3), {}, moco.queue);
    const [v1, v2] = views(new Rng(1), 4);
    // enqueue() without the MoCo step: MoCo's queue did not move.
    const early = compress.prepare(v1, v2);
    expect(() => early.enqueue()).toThrow(
      /CompRess: enqueue\(\) expects MoCo's queue at 4 after the step, found 0/,
    );
    early.dispose();
    // A teacher bank restored at another position than MoCo's queue.
    const state = new Map<string, tf.Tensor>([
      ['compress.teacher_bank', compress.teacherBank.embeddings.clone()],
      ['compress.teacher_bank_ptr', tf.tensor1d([4], 'int32')],
    ]);
    compress.load(state);
    expect(() => compress.prepare(v1, v2)).toThrow(
      /teacher bank's pointer 4 and the student bank's 0 differ/,
    );
    moco.dispose();
    compress.dispose();
    teacher.dispose();
  });
});

describe('CompRess state and settings', () => {
  it('round-trips the teacher bank and its pointer through state() and load()', () => {
    const teacher = new Teacher(encoder(new Rng(9), 8), 'eval');
    const a = new CompRess(teacher, new Rng(3), { variant: '1q', queueSize: 8 });
    const x = tf.tensor4d(new Rng(1).normalArray(4 * 64), [4, 8, 8, 1]);
    const step = a.prepare(x, x);
    step.enqueue();
    step.dispose();
    const saved = new Map([...a.state()].map(([k, t]) => [k, t.clone()]));
    expect([...saved.keys()].sort()).toEqual([
      'compress.teacher_bank',
      'compress.teacher_bank_ptr',
    ]);
    const b = new CompRess(teacher, new Rng(42), { variant: '1q', queueSize: 8 });
    b.load(saved, 'ckpt.safetensors');
    expect(b.teacherBank.ptr).toBe(4);
    expect([...b.teacherBank.embeddings.dataSync()]).toEqual([
      ...a.teacherBank.embeddings.dataSync(),
    ]);
    saved.delete('compress.teacher_bank_ptr');
    expect(() => b.load(saved, 'ckpt.safetensors')).toThrow(
      /CompRess.load ckpt.safetensors: no tensor 'compress.teacher_bank_ptr'/,
    );
    a.dispose();
    b.dispose();
    teacher.dispose();
  });

  it('rejects bad settings by name and value', () => {
    const teacher = new Teacher(encoder(new Rng(9), 8), 'eval');
    const rng = new Rng(0);
    const moco = new MoCo(encoder(rng, 8, 6), rng, { dim: 6, queueSize: 16, bnGroupSize: 4 });
    const make =
      (cfg: object, bank = moco.queue) =>
      () =>
        new CompRess(teacher, new Rng(0), cfg, bank).dispose();
    expect(make({ variant: '3q' })).toThrow(/CompRess: variant must be '1q' or '2q', got '3q'/);
    expect(() => new CompRess(teacher, new Rng(0))).toThrow(
      /variant '2q' needs the student bank of momentum keys \(pass moco.queue\)/,
    );
    expect(make({ queueSize: 32 })).toThrow(
      /CompRess: queueSize 32 differs from the student bank's 16 \(MoCo's queueSize\)/,
    );
    expect(make({ variant: '1q', queueSize: 0 })).toThrow(
      /CompRess: queueSize must be a positive integer, got 0/,
    );
    expect(make({ teacherTemperature: 0 })).toThrow(
      /CompRess: teacherTemperature must be a finite number > 0, got 0/,
    );
    expect(make({ variant: '1q', studentTemperature: -1 })).toThrow(
      /CompRess: studentTemperature .* got -1/,
    );
    const x = tf.zeros([4, 8, 8, 1]) as tf.Tensor4D;
    const odd = new CompRess(teacher, new Rng(0), { variant: '1q', queueSize: 10 });
    expect(() => odd.prepare(x, x)).toThrow(
      /CompRess: queueSize 10 is not a multiple of the batch size 4/,
    );
    odd.dispose();

    // 1q compares a student of width 6 with the teacher's bank of width 8.
    const oneQ = new CompRess(teacher, new Rng(0), { variant: '1q', queueSize: 8 });
    const step = oneQ.prepare(x, x);
    expect(() =>
      moco.step(x, x, 0.05, { extraLoss: step.extraLoss, contrastiveWeight: 0 }),
    ).toThrow(/student \[4,6\] against its bank \[8,8\]/);
    step.dispose();
    oneQ.dispose();
    moco.dispose();
    teacher.dispose();
  });
});
