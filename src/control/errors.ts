// Errors of the control API that carry their HTTP status (own module: the server and the
// handlers it calls both need it, and neither should import the other for it).

/** A refusal with an HTTP status (bad request, not found …) and a message for the client. */
export class ControlError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
