/**
 * A progress bar on stderr for long loops: a bar when stderr is a terminal, otherwise one
 * plain line every few seconds, so logs stay readable in CI and in files.
 */

export interface ProgressOptions {
  label: string;
  total: number;
  /** Seconds between plain lines when stderr is not a terminal. Default 15. */
  plainEvery?: number;
  quiet?: boolean;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : `${m}m${String(r).padStart(2, '0')}s`;
}

/** A progress bar: call `tick(done, info)` as work completes and `end()` once. */
export class Progress {
  private readonly start = Date.now();
  private lastPlain = 0;
  private readonly tty = process.stderr.isTTY === true;

  constructor(readonly opts: ProgressOptions) {}

  tick(done: number, info: Record<string, string | number> = {}): void {
    if (this.opts.quiet) return;
    const elapsed = (Date.now() - this.start) / 1000;
    const rate = done / Math.max(elapsed, 1e-9);
    const eta = (this.opts.total - done) / Math.max(rate, 1e-9);
    const fields = Object.entries(info)
      .map(([k, v]) => `${k} ${typeof v === 'number' ? v.toFixed(4) : v}`)
      .join('  ');
    const text = `${this.opts.label} ${done}/${this.opts.total}  ${fields}  ETA ${formatDuration(eta)}`;
    if (this.tty) {
      const width = 24;
      const filled = Math.round((width * done) / Math.max(this.opts.total, 1));
      const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
      process.stderr.write(`\r[${bar}] ${text}\x1b[K`);
    } else if (
      elapsed - this.lastPlain >= (this.opts.plainEvery ?? 15) ||
      done === this.opts.total
    ) {
      this.lastPlain = elapsed;
      process.stderr.write(`${text}\n`);
    }
  }

  end(): void {
    if (!this.opts.quiet && this.tty) process.stderr.write('\n');
  }
}

export { formatDuration };
