/**
 * MoCo training state as a flat map of named tensors, for checkpoints: the query encoder
 * (`query.<name>`), the key encoder (`key.<name>`), the queue (`queue.keys`) and the SGD
 * momentum buffers (`optim.<name>`). The queue pointer travels as a number beside it.
 */
import type { tf } from '@disco/core';
import type { MoCo } from './moco.js';

/** Every tensor needed to continue a MoCo run exactly (borrowed, not copied). */
export function mocoStateTensors(moco: MoCo): Map<string, tf.Tensor> {
  const out = new Map<string, tf.Tensor>();
  for (const name of moco.query.params.names())
    out.set(`query.${name}`, moco.query.params.get(name));
  for (const name of moco.key.params.names()) out.set(`key.${name}`, moco.key.params.get(name));
  out.set('queue.keys', moco.queue.keys);
  for (const [name, buf] of moco.optimizer.state()) out.set(`optim.${name}`, buf);
  return out;
}

/** Restores a state written by `mocoStateTensors`; throws naming what is missing. */
export function loadMocoState(
  moco: MoCo,
  tensors: Map<string, tf.Tensor>,
  queuePtr: number,
  source = '<checkpoint>',
): void {
  const pick = (prefix: string) => {
    const out = new Map<string, tf.Tensor>();
    for (const [name, t] of tensors) {
      if (name.startsWith(prefix)) out.set(name.slice(prefix.length), t);
    }
    return out;
  };
  moco.query.params.load(pick('query.'), { source });
  moco.key.params.load(pick('key.'), { source });
  const queue = tensors.get('queue.keys');
  if (!queue) throw new Error(`loadMocoState ${source}: no tensor 'queue.keys'`);
  moco.queue.load(queue, queuePtr);
  moco.optimizer.loadState(pick('optim.'));
}
