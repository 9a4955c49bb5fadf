/**
 * @disco/cli: the `disco` command and the training, evaluation and pipeline functions it runs.
 * @packageDocumentation
 */
export { buildProgram, main } from './commands.js';
export {
  TRAIN_DEFAULTS,
  validateTrainConfig,
  compareResumeConfig,
  RESUME_FREE_FIELDS,
  type TrainConfig,
  type TrainMethod,
  type ResumeConfigCheck,
} from './config.js';
export { train, loadData, specOf, type TrainOptions, type TrainResult } from './train.js';
export { evaluateBackbone, preprocessFor, type EvalOptions, type EvalResult } from './evaluate.js';
export {
  buildEncoder,
  loadModelFile,
  modelFilePath,
  saveModelFile,
  MODEL_FILE,
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
  checkpointName,
  findResumePoint,
  rewindMetrics,
  removeStaleTemporaries,
  DamagedCheckpointError,
  type EpochSums,
  type LoadedCheckpoint,
  type ResumePoint,
  type RunState,
} from './checkpoint.js';
export {
  readWeights,
  detectArchitecture,
  matchArchitecture,
  isExactMatch,
  describeWeights,
  importModel,
  exportModel,
  embed,
  IMAGENET_MEAN,
  IMAGENET_STD,
  type ArchMatch,
  type EmbedOptions,
  type ImportOptions,
  type ImportResult,
  type LoadedWeights,
  type ReadWeightsOptions,
} from './model-io.js';
export { formatTable, type ResultRow } from './table.js';
export {
  writeReport,
  readMetrics,
  REPORT_FILE,
  type ReportOptions,
  type RunMetrics,
  type MetricsLine,
  type FinalLine,
  type TeacherFigures,
} from './report.js';
export {
  runExperiment,
  EXPERIMENT_GRIDS,
  EXPERIMENT_METHODS,
  EXPERIMENT_STUDENTS,
  EXPERIMENT_TEACHERS,
  type ExperimentGrid,
  type ExperimentOptions,
  type ExperimentCell,
  type CellResult,
  type MethodPreset,
  type TeacherPreset,
  type Settings as ExperimentSettings,
} from './experiment.js';
export { type ResultRow as ExperimentRow, type Stat } from './experiment-plot.js';
export {
  exportTfjs,
  buildTfjsModel,
  fitTfjsHead,
  TFJS_FILES,
  type TfjsExportOptions,
  type TfjsExportResult,
  type TfjsModel,
  type TfjsModelCard,
  type TfjsHead,
  type TfjsSource,
  type FitHeadOptions,
} from './tfjs-export.js';
export type { LayersArtifacts, WeightSpec } from './tfjs-graph.js';
export {
  BENCH_CASES,
  timeDiscoStep,
  profileDiscoStep,
  soakDiscoStep,
  type BenchCase,
  type BenchResult,
  type KernelTime,
  type PhaseProfile,
  type SoakSample,
} from './bench.js';
