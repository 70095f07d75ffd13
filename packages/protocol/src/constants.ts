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
