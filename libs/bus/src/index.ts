// Public API of @flywheel/bus (work in progress: connectBus and openKv land next).
export type * from './types.ts';
export * from './errors.ts';
