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
  /** The architecture: `[batch, height, width, channels]` in, `[batch, outDim]` out. */
  readonly net: Module<tf.Tensor4D, tf.Tensor2D>;
  /** The parameter set `net` runs with. */
  readonly params: Params;
  /** Width of the output embedding. */
  readonly outDim: number;
  /** Runs `net` on `params`: images `[batch, height, width, channels]` to `[batch, outDim]`. */
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
  constructor(
    /** The modules, in the order they run; each one's output is the next one's input. */
    readonly modules: readonly Module[],
  ) {}

  init(params: Params, rng: Rng): void {
    for (const m of this.modules) m.init(params, rng);
  }

  apply(params: Params, x: I, ctx: ForwardContext): O {
    let y: tf.Tensor = x;
    for (const m of this.modules) y = m.apply(params, y, ctx);
    return y as O;
  }
}
