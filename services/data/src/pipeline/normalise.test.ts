import { describe, expect, it } from 'vitest';
import { resolveConfig } from './config.ts';
import { normaliseRecord } from './normalise.ts';

const cfg = resolveConfig({}).normalise;
const reject = resolveConfig({ normalise: { utf8: 'reject' } }).normalise;

describe('normalise', () => {
  it('normalise - maps text and prompt/completion records to one schema each', () => {
    expect(normaliseRecord({ id: '1', text: ' hello ', fields: { a: 1 } }, cfg)).toEqual({
      ok: true,
      record: { id: '1', text: 'hello', fields: { a: 1 } },
      changes: [],
    });
    const r = normaliseRecord({ id: '2', prompt: 'Q?', completion: 'A.', fields: {} }, cfg);
    expect(r).toEqual({ ok: true, record: { id: '2', prompt: 'Q?', completion: 'A.' }, changes: [] });
  });

  it('normalise - rejects records that fit no schema', () => {
    expect(normaliseRecord({ id: '1', fields: {} }, cfg)).toEqual({ ok: false, reason: 'no_text' });
    expect(normaliseRecord({ id: '1', text: 'a', prompt: 'b', completion: 'c', fields: {} }, cfg)).toMatchObject({ reason: 'mixed_schema' });
    expect(normaliseRecord({ id: '1', prompt: 'b', fields: {} }, cfg)).toMatchObject({ reason: 'incomplete_pair' });
    expect(normaliseRecord({ id: '1', text: '   \n ', fields: {} }, cfg)).toMatchObject({ reason: 'empty' });
    expect(normaliseRecord(null as never, cfg)).toMatchObject({ reason: 'malformed_record' });
  });

  it('normalise - applies NFC and strips control characters', () => {
    const r = normaliseRecord({ id: '1', text: 'cafe\u0301\u0007 ok\r\nnext', fields: {} }, cfg);
    expect(r).toMatchObject({ ok: true, record: { text: 'caf\u00e9 ok\nnext' } });
    expect(r.ok && r.changes.sort()).toEqual(['control_chars', 'nfc']);
  });

  it('normalise - repairs invalid UTF-8 bytes with U+FFFD under repair', () => {
    const bytes = Buffer.from([0x68, 0x69, 0xff, 0x20, 0xe4, 0xbd, 0xa0]); // "hi", invalid byte, " 你"
    const r = normaliseRecord({ id: '1', text: bytes, fields: {} }, cfg);
    expect(r).toMatchObject({ ok: true, record: { text: 'hi\uFFFD 你' }, changes: ['utf8_repaired'] });
  });

  it('normalise - decodes valid UTF-8 bytes without a change', () => {
    const r = normaliseRecord({ id: '1', text: Buffer.from('你好, world'), fields: {} }, cfg);
    expect(r).toEqual({ ok: true, record: { id: '1', text: '你好, world' }, changes: [] });
  });

  it('normalise - rejects invalid UTF-8 under reject, including U+FFFD strings and lone surrogates', () => {
    expect(normaliseRecord({ id: '1', text: Buffer.from([0x61, 0xc3]), fields: {} }, reject)).toEqual({ ok: false, reason: 'invalid_utf8' });
    expect(normaliseRecord({ id: '1', text: 'caf\uFFFD', fields: {} }, reject)).toEqual({ ok: false, reason: 'invalid_utf8' });
    expect(normaliseRecord({ id: '1', prompt: 'ok', completion: 'x\uD800y', fields: {} }, reject)).toEqual({ ok: false, reason: 'invalid_utf8' });
    expect(normaliseRecord({ id: '1', prompt: 'ok', completion: 'x\uD800y', fields: {} }, cfg)).toMatchObject({ ok: true, record: { completion: 'x\uFFFDy' } });
  });
});
