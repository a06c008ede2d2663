/** What the parsers yield: a record as read from the source, before cleaning. */

/** Input formats the data service understands. `auto` picks one from the name or the bytes. */
export const INPUT_FORMATS = ['jsonl', 'csv', 'parquet', 'text'] as const;
export type InputFormat = (typeof INPUT_FORMATS)[number];

/** A record read from the source. `id` is stable: the line, row or paragraph it came from. */
export interface SourceRecord {
  id: string;
  text?: string;
  prompt?: string;
  completion?: string;
  /** Every other column / key, kept for stratified splits and provenance. */
  fields: Record<string, unknown>;
}

/** A record that could not be read, with the reason; the job goes on without it. */
export interface QuarantineEntry {
  ref: string;
  reason: string;
  /** The first bytes of the offending input, as text, for the report. */
  sample: string;
}

export type ParsedItem = { kind: 'record'; record: SourceRecord } | { kind: 'quarantine'; entry: QuarantineEntry };

export interface ParseOptions {
  /** Records larger than this are quarantined without ever being held whole. */
  maxRecordBytes: number;
  /** What to do with bytes that are not valid UTF-8. */
  utf8: 'repair' | 'reject';
  /** Column / key holding the text (default `text`); `prompt` + `completion` are always recognised. */
  textField: string;
  /** Plain text: one document per paragraph (blank-line separated), per line, or the whole file. */
  textSplit: 'paragraph' | 'line' | 'file';
}

/** Random access to the stored upload, for formats that need it (Parquet). */
export interface RandomAccessSource {
  byteLength: number;
  read(start: number, end: number): Promise<ArrayBuffer>;
}

/** Raised when the whole input is unusable (not one record in it can be read). */
export class InputError extends Error {
  override name = 'InputError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
export const isInputError = (e: unknown): e is InputError => e instanceof InputError;
