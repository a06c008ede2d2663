/**
 * Typed errors of @flywheel/artifacts, nats.js style: subclasses of Error
 * that set `name`, carry `cause`, and have predicates.
 */

export class ArtifactError extends Error {
  override name = 'ArtifactError';
  /** The key or URI the failing call was given. */
  readonly ref: string;
  constructor(message: string, ref: string, options?: { cause?: unknown }) {
    super(message, options);
    this.ref = ref;
  }
}

/** The key or URI is malformed or would resolve outside the store's root. */
export class ArtifactKeyError extends ArtifactError {
  override name = 'ArtifactKeyError';
  readonly reason: string;
  constructor(ref: string, reason: string) {
    super(`refused artifact reference ${JSON.stringify(ref)}: ${reason}`, ref);
    this.reason = reason;
  }
}

export class ArtifactNotFoundError extends ArtifactError {
  override name = 'ArtifactNotFoundError';
  constructor(ref: string, options?: { cause?: unknown }) {
    super(`artifact not found: ${ref}`, ref, options);
  }
}

export class ArtifactExistsError extends ArtifactError {
  override name = 'ArtifactExistsError';
  constructor(ref: string, options?: { cause?: unknown }) {
    super(`artifact already exists: ${ref} (pass { overwrite: true } to replace it)`, ref, options);
  }
}

/** The backend could not be reached or refused the request (network, credentials, permissions). */
export class ArtifactStoreUnavailableError extends ArtifactError {
  override name = 'ArtifactStoreUnavailableError';
  constructor(ref: string, options?: { cause?: unknown }) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`artifact store unavailable for ${ref}${why}`, ref, options);
  }
}

export const isArtifactError = (e: unknown): e is ArtifactError => e instanceof ArtifactError;
export const isArtifactKeyError = (e: unknown): e is ArtifactKeyError => e instanceof ArtifactKeyError;
export const isArtifactNotFoundError = (e: unknown): e is ArtifactNotFoundError => e instanceof ArtifactNotFoundError;
export const isArtifactExistsError = (e: unknown): e is ArtifactExistsError => e instanceof ArtifactExistsError;
export const isArtifactStoreUnavailableError = (e: unknown): e is ArtifactStoreUnavailableError =>
  e instanceof ArtifactStoreUnavailableError;
