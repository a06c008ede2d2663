import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { englishDoc, rng } from './corpus.ts';
import { readRecords } from './run-file.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fw-run-file-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('run-file', () => {
  it('run-file - reads JSONL into records with line ids and the other keys as fields; skips bad lines', async () => {
    const p = join(dir, 'in.jsonl');
    await writeFile(p, '{"text":"a","lang":"en"}\n\nnot json\n{"prompt":"q","completion":"c"}\n');
    const got = [];
    for await (const r of readRecords(p)) got.push(r);
    expect(got).toEqual([
      { id: '1', text: 'a', prompt: undefined, completion: undefined, fields: { lang: 'en' } },
      { id: '4', text: undefined, prompt: 'q', completion: 'c', fields: {} },
    ]);
  });

  it('run-file - cleans a file end to end from the command line', async () => {
    const r = rng(5);
    const input = join(dir, 'corpus.jsonl');
    const lines = Array.from({ length: 30 }, () => JSON.stringify({ text: englishDoc(r, 600) }));
    await writeFile(input, `${[...lines, lines[0]].join('\n')}\n`);
    const script = fileURLToPath(new URL('./run-file.ts', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, [script, input, join(dir, 'out')]);
    expect(stdout).toMatch(/exact_dedup\s+31 -> 30\s+exact_duplicate 1/);
    const report = JSON.parse(await readFile(join(dir, 'out', 'report.json'), 'utf8')) as { records_out: number };
    expect(report.records_out).toBe(30);
  });
});
