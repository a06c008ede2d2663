/**
 * Accounting for the cleaning report: records in/out per stage, removals per
 * reason, changes per kind, and the first few examples in input order.
 */
import type { PipelineConfig } from './config.ts';
import type { LshParams } from './lsh.ts';
import type { RecordEvent } from './process.ts';
import { STAGES, type StageName, type StageReport } from './types.ts';

export class ReportBuilder {
  readonly stages: Map<StageName, StageReport>;
  private readonly maxExamples: number;

  constructor(cfg: PipelineConfig, lsh: LshParams, workers: number) {
    this.maxExamples = cfg.max_examples;
    const params: Record<StageName, [boolean, Record<string, unknown>]> = {
      normalise: [true, { ...cfg.normalise }],
      quality: [cfg.quality.enabled, { ...cfg.quality, english_stop_words: 'built-in list', word_statistics: 'Latin-script text only' }],
      pii: [cfg.pii.enabled, { ...cfg.pii, report_examples: 'redacted text only' }],
      length: [cfg.length.enabled, { ...cfg.length, counted_with: 'dataset tokenizer, EOS included' }],
      perplexity: [cfg.perplexity.enabled, { ...cfg.perplexity }],
      exact_dedup: [cfg.dedup.exact, { hash: 'sha256 of the cleaned text' }],
      near_dedup: [cfg.dedup.near, { ...cfg.dedup, exact: undefined, near: undefined, bands: lsh.bands, rows: lsh.rows }],
      split: [true, { ...cfg.split }],
      tokenise: [cfg.tokenise.enabled, { ...cfg.tokenise, workers }],
    };
    this.stages = new Map(
      STAGES.map((s) => [
        s,
        { stage: s, enabled: params[s][0], records_in: 0, records_out: 0, params: params[s][1], removed_by_reason: {}, changed: {}, examples: [] },
      ]),
    );
  }

  /** Counts one record that went through the stages up to `dropped` (or all of them up to and including `through`). */
  pass(dropped: StageName | undefined, through: StageName = 'tokenise'): void {
    for (const s of STAGES) {
      const r = this.stages.get(s)!;
      r.records_in++;
      if (s === dropped) return;
      r.records_out++;
      if (s === through) return;
    }
  }

  /** Counts an event under `e.reason`; its example (while under the cap) shows `detail` when given. */
  event(id: string, e: RecordEvent, detail?: string): void {
    const r = this.stages.get(e.stage)!;
    if (e.action === 'removed') r.removed_by_reason[e.reason] = (r.removed_by_reason[e.reason] ?? 0) + 1;
    else r.changed[e.reason] = (r.changed[e.reason] ?? 0) + e.count;
    if (r.examples.length < this.maxExamples) {
      r.examples.push({
        id,
        action: e.action,
        reason: detail ?? (e.count > 1 ? `${e.reason} x${e.count}` : e.reason),
        ...(e.before === undefined ? {} : { before: e.before }),
        ...(e.after === undefined ? {} : { after: e.after }),
      });
    }
  }

  list(): StageReport[] {
    return [...this.stages.values()];
  }
}
