/**
 * The progress line of `runs submit --watch`: a bar, step counts, live loss,
 * tokens/s and an ETA from the recent step rate. Redrawn in place on a TTY,
 * one line every few seconds otherwise (logs, CI).
 */

export interface ProgressState {
  step: number;
  maxSteps: number;
  loss: number | null;
  tokensPerSecond: number | null;
  attempt: number;
  restarts: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  const mm = String(m).padStart(2, '0');
  const ss = String(r).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function formatRate(tps: number | null): string {
  if (tps === null) return '-';
  if (tps >= 1e6) return `${(tps / 1e6).toFixed(1)}M`;
  if (tps >= 1e3) return `${(tps / 1e3).toFixed(1)}k`;
  return tps.toFixed(0);
}

/** One line: `[#####-----]  120/400  30%  loss 3.214  12.3k tok/s  ETA 00:42  (restarts 1)`. */
export function renderProgress(p: ProgressState, etaSeconds: number, width = 30): string {
  const frac = p.maxSteps > 0 ? Math.min(1, p.step / p.maxSteps) : 0;
  const fill = Math.round(frac * width);
  const bar = `[${'#'.repeat(fill)}${'-'.repeat(width - fill)}]`;
  const loss = p.loss === null ? '-' : p.loss.toFixed(4);
  const restarts = p.restarts > 0 ? `  (restarts ${p.restarts})` : '';
  return `${bar} ${String(p.step).padStart(String(p.maxSteps).length)}/${p.maxSteps} ${String(Math.floor(frac * 100)).padStart(3)}%  loss ${loss}  ${formatRate(p.tokensPerSecond)} tok/s  ETA ${formatDuration(etaSeconds)}${restarts}`;
}

/** Estimates the time left from the steps seen in the last `windowMs`. */
export function createEta(windowMs = 10_000) {
  const points: { t: number; step: number }[] = [];
  return {
    add(step: number, t = Date.now()) {
      points.push({ t, step });
      while (points.length > 2 && t - points[0]!.t > windowMs) points.shift();
    },
    secondsLeft(maxSteps: number): number {
      if (points.length < 2) return NaN;
      const a = points[0]!;
      const b = points.at(-1)!;
      const rate = (b.step - a.step) / ((b.t - a.t) / 1000);
      return rate > 0 ? (maxSteps - b.step) / rate : NaN;
    },
  };
}
