/**
 * Property tests of the binary dataset readers (IDX, CIFAR-10/100, STL-10) with fast-check:
 * valid files damaged at random (truncated, bytes flipped, replaced by garbage, bytes
 * appended, huge values written over header fields) must either load into a consistent
 * `ImageSet` or throw a plain `Error` whose message names the file or folder; never a
 * TypeError / RangeError (an unchecked length reaching an allocation or an index), never a
 * case that runs for seconds.
 *
 * Runs are seeded: a failure prints its seed and path, and `DISCO_FUZZ_SEED` /
 * `DISCO_FUZZ_RUNS` replay or widen a run, e.g. `DISCO_FUZZ_RUNS=5000 npx vitest run <file>`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { applyDamage, type Damage } from '../../../test-utils/damage.js';
import {
  checkImageSet,
  loadCifar10,
  loadCifar100,
  loadStl10,
  parseIdx,
  readIdx,
  type ImageSet,
} from '@disco/data';

const SEED = Number(process.env.DISCO_FUZZ_SEED ?? 20251204);
const RUNS = Number(process.env.DISCO_FUZZ_RUNS ?? 300);
/** A single case may take this long; the real ones take well under 10 ms. */
const CASE_MS = 2000;

const root = mkdtempSync(join(tmpdir(), 'disco-fuzz-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** One way to damage a file, kept as data so fast-check prints and shrinks it. */

/** Values a corrupt length field may hold: 2^32 - 1, 2^31, 2^40 and the like, both orders. */
const hugeBytes = fc.oneof(
  fc.constantFrom(
    [0xff, 0xff, 0xff, 0xff],
    [0x80, 0, 0, 0],
    [0x7f, 0xff, 0xff, 0xff],
    [0, 0, 1, 0, 0, 0, 0, 0], // 2^40, little-endian uint64
    [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
  ),
  fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
);

/** A position in a file (taken modulo its length), uniform rather than biased to small values. */
const anywhere = fc.noBias(fc.nat());

const damage: fc.Arbitrary<Damage> = fc.oneof(
  fc.record({ truncate: anywhere }),
  fc.record({
    flips: fc.array(fc.tuple(anywhere, fc.integer({ min: 1, max: 255 })), {
      minLength: 1,
      maxLength: 8,
    }),
  }),
  fc.record({ garbage: fc.uint8Array({ maxLength: 4096 }) }),
  fc.record({ append: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  // Header fields sit near the start: bias the position there.
  fc.record({ write: fc.oneof(fc.nat({ max: 24 }), anywhere), bytes: hugeBytes }),
);

/** Up to three damages, or none (the intact file must load). */
const damages = fc.array(damage, { maxLength: 3 });

/** How the cases of the running property ended, so a property that never loads fails. */
const tally = { results: 0, errors: 0 };

/**
 * Runs `call` and returns its result, or undefined when it threw a plain Error naming one of
 * `names`; anything else (another error type, a message without the name, a slow case)
 * fails the property with the offending error.
 */
function resultOrNamedError<T>(call: () => T, names: string[]): T | undefined {
  const start = performance.now();
  let result: T | undefined;
  try {
    result = call();
    tally.results++;
  } catch (err) {
    if (!(err instanceof Error) || err.constructor !== Error) throw err;
    if (!names.some((n) => err.message.includes(n))) {
      throw new Error(`error does not name ${names.join(' or ')}: ${err.message}`);
    }
    tally.errors++;
  }
  const ms = performance.now() - start;
  if (ms > CASE_MS) throw new Error(`one case took ${ms.toFixed(0)} ms`);
  return result;
}

/** Runs a property; both outcomes must have occurred, or the generators test nothing. */
function check(property: fc.IProperty<[Damage[], ...unknown[]]>): void {
  tally.results = 0;
  tally.errors = 0;
  fc.assert(property, { seed: SEED, numRuns: RUNS });
  expect(tally.results).toBeGreaterThan(RUNS / 20);
  expect(tally.errors).toBeGreaterThan(RUNS / 20);
}

/** Writes the files into folder `name`, reused by every case of a property; undefined removes. */
function writeFolder(name: string, files: Record<string, Uint8Array | undefined>): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, bytes] of Object.entries(files)) {
    if (bytes === undefined) rmSync(join(dir, file), { force: true });
    else writeFileSync(join(dir, file), bytes);
  }
  return dir;
}

/** Deterministic filler bytes, cheaper to generate than random arrays of 27648 bytes. */
function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 131 + seed * 29 + (i >> 8)) & 255;
  return out;
}

/** Checks what every loader promises of a successful load. */
function expectConsistent(set: ImageSet, classes: number): void {
  checkImageSet(set, 'fuzz');
  expect(set.labels.every((l) => l < classes)).toBe(true);
  expect(set.classNames.length).toBe(classes);
}

describe('parseIdx / readIdx on damaged files', () => {
  /** IDX type codes and their element sizes. */
  const TYPES = [
    { code: 0x08, size: 1 },
    { code: 0x09, size: 1 },
    { code: 0x0b, size: 2 },
    { code: 0x0c, size: 4 },
    { code: 0x0d, size: 4 },
    { code: 0x0e, size: 8 },
  ];
  const idxFile = fc
    .record({
      type: fc.constantFrom(...TYPES),
      shape: fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 3 }),
      seed: fc.nat({ max: 255 }),
    })
    .map(({ type: { code, size }, shape, seed }) => {
      const header = [0, 0, code, shape.length];
      for (const d of shape) header.push(0, 0, 0, d);
      const body = pattern(size * shape.reduce((a, b) => a * b, 1), seed);
      return Uint8Array.from([...header, ...body]);
    });

  it('returns an array of the declared shape or throws an Error naming the input', () => {
    check(
      fc.property(damages, idxFile, (list, file) => {
        const bytes = applyDamage(file, list);
        const arr = resultOrNamedError(() => parseIdx(bytes, 'fuzz.idx'), ['fuzz.idx']);
        if (arr === undefined) return;
        const count = arr.shape.reduce((a, b) => a * b, 1);
        expect(arr.data.length).toBe(count);
        expect(4 + 4 * arr.shape.length + arr.data.byteLength).toBe(bytes.length);
      }),
    );
  });

  it('does the same for gzipped files, damaged before or after compression', () => {
    const path = join(root, 'fuzz-idx.gz');
    check(
      fc.property(damages, idxFile, fc.boolean(), (list, file, afterGzip) => {
        const gz = afterGzip
          ? applyDamage(gzipSync(file), list)
          : gzipSync(applyDamage(file, list));
        writeFileSync(path, gz);
        const arr = resultOrNamedError(() => readIdx(path, { maxBytes: 1 << 20 }), [path]);
        if (arr !== undefined) expect(arr.data.length).toBe(arr.shape.reduce((a, b) => a * b, 1));
      }),
    );
  });

  it('reads an int8 file from disk as exactly its values (found by the property above)', () => {
    // readFileSync returns a Buffer cut from a shared pool: the int8 view once covered the
    // whole pool (8192 values) instead of the body after the header.
    const path = join(root, 'int8.idx');
    writeFileSync(path, Uint8Array.from([0, 0, 0x09, 1, 0, 0, 0, 3, 0xff, 5, 0x80]));
    const arr = readIdx(path);
    expect(arr.dtype).toBe('int8');
    expect([...arr.data]).toEqual([-1, 5, -128]);
  });

  it('refuses a header declaring 2^40 bytes before allocating them', () => {
    // [2^20, 2^20] float32 = 2^42 bytes declared by a 12-byte file.
    const huge = Uint8Array.from([0, 0, 0x0d, 2, 0, 16, 0, 0, 0, 16, 0, 0]);
    expect(() => parseIdx(huge, 'huge.idx')).toThrow(
      'parseIdx: huge.idx declares shape [1048576, 1048576] of float32, 4398046511104 bytes, ' +
        'over the limit of 2147483648 bytes',
    );
  });
});

describe('loadCifar10 / loadCifar100 on damaged files', () => {
  /** A batch of `labels.length` records whose label bytes are `labels[i]`. */
  const batch = (labels: number[][], seed: number): Uint8Array => {
    const size = labels[0]!.length + 3072;
    const out = pattern(labels.length * size, seed);
    labels.forEach((l, i) => out.set(l, i * size));
    return out;
  };
  /** A class-name file: absent (mostly), garbage, or `count` names, possibly damaged. */
  const names = (count: number): fc.Arbitrary<Uint8Array | undefined> => {
    const text = Array.from({ length: count }, (_, i) => `class ${i}\n`).join('');
    const valid = new TextEncoder().encode(text);
    return fc.oneof(
      { weight: 3, arbitrary: fc.constant(undefined) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }) },
      { weight: 1, arbitrary: damages.map((list) => applyDamage(valid, list)) },
    );
  };
  const limit = fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined });

  it('CIFAR-10: loads consistent records or throws an Error naming the folder', () => {
    const labels = fc.array(fc.tuple(fc.integer({ min: 0, max: 9 })), {
      minLength: 1,
      maxLength: 4,
    });
    check(
      fc.property(damages, labels, fc.nat(255), names(10), limit, (list, ls, seed, meta, lim) => {
        const file = applyDamage(batch(ls, seed), list);
        const dir = writeFolder('cifar10', { 'test_batch.bin': file, 'batches.meta.txt': meta });
        const set = resultOrNamedError(
          () => loadCifar10({ dir, split: 'test', limit: lim }),
          [dir],
        );
        if (set === undefined) return;
        expectConsistent(set, 10);
        expect(set.count).toBe(Math.min(lim ?? Infinity, file.length / 3073));
        for (let n = 0; n < set.count; n++) {
          expect(set.labels[n]).toBe(file[n * 3073]);
          // Red, green and blue of pixel (0, 0) are the first byte of each plane.
          const px = [0, 1024, 2048].map((p) => file[n * 3073 + 1 + p]);
          expect([...set.images.subarray(n * 3072, n * 3072 + 3)]).toEqual(px);
        }
      }),
    );
  });

  it('CIFAR-100: loads consistent records or throws an Error naming the folder', () => {
    const labels = fc.array(
      fc.tuple(fc.integer({ min: 0, max: 19 }), fc.integer({ min: 0, max: 99 })),
      { minLength: 1, maxLength: 4 },
    );
    const kindAndNames = fc
      .boolean()
      .chain((fine) => fc.tuple(fc.constant(fine), names(fine ? 100 : 20)));
    check(
      fc.property(damages, labels, fc.nat(255), kindAndNames, (list, ls, seed, [fine, txt]) => {
        const file = applyDamage(batch(ls, seed), list);
        const kind = fine ? 'fine' : 'coarse';
        const dir = writeFolder('cifar100', {
          'train.bin': file,
          [`${kind}_label_names.txt`]: txt,
        });
        const set = resultOrNamedError(
          () => loadCifar100({ dir, split: 'train', labels: kind }),
          [dir],
        );
        if (set === undefined) return;
        expectConsistent(set, fine ? 100 : 20);
        expect(set.count).toBe(file.length / 3074);
        set.labels.forEach((l, n) => expect(l).toBe(file[n * 3074 + (fine ? 1 : 0)]));
      }),
    );
  });
});

describe('loadStl10 on damaged files', () => {
  const IMAGE_BYTES = 27648;

  it('loads consistent images or throws an Error naming the folder', () => {
    const labels = fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 1, maxLength: 3 });
    const target = fc.constantFrom('images', 'labels', 'both');
    const limit = fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined });
    check(
      fc.property(damages, labels, fc.nat(255), target, limit, (list, ls, seed, which, lim) => {
        let x: Uint8Array = pattern(ls.length * IMAGE_BYTES, seed);
        let y: Uint8Array = Uint8Array.from(ls);
        if (which !== 'labels') x = applyDamage(x, list);
        if (which !== 'images') y = applyDamage(y, list);
        const dir = writeFolder('stl10', { 'test_X.bin': x, 'test_y.bin': y });
        const set = resultOrNamedError(() => loadStl10({ dir, split: 'test', limit: lim }), [dir]);
        if (set === undefined) return;
        expectConsistent(set, 10);
        expect(set.count).toBe(Math.min(lim ?? Infinity, x.length / IMAGE_BYTES));
        expect(set.labelledCount).toBe(set.count);
        for (let n = 0; n < set.count; n++) {
          expect(set.labels[n]).toBe(y[n]! - 1);
          // Column-major planes: file byte 1 of an image is row 1, column 0 (NHWC pixel 96).
          expect(set.images[n * IMAGE_BYTES]).toBe(x[n * IMAGE_BYTES]);
          expect(set.images[n * IMAGE_BYTES + 96 * 3]).toBe(x[n * IMAGE_BYTES + 1]);
        }
      }),
    );
  });

  it('reads damaged unlabelled images with a limit or throws an Error naming the folder', () => {
    const limit = fc.integer({ min: 1, max: 4 });
    check(
      fc.property(damages, fc.integer({ min: 1, max: 3 }), limit, (list, images, lim) => {
        const x = applyDamage(pattern(images * IMAGE_BYTES, images), list);
        const dir = writeFolder('stl10-unlabeled', { 'unlabeled_X.bin': x });
        const set = resultOrNamedError(
          () => loadStl10({ dir, split: 'unlabeled', limit: lim }),
          [dir],
        );
        if (set === undefined) return;
        checkImageSet(set, 'fuzz');
        expect([set.count, set.labelledCount]).toEqual([Math.min(lim, x.length / IMAGE_BYTES), 0]);
        expect(set.labels.every((l) => l === 0)).toBe(true);
      }),
    );
  });
});
