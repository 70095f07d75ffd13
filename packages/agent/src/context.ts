import { Code, ConnectError } from "@connectrpc/connect";
import { type HeaderSource, headerValue } from "./auth/access.js";
import { type UnixUser, UnknownUserError, type UserDirectory, usernameFromHeaders } from "./auth/users.js";
import type { TransferDir } from "./files/transfer.js";
import type { Logger } from "./logger.js";
import type { AgentState } from "./state.js";

/** What every service of the agent shares. One per agent. */
export interface AgentContext {
  log: Logger;
  state: AgentState;
  users: UserDirectory;
  /** The directory shared with the host for `tether cp`, when there is one (see files/transfer). */
  transfer?: TransferDir;
}

/**
 * The Unix user a request acts as: the Basic-auth username (envd's convention), else
 * the `username` query parameter of the HTTP file endpoints, else the default user.
 */
export function requestUser(ctx: AgentContext, headers: HeaderSource, queryUsername?: string | null): UnixUser {
  const name = usernameFromHeaders(headers) ?? (queryUsername || undefined) ?? ctx.state.defaultUser;
  try {
    return ctx.users.resolve(name);
  } catch (err) {
    // envd refuses a username no account has as unauthenticated (401 on /files), which the
    // e2b SDKs turn into their AuthenticationError.
    if (err instanceof UnknownUserError && err.missing) {
      throw new ConnectError(`invalid username: ${err.message}`, Code.Unauthenticated, undefined, undefined, err);
    }
    throw err;
  }
}

export { headerValue };
