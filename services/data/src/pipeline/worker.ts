/**
 * Worker-thread entry: runs the per-record stages on batches sent by
 * WorkerPool. Loads its own tokenizer from the source in workerData.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { PipelineConfig } from './config.ts';
import { createRecordProcessor } from './process.ts';
import type { InputRecord } from './types.ts';
import { loadTokenizer, type TokenizerSource } from '../tokenize/tokenizer.ts';

const { config, tokenizer } = workerData as { config: PipelineConfig; tokenizer: TokenizerSource | undefined };
const needTokens = config.length.enabled || config.tokenise.enabled;
const processRecord = createRecordProcessor(config, needTokens && tokenizer ? await loadTokenizer(tokenizer) : undefined);

parentPort!.on('message', (msg: { seq: number; batch: InputRecord[] }) => {
  try {
    const out = msg.batch.map(processRecord);
    const transfer: ArrayBuffer[] = [];
    for (const p of out) {
      if (p.signature) transfer.push(p.signature.buffer as ArrayBuffer);
      if (p.tokens) transfer.push(p.tokens.buffer as ArrayBuffer);
    }
    parentPort!.postMessage({ seq: msg.seq, out }, transfer);
  } catch (e) {
    parentPort!.postMessage({ seq: msg.seq, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  }
});
parentPort!.postMessage({ ready: true });
