/**
 * End to end over real HTTP, NATS and Postgres: upload a corpus, receive
 * `fw.data.dataset.ready`, read the manifest and the shards back, and check
 * that the shards' token counts match the manifest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { context, propagation, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { startTelemetry } from '@flywheel/telemetry';
import { corpus, startHarness, type Harness } from './harness.ts';

const exporter = new InMemorySpanExporter();
const telemetry = startTelemetry({ serviceName: 'data-test', spanProcessors: [new SimpleSpanProcessor(exporter)], env: {} });

let h: Harness;
let base: string;

beforeAll(async () => {
  h = await startHarness();
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  const addr = h.app.server.address();
  base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
});
afterAll(async () => {
  await h?.close();
  await telemetry.shutdown();
});

/** Parses a FWSHARD1 header (docs/formats.md) and checks the body length against it. */
function readShard(buf: Buffer) {
  expect(buf.subarray(0, 8).toString('latin1')).toBe('FWSHARD1');
  const width = buf.readUInt32LE(12);
  const nTokens = Number(buf.readBigUInt64LE(16));
  const nDocs = Number(buf.readBigUInt64LE(24));
  const flags = buf.readUInt32LE(36);
  const offsetsEnd = 64 + 8 * (nDocs + 1);
  const promptEnd = offsetsEnd + (flags & 1 ? 4 * nDocs : 0);
  expect(buf.length).toBe(promptEnd + width * nTokens);
  expect(Number(buf.readBigUInt64LE(offsetsEnd - 8))).toBe(nTokens);
  return { width, nTokens, nDocs, vocab: buf.readUInt32LE(32) };
}

async function upload(name: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/v1/datasets/${name}/uploads?format=jsonl`, {
    method: 'POST',
    headers: { ...h.auth, 'content-type': 'application/x-ndjson', ...headers },
    body,
  });
  expect(res.status).toBe(202);
  return (await res.json()) as { job: { id: string }; existing: boolean };
}

describe('data service end to end', () => {
  it('data e2e - an uploaded corpus becomes a ready, tokenised version whose shards match the manifest', async () => {
    const accepted = await upload('books', corpus(400));
    const ready = await h.waitReady('books');
    expect(ready.data.splits.map((s) => s.name).sort()).toEqual(['test', 'train', 'val']);

    const job = await (await fetch(`${base}/v1/jobs/${accepted.job.id}`, { headers: h.auth })).json();
    expect(job).toMatchObject({ status: 'succeeded', version: ready.data.version, attempts: 1 });

    const manifest = (await (await fetch(`${base}/v1/datasets/books/versions/${ready.data.version}/manifest`, { headers: h.auth })).json()) as {
      counts: { records_out: number; tokens: number };
      splits: { name: string; records: number; tokens: number; shards: { file: string; n_tokens: number; n_docs: number; sha256: string }[] }[];
    };
    let total = 0;
    for (const split of manifest.splits) {
      let splitTokens = 0;
      for (const s of split.shards) {
        const res = await fetch(`${base}/v1/datasets/books/versions/${ready.data.version}/shards/${s.file}`, { headers: h.auth });
        expect(res.status).toBe(200);
        const buf = Buffer.from(await res.arrayBuffer());
        const parsed = readShard(buf);
        expect(parsed.nTokens).toBe(s.n_tokens);
        expect(parsed.nDocs).toBe(s.n_docs);
        expect(res.headers.get('x-sha256')).toBe(s.sha256);
        splitTokens += parsed.nTokens;
      }
      expect(splitTokens).toBe(split.tokens);
      total += splitTokens;
      // The split's records stream back as JSONL, as many as the manifest says.
      const recs = (await (await fetch(`${base}/v1/datasets/books/versions/${ready.data.version}/splits/${split.name}`, { headers: h.auth })).text())
        .split('\n')
        .filter(Boolean);
      expect(recs.length).toBe(split.records);
    }
    expect(total).toBe(manifest.counts.tokens);
    expect(total).toBeGreaterThan(0);

    const report = (await (await fetch(`${base}/v1/datasets/books/versions/latest/report`, { headers: h.auth })).json()) as {
      stages: { stage: string; records_in: number; records_out: number }[];
    };
    expect(report.stages.map((s) => s.stage)).toContain('near_dedup');
    const list = (await (await fetch(`${base}/v1/datasets`, { headers: h.auth })).json()) as { items: { name: string; versions: number }[] };
    expect(list.items).toContainEqual(expect.objectContaining({ name: 'books', versions: 1 }));
  });

  it('data e2e - the same bytes ingested twice give the same version, not a second copy', async () => {
    const body = corpus(120, 7);
    await upload('twice', body);
    const first = await h.waitReady('twice');
    const again = await upload('twice', body);
    const job = await waitJob(again.job.id);
    expect(job.version).toBe(first.data.version);
    const versions = (await (await fetch(`${base}/v1/datasets/twice/versions`, { headers: h.auth })).json()) as { items: unknown[] };
    expect(versions.items).toHaveLength(1);
    // The raw upload is stored once (content addressed).
    let raw = 0;
    for await (const s of h.artifacts.list('sha256/')) if (s.size === Buffer.byteLength(body)) raw++;
    expect(raw).toBe(1);
  });

  it('data e2e - a new version is deduplicated against earlier ones, but not against its own source', async () => {
    const first = corpus(100, 21);
    await upload('grow', first);
    const v1 = await h.waitReady('grow');
    // Same bytes, another config: a second version with every record, not an empty one.
    const res = await fetch(`${base}/v1/datasets/grow/uploads?format=jsonl&config=${encodeURIComponent('{"split":{"seed":7}}')}`, {
      method: 'POST',
      headers: { ...h.auth, 'content-type': 'application/x-ndjson' },
      body: first,
    });
    const again = await waitJob(((await res.json()) as { job: { id: string } }).job.id);
    expect(again.status).toBe('succeeded');
    expect(again.version).not.toBe(v1.data.version);
    const recordsOf = async (version: string) =>
      ((await h.datasets.version('grow', version))!.report as { records_out: number }).records_out;
    expect(await recordsOf(again.version!)).toBe(await recordsOf(v1.data.version));
    // Old records plus new ones: only the new ones survive.
    const grown = first + corpus(50, 22);
    const third = await waitJob((await upload('grow', grown)).job.id);
    expect(third.status).toBe('succeeded');
    const report = (await h.datasets.version('grow', third.version!))!.report as {
      records_in: number;
      records_out: number;
      stages: { stage: string; removed_by_reason: Record<string, number> }[];
    };
    expect(report.records_in).toBe(150);
    // The new records alone, cleaned in a dataset of their own, keep exactly as many.
    const alone = await waitJob((await upload('grow-new-only', corpus(50, 22))).job.id);
    const aloneReport = (await h.datasets.version('grow-new-only', alone.version!))!.report as { records_out: number };
    expect(aloneReport.records_out).toBeGreaterThan(0);
    expect(report.records_out).toBe(aloneReport.records_out);
    const nearDup = report.stages.find((st) => st.stage === 'near_dedup')!.removed_by_reason;
    expect(nearDup['near_duplicate_prior']).toBeGreaterThan(0);
  });

  it('data e2e - one trace id runs from the HTTP request through the publish, the consumer and its database write', async () => {
    exporter.reset();
    const span = telemetry.tracer.startSpan('client');
    const carrier: Record<string, string> = {};
    propagation.inject(trace.setSpan(context.active(), span), carrier);
    const traceId = span.spanContext().traceId;
    const accepted = await upload('traced', corpus(60, 3), carrier);
    span.end();
    await h.waitReady('traced');
    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const kinds = spans.map((s) => s.kind);
    expect(kinds).toContain(1); // SERVER: the HTTP request
    expect(kinds).toContain(3); // PRODUCER: the publish
    expect(kinds).toContain(4); // CONSUMER: the ingest handler
    const row = await h.db.query<{ trace_id: string }>(`SELECT trace_id FROM jobs WHERE id = $1`, [accepted.job.id]);
    expect(row.rows[0]!.trace_id).toBe(traceId);
  });
});

async function waitJob(id: string, timeoutMs = 60_000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const job = (await (await fetch(`${base}/v1/jobs/${id}`, { headers: h.auth })).json()) as { status: string; version?: string; error?: string };
    if (job.status === 'succeeded' || job.status === 'failed') return job;
    if (Date.now() > until) throw new Error(`job ${id} still ${job.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
