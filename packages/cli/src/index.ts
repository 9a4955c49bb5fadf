/**
 * @disco/cli: the `disco` command and the training, evaluation and pipeline functions it runs.
 * @packageDocumentation
 */
export { buildProgram, main } from './commands.js';
export { TRAIN_DEFAULTS, validateTrainConfig, type TrainConfig } from './config.js';
export { train, loadData, specOf, type TrainOptions, type TrainResult } from './train.js';
export { evaluateBackbone, preprocessFor, type EvalOptions, type EvalResult } from './evaluate.js';
export {
  buildEncoder,
  loadModelFile,
  saveModelFile,
  fileSha256,
  type EncoderSpec,
  type ModelInfo,
  type BuiltEncoder,
} from './model-file.js';
export {
  runPipeline,
  PIPELINE_STUDENT,
  PIPELINE_TEACHER,
  type PipelineOptions,
} from './pipeline.js';
export {
  saveCheckpoint,
  readCheckpoint,
  newestCheckpoint,
  listCheckpoints,
  type RunState,
} from './checkpoint.js';
export { formatTable, type ResultRow } from './table.js';
