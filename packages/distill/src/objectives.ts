/**
 * What the baseline distillation objectives (SEED, CompRess) share: the contract of one
 * step with `MoCo.step`, and a queue of teacher embeddings that checkpoints with its write
 * pointer.
 *
 * One step, as the caller runs it:
 *
 * ```ts
 * const s = objective.prepare(view1, view2); // teacher embeddings, once per whole batch
 * try {
 *   const m = moco.step(view1, view2, lr, {
 *     extraLoss: s.extraLoss,
 *     contrastiveWeight: objective.contrastiveWeight,
 *     microBatch,
 *   });
 *   s.enqueue(); // only after the step, so no micro-batch sees its own batch in the queue
 * } finally {
 *   s.dispose();
 * }
 * ```
 */
import { type Rng, tf } from '@disco/core';
import { type ExtraLoss, KeyQueue } from '@disco/moco';

/** One step's share of an objective: its loss terms and its queue update. */
export interface ObjectiveStep {
  /** The loss terms to pass to `MoCo.step` as `extraLoss` (batch means, as MoCo expects). */
  readonly extraLoss: ExtraLoss;
  /**
   * Writes this batch's teacher embeddings into the objective's queue. Call it once, after
   * `MoCo.step` returned; not after a step that threw (its update was not applied).
   */
  enqueue(): void;
  /** Frees the batch's teacher embeddings; call it whether the step succeeded or not. */
  dispose(): void;
}

/** A distillation objective run through `MoCo.step`, with state of its own to checkpoint. */
export interface Objective {
  /** The weight of MoCo's InfoNCE term this objective runs with (0: InfoNCE off). */
  readonly contrastiveWeight: number;
  /** Computes the teacher's embeddings of views `[N, H, W, C]` for one step. */
  prepare(view1: tf.Tensor4D, view2: tf.Tensor4D): ObjectiveStep;
  /** Every tensor the objective needs to continue exactly, by name (borrowed, not copied). */
  state(): Map<string, tf.Tensor>;
  /** Restores a state written by `state()`; other names in `tensors` are ignored. */
  load(tensors: Map<string, tf.Tensor>, source?: string): void;
  /** Frees the objective's own tensors (not the teacher, which the caller owns). */
  dispose(): void;
}

/** Throws unless `value` is a finite number > 0; `owner` and `field` name it in the error. */
export function checkTemperature(owner: string, field: string, value: number): void {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new Error(`${owner}: ${field} must be a finite number > 0, got ${value}`);
  }
}

/** Rows `[start, end)` of a whole batch's `[N, dim]` tensor (the tensor itself if all rows). */
export function rowsOf(t: tf.Tensor2D, rows: { start: number; end: number }): tf.Tensor2D {
  const { start, end } = rows;
  if (start === 0 && end === t.shape[0]) return t;
  return tf.slice(t, [start, 0], [end - start, -1]);
}

/**
 * A FIFO queue of K L2-normalised embeddings, stored `[dim, K]` (MoCo's `KeyQueue`), whose
 * write pointer also lives in a tensor so that `state()` is all tensors. Names in the state:
 * `<name>` (`[dim, K]` float32) and `<name>_ptr` (`[1]` int32).
 */
export class EmbeddingQueue {
  /** The ring buffer itself. */
  readonly queue: KeyQueue;
  private readonly ptrTensor: tf.Variable;
  private writeCount = 0;

  /**
   * @param owner the objective, for error messages (`'Seed'`).
   * @param name the state name (`'seed.queue'`).
   * @param rng the stream of the initial contents: N(0, 1) columns, L2-normalised.
   */
  constructor(
    readonly owner: string,
    readonly name: string,
    dim: number,
    size: number,
    rng: Rng,
  ) {
    this.queue = new KeyQueue(dim, size, rng);
    this.ptrTensor = tf.tidy(() => tf.variable(tf.tensor1d([0], 'int32'), false));
  }

  /** Embedding width. */
  get dim(): number {
    return this.queue.dim;
  }

  /** Queue length K. */
  get size(): number {
    return this.queue.size;
  }

  /** The embeddings, `[dim, K]`, one per column. */
  get embeddings(): tf.Tensor2D {
    return this.queue.keys as tf.Tensor2D;
  }

  /** The next column to write. */
  get ptr(): number {
    return this.queue.ptr;
  }

  /** How many times the contents changed (enqueue or load); a step checks it did not move. */
  get writes(): number {
    return this.writeCount;
  }

  /** Writes `x [N, dim]` into columns `[ptr, ptr + N)`; ptr advances modulo K. */
  enqueue(x: tf.Tensor2D): void {
    this.queue.enqueue(x);
    this.setPtr(this.queue.ptr);
  }

  /** `<name>` and `<name>_ptr` (borrowed, not copied). */
  state(): Map<string, tf.Tensor> {
    return new Map<string, tf.Tensor>([
      [this.name, this.queue.keys],
      [`${this.name}_ptr`, this.ptrTensor],
    ]);
  }

  /**
   * Restores contents and pointer from `tensors` (other names are ignored).
   * @throws naming `source`, the tensor and the rule when one is missing or malformed.
   */
  load(tensors: Map<string, tf.Tensor>, source: string): void {
    const where = `${this.owner}.load ${source}`;
    const get = (name: string, shape: number[], dtype: tf.DataType) => {
      const t = tensors.get(name);
      if (!t) throw new Error(`${where}: no tensor '${name}'`);
      if (!tf.util.arraysEqual(t.shape, shape)) {
        throw new Error(`${where}: tensor '${name}' has shape [${t.shape}], expected [${shape}]`);
      }
      if (t.dtype !== dtype) {
        throw new Error(`${where}: tensor '${name}' is ${t.dtype}, expected ${dtype}`);
      }
      return t;
    };
    const keys = get(this.name, [this.dim, this.size], 'float32');
    const ptrName = `${this.name}_ptr`;
    const ptr = get(ptrName, [1], 'int32').dataSync()[0]!;
    if (ptr < 0 || ptr >= this.size) {
      throw new Error(`${where}: tensor '${ptrName}' holds ${ptr}, outside [0, ${this.size})`);
    }
    this.queue.load(keys, ptr);
    this.setPtr(ptr);
  }

  /** Frees the queue and its pointer. */
  dispose(): void {
    this.queue.dispose();
    this.ptrTensor.dispose();
  }

  private setPtr(ptr: number): void {
    tf.tidy(() => this.ptrTensor.assign(tf.tensor1d([ptr], 'int32')));
    this.writeCount++;
  }
}

/** Throws unless the queue length K is a multiple of the batch size (MoCo's ring buffer). */
export function checkQueueFits(owner: string, queueSize: number, batch: number): void {
  if (queueSize % batch !== 0) {
    throw new Error(
      `${owner}: queueSize ${queueSize} is not a multiple of the batch size ${batch}`,
    );
  }
}

/** Throws unless `value` is a positive integer. */
export function checkQueueSize(owner: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${owner}: queueSize must be a positive integer, got ${value}`);
  }
}

/**
 * @internal The check every use of a prepared step makes: the loss and `enqueue()` must come
 * before the step's `dispose()` (which frees `target`) and before `queue` changes, the order
 * `MoCo.step` then `enqueue()` keeps. `queueName` names the queue in the error.
 */
export function stepGuard(
  owner: string,
  queueName: string,
  target: tf.Tensor,
  queue: EmbeddingQueue,
): (use: string) => void {
  const writes = queue.writes;
  return (use) => {
    if (target.isDisposed) throw new Error(`${owner}: ${use} after the step's dispose()`);
    if (queue.writes !== writes) {
      throw new Error(
        `${owner}: ${use} after the ${queueName} changed (enqueue() runs once, after MoCo.step)`,
      );
    }
  };
}
