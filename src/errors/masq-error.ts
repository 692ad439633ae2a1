// The base of masq's errors: a message for people and a stable code for programs (codes.ts).
// The subclasses (ConfigError, ForwardError, ControlError …) add the fields their callers need.

import type { ErrorCode } from "./codes.ts";

export class MasqError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "MasqError";
  }
}

/** The code of any thrown value: its own when it is a MasqError, else MASQ_ERR_INTERNAL. */
export function errorCode(err: unknown): ErrorCode {
  return err instanceof MasqError ? err.code : "MASQ_ERR_INTERNAL";
}
