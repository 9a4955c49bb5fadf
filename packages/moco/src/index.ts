/**
 * @disco/moco: MoCo v2 — momentum key encoder, queue of negatives, InfoNCE.
 * @packageDocumentation
 */
export { KeyQueue } from './queue.js';
export { infoNce } from './infonce.js';
export { momentumUpdate } from './momentum.js';
export {
  MoCo,
  MOCO_V2_DEFAULTS,
  NonFiniteLossError,
  type ExtraLoss,
  type MoCoConfig,
  type StepMetrics,
  type StepOptions,
} from './moco.js';
export { mocoStateTensors, loadMocoState } from './state.js';
