/**
 * Bad input, each a test: the caller gets a clear error (problem+json) or the
 * record a quarantine entry with the reason, and no other dataset is touched.
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exampleUrl, listRoutes } from '@flywheel/service';
import { subjects } from '@flywheel/contracts';
import { corpus, startHarness, type Harness } from './harness.ts';

let h: Harness;
let keep: { version: string; manifest: string };

beforeAll(async () => {
  h = await startHarness({ maxUploadBytes: 8 * 1024 ** 2, maxRecordBytes: 256 * 1024 });
  // A dataset that every bad input below must leave exactly as it is.
  const res = await upload('keep', corpus(80, 11));
  expect(res.statusCode).toBe(202);
  const ready = await h.waitReady('keep');
  const v = await h.datasets.version('keep', ready.data.version);
  keep = { version: ready.data.version, manifest: JSON.stringify(v!.manifest) };
});
afterAll(async () => {
  // Nothing already stored was touched.
  const versions = await h.datasets.versions('keep');
  expect(versions.map((v) => v.version)).toEqual([keep.version]);
  expect(JSON.stringify(versions[0]!.manifest)).toBe(keep.manifest);
  await h.close();
});

function upload(name: string, payload: string | Buffer, query = 'format=jsonl') {
  return h.app.inject({
    method: 'POST',
    url: `/v1/datasets/${name}/uploads?${query}`,
    headers: { ...h.auth, 'content-type': 'application/octet-stream' },
    payload,
  });
}

async function jobOf(res: { json(): unknown }) {
  const id = (res.json() as { job: { id: string } }).job.id;
  for (let i = 0; i < 300; i++) {
    const job = await h.jobs.get(id);
    if (job && (job.status === 'succeeded' || job.status === 'failed')) return job;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} did not finish`);
}

const problem = (res: { headers: Record<string, unknown>; json(): unknown }) => {
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  return res.json() as { type: string; status: number; detail?: string };
};

describe('data bad input', () => {
  it('data bad input - malformed JSON lines are quarantined with their line, the rest is ingested', async () => {
    const good = corpus(40, 12).trim().split('\n');
    const body = [good.slice(0, 20).join('\n'), '{"text": "unterminated', 'not json at all', '[1,2,3]', good.slice(20).join('\n')].join('\n');
    const job = await jobOf(await upload('malformed', body));
    expect(job.status).toBe('succeeded');
    const q = await h.jobs.quarantine(job.id, 100);
    expect(q.map((e) => e.ref)).toEqual(['line 21', 'line 22', 'line 23']);
    expect(q[0]!.reason).toMatch(/malformed JSON/);
    expect(q[2]!.reason).toMatch(/must be an object/);
    const res = await h.app.inject({ url: `/v1/jobs/${job.id}/quarantine`, headers: h.auth });
    expect((res.json() as { items: unknown[] }).items).toHaveLength(3);
  });

  it('data bad input - bytes that are not UTF-8 are rejected by policy with a reason', async () => {
    const lines = corpus(30, 13).trim().split('\n');
    const bad = Buffer.concat([Buffer.from('{"text":"'), Buffer.from([0xff, 0xfe, 0x41]), Buffer.from(' latin-1 junk"}')]);
    const body = Buffer.concat([Buffer.from(lines.join('\n') + '\n'), bad, Buffer.from('\n')]);
    const config = encodeURIComponent(JSON.stringify({ normalise: { utf8: 'reject' } }));
    const job = await jobOf(await upload('encoding', body, `format=jsonl&config=${config}`));
    expect(job.status).toBe('succeeded');
    const q = await h.jobs.quarantine(job.id, 10);
    expect(q).toEqual([expect.objectContaining({ ref: 'line 31', reason: expect.stringMatching(/invalid UTF-8/) })]);
  });

  it('data bad input - an empty upload is refused; an empty stored file fails its job with the reason', async () => {
    const res = await upload('empty', '');
    expect(res.statusCode).toBe(400);
    expect(problem(res).type).toBe('urn:flywheel:problem:empty-upload');
    await h.artifacts.put('incoming/empty.jsonl', Buffer.alloc(0));
    const ingest = await h.app.inject({
      method: 'POST',
      url: '/v1/datasets/empty/ingest',
      headers: h.auth,
      payload: { source: { uri: h.artifacts.uriFor('incoming/empty.jsonl') }, format: 'jsonl' },
    });
    expect(ingest.statusCode).toBe(202);
    const job = await jobOf(ingest);
    expect(job).toMatchObject({ status: 'failed', error: 'the input is empty', error_stage: 'parse' });
    const failed = await h.waitFor(subjects.dataDatasetFailed, (e) => e.data.jobId === job.id);
    expect(failed.data.reason).toBe('the input is empty');
  });

  it('data bad input - a single 100 MB line is quarantined without being held, the other records survive', async () => {
    const head = corpus(30, 14);
    const big = Buffer.alloc(100 * 1024 ** 2, 0x61);
    const body = Buffer.concat([Buffer.from(head), Buffer.from('{"text":"'), big, Buffer.from('"}\n'), Buffer.from(corpus(10, 15))]);
    await h.artifacts.put('incoming/huge.jsonl', body);
    const before = process.memoryUsage().rss;
    const job = await jobOf(
      await h.app.inject({
        method: 'POST',
        url: '/v1/datasets/huge/ingest',
        headers: h.auth,
        payload: { source: { uri: h.artifacts.uriFor('incoming/huge.jsonl') }, format: 'jsonl' },
      }),
    );
    expect(job.status).toBe('succeeded');
    const q = await h.jobs.quarantine(job.id, 10);
    expect(q).toEqual([expect.objectContaining({ ref: 'line 31', reason: expect.stringMatching(/104857\d{3} bytes exceeds the record limit/) })]);
    expect(process.memoryUsage().rss - before).toBeLessThan(150 * 1024 ** 2);
    expect((await h.datasets.version('huge', job.version!))!.report).toMatchObject({ records_in: 40 });
  }, 120_000);

  it('data bad input - an unknown format is a validation problem', async () => {
    const res = await upload('fmt', corpus(5), 'format=xml');
    expect(res.statusCode).toBe(400);
    expect(problem(res).type).toBe('urn:flywheel:problem:validation-failed');
  });

  it('data bad input - an invalid pipeline config is refused before anything is stored', async () => {
    const res = await upload('cfg', corpus(5), `format=jsonl&config=${encodeURIComponent('{"length":{"min_tokens":-4}}')}`);
    expect(res.statusCode).toBe(400);
    expect(problem(res).type).toBe('urn:flywheel:problem:invalid-pipeline-config');
  });

  it('data bad input - an upload over the limit gets 413 and leaves nothing behind', async () => {
    const count = async () => {
      let n = 0;
      for await (const _ of h.artifacts.list('sha256/')) n++;
      return n;
    };
    const before = await count();
    const res = await upload('toobig', Buffer.alloc(9 * 1024 ** 2, 0x62));
    expect(res.statusCode).toBe(413);
    expect(problem(res).type).toBe('urn:flywheel:problem:payload-too-large');
    expect(await count()).toBe(before);
  });

  it('data bad input - artifact URIs that escape the store root are refused', async () => {
    const root = h.artifacts.rootUri;
    const outside = join(h.root, 'outside');
    await mkdir(outside, { recursive: true });
    await writeFile(join(outside, 'secret.jsonl'), corpus(3));
    await mkdir(join(h.root, 'artifacts', 'incoming'), { recursive: true });
    await symlink(outside, join(h.root, 'artifacts', 'incoming', 'escape'));
    const attempts = [
      `${root}../outside/secret.jsonl`,
      `${root}incoming/../../outside/secret.jsonl`,
      `file:///etc/passwd`,
      `${root}%2e%2e/outside/secret.jsonl`,
      `${root}incoming/%2e%2e%2f%2e%2e%2foutside/secret.jsonl`,
      `${root}incoming/escape/secret.jsonl`,
      `${root}incoming/a%00b.jsonl`,
      `s3://someone-elses-bucket/data.jsonl`,
    ];
    for (const uri of attempts) {
      const res = await h.app.inject({
        method: 'POST',
        url: '/v1/datasets/traversal/ingest',
        headers: h.auth,
        payload: { source: { uri }, format: 'jsonl' },
      });
      expect(res.statusCode, uri).toBe(400);
      expect(problem(res).type, uri).toBe('urn:flywheel:problem:invalid-source-uri');
    }
    expect(await h.jobs.list({ datasetName: 'traversal', limit: 10 })).toEqual([]);
    const missing = await h.app.inject({
      method: 'POST',
      url: '/v1/datasets/traversal/ingest',
      headers: h.auth,
      payload: { source: { uri: `${root}incoming/nothing-here.jsonl` } },
    });
    expect(missing.statusCode).toBe(404);
  });

  it('data bad input - every route refuses a missing or a wrong token', async () => {
    const routes = listRoutes(h.app).filter((r) => !r.public);
    expect(routes.length).toBeGreaterThanOrEqual(10);
    for (const r of routes) {
      for (const headers of [{}, { authorization: 'Bearer wrong-token-0123456789abcdef' }, { authorization: `Basic ${h.token}` }]) {
        const res = await h.app.inject({ method: r.method as 'GET', url: exampleUrl(r.url), headers });
        expect(res.statusCode, `${r.method} ${r.url}`).toBe(401);
        if (r.method !== 'HEAD') expect(problem(res).type).toBe('urn:flywheel:problem:unauthorized');
      }
    }
  });

  it('data bad input - a redelivered ingest event is processed once', async () => {
    const res = await upload('redeliver', corpus(40, 16));
    const job = await jobOf(res);
    expect(job).toMatchObject({ status: 'succeeded', attempts: 1 });
    // The same request again, as a redelivery would bring it (a new message, same job).
    await h.bus.publish(subjects.dataIngestRequested, {
      jobId: job.id,
      datasetName: 'redeliver',
      source: { uri: job.source_uri },
      format: 'jsonl',
      config: {},
    });
    await new Promise((r) => setTimeout(r, 1500));
    const after = await h.jobs.get(job.id);
    expect(after).toMatchObject({ status: 'succeeded', attempts: 1, version: job.version });
    expect(await h.datasets.versions('redeliver')).toHaveLength(1);
    // Its ready event was announced again under the same id: JetStream kept one.
    const ready = h.events(subjects.dataDatasetReady).filter((e) => e.data.datasetName === 'redeliver');
    expect(new Set(ready.map((e) => e.id)).size).toBe(1);
  });

  it('data bad input - an ingest event that fails its schema is dead-lettered with the reason', async () => {
    const raw = { id: '5a0e8f2e-4f7c-4c59-9d1e-1b2c3d4e5f60', subject: subjects.dataIngestRequested, version: 1, time: new Date().toISOString(), data: { datasetName: '../etc', source: { uri: 'nope' }, format: 'zip' } };
    await h.bus.js.publish(h.bus.layout.wireSubject(subjects.dataIngestRequested), JSON.stringify(raw));
    const dlq = h.bus.layout.dlqWireSubject(subjects.dataIngestRequested);
    let found: { reason: string } | undefined;
    for (let i = 0; i < 50 && !found; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const m = await h.bus.jsm.streams.getMessage(h.bus.layout.deadLetters, { last_by_subj: dlq }).catch(() => undefined);
      if (m) found = m.json() as { reason: string };
    }
    expect(found?.reason).toMatch(/schema validation failed/);
    expect(await h.jobs.list({ datasetName: '../etc', limit: 5 })).toEqual([]);
  });
});
