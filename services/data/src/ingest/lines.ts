/**
 * Splits a byte stream into lines without ever holding more than
 * `maxLineBytes` of one line in memory. A line longer than that is skipped
 * (its bytes are dropped as they arrive) and reported as `oversized`, so a
 * single 100 MB line costs no more memory than a short one.
 */

export type LineItem =
  | { kind: 'line'; lineNo: number; bytes: Buffer }
  | { kind: 'oversized'; lineNo: number; size: number };

export async function* splitLines(
  source: AsyncIterable<Buffer | string>,
  maxLineBytes: number,
): AsyncGenerator<LineItem> {
  let parts: Buffer[] = [];
  let held = 0; // bytes held in `parts`
  let size = 0; // full size of the current line, including dropped bytes
  let lineNo = 1;

  const finish = (): LineItem => {
    const item: LineItem =
      size > maxLineBytes
        ? { kind: 'oversized', lineNo, size }
        : { kind: 'line', lineNo, bytes: stripCr(parts.length === 1 ? parts[0]! : Buffer.concat(parts, held)) };
    parts = [];
    held = 0;
    size = 0;
    lineNo++;
    return item;
  };

  for await (const chunk of source) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let start = 0;
    while (start < buf.length) {
      const nl = buf.indexOf(0x0a, start);
      const end = nl === -1 ? buf.length : nl;
      const piece = buf.subarray(start, end);
      size += piece.length;
      if (size <= maxLineBytes) {
        parts.push(piece);
        held += piece.length;
      } else if (held > 0) {
        parts = []; // over the limit: stop holding this line
        held = 0;
      }
      if (nl === -1) break;
      yield finish();
      start = nl + 1;
    }
  }
  if (size > 0 || held > 0) yield finish();
}

function stripCr(b: Buffer): Buffer {
  return b.length > 0 && b[b.length - 1] === 0x0d ? b.subarray(0, b.length - 1) : b;
}
