/**
 * The momentum (key) encoder update of MoCo: w_k <- m * w_k + (1 - m) * w_q over the
 * learnable parameters only; the key encoder's BatchNorm running statistics evolve from
 * its own forward passes, as in the official code.
 */
import { type Params, tf } from '@disco/core';

/** In-place EMA of `key`'s parameters towards `query`'s, with momentum `m` in [0, 1]. */
export function momentumUpdate(key: Params, query: Params, m: number): void {
  if (!(m >= 0 && m <= 1)) {
    throw new Error(`momentumUpdate: momentum must be in [0, 1], got ${m}`);
  }
  tf.tidy(() => {
    for (const name of key.parameterNames()) {
      const wk = key.get(name);
      wk.assign(tf.add(tf.mul(wk, m), tf.mul(query.get(name), 1 - m)));
    }
  });
}
