/**
 * Backend choice. In order of preference: the TensorFlow native GPU build
 * (`@tensorflow/tfjs-node-gpu`), the native CPU build (`@tensorflow/tfjs-node`), `wasm`
 * with DisCo's training kernels, then the plain JavaScript `cpu` backend. The native
 * builds are optional peers, used only when installed and loadable.
 */
import { registerFastBatchMatMul } from './fast/batch-matmul.js';
import { registerWasmTrainingKernels } from './kernels/index.js';
import { tf } from './tf.js';
import { checkThreads, defaultWasmThreads, startWasmBackend } from './wasm-threads.js';

/** A backend name DisCo.js knows how to start. */
export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';

/** The order in which `initBackend` tries backends when none is forced: fastest first. */
export const BACKEND_ORDER: readonly BackendName[] = [
  'tensorflow-gpu',
  'tensorflow',
  'wasm',
  'cpu',
];

/** What `initBackend` starts. */
export interface BackendOptions {
  /** Force one backend; also read from `DISCO_BACKEND`. Fails loudly when it cannot start. */
  backend?: BackendName;
  /**
   * Threads of the `wasm` backend (1 to 8). Default: `DISCO_WASM_THREADS`, otherwise every
   * core (see `defaultWasmThreads`). When the threaded build cannot start, the backend
   * starts on one thread with a warning.
   */
  threads?: number;
}

async function tryNative(pkg: string): Promise<boolean> {
  try {
    await import(/* @vite-ignore */ pkg);
    return true;
  } catch {
    return false;
  }
}

async function startWasm(threads: number): Promise<void> {
  checkThreads(threads, `initBackend: threads ${threads}`);
  registerWasmTrainingKernels();
  registerFastBatchMatMul();
  if (threads > 1) {
    try {
      await startWasmBackend(threads);
      return;
    } catch (err) {
      console.warn(`initBackend: wasm on one thread: ${(err as Error).message}`);
    }
  }
  await startWasmBackend(1);
}

async function start(name: BackendName, opts: BackendOptions): Promise<string> {
  switch (name) {
    case 'tensorflow-gpu':
      if (!(await tryNative('@tensorflow/tfjs-node-gpu'))) {
        throw new Error('@tensorflow/tfjs-node-gpu is not installed or does not load');
      }
      break;
    case 'tensorflow':
      if (!(await tryNative('@tensorflow/tfjs-node'))) {
        throw new Error('@tensorflow/tfjs-node is not installed or does not load');
      }
      break;
    case 'wasm':
      await startWasm(opts.threads ?? defaultWasmThreads());
      return 'wasm';
    case 'cpu':
      break;
  }
  const tfName = name === 'tensorflow-gpu' ? 'tensorflow' : name;
  if (!(await tf.setBackend(tfName))) {
    throw new Error(`backend '${tfName}' did not initialise`);
  }
  await tf.ready();
  return tfName;
}

/**
 * Starts the best available backend (or the forced one) and returns its tfjs name.
 * @throws when a forced backend (option or `DISCO_BACKEND`) cannot start, naming it.
 */
export async function initBackend(opts: BackendOptions = {}): Promise<string> {
  const forced = opts.backend ?? (process.env.DISCO_BACKEND as BackendName | undefined);
  if (forced !== undefined && forced !== ('' as BackendName)) {
    if (!BACKEND_ORDER.includes(forced)) {
      throw new Error(
        `initBackend: unknown backend '${forced}' (DISCO_BACKEND or option); ` +
          `choose one of ${BACKEND_ORDER.join(', ')}`,
      );
    }
    try {
      return await start(forced, opts);
    } catch (err) {
      throw new Error(
        `initBackend: forced backend '${forced}' cannot start: ${(err as Error).message}`,
      );
    }
  }
  for (const name of BACKEND_ORDER) {
    try {
      return await start(name, opts);
    } catch {
      // Not available here; try the next one.
    }
  }
  throw new Error('initBackend: no backend could start');
}
