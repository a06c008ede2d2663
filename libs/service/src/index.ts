export { createApp } from './app.ts';
export type { App, AppOptions } from './app.ts';
export {
  defineProblem,
  isProblemError,
  PROBLEM_CONTENT_TYPE,
  PROBLEM_TYPE_PREFIX,
  problemDocument,
  problemForStatus,
  ProblemError,
  problems,
} from './errors.ts';
export type { ProblemDocument, ProblemExtensions, ProblemName, ProblemType } from './errors.ts';
export { sendProblem } from './error-handler.ts';
export { bearerToken, MIN_TOKEN_LENGTH, PUBLIC_ROUTES } from './auth.ts';
export type { AuthOptions } from './auth.ts';
export { runCheck } from './health.ts';
export type { CheckResult, ReadinessCheck } from './health.ts';
export { requestContext } from './observability.ts';
export { exampleUrl, listRoutes } from './routes.ts';
export type { RouteInfo } from './routes.ts';
export { handleShutdownSignals } from './shutdown.ts';
export type { ShutdownReport, SignalOptions } from './shutdown.ts';
export { Type } from '@sinclair/typebox';
export type { Static, TSchema } from '@sinclair/typebox';
export { ConfigError, envInt, envUrl, isConfigError, loadPlatformConfig } from './env.ts';
export type { Env, PlatformConfig } from './env.ts';
export { addPlatformResources, checkConfigOrExit, connectPlatform, loadConfigOrExit, platformReadiness } from './platform.ts';
export type { ConnectPlatformOptions, PlatformClients } from './platform.ts';
