/**
 * Runs the cleaning pipeline on a local JSONL file, without the service:
 *
 *   node services/data/src/pipeline/run-file.ts <input.jsonl> <out-dir> [config.json]
 *
 * Each line is an object with `text`, or `prompt` and `completion`; other
 * keys become `fields`. Prints one line per stage and writes report.json
 * next to the split files and shards in <out-dir>.
 */
import { createReadStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { BYTE_LEVEL_TOKENIZER_PATH } from '../tokenize/tokenizer.ts';
import { createPipeline } from './pipeline.ts';
import type { InputRecord } from './types.ts';

export async function* readRecords(path: string): AsyncGenerator<InputRecord> {
  let n = 0;
  for await (const line of createInterface({ input: createReadStream(path), crlfDelay: Infinity })) {
    n++;
    if (line.trim() === '') continue;
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      console.error(`${path}:${n}: not JSON, skipped`);
      continue;
    }
    const { text, prompt, completion, ...fields } = o;
    const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
    yield { id: String(n), text: str(text), prompt: str(prompt), completion: str(completion), fields };
  }
}

if (import.meta.main) {
  const [input, out, configPath] = process.argv.slice(2);
  if (!input || !out) {
    console.error('usage: node run-file.ts <input.jsonl> <out-dir> [config.json]');
    process.exit(2);
  }
  const config = configPath ? (JSON.parse(await readFile(configPath, 'utf8')) as object) : {};
  const pipeline = createPipeline(config, { tokenizer: { path: BYTE_LEVEL_TOKENIZER_PATH }, workDir: out });
  const { report } = await pipeline.run(readRecords(input));
  await writeFile(join(out, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  for (const s of report.stages) {
    const removed = Object.entries(s.removed_by_reason).map(([k, v]) => `${k} ${v}`).join(', ');
    const changed = Object.entries(s.changed).map(([k, v]) => `${k} ${v}`).join(', ');
    console.log(`${s.stage.padEnd(12)} ${String(s.records_in).padStart(7)} -> ${String(s.records_out).padEnd(7)} ${removed}${changed ? ` | changed: ${changed}` : ''}`);
  }
  const mb = report.bytes_in / 1e6;
  console.log(`${report.records_in} records (${mb.toFixed(1)} MB) -> ${report.records_out} in ${report.duration_ms} ms (${(mb / (report.duration_ms / 1000)).toFixed(1)} MB/s); LSH ${report.lsh.bands}x${report.lsh.rows}`);
  for (const [k, v] of Object.entries(report.splits)) console.log(`${k.padEnd(6)} ${v.n_records} records, ${v.n_tokens} tokens`);
}
