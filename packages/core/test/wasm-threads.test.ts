import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultWasmThreads, MAX_WASM_THREADS } from '@disco/core';

const child = fileURLToPath(new URL('./wasm-threads.child.ts', import.meta.url));

interface ChildResult {
  backend: string;
  threads: number;
  y: string;
  dx: string;
  dw: string;
  matmul: string;
  ySum: number;
}

function runChild(threads: number): ChildResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', child, String(threads)], {
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
    // The process must end by itself: the pool's workers may not keep it alive.
    timeout: 90_000,
  });
  expect(r.error, `child with ${threads} threads: ${r.error?.message}`).toBeUndefined();
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
}

describe('wasm threads in Node', () => {
  it('start a 2-thread pool whose results are bit-identical to one thread', () => {
    const one = runChild(1);
    const two = runChild(2);
    expect(one.backend).toBe('wasm');
    expect(two.backend).toBe('wasm');
    expect(one.threads).toBe(1);
    // tfjs alone would give 1 here on a 2-core machine (half the logical cores).
    expect(two.threads).toBe(2);
    expect(Number.isFinite(two.ySum)).toBe(true);
    expect(two.y).toBe(one.y);
    expect(two.dx).toBe(one.dx);
    expect(two.dw).toBe(one.dw);
    expect(two.matmul).toBe(one.matmul);
  });
});

describe('defaultWasmThreads', () => {
  const saved = process.env.DISCO_WASM_THREADS;
  afterEach(() => {
    if (saved === undefined) delete process.env.DISCO_WASM_THREADS;
    else process.env.DISCO_WASM_THREADS = saved;
  });

  it('reads DISCO_WASM_THREADS and otherwise takes every core up to the pool size', () => {
    process.env.DISCO_WASM_THREADS = '3';
    expect(defaultWasmThreads()).toBe(3);
    delete process.env.DISCO_WASM_THREADS;
    const n = defaultWasmThreads();
    expect(n).toBeGreaterThanOrEqual(1);
    expect(n).toBeLessThanOrEqual(MAX_WASM_THREADS);
  });

  it('names a bad DISCO_WASM_THREADS value', () => {
    for (const bad of ['0', '9', '1.5', 'two']) {
      process.env.DISCO_WASM_THREADS = bad;
      expect(() => defaultWasmThreads()).toThrow(`DISCO_WASM_THREADS='${bad}'`);
    }
  });
});
