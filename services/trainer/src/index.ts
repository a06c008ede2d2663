/** The trainer service's public face: composition, configuration, launchers. */
export { buildTrainerService, migrateTrainerSchema, MIGRATIONS_DIR, SERVICE_NAME, SERVICE_VERSION } from './app.ts';
export type { TrainerService, TrainerServiceDeps } from './app.ts';
export { loadConfig, ConfigError, DEFAULT_WORKER_BIN } from './config.ts';
export type { TrainerConfig } from './config.ts';
export { createLocalLauncher } from './launchers/local.ts';
export { buildManifests, createKubernetesLauncher, jobName } from './launchers/kubernetes.ts';
export type { Launcher, LaunchRequest, LaunchedAttempt, RankHandle } from './launchers/types.ts';
