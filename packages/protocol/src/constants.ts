/** Default TCP port of the agent; the one envd uses, so the e2b SDK finds it. */
export const AGENT_DEFAULT_PORT = 49983;

/** Header carrying the agent's access token (envd's name). */
export const ACCESS_TOKEN_HEADER = "x-access-token";

/** Header in which a client asks for keepalive events every N seconds (envd's name). */
export const KEEPALIVE_INTERVAL_HEADER = "keepalive-ping-interval";

/** Version the agent reports; the e2b SDK enables features by envd version. */
export const ENVD_COMPAT_VERSION = "0.4.0";

/** cocoon-agent's vsock port, where the agent serves cocoon-style line-JSON exec by default. */
export const COCOON_DEFAULT_VSOCK_PORT = 1024;

/**
 * Node flags every tetherd runs with: the young generation's semi-spaces fixed at 8 MiB.
 * Bigger than V8's 1 MiB start, so loading the agent takes fewer scavenges (about 3 ms of
 * a 60 ms start); capped, because under load Node 24 grows them to 32 MiB each and never
 * gives the pages back (anon RSS after a thousand commands: 110 MiB, 78 with the cap).
 */
export const TETHERD_NODE_FLAGS: readonly string[] = ["--min-semi-space-size=8", "--max-semi-space-size=8"];
