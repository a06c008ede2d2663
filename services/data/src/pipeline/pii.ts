/**
 * PII redaction. Each kind is a candidate pattern plus, where the format has
 * one, a validator (Luhn for cards, mod-97 for IBANs, ISO 7064 MOD 11-2 and a
 * real birth date for Chinese resident ids, the SSA rules for SSNs), so that
 * dates, version numbers, prices and ISBNs survive.
 *
 * Boundaries are written as lookarounds on ASCII letters/digits rather than
 * `\b`, so a match works inside Chinese text where no space surrounds it.
 * Kinds run in a fixed order (most specific first) and each replacement
 * token (<EMAIL>, <PHONE>, ...) cannot be matched by a later kind.
 */
import { isIPv6 } from 'node:net';
import type { PiiKind } from './config.ts';

export const PII_TOKENS: Record<PiiKind, string> = {
  email: '<EMAIL>',
  card: '<CARD>',
  iban: '<IBAN>',
  cn_id: '<ID>',
  ssn: '<ID>',
  ca_sin: '<ID>',
  in_aadhaar: '<ID>',
  nino: '<ID>',
  ip: '<IP>',
  phone: '<PHONE>',
};

const digitsOf = (s: string) => s.replace(/\D/g, '');

export function luhnValid(digits: string): boolean {
  let sum = 0;
  let dbl = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 === 0;
}

/** IBAN lengths per country (ISO 13616 registry, common countries). */
const IBAN_LENGTHS: Record<string, number> = {
  AD: 24, AE: 23, AT: 20, BE: 16, BG: 22, BH: 22, BR: 29, CH: 21, CY: 28, CZ: 24, DE: 22, DK: 18, EE: 20, ES: 24,
  FI: 18, FR: 27, GB: 22, GI: 23, GR: 27, HR: 21, HU: 28, IE: 22, IL: 23, IS: 26, IT: 27, KW: 30, KZ: 20, LI: 21,
  LT: 20, LU: 20, LV: 21, MC: 27, MT: 31, NL: 18, NO: 15, PK: 24, PL: 28, PT: 25, QA: 29, RO: 24, RS: 22, SA: 24,
  SE: 24, SI: 19, SK: 24, SM: 27, TR: 26, UA: 29,
};

export function ibanValid(raw: string): boolean {
  const iban = raw.replace(/\s/g, '').toUpperCase();
  const want = IBAN_LENGTHS[iban.slice(0, 2)];
  if (want !== undefined && iban.length !== want) return false;
  if (iban.length < 15 || iban.length > 34) return false;
  const moved = iban.slice(4) + iban.slice(0, 4);
  let rem = 0;
  for (const ch of moved) {
    const c = ch.charCodeAt(0);
    const v = c >= 65 ? String(c - 55) : ch;
    for (const d of v) rem = (rem * 10 + (d.charCodeAt(0) - 48)) % 97;
  }
  return rem === 1;
}

export function cnIdValid(id: string): boolean {
  const W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const C = '10X98765432';
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += (id.charCodeAt(i) - 48) * W[i]!;
  if (C[sum % 11] !== id[17]!.toUpperCase()) return false;
  const y = Number(id.slice(6, 10));
  const m = Number(id.slice(10, 12));
  const d = Number(id.slice(12, 14));
  if (y < 1900 || y > 2100 || m < 1 || m > 12 || d < 1) return false;
  return d <= new Date(Date.UTC(y, m, 0)).getUTCDate();
}

export function ssnValid(s: string): boolean {
  const [a, g, n] = s.split('-');
  if (!a || !g || !n) return false;
  return a !== '000' && a !== '666' && a[0] !== '9' && g !== '00' && n !== '0000';
}

// Verhoeff check digit tables (dihedral group D5), used by Aadhaar numbers.
const VD = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6], [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
  [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1], [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
  [8, 7, 6, 5, 9, 3, 2, 1, 0, 4], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];
const VP = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2], [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
  [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1], [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

export function verhoeffValid(digits: string): boolean {
  let c = 0;
  for (let i = 0; i < digits.length; i++) c = VD[c]![VP[i % 8]![digits.charCodeAt(digits.length - 1 - i) - 48]!]!;
  return c === 0;
}

interface Rule {
  kind: PiiKind;
  re: RegExp;
  /** Confirms a candidate; gets the match, its offset and the whole text (for context words). */
  valid?: (m: string, at: number, text: string) => boolean;
}

const SIN_CONTEXT = /\b(?:SIN|S\.I\.N\.|social insurance|NAS|assurance sociale)\b[^\n]{0,30}$/i;

// Not preceded/followed by an ASCII letter or digit (Chinese characters are fine neighbours).
const NB = '(?<![A-Za-z0-9])';
const NA = '(?![A-Za-z0-9])';

// IPv6 candidates (full, compressed, IPv4-mapped), confirmed by node:net.
const IPV6 = /(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})(?![\w:])/g;

const RULES: Rule[] = [
  { kind: 'email', re: /(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])/g },
  {
    kind: 'card',
    // Contiguous 13-19 digits, groups of four (16-19 digits), or Amex 4-6-5; first digit 2-6 (card networks).
    re: /(?<![\d-])(?:[2-6]\d{12,18}|[2-6]\d{3}(?:([ -])\d{4}){3}(?:\1\d{1,3})?|3[47]\d{2}([ -])\d{6}\2\d{5})(?![\d-]|\.\d)/g,
    valid: (m) => {
      const d = digitsOf(m);
      return d.length >= 13 && d.length <= 19 && luhnValid(d);
    },
  },
  {
    kind: 'iban',
    re: new RegExp(`${NB}[A-Z]{2}\\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?${NA}`, 'g'),
    valid: ibanValid,
  },
  { kind: 'cn_id', re: /(?<!\d)\d{17}[\dXx](?![\dA-Za-z])/g, valid: cnIdValid },
  { kind: 'ssn', re: /(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])/g, valid: ssnValid },
  // Canadian SIN: 9 digits grouped 3-3-3, Luhn-checked, first digit not 8. Grouped by spaces it
  // looks like a number with thousands separators, so that form needs "SIN" (or the like) just before.
  {
    kind: 'ca_sin',
    re: /(?<![\d-])[0-79]\d{2}([ -])\d{3}\1\d{3}(?![\d-]|\.\d)/g,
    valid: (m, at, text) => luhnValid(digitsOf(m)) && (m[3] === '-' || SIN_CONTEXT.test(text.slice(Math.max(0, at - 40), at))),
  },
  // Indian Aadhaar: 12 digits grouped 4-4-4 (separators required), first digit 2-9, Verhoeff-checked.
  {
    kind: 'in_aadhaar',
    re: /(?<![\d-])[2-9]\d{3}([ -])\d{4}\1\d{4}(?![\d-]|\.\d)/g,
    valid: (m) => verhoeffValid(digitsOf(m)),
  },
  {
    kind: 'nino',
    re: new RegExp(`${NB}(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\\d{2} ?\\d{2} ?\\d{2} ?[A-D]${NA}`, 'g'),
  },
  {
    kind: 'ip',
    re: /(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\d|\.\d)/g,
  },
  {
    kind: 'ip',
    re: IPV6,
    valid: (m) => isIPv6(m) && m.split(':').filter((g) => g.length > 0).length >= 2 && /[0-9A-Fa-f]{2}/.test(m),
  },
  {
    kind: 'phone',
    // International: +CC then 2-6 groups; 8-15 digits in all (E.164).
    re: /(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,6}(?!\d)/g,
    valid: (m) => {
      const n = digitsOf(m).length;
      return n >= 8 && n <= 15;
    },
  },
  // North American: (415) 555-0100, 415-555-0100, 415.555.0100; area code and exchange start with 2-9.
  { kind: 'phone', re: /(?<![\d.-])(?:\([2-9]\d{2}\) ?[2-9]\d{2}[-. ]\d{4}|[2-9]\d{2}([-. ])[2-9]\d{2}\1\d{4})(?![\d-]|\.\d)/g },
  // Trunk-0 national formats: UK 020 7946 0958, 07700 900123, 0161-496-0000; Chinese landlines 010-12345678.
  {
    kind: 'phone',
    re: /(?<![\d.-])0\d{2,4}[ -]\d{3,8}(?:[ -]\d{3,4})?(?![\d-]|\.\d)/g,
    valid: (m) => {
      const n = digitsOf(m).length;
      return n >= 10 && n <= 12;
    },
  },
  // Chinese mobile numbers, often written without separators inside Chinese text.
  { kind: 'phone', re: /(?<!\d)1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)/g },
];

export type PiiCounts = Partial<Record<PiiKind, number>>;

/** Replaces every enabled kind; counts replacements per kind. */
export function redactPii(text: string, kinds: readonly PiiKind[]): { text: string; counts: PiiCounts } {
  const counts: PiiCounts = {};
  let out = text;
  // Cheap gates: most texts hold no '@', no ':' and no digit at all.
  const hasAt = text.includes('@');
  const hasDigit = /\d/.test(text);
  const hasColon = text.includes(':');
  for (const rule of RULES) {
    if (!kinds.includes(rule.kind)) continue;
    if (rule.kind === 'email' ? !hasAt : rule.re === IPV6 ? !hasColon : !hasDigit) continue;
    rule.re.lastIndex = 0;
    if (!rule.re.test(out)) continue;
    rule.re.lastIndex = 0;
    out = out.replace(rule.re, (m: string, ...rest: unknown[]) => {
      // replace() passes the capture groups (strings or undefined), then the offset and the whole string.
      const k = rest.findIndex((x) => typeof x === 'number');
      const at = rest[k] as number;
      const whole = rest[k + 1] as string;
      if (rule.valid && !rule.valid(m, at, whole)) return m;
      counts[rule.kind] = (counts[rule.kind] ?? 0) + 1;
      return PII_TOKENS[rule.kind];
    });
  }
  return { text: out, counts };
}
