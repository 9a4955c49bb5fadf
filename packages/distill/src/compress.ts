/**
 * CompRess: Self-Supervised Learning by Compressing Representations (Abbasi Koohpayegani,
 * Tejankar, Pirsiavash; NeurIPS 2020, arXiv 2010.14713). The student mimics the teacher's
 * neighbourhood of each image: the similarities of the teacher embedding t_i to a memory
 * bank of anchors, and those of the student embedding s_i to the student's anchors, become
 *
 *   p_ij = softmax_j(t_i . a^T_j / tau_T),   q_ij = softmax_j(s_i . a^S_j / tau_S),
 *
 * and the loss is KL(p || q) = mean_i sum_j p_ij (log p_ij - log q_ij). The banks hold
 * earlier batches only; the current batch is written after the step. Two variants:
 * - `'2q'` (the paper's main method, "Ours-2q"): a bank of teacher embeddings for the teacher
 *   and, column by column for the same images, a bank of the student's momentum-encoder
 *   embeddings for the student. The student bank is MoCo's queue itself (`moco.queue`): MoCo
 *   fills it with its key encoder's keys of view 2 (momentum 0.999, as CompRess), so the
 *   teacher bank is filled with the teacher's embeddings of view 2 too, and column j of both
 *   banks is the same augmented image. That costs one more teacher forward pass per step.
 * - `'1q'` ("Ours-1q"): one bank of teacher embeddings (of view 1) for both.
 *
 * Defaults (`COMPRESS_DEFAULTS`): variant '2q', bank size K = 128000 and temperature 0.04 for
 * teacher and student (the paper and its code).
 *
 * Deviations from CompRess's code, on purpose:
 * - It matches backbone features (e.g. 2048-d for the teacher, 512-d for a ResNet-18, no
 *   heads); ours matches the L2-normalised 128-d projection outputs, as SEED and DisCo do,
 *   so every method of the comparison trains the same student with one head dimension.
 * - Its banks start as uniform noise; ours as random unit vectors (MoCo's queue). Both are
 *   replaced after K / batch steps.
 * - It sees one view per image; ours runs inside `MoCo.step` (`contrastiveWeight: 0`), the
 *   loss on view 1. In '1q' MoCo's key path runs for nothing (a compute cost only); in '2q'
 *   it is the momentum encoder that fills the student bank.
 * CompRess's code runs the teacher with eval-mode BatchNorm: build the `Teacher` with
 * `'eval'` for fidelity.
 */
import { type Rng, tf } from '@disco/core';
import type { ExtraLoss, KeyQueue } from '@disco/moco';
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

/** `'2q'`: teacher and student banks; `'1q'`: the teacher's bank for both. */
export type CompRessVariant = '1q' | '2q';

/**
 * Settings of a `CompRess` objective; unset fields take `COMPRESS_DEFAULTS` (`queueSize`, for
 * '2q': the student bank's size). The constructor throws for an unknown variant, '2q' without
 * a student bank, a queue size that is not a positive integer or differs from the student
 * bank's, or a temperature that is not a finite number > 0.
 */
export interface CompRessConfig {
  /** Default '2q'. */
  variant?: CompRessVariant;
  /**
   * Bank size K, a multiple of the batch size. Default 128000 (the paper); for '2q' it is
   * the student bank's (MoCo's `queueSize`) when not given, and must equal it when given.
   */
  queueSize?: number;
  /** Teacher temperature tau_T. Default 0.04. */
  teacherTemperature?: number;
  /** Student temperature tau_S. Default 0.04. */
  studentTemperature?: number;
}

/** CompRess's published defaults. */
export const COMPRESS_DEFAULTS: Required<CompRessConfig> = {
  variant: '2q',
  queueSize: 128000,
  teacherTemperature: 0.04,
  studentTemperature: 0.04,
};

/**
 * The CompRess loss (scalar): KL(p_teacher || p_student) between the similarity
 * distributions over the banks, averaged over the batch (PyTorch's `batchmean`).
 * @param student `[N, dimS]` student embeddings s_i (L2-normalised; gradients flow here).
 * @param teacher `[N, dimT]` teacher embeddings t_i of the same images (L2-normalised).
 * @param studentBank `[dimS, K]` the student's anchors, one per column.
 * @param teacherBank `[dimT, K]` the teacher's anchors; for '1q' the same tensor as
 *   `studentBank`.
 */
export function compressLoss(
  student: tf.Tensor2D,
  teacher: tf.Tensor2D,
  studentBank: tf.Tensor2D,
  teacherBank: tf.Tensor2D,
  studentTemperature: number = COMPRESS_DEFAULTS.studentTemperature,
  teacherTemperature: number = COMPRESS_DEFAULTS.teacherTemperature,
): tf.Scalar {
  checkTemperature('compressLoss', 'studentTemperature', studentTemperature);
  checkTemperature('compressLoss', 'teacherTemperature', teacherTemperature);
  if (
    student.shape[0] !== teacher.shape[0] ||
    student.shape[1] !== studentBank.shape[0] ||
    teacher.shape[1] !== teacherBank.shape[0] ||
    studentBank.shape[1] !== teacherBank.shape[1]
  ) {
    throw new Error(
      `compressLoss: shapes do not match: student [${student.shape}] against its bank ` +
        `[${studentBank.shape}], teacher [${teacher.shape}] against its bank ` +
        `[${teacherBank.shape}] (the student's width is MoCo's dim)`,
    );
  }
  return tf.tidy(() => {
    // Log-probabilities over the K anchors: [N, K] each.
    const logP = tf.logSoftmax(tf.div(tf.matMul(teacher, teacherBank), teacherTemperature));
    const logQ = tf.logSoftmax(tf.div(tf.matMul(student, studentBank), studentTemperature));
    return tf.mean(tf.sum(tf.mul(tf.exp(logP), tf.sub(logP, logQ)), 1)) as tf.Scalar;
  });
}

/**
 * CompRess as an objective for `MoCo.step` (see the module comment). The loss term is named
 * `compress`, a micro-batch mean that MoCo weights by the micro-batch's share of the batch.
 * State: `compress.teacher_bank` (`[dimT, K]`) and `compress.teacher_bank_ptr`; in '2q' the
 * student bank is MoCo's queue, checkpointed with MoCo (`queue.keys` and its pointer), and
 * the two pointers must agree.
 */
export class CompRess implements Objective {
  /** The resolved configuration. */
  readonly cfg: Required<CompRessConfig>;
  /** The teacher's bank of its own embeddings. */
  readonly teacherBank: EmbeddingQueue;
  /** '2q': MoCo's queue of momentum keys; '1q': undefined (the teacher bank serves both). */
  readonly studentBank: KeyQueue | undefined;
  /** CompRess alone trains the student: MoCo's InfoNCE is off. */
  readonly contrastiveWeight = 0;

  /**
   * @param teacher the frozen teacher; its output width is the teacher bank's dim.
   * @param rng the stream for the teacher bank's initial contents.
   * @param studentBank for '2q', MoCo's queue (`moco.queue`); not used by '1q'.
   */
  constructor(
    readonly teacher: Teacher,
    rng: Rng,
    cfg: CompRessConfig = {},
    studentBank?: KeyQueue,
  ) {
    const variant = cfg.variant ?? COMPRESS_DEFAULTS.variant;
    if (variant !== '1q' && variant !== '2q') {
      throw new Error(`CompRess: variant must be '1q' or '2q', got '${variant}'`);
    }
    if (variant === '2q' && !studentBank) {
      throw new Error(
        "CompRess: variant '2q' needs the student bank of momentum keys (pass moco.queue)",
      );
    }
    const queueSize =
      cfg.queueSize ?? (variant === '2q' ? studentBank!.size : COMPRESS_DEFAULTS.queueSize);
    this.cfg = { ...COMPRESS_DEFAULTS, ...cfg, variant, queueSize };
    checkQueueSize('CompRess', queueSize);
    checkTemperature('CompRess', 'teacherTemperature', this.cfg.teacherTemperature);
    checkTemperature('CompRess', 'studentTemperature', this.cfg.studentTemperature);
    if (variant === '2q' && studentBank!.size !== queueSize) {
      throw new Error(
        `CompRess: queueSize ${queueSize} differs from the student bank's ${studentBank!.size} ` +
          "(MoCo's queueSize); '2q' pairs the two banks column by column",
      );
    }
    this.studentBank = variant === '2q' ? studentBank : undefined;
    this.teacherBank = new EmbeddingQueue(
      'CompRess',
      'compress.teacher_bank',
      teacher.encoder.outDim,
      queueSize,
      rng.fork('compress-teacher-bank'),
    );
  }

  /** The teacher's embeddings of `view1` (the loss) and, for '2q', of `view2` (the bank). */
  prepare(view1: tf.Tensor4D, view2: tf.Tensor4D): ObjectiveStep {
    const n = view1.shape[0];
    checkQueueFits('CompRess', this.cfg.queueSize, n);
    const student = this.studentBank;
    const start = this.teacherBank.ptr;
    if (student && student.ptr !== start) {
      throw new Error(
        `CompRess: the teacher bank's pointer ${start} and the student bank's ${student.ptr} ` +
          'differ; call enqueue() after every MoCo.step and restore both from one checkpoint',
      );
    }
    const t1 = this.teacher.embed(view1);
    const tBank = student ? this.teacher.embed(view2) : t1;
    const unchanged = stepGuard('CompRess', 'bank', t1, this.teacherBank);
    const { studentTemperature, teacherTemperature } = this.cfg;

    const extraLoss: ExtraLoss = ({ q, rows }) => {
      unchanged('loss');
      const teacherBank = this.teacherBank.embeddings;
      const studentBank = student ? (student.keys as tf.Tensor2D) : teacherBank;
      const target = rowsOf(t1, rows);
      return {
        compress: compressLoss(
          q,
          target,
          studentBank,
          teacherBank,
          studentTemperature,
          teacherTemperature,
        ),
      };
    };
    return {
      extraLoss,
      enqueue: () => {
        unchanged('enqueue()');
        const expected = (start + n) % this.cfg.queueSize;
        if (student && student.ptr !== expected) {
          throw new Error(
            `CompRess: enqueue() expects MoCo's queue at ${expected} after the step, found ` +
              `${student.ptr}; call it after MoCo.step returned`,
          );
        }
        this.teacherBank.enqueue(tBank);
      },
      dispose: () => {
        t1.dispose();
        if (tBank !== t1) tBank.dispose();
      },
    };
  }

  /** `compress.teacher_bank` and `compress.teacher_bank_ptr` (borrowed, not copied). */
  state(): Map<string, tf.Tensor> {
    return this.teacherBank.state();
  }

  /** Restores the teacher bank; in '2q' restore MoCo's queue from the same checkpoint. */
  load(tensors: Map<string, tf.Tensor>, source = '<checkpoint>'): void {
    this.teacherBank.load(tensors, source);
  }

  /** Frees the teacher bank (not the teacher, nor MoCo's queue). */
  dispose(): void {
    this.teacherBank.dispose();
  }
}
