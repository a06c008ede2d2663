/**
 * Stage 1: map a parsed record to exactly one record schema, decode and
 * check UTF-8, NFC, strip control characters.
 *
 * A field given as bytes is decoded here; invalid sequences become U+FFFD.
 * A string that already holds U+FFFD (the parser decoded it) or a lone
 * surrogate counts as invalid UTF-8 too. Policy 'repair' keeps the
 * replacement characters, 'reject' drops the record.
 */
import type { PipelineConfig } from './config.ts';
import type { CleanRecord, InputRecord } from './types.ts';

export type NormaliseResult =
  | { ok: true; record: CleanRecord; changes: string[] }
  | { ok: false; reason: string };

const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: false });
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\uFEFF]/g;

function decodeField(v: string | Uint8Array | undefined): { s: string | undefined; invalid: boolean } {
  if (v === undefined || v === null) return { s: undefined, invalid: false };
  let s: string;
  if (typeof v === 'string') s = v;
  else if (v instanceof Uint8Array) s = decoder.decode(v);
  else return { s: String(v), invalid: false };
  let invalid = false;
  if (!s.isWellFormed()) {
    s = s.toWellFormed();
    invalid = true;
  }
  if (s.includes('\uFFFD')) invalid = true;
  return { s, invalid };
}

function cleanField(s: string, cfg: PipelineConfig['normalise'], changes: Set<string>): string {
  let t = s;
  if (t.includes('\r')) t = t.replace(/\r\n?/g, '\n');
  if (cfg.strip_control) {
    CONTROL.lastIndex = 0;
    if (CONTROL.test(t)) {
      CONTROL.lastIndex = 0;
      t = t.replace(CONTROL, '');
      changes.add('control_chars');
    }
  }
  if (cfg.nfc) {
    const n = t.normalize('NFC');
    if (n !== t) changes.add('nfc');
    t = n;
  }
  if (cfg.trim) t = t.trim();
  return t;
}

export function normaliseRecord(input: InputRecord, cfg: PipelineConfig['normalise']): NormaliseResult {
  if (input === null || typeof input !== 'object' || typeof input.id !== 'string') return { ok: false, reason: 'malformed_record' };
  const text = decodeField(input.text);
  const prompt = decodeField(input.prompt);
  const completion = decodeField(input.completion);
  const hasPair = prompt.s !== undefined || completion.s !== undefined;
  if (text.s !== undefined && hasPair) return { ok: false, reason: 'mixed_schema' };
  if (text.s === undefined && !hasPair) return { ok: false, reason: 'no_text' };
  if (hasPair && (prompt.s === undefined || completion.s === undefined)) return { ok: false, reason: 'incomplete_pair' };
  const invalid = text.invalid || prompt.invalid || completion.invalid;
  if (invalid && cfg.utf8 === 'reject') return { ok: false, reason: 'invalid_utf8' };
  const changes = new Set<string>();
  if (invalid) changes.add('utf8_repaired');
  const fields = input.fields && Object.keys(input.fields).length > 0 ? { fields: input.fields } : {};
  if (text.s !== undefined) {
    const t = cleanField(text.s, cfg, changes);
    if (t.length === 0) return { ok: false, reason: 'empty' };
    return { ok: true, record: { id: input.id, text: t, ...fields }, changes: [...changes] };
  }
  const p = cleanField(prompt.s!, cfg, changes);
  const c = cleanField(completion.s!, cfg, changes);
  if (p.length === 0 || c.length === 0) return { ok: false, reason: 'empty' };
  return { ok: true, record: { id: input.id, prompt: p, completion: c, ...fields }, changes: [...changes] };
}
