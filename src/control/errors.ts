// Errors of the control API (own module: the server and the handlers it calls both need it, and
// neither should import the other for it). The HTTP status comes from the code (errors/codes.ts).

import { type ErrorCode, httpStatusOf } from "../errors/codes.ts";
import { MasqError } from "../errors/masq-error.ts";

/** A refusal of a control request (bad request, not found …) and a message for the client. */
export class ControlError extends MasqError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = "ControlError";
  }

  get status(): number {
    return httpStatusOf(this.code);
  }
}
