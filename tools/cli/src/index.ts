/** The CLI as a library: `run(argv, io)` returns the exit code; the API client for scripts. */
export { run, EXIT } from './cli.ts';
export type { Io } from './cli.ts';
export { ApiError, createClient, UnreachableError } from './client.ts';
export type { StreamEvent, TrainerClient } from './client.ts';
export { createEta, formatDuration, renderProgress } from './progress.ts';
