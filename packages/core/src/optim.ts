/**
 * SGD with momentum and coupled L2 weight decay, as PyTorch's `torch.optim.SGD`
 * (dampening 0, no Nesterov): g' = g + wd * w; buf = momentum * buf + g'; w = w - lr * buf.
 * The first step sets buf = g', as PyTorch does. Its state is plain variables, so a
 * checkpoint can save and restore it exactly.
 */
import { tf } from './tf.js';

/** The constants of an {@link Sgd} optimizer. */
export interface SgdConfig {
  /** Momentum, in [0, 1); default 0.9. */
  momentum?: number;
  /** Coupled L2 weight decay (added to the gradient), >= 0; default 0. */
  weightDecay?: number;
}

/** SGD with momentum over a fixed list of named variables. */
export class Sgd {
  /** Momentum, in [0, 1). */
  readonly momentum: number;
  /** Coupled L2 weight decay. */
  readonly weightDecay: number;
  private readonly buffers = new Map<string, tf.Variable>();

  constructor(cfg: SgdConfig = {}) {
    this.momentum = cfg.momentum ?? 0.9;
    this.weightDecay = cfg.weightDecay ?? 0;
    if (!(this.momentum >= 0 && this.momentum < 1)) {
      throw new Error(`Sgd: momentum must be in [0, 1), got ${this.momentum}`);
    }
    if (!(this.weightDecay >= 0)) {
      throw new Error(`Sgd: weightDecay must be >= 0, got ${this.weightDecay}`);
    }
  }

  /** Applies one update; `grads` maps variable names to gradients (not disposed here). */
  step(vars: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void {
    tf.tidy(() => {
      for (const [name, w] of vars) {
        const g0 = grads.get(name);
        if (!g0) continue;
        const g = this.weightDecay > 0 ? tf.add(g0, tf.mul(w, this.weightDecay)) : g0;
        let buf = this.buffers.get(name);
        if (!buf) {
          buf = tf.variable(g, false);
          this.buffers.set(name, buf);
        } else {
          buf.assign(tf.add(tf.mul(buf, this.momentum), g));
        }
        w.assign(tf.sub(w, tf.mul(buf, lr)));
      }
    });
  }

  /** The momentum buffers, by variable name (for checkpoints). */
  state(): Map<string, tf.Variable> {
    return this.buffers;
  }

  /** Restores momentum buffers (copies the given tensors). */
  loadState(state: Map<string, tf.Tensor>): void {
    this.dispose();
    for (const [name, t] of state) this.buffers.set(name, tf.variable(t, false));
  }

  /** Frees the momentum buffers; the next step starts them afresh. */
  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
  }
}

/**
 * MoCo v2's cosine schedule, set once per epoch: lr_e = base * 0.5 * (1 + cos(pi e / E)).
 * `progress` may be fractional (per-step cosine) when a run asks for it.
 */
export function cosineLr(baseLr: number, progress: number, total: number): number {
  return baseLr * 0.5 * (1 + Math.cos((Math.PI * progress) / total));
}
