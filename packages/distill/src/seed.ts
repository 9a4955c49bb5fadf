/**
 * SEED: Self-supervised Distillation for Visual Representation (Fang, Wang, Wang, Zhang,
 * Yang, Liu; ICLR 2021, arXiv 2101.04731). The student learns the teacher's similarity
 * distribution: for each image, the teacher embedding t_i and the student embedding s_i of
 * the same view are compared with the anchors [t_i ; queue], where the queue holds the K
 * last *teacher* embeddings (no student keys). With
 *
 *   p_ij = softmax_j(t_i . a_j / tau_T),   q_ij = softmax_j(s_i . a_j / tau_S),
 *
 * the loss is the soft cross-entropy mean_i sum_j -p_ij log q_ij. After the step the batch's
 * teacher embeddings are enqueued (FIFO, as MoCo's queue).
 *
 * Defaults (`SEED_DEFAULTS`): K = 65536 (the paper), tau_S = 0.2 and tau_T = 1e-4 (the
 * official code's defaults; at 1e-4 the teacher's distribution is almost one-hot on t_i).
 * All embeddings are the L2-normalised 128-d projection outputs, as in SEED and DisCo.
 *
 * SEED has no momentum encoder. Ours runs inside `MoCo.step` with `contrastiveWeight: 0`,
 * so MoCo's key path (momentum update, key forward, InfoNCE, its own queue) still runs: a
 * compute cost, not a change of the numbers, since the InfoNCE term enters with weight 0.
 * SEED's code runs the teacher with eval-mode BatchNorm: build the `Teacher` with `'eval'`
 * for fidelity.
 */
import { type Rng, tf } from '@disco/core';
import type { ExtraLoss } from '@disco/moco';
import {
  checkQueueFits,
  checkQueueSize,
  checkTemperature,
  EmbeddingQueue,
  type Objective,
  type ObjectiveStep,
  rowsOf,
  stepGuard,
} from './objectives.js';
import type { Teacher } from './teacher.js';

/**
 * Settings of a `Seed` objective; unset fields take `SEED_DEFAULTS`. The constructor throws
 * for a queue size that is not a positive integer or a temperature that is not a finite
 * number > 0.
 */
export interface SeedConfig {
  /** Queue length K, a multiple of the batch size. Default 65536 (the paper). */
  queueSize?: number;
  /** Student temperature tau_S. Default 0.2 (the official code). */
  studentTemperature?: number;
  /** Teacher temperature tau_T. Default 1e-4 (the official code's `--distill-t`). */
  teacherTemperature?: number;
}

/** SEED's published defaults. */
export const SEED_DEFAULTS: Required<SeedConfig> = {
  queueSize: 65536,
  studentTemperature: 0.2,
  teacherTemperature: 1e-4,
};

/**
 * The SEED loss (scalar): soft cross-entropy between the teacher's and the student's
 * similarity distributions over the anchors [t_i ; queue], averaged over the batch.
 * @param student `[N, dim]` student embeddings s_i (L2-normalised; gradients flow here).
 * @param teacher `[N, dim]` teacher embeddings t_i of the same images (L2-normalised).
 * @param queue `[dim, K]` queued teacher embeddings, one per column.
 */
export function seedLoss(
  student: tf.Tensor2D,
  teacher: tf.Tensor2D,
  queue: tf.Tensor2D,
  studentTemperature: number = SEED_DEFAULTS.studentTemperature,
  teacherTemperature: number = SEED_DEFAULTS.teacherTemperature,
): tf.Scalar {
  checkTemperature('seedLoss', 'studentTemperature', studentTemperature);
  checkTemperature('seedLoss', 'teacherTemperature', teacherTemperature);
  const [n, dim] = student.shape;
  if (teacher.shape[0] !== n || teacher.shape[1] !== dim || queue.shape[0] !== dim) {
    throw new Error(
      `seedLoss: the student's embedding width ${dim} (MoCo's dim) must match the teacher's ` +
        `and the queue's: student [${student.shape}], teacher [${teacher.shape}], ` +
        `queue [${queue.shape}]`,
    );
  }
  return tf.tidy(() => {
    // Logits against the anchors [t_i ; queue]: [N, 1 + K].
    const logits = (x: tf.Tensor2D, temperature: number) =>
      tf.div(tf.concat([tf.sum(tf.mul(x, teacher), 1, true), tf.matMul(x, queue)], 1), temperature);
    const p = tf.softmax(logits(teacher, teacherTemperature));
    const logQ = tf.logSoftmax(logits(student, studentTemperature));
    return tf.neg(tf.mean(tf.sum(tf.mul(p, logQ), 1))) as tf.Scalar;
  });
}

/**
 * SEED as an objective for `MoCo.step` (see the module comment): a frozen teacher and a
 * queue of its embeddings. The loss term is named `seed`; it is a micro-batch mean, and
 * MoCo weights micro-batches by their share of the batch, so micro-batched steps give the
 * whole batch's loss and gradient. State: `seed.queue` (`[dim, K]`) and `seed.queue_ptr`.
 */
export class Seed implements Objective {
  /** The resolved configuration. */
  readonly cfg: Required<SeedConfig>;
  /** The queue of teacher embeddings, `[dim, K]`. */
  readonly queue: EmbeddingQueue;
  /** SEED alone trains the student: MoCo's InfoNCE is off. */
  readonly contrastiveWeight = 0;

  /**
   * @param teacher the frozen teacher; its output width is the queue's dim.
   * @param rng the stream for the queue's initial contents (random unit columns, as SEED).
   */
  constructor(
    readonly teacher: Teacher,
    rng: Rng,
    cfg: SeedConfig = {},
  ) {
    this.cfg = { ...SEED_DEFAULTS, ...cfg };
    checkQueueSize('Seed', this.cfg.queueSize);
    checkTemperature('Seed', 'studentTemperature', this.cfg.studentTemperature);
    checkTemperature('Seed', 'teacherTemperature', this.cfg.teacherTemperature);
    this.queue = new EmbeddingQueue(
      'Seed',
      'seed.queue',
      teacher.encoder.outDim,
      this.cfg.queueSize,
      rng.fork('seed-queue'),
    );
  }

  /** The teacher's embeddings of `view1` (SEED uses one view; `view2` is not read). */
  prepare(view1: tf.Tensor4D, _view2?: tf.Tensor4D): ObjectiveStep {
    const n = view1.shape[0];
    checkQueueFits('Seed', this.cfg.queueSize, n);
    const t = this.teacher.embed(view1);
    const unchanged = stepGuard('Seed', 'queue', t, this.queue);
    const { studentTemperature, teacherTemperature } = this.cfg;

    const extraLoss: ExtraLoss = ({ q, rows }) => {
      unchanged('loss');
      const target = rowsOf(t, rows);
      return {
        seed: seedLoss(q, target, this.queue.embeddings, studentTemperature, teacherTemperature),
      };
    };
    return {
      extraLoss,
      enqueue: () => {
        unchanged('enqueue()');
        this.queue.enqueue(t);
      },
      dispose: () => t.dispose(),
    };
  }

  /** `seed.queue` and `seed.queue_ptr` (borrowed, not copied). */
  state(): Map<string, tf.Tensor> {
    return this.queue.state();
  }

  /** Restores the queue from a map holding `seed.queue` and `seed.queue_ptr`. */
  load(tensors: Map<string, tf.Tensor>, source = '<checkpoint>'): void {
    this.queue.load(tensors, source);
  }

  /** Frees the queue (the teacher belongs to the caller). */
  dispose(): void {
    this.queue.dispose();
  }
}
