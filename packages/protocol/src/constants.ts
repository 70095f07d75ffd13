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
 * Node flags a tetherd runs with on Node `nodeMajor`: the young generation's semi-spaces
 * fixed at V8's smallest, 1 MiB. Every socket read is a fresh 64 KiB buffer; small
 * semi-spaces scavenge them (and free their memory) before it counts towards a full GC,
 * and under load Node 24 would grow them to 32 MiB each and never give the pages back.
 * Measured on the bundle's Node 24 against 8 MiB (the value before): a 1 GiB tunnel ran 6
 * full GCs instead of 16 and 1 GiB of output 13 instead of 22; tunnel throughput 0.40-0.52x
 * loopback against 0.32-0.36x, the agent's RSS after it 95-100 MiB against 147-155; after a
 * thousand commands USS 67-80 MiB against 87-91. The price is the start: loading takes more
 * scavenges, 0-6 ms more to the first health (medians of 21, three alternations; 90-100 ms
 * of CPU either way).
 *
 * On Node 20 the old generation may also reach 64 MiB before its first full GC. With the
 * limit V8 derives from the agent's 9 MiB heap, Node 20 ran a full GC every ~30 MB of output
 * whatever the semi-spaces (37 per GiB of output with 1 MiB ones, none with the flag). Node
 * 24 gains nothing from it, and the flag costs every start about 20 ms: V8 refuses the code
 * cache Node ships for its own modules when this flag differs, so http2, http and crypto
 * are compiled from source. Node 22 is not measured and gets Node 24's flags.
 */
export function tetherdNodeFlags(nodeMajor: number): readonly string[] {
  const youngGeneration = ["--min-semi-space-size=1", "--max-semi-space-size=1"];
  return nodeMajor <= 20 ? [...youngGeneration, "--initial-old-space-size=64"] : youngGeneration;
}

/** tetherdNodeFlags for the Node running this process. */
export function hostTetherdNodeFlags(): readonly string[] {
  return tetherdNodeFlags(Number(process.versions.node.split(".")[0]));
}

/**
 * A tunnel's raw byte path (Tether's own endpoints): `POST /tunnel?port=&host=` connects
 * inside the sandbox and answers 200 with the socket's bytes as its body (its end is the
 * socket's FIN), and the upload id in TUNNEL_UPLOAD_HEADER; `POST /tunnel/write?id=` sends
 * its body to the socket (its end is the client's FIN). Two streams, so that a client can
 * put its bulk on a second HTTP/2 connection (see tunnel.proto on why). No envelopes or
 * protobuf per chunk; an agent without them answers 404 and the client uses tether.v1.Tunnel.
 */
export const TUNNEL_PATH = "/tunnel";
export const TUNNEL_WRITE_PATH = "/tunnel/write";
/** The id a tunnel's `POST /tunnel/write` names, once. */
export const TUNNEL_UPLOAD_HEADER = "tether-tunnel-upload";
/** The address the tunnel reached inside the sandbox. */
export const TUNNEL_ADDRESS_HEADER = "tether-tunnel-address";
/** Ends a raw tunnel's response whose socket failed (a reset by the sandbox side): what happened. */
export const TUNNEL_ERROR_TRAILER = "tether-tunnel-error";
