/*
 * The few error classes the core throws. Each carries a stable `code`, the HTTP `status`
 * and the SMTP `responseCode` that the edges translate it into; nothing else is mapped there.
 */

export class AppError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
    readonly responseCode: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad input from a user or a script: a clear message, nothing stored. */
export class InvalidInput extends AppError {
  constructor(message: string, code = 'invalid_input') {
    super(message, code, 400, 501);
  }
}

/** A request body over what its sender may send: HTTP 413, SMTP 552. */
export class TooLarge extends AppError {
  constructor(message: string, code = 'too_large') {
    super(message, code, 413, 552);
  }
}

export class NotFound extends AppError {
  constructor(message: string, code = 'not_found') {
    super(message, code, 404, 550);
  }
}

export class Conflict extends AppError {
  constructor(message: string, code = 'conflict') {
    super(message, code, 409, 550);
  }
}

export class Forbidden extends AppError {
  constructor(message: string, code = 'forbidden') {
    super(message, code, 403, 550);
  }
}

/** A message we could not take in; it is recorded, and SMTP answers with a permanent error. */
export class RejectedMessage extends AppError {
  constructor(message: string, code = 'rejected', responseCode = 554) {
    super(message, code, 422, responseCode);
  }
}

/** Something on our side failed; SMTP answers 451 so the sender retries. */
export class TemporaryFailure extends AppError {
  constructor(message: string, code = 'temporary_failure') {
    super(message, code, 503, 451);
  }
}

/**
 * The embedded database's PostgreSQL upgrade could not be made (or was refused): the message is
 * one line that says what the operator does next and where the old cluster is.
 */
export class UpgradeFailed extends AppError {
  constructor(message: string, code = 'upgrade_failed') {
    super(message, code, 503, 451);
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}
