/** Base of every error @tether/server throws on purpose; `name` says which. */
export class TetherServerError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * An error the API answers with its own status, as E2B's control plane does: a JSON body
 * `{code, message}` (the SDK reads `code`: 404 on kill means false, 409 on pause means false).
 */
export class ApiError extends TetherServerError {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** No key, a key we never minted, or a revoked one. */
export class UnauthorizedError extends ApiError {
  constructor(message = "invalid or missing API key (header X-API-KEY)") {
    super(401, message);
  }
}

/** Unknown to this team: another team's sandbox answers the same, so ids never leak across teams. */
export class NotFoundError extends ApiError {
  constructor(message: string) {
    super(404, message);
  }
}

export class BadRequestError extends ApiError {
  constructor(message: string) {
    super(400, message);
  }
}

export class ConflictError extends ApiError {
  constructor(message: string) {
    super(409, message);
  }
}

/** A team limit is reached; `Retry-After` is whole seconds, which the e2b SDK honours by retrying. */
export class RateLimitedError extends ApiError {
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(429, message, { "retry-after": String(retryAfterSeconds) });
  }
}

/** A part of E2B's API this server does not implement (yet); said plainly rather than faked. */
export class NotImplementedError extends ApiError {
  constructor(what: string) {
    super(501, `${what} is not implemented by tether serve`);
  }
}

/** A template name that is not registered (`tether template ls`). */
export class TemplateNotFoundError extends TetherServerError {
  constructor(readonly template: string) {
    super(`no template ${JSON.stringify(template)} (tether template create ${template} --image IMAGE)`);
  }
}
