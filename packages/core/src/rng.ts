/**
 * Seeded random streams. Every random choice in DisCo.js (weight init, shuffling, views,
 * key-batch permutation) draws from an `Rng`, so a run with a fixed seed is repeatable and
 * its streams can be saved in a checkpoint and restored.
 *
 * The generator is xoshiro128** (Blackman and Vigna), seeded through splitmix32.
 */

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** FNV-1a hash of a string, used to derive named sub-streams. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** A generator state that survives JSON. */
export interface RngState {
  /** The four 32-bit words of the xoshiro128** state. */
  s: number[];
  /** The second normal of the last Box-Muller pair, not yet drawn; null when none is held. */
  spare: number | null;
}

/** A seeded stream of random numbers (xoshiro128**). */
export class Rng {
  private s: Uint32Array;
  private spareNormal: number | null = null;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) {
      throw new Error(`Rng: seed must be a finite number, got ${seed}`);
    }
    const next = splitmix32(Math.floor(seed));
    this.s = new Uint32Array([next(), next(), next(), next()]);
  }

  /** An independent stream derived from this one's seed state and a label. */
  fork(label: string): Rng {
    const child = new Rng(0);
    const next = splitmix32((this.s[0]! ^ hashString(label)) >>> 0);
    child.s = new Uint32Array([
      next() ^ this.s[1]!,
      next() ^ this.s[2]!,
      next() ^ this.s[3]!,
      next(),
    ]);
    return child;
  }

  /** The next 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number {
    return lo + (hi - lo) * this.uniform();
  }

  /** Integer uniform in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal draw (Box-Muller, caching the second value). */
  normal(): number {
    if (this.spareNormal !== null) {
      const v = this.spareNormal;
      this.spareNormal = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** `n` draws from N(mean, std^2). */
  normalArray(n: number, mean = 0, std = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + std * this.normal();
    return out;
  }

  /** `n` draws from U[lo, hi). */
  uniformArray(n: number, lo = 0, hi = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.uniform();
    return out;
  }

  /** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i]!;
      p[i] = p[j]!;
      p[j] = t;
    }
    return p;
  }

  /** The generator state, for checkpoints. */
  getState(): RngState {
    return { s: [...this.s], spare: this.spareNormal };
  }

  /** Restores a state taken with `getState`. */
  setState(state: RngState): void {
    if (!Array.isArray(state?.s) || state.s.length !== 4) {
      throw new Error(
        `Rng.setState: expected { s: [4 numbers], spare }, got ${JSON.stringify(state)}`,
      );
    }
    this.s = new Uint32Array(state.s.map((v) => v >>> 0));
    this.spareNormal = state.spare;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
