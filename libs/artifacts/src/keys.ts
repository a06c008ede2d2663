/**
 * Key and URI validation shared by both backends. This is the first of two
 * walls around a store's root (the file backend also resolves real paths
 * before it opens anything): a key is a '/'-separated relative path whose
 * segments are plain names, and a URI is accepted only when its decoded path
 * lies under the store's root and decodes to such a key.
 */
import { ArtifactKeyError } from './errors.ts';

/** Temporary files and objects start with this; keys may not. */
export const TMP_PREFIX = '.fwtmp-';
export const MAX_KEY_LENGTH = 1024;

/** True when `s` holds a C0 control character (NUL included) or DEL. */
function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function checkSegment(ref: string, seg: string): void {
  if (seg === '') throw new ArtifactKeyError(ref, 'empty path segment (leading, trailing or doubled "/")');
  if (seg === '.' || seg === '..') throw new ArtifactKeyError(ref, `"${seg}" path segment`);
  if (seg.startsWith(TMP_PREFIX)) throw new ArtifactKeyError(ref, `segments may not start with "${TMP_PREFIX}"`);
  if (Buffer.byteLength(seg) > 255) throw new ArtifactKeyError(ref, 'path segment longer than 255 bytes');
}

/**
 * Returns `key` unchanged when it is a safe relative key, else throws
 * ArtifactKeyError naming the reason. `ref` is what the caller passed (for
 * the message).
 */
export function validateKey(key: string, ref: string = key): string {
  if (key.length === 0) throw new ArtifactKeyError(ref, 'empty key');
  if (key.length > MAX_KEY_LENGTH) throw new ArtifactKeyError(ref, `key longer than ${MAX_KEY_LENGTH} characters`);
  if (key.includes('\u0000')) throw new ArtifactKeyError(ref, 'NUL byte');
  if (hasControl(key)) throw new ArtifactKeyError(ref, 'control character');
  if (key.includes('\\')) throw new ArtifactKeyError(ref, 'backslash');
  if (key.includes('%')) throw new ArtifactKeyError(ref, '"%" in a key (percent-encoding belongs in URIs only)');
  if (key.startsWith('/')) throw new ArtifactKeyError(ref, 'absolute path');
  for (const seg of key.split('/')) checkSegment(ref, seg);
  return key;
}

/**
 * Validates a list() prefix: '' (everything), a folder ending in '/', or a
 * key prefix whose last segment may be partial.
 */
export function validatePrefix(prefix: string): string {
  if (prefix === '') return prefix;
  const body = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  validateKey(body, prefix);
  return prefix;
}

/**
 * Percent-decodes the segments of a URI path and returns the key they form.
 * A decoded segment holding '/', '\\' or NUL (from %2f, %5c, %00) is refused
 * rather than allowed to change the path's shape after validation.
 */
export function decodeUriPath(rawPath: string, ref: string): string[] {
  if (/[?#]/.test(rawPath)) throw new ArtifactKeyError(ref, 'query or fragment in an artifact URI');
  return rawPath.split('/').map((raw) => {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      throw new ArtifactKeyError(ref, 'malformed percent-encoding');
    }
    if (seg.includes('/')) throw new ArtifactKeyError(ref, 'encoded "/" (%2f) in a path segment');
    if (seg.includes('\\')) throw new ArtifactKeyError(ref, 'backslash');
    if (seg.includes('\u0000')) throw new ArtifactKeyError(ref, 'NUL byte');
    if (seg === '.' || seg === '..') throw new ArtifactKeyError(ref, `"${seg}" path segment`);
    return seg;
  });
}

/** Percent-encodes each segment of a key for use in a file:// URI. */
export function encodeKeyPath(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

/** Content-addressed key of a sha256 hex digest: sha256/<first two hex>/<hash>. */
export function contentKey(sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new ArtifactKeyError(sha256, 'not a lower-case hex sha256');
  return `sha256/${sha256.slice(0, 2)}/${sha256}`;
}

/** True when `s` looks like a URI with a scheme rather than a key. */
export function hasScheme(s: string): boolean {
  return /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(s);
}
