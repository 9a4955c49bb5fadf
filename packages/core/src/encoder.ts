/**
 * The contract between packages: an encoder maps images `[batch, height, width, channels]`
 * (NHWC, float32) to embeddings `[batch, dim]`, in training or eval mode, with its tensors
 * in a `Params` store.
 */
import type { ForwardContext, Module } from './nn.js';
import { Params } from './params.js';
import { Rng } from './rng.js';
import type { tf } from './tf.js';

/** An architecture (stateless) bound to a parameter set. */
export interface Encoder {
  readonly net: Module<tf.Tensor4D, tf.Tensor2D>;
  readonly params: Params;
  /** Width of the output embedding. */
  readonly outDim: number;
  apply(x: tf.Tensor4D, ctx: ForwardContext): tf.Tensor2D;
}

/** Binds `net` to `params` (created and initialised from `rng` when not given). */
export function bindEncoder(
  net: Module<tf.Tensor4D, tf.Tensor2D>,
  outDim: number,
  params?: Params | Rng,
): Encoder {
  let p: Params;
  if (params instanceof Params) {
    p = params;
  } else {
    p = new Params();
    net.init(p, params ?? new Rng(0));
  }
  return {
    net,
    params: p,
    outDim,
    apply: (x, ctx) => net.apply(p, x, ctx),
  };
}

/** Runs modules one after another (a backbone then a head). */
export class Sequential<
  I extends tf.Tensor = tf.Tensor,
  O extends tf.Tensor = tf.Tensor,
> implements Module<I, O> {
  constructor(readonly modules: readonly Module[]) {}

  init(params: Params, rng: Rng): void {
    for (const m of this.modules) m.init(params, rng);
  }

  apply(params: Params, x: I, ctx: ForwardContext): O {
    let y: tf.Tensor = x;
    for (const m of this.modules) y = m.apply(params, y, ctx);
    return y as O;
  }
}
