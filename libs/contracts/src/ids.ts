/** Stable event ids: the same name always gives the same UUID, so a re-publish deduplicates (Nats-Msg-Id). */
import { createHash } from 'node:crypto';

/** A name-based UUID (version 8 layout, sha256 of the name). */
export function stableUuid(name: string): string {
  const h = createHash('sha256').update(name).digest();
  h[6] = (h[6]! & 0x0f) | 0x80; // version 8: custom, name-based
  h[8] = (h[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}
