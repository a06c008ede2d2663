// Error classes of the bus, each with a predicate (nats.js style).

/** Base class of every error the bus throws. */
export class BusError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BusError';
  }
}

/** Bad options given to connectBus / consume / openKv. */
export class BusConfigError extends BusError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BusConfigError';
  }
}

/** A payload given to publish() fails its subject's schema; nothing was sent. */
export class InvalidEventError extends BusError {
  readonly subject: string;
  readonly errors: readonly string[];
  constructor(subject: string, errors: readonly string[]) {
    super(`invalid '${subject}' event: ${errors.join('; ')}`);
    this.name = 'InvalidEventError';
    this.subject = subject;
    this.errors = errors;
  }
}

/** JetStream did not ack a publish within the retry budget. The event may or may not be stored. */
export class PublishError extends BusError {
  readonly subject: string;
  readonly id: string;
  readonly attempts: number;
  constructor(subject: string, id: string, attempts: number, options?: ErrorOptions) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`publish of '${subject}' (id ${id}) not acknowledged after ${attempts} attempt(s)${why}`, options);
    this.name = 'PublishError';
    this.subject = subject;
    this.id = id;
    this.attempts = attempts;
  }
}

/** The bus was closed (or is closing) and cannot do this any more. */
export class BusClosedError extends BusError {
  constructor(what: string) {
    super(`bus is closed: cannot ${what}`);
    this.name = 'BusClosedError';
  }
}

export function isBusError(e: unknown): e is BusError {
  return e instanceof BusError;
}
export function isBusConfigError(e: unknown): e is BusConfigError {
  return e instanceof BusConfigError;
}
export function isInvalidEventError(e: unknown): e is InvalidEventError {
  return e instanceof InvalidEventError;
}
export function isPublishError(e: unknown): e is PublishError {
  return e instanceof PublishError;
}
export function isBusClosedError(e: unknown): e is BusClosedError {
  return e instanceof BusClosedError;
}
