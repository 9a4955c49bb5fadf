/**
 * InfoNCE as MoCo computes it (one direction, not symmetrised): for each query q_i, the
 * positive logit q_i . k_i and K negative logits q_i . queue_j, all divided by the
 * temperature T, then cross-entropy with the positive as class 0, averaged over the batch.
 * MoCo v2 and DisCo use T = 0.2.
 */
import { tf } from '@disco/core';

/**
 * `log sum_j exp(x_ij)` per row of `x [N, C]`, with the gradient written as `softmax(x)`.
 * tfjs's own logSumExp also differentiates the max it subtracts for stability, which
 * costs a broadcast Equal over all N x (K + 1) logits (14 ms at K = 4096 on wasm) for a
 * term that cancels.
 */
function rowLogSumExp(x: tf.Tensor2D): tf.Tensor1D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const max = tf.max(xi, 1, true);
    const lse = tf.add(tf.log(tf.sum(tf.exp(tf.sub(xi, max)), 1)), tf.squeeze(max, [1]));
    save([xi, lse]);
    return {
      value: lse,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, slse] = saved as [tf.Tensor2D, tf.Tensor1D];
        const softmax = tf.exp(tf.sub(sx, tf.expandDims(slse, 1)));
        return [tf.mul(softmax, tf.expandDims(dy, 1))];
      },
    };
  });
  return (f as (t: tf.Tensor) => tf.Tensor1D)(x);
}

/**
 * InfoNCE loss (scalar) of queries `q [N, dim]` against positives `k [N, dim]` and
 * negatives `queue [dim, K]`; all inputs L2-normalised.
 */
export function infoNce(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  queue: tf.Tensor2D,
  temperature: number,
): tf.Scalar {
  if (!(temperature > 0)) {
    throw new Error(`infoNce: temperature must be > 0, got ${temperature}`);
  }
  if (q.shape[0] !== k.shape[0] || q.shape[1] !== k.shape[1] || q.shape[1] !== queue.shape[0]) {
    throw new Error(
      `infoNce: shapes do not match: q [${q.shape}], k [${k.shape}], queue [${queue.shape}]`,
    );
  }
  return tf.tidy(() => {
    // positives: [N, 1]; negatives: [N, K].
    const pos = tf.sum(tf.mul(q, k), 1, true);
    const neg = tf.matMul(q, queue);
    const logits = tf.div(tf.concat([pos, neg], 1), temperature);
    // Cross-entropy with label 0: logsumexp(logits) - logits[:, 0].
    const lse = rowLogSumExp(logits as tf.Tensor2D);
    return tf.mean(tf.sub(lse, tf.div(tf.squeeze(pos, [1]), temperature))) as tf.Scalar;
  });
}
