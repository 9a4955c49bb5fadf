/**
 * DisCo: Distilled Contrastive learning (Gao et al., ECCV 2022, arXiv 2104.09124). The
 * student trains with MoCo v2 and, at the same time, a consistency loss pulls its final
 * L2-normalised embedding onto the frozen teacher's embedding of the same view, on both
 * views: A = ||t(v1) - s(v1)||^2 and B = ||t(v2) - s(v2)||^2 per sample.
 *
 * Scale: the official code sums the squared error over each GPU's 32 samples
 * (`MSELoss(reduction='sum')`) and DDP averages over GPUs, which equals `32 * mean_i` of
 * the per-sample squared distance next to the batch-mean InfoNCE. `weight` is that factor,
 * on the per-sample mean, and defaults to 32.
 */
import { tf } from '@disco/core';
import type { ExtraLoss } from '@disco/moco';
import type { Teacher } from './teacher.js';

/** The settings of the DisCo consistency term. */
export interface DisCoConfig {
  /** Weight on the per-sample mean squared distance of each view. Default 32. */
  weight?: number;
  /** Consistency on both views (the paper) or on view 1 only. Default 'both'. */
  views?: 'both' | 'first';
}

/** DisCo's defaults: weight 32 (8 GPUs x 32 images, summed per GPU), both views. */
export const DISCO_DEFAULTS: Required<DisCoConfig> = { weight: 32, views: 'both' };

/**
 * Per-sample squared distance `sum_d (t - s)^2`, averaged over the batch, of two `[N, dim]`
 * embeddings. For unit vectors it equals `2 - 2 cos(t, s)`.
 */
export function consistencyLoss(student: tf.Tensor2D, target: tf.Tensor2D): tf.Scalar {
  if (!tf.util.arraysEqual(student.shape, target.shape)) {
    throw new Error(
      `consistencyLoss: student [${student.shape}] and target [${target.shape}] differ in shape`,
    );
  }
  return tf.tidy(() => tf.mean(tf.sum(tf.squaredDifference(student, target), 1)) as tf.Scalar);
}

/**
 * The DisCo term for one MoCo step on `view1` and `view2`: computes the teacher's targets
 * (no gradients) and returns the `ExtraLoss` that adds the weighted consistency terms
 * `mse_v1` and `mse_v2`. The caller disposes the returned targets with `dispose()`.
 */
export function discoExtraLoss(
  teacher: Teacher,
  view1: tf.Tensor4D,
  view2: tf.Tensor4D,
  cfg: DisCoConfig = {},
): {
  /** The loss to pass as `extraLoss` to `MoCo.step` for this batch. */
  extraLoss: ExtraLoss;
  /** Frees the teacher's targets, once the step is done. */
  dispose: () => void;
} {
  const { weight, views } = { ...DISCO_DEFAULTS, ...cfg };
  if (!(weight >= 0) || !Number.isFinite(weight)) {
    throw new Error(`discoExtraLoss: weight must be a finite number >= 0, got ${weight}`);
  }
  if (views !== 'both' && views !== 'first') {
    throw new Error(`discoExtraLoss: views must be 'both' or 'first', got '${views}'`);
  }
  const t1 = teacher.embed(view1);
  const t2 = views === 'both' ? teacher.embed(view2) : null;
  const n = view1.shape[0];
  // A micro-batch's targets are its rows of the whole batch's (teacher BN groups are whole
  // groups of the batch either way).
  const rowsOf = (t: tf.Tensor2D, start: number, end: number) =>
    start === 0 && end === n ? t : (tf.slice(t, [start, 0], [end - start, -1]) as tf.Tensor2D);
  const extraLoss: ExtraLoss = ({ embed, q, view2: v2, rows }) => {
    const terms: Record<string, tf.Scalar> = {
      mse_v1: tf.mul(consistencyLoss(q, rowsOf(t1, rows.start, rows.end)), weight) as tf.Scalar,
    };
    if (t2) {
      const target = rowsOf(t2, rows.start, rows.end);
      terms.mse_v2 = tf.mul(consistencyLoss(embed(v2), target), weight) as tf.Scalar;
    }
    return terms;
  };
  return {
    extraLoss,
    dispose: () => {
      t1.dispose();
      t2?.dispose();
    },
  };
}
