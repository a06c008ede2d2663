/**
 * `node services/data/src/cli.ts ingest FILE --dataset NAME`: uploads a file
 * to the data service, waits for its job and prints the cleaning report.
 * Exit codes: 0 ready, 1 the job failed, 2 bad usage, 3 the service could not be reached.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';

const USAGE = `usage: cli.ts ingest FILE --dataset NAME [--format jsonl|csv|parquet|text|auto] [--config JSON] [--json]
  environment: FW_DATA_URL (default http://127.0.0.1:8081), FW_API_TOKEN`;

interface StageReport {
  stage: string;
  enabled: boolean;
  records_in: number;
  records_out: number;
  removed_by_reason: Record<string, number>;
  changed: Record<string, number>;
  examples: { id: string; action: string; reason: string; before?: string; after?: string }[];
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      dataset: { type: 'string' },
      format: { type: 'string', default: 'auto' },
      config: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help || positionals[0] !== 'ingest' || !positionals[1] || !values.dataset) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  const base = process.env['FW_DATA_URL'] ?? 'http://127.0.0.1:8081';
  const token = process.env['FW_API_TOKEN'] ?? '';
  const file = positionals[1];
  const size = (await stat(file)).size;
  const q = new URLSearchParams({ format: values.format!, filename: basename(file) });
  if (values.config) q.set('config', values.config);
  const auth = { authorization: `Bearer ${token}` };

  const res = await fetch(`${base}/v1/datasets/${encodeURIComponent(values.dataset)}/uploads?${q}`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(size) },
    body: Readable.toWeb(createReadStream(file)) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  const accepted = (await res.json()) as { job?: { id: string }; version?: { version: string }; existing: boolean; detail?: string };
  if (!res.ok) {
    console.error(`upload refused (${res.status}): ${accepted.detail ?? JSON.stringify(accepted)}`);
    return 1;
  }
  let version = accepted.version?.version;
  if (!version) {
    const jobId = accepted.job!.id;
    const tty = process.stderr.isTTY;
    const deadline = Date.now() + Number(process.env['FW_CLI_TIMEOUT_S'] ?? 1800) * 1000;
    let last = '';
    for (;;) {
      if (Date.now() > deadline) {
        console.error(`\ngave up waiting for job ${jobId} (FW_CLI_TIMEOUT_S)`);
        return 1;
      }
      await new Promise((r) => setTimeout(r, 500));
      const job = (await (await fetch(`${base}/v1/jobs/${jobId}`, { headers: auth })).json()) as {
        status: string;
        error?: string;
        version?: string;
        progress: Record<string, unknown>;
      };
      const line = `job ${jobId}: ${job.status} ${String(job.progress['stage'] ?? '')} ${String(job.progress['recordsRead'] ?? 0)} records read`;
      if (line !== last) process.stderr.write(tty ? `\r${line}   ` : `${line}\n`);
      last = line;
      if (job.status === 'failed') {
        if (tty) process.stderr.write('\n');
        console.error(`job failed: ${job.error}`);
        return 1;
      }
      if (job.status === 'succeeded') {
        version = job.version!;
        if (tty) process.stderr.write('\n');
        break;
      }
    }
  }
  const name = encodeURIComponent(values.dataset);
  const report = (await (await fetch(`${base}/v1/datasets/${name}/versions/${version}/report`, { headers: auth })).json()) as {
    records_in: number;
    records_out: number;
    stages: StageReport[];
    splits: Record<string, { n_records: number; n_tokens: number }>;
    lsh: { bands: number; rows: number; threshold: number; num_perm: number };
  };
  if (values.json) {
    console.log(JSON.stringify({ dataset: values.dataset, version, report }, null, 2));
    return 0;
  }
  printReport(values.dataset, version, report);
  return 0;
}

function printReport(dataset: string, version: string, r: {
  records_in: number;
  records_out: number;
  stages: StageReport[];
  splits: Record<string, { n_records: number; n_tokens: number }>;
  lsh: { bands: number; rows: number; threshold: number; num_perm: number };
}) {
  console.log(`\nCleaning report: ${dataset}@${version}  (${r.records_in} records in, ${r.records_out} out)\n`);
  console.log(`${'stage'.padEnd(12)} ${'in'.padStart(8)} ${'out'.padStart(8)}  removed / changed`);
  for (const s of r.stages) {
    if (!s.enabled) {
      console.log(`${s.stage.padEnd(12)} ${'-'.padStart(8)} ${'-'.padStart(8)}  (off)`);
      continue;
    }
    const removed = Object.entries(s.removed_by_reason).map(([k, v]) => `${k}: ${v}`);
    const changed = Object.entries(s.changed).map(([k, v]) => `${k}: ${v} changed`);
    console.log(`${s.stage.padEnd(12)} ${String(s.records_in).padStart(8)} ${String(s.records_out).padStart(8)}  ${[...removed, ...changed].join(', ')}`);
  }
  console.log(`\nnear-dedup: MinHash ${r.lsh.num_perm} permutations, LSH ${r.lsh.bands} bands x ${r.lsh.rows} rows, Jaccard ${r.lsh.threshold}`);
  for (const [split, s] of Object.entries(r.splits)) console.log(`split ${split.padEnd(6)} ${String(s.n_records).padStart(7)} records ${String(s.n_tokens).padStart(10)} tokens`);
  const examples = r.stages.flatMap((s) => s.examples.slice(0, 1).map((e) => ({ stage: s.stage, ...e })));
  if (examples.length) {
    console.log('\nexamples:');
    for (const e of examples) console.log(`  [${e.stage}] ${e.action} (${e.reason}): ${(e.after ?? e.before ?? '').replace(/\s+/g, ' ').slice(0, 100)}`);
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    console.error(`error: ${e.message}`);
    process.exit(3);
  },
);
