/**
 * Damage to a file's bytes for the parsers' property tests (packages/{core,data}/test/fuzz):
 * truncation, flipped bits, replacement by garbage, appended bytes, and bytes written over a
 * position (huge values over length fields). Each test file draws its own damages.
 */

/** One damage; positions are taken modulo the length of the bytes they apply to. */
export type Damage =
  | { truncate: number }
  | { flips: [number, number][] }
  | { garbage: Uint8Array }
  | { append: Uint8Array }
  | { write: number; bytes: readonly number[] };

/** A damaged copy of `bytes`, the damages applied in order. */
export function applyDamage(bytes: Uint8Array, list: readonly Damage[]): Uint8Array {
  let out = Uint8Array.from(bytes);
  for (const d of list) {
    if ('truncate' in d) out = out.slice(0, d.truncate % (out.length + 1));
    else if ('garbage' in d) out = Uint8Array.from(d.garbage);
    else if ('append' in d) out = Uint8Array.from([...out, ...d.append]);
    else if ('flips' in d) {
      for (const [at, mask] of d.flips) if (out.length > 0) out[at % out.length]! ^= mask;
    } else if (out.length > 0) {
      d.bytes.forEach((b, i) => {
        const at = (d.write % out.length) + i;
        if (at < out.length) out[at] = b;
      });
    }
  }
  return out;
}
