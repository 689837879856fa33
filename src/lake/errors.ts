/**
 * Errors thrown by mlcap's core. Every error carries a stable `code` (for scripts and
 * tests), a message that names the value involved and what was expected, and a hint
 * that says what to do next. Commands map them to exit codes; the core never exits.
 */
export const EXIT = Object.freeze({
  ok: 0,
  failure: 1,
  usage: 2,
  busy: 3,
  /** Stopped by Ctrl-C/SIGTERM after committing what was complete: the shell convention 128 + SIGINT. */
  interrupted: 130,
})

export class MlcapError extends Error {
  readonly code: string
  readonly hint?: string
  readonly exitCode: number

  constructor(code: string, message: string, options: {hint?: string; exitCode?: number; cause?: unknown} = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = 'MlcapError'
    this.code = code
    this.hint = options.hint
    this.exitCode = options.exitCode ?? EXIT.failure
  }
}

/** The catalog stayed locked by another process for longer than we were willing to wait. */
export class LakeBusyError extends MlcapError {
  constructor(message: string, hint?: string) {
    super('LAKE_BUSY', message, {exitCode: EXIT.busy, hint})
    this.name = 'LakeBusyError'
  }
}

/** A value given by the user is not acceptable (maps to exit code 2). */
export class UsageError extends MlcapError {
  constructor(code: string, message: string, hint?: string) {
    super(code, message, {exitCode: EXIT.usage, hint})
    this.name = 'UsageError'
  }
}

/** "Expected X for NAME but received VALUE" — one formatter for bad parameters (sharp's style). */
export function invalidParameter(name: string, expected: string, received: unknown): UsageError {
  const shown = typeof received === 'string' ? JSON.stringify(received) : String(received)
  return new UsageError('INVALID_PARAMETER', `Expected ${expected} for ${name} but received ${shown} of type ${typeof received}`)
}
