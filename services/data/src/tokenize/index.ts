/** Tokenisation into FWSHARD1 token shards (docs/formats.md). */
export type { TokenizerSource, TextTokenizer } from './tokenizer.ts';
export { loadTokenizer, BYTE_LEVEL_TOKENIZER_PATH, TokenizerLoadError } from './tokenizer.ts';
export type { ShardWriteOptions, ShardedRecord, ShardContents } from './shards.ts';
export { writeShards, readShard, encodeRecord, SplitShardWriter, SHARD_MAGIC } from './shards.ts';
