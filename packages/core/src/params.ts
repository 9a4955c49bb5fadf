/**
 * Named parameters and buffers of a network. Names follow torchvision's state-dict keys
 * (`layer1.0.conv1.weight`, `bn1.running_mean`), so PyTorch checkpoints map one-to-one.
 * Tensors are stored in tfjs layout; `layout` records how to convert to PyTorch's.
 */
import { tf } from './tf.js';

/**
 * How a tensor's tfjs layout relates to PyTorch's:
 * - `conv2d`: tfjs `[kh, kw, in, out]`, PyTorch `[out, in, kh, kw]`;
 * - `depthwise`: tfjs `[kh, kw, channels, 1]`, PyTorch `[channels, 1, kh, kw]`;
 * - `linear`: tfjs `[in, out]`, PyTorch `[out, in]`;
 * - `plain`: same in both.
 */
export type Layout = 'conv2d' | 'depthwise' | 'linear' | 'plain';

interface Entry {
  variable: tf.Variable;
  /** A learnable parameter (true) or a buffer such as BN running statistics (false). */
  isParameter: boolean;
  layout: Layout;
}

/** A map from parameter name to variable, with trainable flags and layouts. */
export class Params {
  private readonly entries = new Map<string, Entry>();

  /** Adds a variable holding `value` (taken over, not copied). */
  add(
    name: string,
    value: tf.Tensor,
    opts: { buffer?: boolean; layout?: Layout } = {},
  ): tf.Variable {
    if (this.entries.has(name)) {
      value.dispose();
      throw new Error(`Params.add: parameter '${name}' already exists`);
    }
    const isParameter = !opts.buffer;
    const variable = tf.variable(value, isParameter);
    value.dispose();
    this.entries.set(name, { variable, isParameter, layout: opts.layout ?? 'plain' });
    return variable;
  }

  /** The variable called `name`; throws naming it when absent. */
  get(name: string): tf.Variable {
    const e = this.entries.get(name);
    if (!e) throw new Error(`Params.get: no parameter '${name}'`);
    return e.variable;
  }

  /** Whether a parameter or buffer called `name` exists. */
  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** How the tensor `name` is laid out relative to PyTorch's; throws naming it when absent. */
  layout(name: string): Layout {
    const e = this.entries.get(name);
    if (!e) throw new Error(`Params.layout: no parameter '${name}'`);
    return e.layout;
  }

  /** True for a learnable parameter, false for a buffer (BN running statistics). */
  isParameter(name: string): boolean {
    return this.entries.get(name)?.isParameter ?? false;
  }

  /** All names, in insertion order (the builder's order, like a PyTorch state dict). */
  names(): string[] {
    return [...this.entries.keys()];
  }

  /** Names of the learnable parameters (weights, biases, BN gamma/beta), not buffers. */
  parameterNames(): string[] {
    return this.names().filter((n) => this.entries.get(n)!.isParameter);
  }

  /** The learnable parameters' variables, in name order. */
  parameters(): tf.Variable[] {
    return this.parameterNames().map((n) => this.get(n));
  }

  /** Number of scalars in learnable parameters (what PyTorch's parameter count reports). */
  countParameters(): number {
    return this.parameters().reduce((sum, v) => sum + v.size, 0);
  }

  /**
   * A deep copy with its own variables. `frozen: true` makes the copy's variables take no
   * gradient (a momentum key encoder, a frozen teacher); parameters stay parameters.
   */
  clone(opts: { frozen?: boolean } = {}): Params {
    const out = new Params();
    for (const [name, e] of this.entries) {
      const variable = tf.variable(e.variable, e.isParameter && !opts.frozen);
      out.entries.set(name, { variable, isParameter: e.isParameter, layout: e.layout });
    }
    return out;
  }

  /** Overwrites every variable with the value of the same name in `other`. */
  copyFrom(other: Params, opts: { onlyParameters?: boolean } = {}): void {
    for (const [name, e] of this.entries) {
      if (opts.onlyParameters && !e.isParameter) continue;
      const src = other.entries.get(name);
      if (!src) throw new Error(`Params.copyFrom: source has no parameter '${name}'`);
      e.variable.assign(src.variable);
    }
  }

  /** Snapshot of every tensor (copies), keyed by name. */
  snapshot(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const [name, e] of this.entries) out.set(name, e.variable.clone());
    return out;
  }

  /** Writes values into existing variables, checking names and shapes. */
  load(values: Map<string, tf.Tensor>, opts: { strict?: boolean; source?: string } = {}): void {
    const where = opts.source ? ` (${opts.source})` : '';
    for (const [name, value] of values) {
      const e = this.entries.get(name);
      if (!e) {
        if (opts.strict ?? true)
          throw new Error(`Params.load${where}: unexpected tensor '${name}'`);
        continue;
      }
      if (!tf.util.arraysEqual(e.variable.shape, value.shape)) {
        throw new Error(
          `Params.load${where}: tensor '${name}' has shape [${value.shape}], ` +
            `expected [${e.variable.shape}]`,
        );
      }
      e.variable.assign(
        value.dtype === e.variable.dtype ? value : tf.cast(value, e.variable.dtype),
      );
    }
    if (opts.strict ?? true) {
      const missing = this.names().filter((n) => !values.has(n));
      if (missing.length > 0) {
        throw new Error(`Params.load${where}: missing tensors ${missing.slice(0, 5).join(', ')}`);
      }
    }
  }

  /** Disposes every variable and empties the store. */
  dispose(): void {
    for (const e of this.entries.values()) e.variable.dispose();
    this.entries.clear();
  }
}
