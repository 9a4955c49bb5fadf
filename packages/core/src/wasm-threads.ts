/**
 * Threads for the wasm backend in Node. tfjs ships a threaded wasm build (XNNPACK on a
 * pthreadpool of Web Workers over a shared heap) but never uses it in Node, for three
 * reasons, each handled here for the duration of the backend's start-up only:
 *
 * 1. The `WASM_HAS_MULTITHREAD_SUPPORT` flag answers false whenever it runs in Node.
 * 2. Emscripten starts each pthread worker from a `blob:` URL of the worker script, and
 *    Node's `worker_threads` only load files. The worker script is written to a file in the
 *    temp folder, named by its hash, and handed out instead. Inside the worker, the main
 *    script (a `Blob` too) is read from the package's own copy of it.
 * 3. The pool size is capped at half of `os.cpus().length`, on the assumption of two
 *    hardware threads per core, so a 2-core machine got one thread. `os.cpus()` reports
 *    enough logical cores for the requested count while the module starts.
 *
 * Kernels split their output across threads, so results match the one-thread build.
 */
import { createHash } from 'node:crypto';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';
import { getThreadsCount, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { tf } from './tf.js';

/** The most threads the threaded build can use: it pre-starts this many workers. */
export const MAX_WASM_THREADS = 8;

const WASM_PKG = '@tensorflow/tfjs-backend-wasm';

/**
 * The thread count used when none is given: `DISCO_WASM_THREADS` when set, otherwise every
 * core Node reports (`os.availableParallelism()`), at most {@link MAX_WASM_THREADS}.
 * @throws when `DISCO_WASM_THREADS` is not a whole number from 1 to 8, naming its value.
 */
export function defaultWasmThreads(): number {
  const raw = process.env.DISCO_WASM_THREADS;
  if (raw !== undefined && raw.trim() !== '') {
    const n = Number(raw);
    checkThreads(n, `DISCO_WASM_THREADS='${raw}'`);
    return n;
  }
  return Math.max(1, Math.min(MAX_WASM_THREADS, os.availableParallelism()));
}

/** @internal Throws unless `n` is a whole number of threads from 1 to 8, naming `where`. */
export function checkThreads(n: number, where: string): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_WASM_THREADS) {
    throw new Error(`${where}: wasm threads must be a whole number from 1 to ${MAX_WASM_THREADS}`);
  }
}

function packageRequire(): NodeJS.Require {
  // tsup's CJS output leaves `import.meta` empty; the ESM build and vitest have its url.
  const url: string | undefined = import.meta.url;
  return createRequire(url ?? __filename);
}

/** Writes (once per tfjs version) the pthread worker script as a file; returns its path. */
function workerScriptFile(): string {
  const req = packageRequire();
  const mainScript = req.resolve(`${WASM_PKG}/wasm-out/tfjs-backend-wasm-threaded-simd.js`);
  const { wasmWorkerContents } = req(
    `${WASM_PKG}/wasm-out/tfjs-backend-wasm-threaded-simd.worker.js`,
  ) as { wasmWorkerContents: string };
  // The contents are one minified line whose only newline sits in a string literal; tfjs
  // escapes it the same way before making its blob.
  let body = wasmWorkerContents.replace(/\n/g, '\\n');
  const directive = '"use strict";';
  const strict = body.startsWith(directive);
  if (strict) body = body.slice(directive.length);
  // The worker turns the main-script Blob it is sent into an object URL and reads that URL
  // as a file: answer with the package's copy of the same script.
  const prelude =
    `URL.createObjectURL=function(){return ${JSON.stringify(mainScript)}};` +
    'URL.revokeObjectURL=function(){};';
  const text = (strict ? directive : '') + prelude + body;
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 16);
  const file = join(os.tmpdir(), `disco-wasm-worker-${hash}.cjs`);
  if (!existsSync(file)) {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  }
  return file;
}

/**
 * Starts the `wasm` backend on `threads` threads (1: the single-threaded SIMD build, as
 * tfjs does in Node). Must run before the backend is first initialised.
 * @returns the threads the backend's pool really has.
 * @throws when the threaded build does not start.
 */
export async function startWasmBackend(threads: number): Promise<number> {
  checkThreads(threads, 'startWasmBackend');
  if (threads === 1) {
    if (!(await tf.setBackend('wasm'))) throw new Error("backend 'wasm' did not initialise");
    await tf.ready();
    return 1;
  }
  if (typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') {
    throw new Error('wasm threads need SharedArrayBuffer and Atomics, which this Node lacks');
  }
  const workerFile = workerScriptFile();
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  setThreadsCount(threads);
  const realCreateObjectURL = URL.createObjectURL;
  const realCpus = os.cpus;
  // While the module starts, the only object URL asked for is the worker script's.
  URL.createObjectURL = () => workerFile;
  os.cpus = () => {
    const cpus = realCpus();
    const one = cpus[0]!;
    return Array.from({ length: Math.max(cpus.length, 2 * threads) }, (_, i) => cpus[i] ?? one);
  };
  let ok: boolean;
  try {
    ok = await tf.setBackend('wasm');
    if (ok) await tf.ready();
  } finally {
    URL.createObjectURL = realCreateObjectURL;
    os.cpus = realCpus;
  }
  if (!ok) {
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    setThreadsCount(1);
    throw new Error(`the threaded wasm build did not start with ${threads} threads`);
  }
  // Emscripten keeps a Node process alive while a pthread runs, and the pool's threads run
  // for the life of the backend: let the process end when its own work is done.
  const pthreads = (tf.backend() as unknown as { wasm?: { PThread?: PThreadState } }).wasm?.PThread;
  for (const w of [...(pthreads?.runningWorkers ?? []), ...(pthreads?.unusedWorkers ?? [])]) {
    w.unref();
  }
  return getThreadsCount();
}

interface PThreadState {
  runningWorkers?: { unref(): void }[];
  unusedWorkers?: { unref(): void }[];
}

/** Threads of the running wasm backend's pool (1 for the single-threaded build). */
export function wasmThreads(): number {
  return getThreadsCount();
}
