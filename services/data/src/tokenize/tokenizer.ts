/**
 * Loading a Hugging Face `tokenizer.json` through @huggingface/tokenizers
 * (pure JS; handles ByteLevel BPE) behind a small interface, so the rest of
 * the pipeline, and worker threads, only see `encode` and the EOS id.
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';

/** Where a tokenizer comes from: a tokenizer.json path (a sibling tokenizer_config.json is read too) or its parsed JSON. */
export type TokenizerSource = { path: string } | { json: object; config?: object };

export interface TextTokenizer {
  readonly vocabSize: number;
  readonly eosId: number;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/** The bundled byte-level BPE tokenizer for models trained from scratch. */
export const BYTE_LEVEL_TOKENIZER_PATH = fileURLToPath(new URL('../../assets/tokenizers/byte-level/tokenizer.json', import.meta.url));

const EOS_CANDIDATES = ['<|endoftext|>', '</s>', '<|im_end|>', '<eos>', '<|end_of_text|>', '<|eot_id|>'];

export class TokenizerLoadError extends Error {
  override name = 'TokenizerLoadError';
}

export async function loadTokenizer(src: TokenizerSource): Promise<TextTokenizer> {
  let json: object;
  let config: object = {};
  if ('path' in src) {
    try {
      json = JSON.parse(await readFile(src.path, 'utf8')) as object;
    } catch (e) {
      throw new TokenizerLoadError(`cannot read tokenizer ${src.path}: ${(e as Error).message}`, { cause: e });
    }
    const cfgPath = join(dirname(src.path), 'tokenizer_config.json');
    if (existsSync(cfgPath)) config = JSON.parse(await readFile(cfgPath, 'utf8')) as object;
  } else {
    json = src.json;
    config = src.config ?? {};
  }
  return fromJson(json, config);
}

function fromJson(json: object, config: object): TextTokenizer {
  let tk: Tokenizer;
  try {
    tk = new Tokenizer(json, config);
  } catch (e) {
    throw new TokenizerLoadError(`invalid tokenizer.json: ${(e as Error).message}`, { cause: e });
  }
  const vocab = tk.get_vocab(true);
  let maxId = -1;
  for (const id of vocab.values()) if (id > maxId) maxId = id;
  const cfgEos = (config as { eos_token?: string | { content?: string } }).eos_token;
  const eosName = typeof cfgEos === 'string' ? cfgEos : cfgEos?.content;
  const names = eosName ? [eosName, ...EOS_CANDIDATES] : EOS_CANDIDATES;
  let eosId: number | undefined;
  for (const n of names) {
    eosId = tk.token_to_id(n);
    if (eosId !== undefined) break;
  }
  if (eosId === undefined) throw new TokenizerLoadError(`tokenizer has no end-of-sequence token (looked for ${names.join(', ')})`);
  return {
    vocabSize: maxId + 1,
    eosId,
    encode: (text) => (text.length === 0 ? [] : tk.encode(text, { add_special_tokens: false }).ids),
    decode: (ids) => tk.decode([...ids], { skip_special_tokens: false }),
  };
}
