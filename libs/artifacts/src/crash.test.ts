/**
 * A writer process killed (SIGKILL) in the middle of a put leaves nothing
 * under the target key: at most a ".fwtmp-" file, which no key can name
 * and list() skips.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFileStore } from './index.ts';
import { collect } from './testing.ts';

const storeModule = fileURLToPath(new URL('./index.ts', import.meta.url));

// Child: writes 1 MiB, announces it on stdout, then waits forever mid-put.
const childSource = `
import { Readable } from 'node:stream';
const { createFileStore } = await import(process.argv[1]);
const store = createFileStore({ root: process.argv[2] });
const src = new Readable({ read() {} });
src.push(Buffer.alloc(1 << 20, 1));
store.put('models/big.bin', src);
setTimeout(() => process.stdout.write('half\\n'), 200);
setInterval(() => {}, 1000);
`;

describe('artifact crash', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'fw-artifacts-crash-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('artifact crash - a writer killed mid-put leaves no object that looks whole', async () => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', childSource, storeModule, root], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('half') && resolve());
      child.on('exit', (code) => reject(new Error(`child exited early (${code})`)));
    });
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGKILL');
    await exited;

    const names = await readdir(join(root, 'models'));
    expect(names.length).toBe(1);
    expect(names[0]).toMatch(/^\.fwtmp-[0-9a-f]+$/);
    const store = createFileStore({ root });
    expect(await store.exists('models/big.bin')).toBe(false);
    expect(await collect(store.list())).toEqual([]);
    // A fresh temporary file is kept (it could be a live write); an old one is swept.
    expect(await store.sweepTemporary(60_000)).toBe(0);
    expect(await store.sweepTemporary(0)).toBe(1);
    expect(await readdir(join(root, 'models'))).toEqual([]);
  });
});
