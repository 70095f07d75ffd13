import { Code, ConnectError } from "@connectrpc/connect";
import type { InitLog } from "./log.js";
import type { ToolRunner } from "./tools.js";

/** The signing key's outcome. */
export interface GpgKeyResult {
  fingerprint: string;
  /** The public key, ASCII-armored. */
  publicKey: string;
  created: boolean;
}

/**
 * Finds the user's GPG secret key (the one git already signs with, else the first) or
 * makes one: ed25519, certify and sign, no expiry, no passphrase (nobody is there to type
 * one), through `gpg --batch --quick-gen-key`.
 */
export async function ensureGpgKey(
  gpg: string,
  tools: ToolRunner,
  identity: string,
  preferred: string | undefined,
  log: InitLog,
): Promise<GpgKeyResult> {
  log.step(`gpg signing key for ${identity}`);
  let fingerprints = await secretKeys(gpg, tools);
  let created = false;
  const want = preferred?.toUpperCase();
  let fingerprint = want ? fingerprints.find((f) => f.endsWith(want)) : undefined;
  fingerprint ??= fingerprints[0];
  if (fingerprint) {
    log.line(`key ${fingerprint} already present`);
  } else {
    const made = await tools.run(
      [
        gpg,
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
        "--quick-gen-key",
        identity,
        "ed25519",
        "cert,sign",
        "never",
      ],
      log,
    );
    if (made.exitCode !== 0) throw failure(`gpg --quick-gen-key exited with ${made.exitCode}`, made.lines);
    fingerprints = await secretKeys(gpg, tools);
    fingerprint = fingerprints[0];
    if (!fingerprint) throw failure("gpg made a key but lists no secret key", made.lines);
    log.line(`created key ${fingerprint}`);
    created = true;
  }
  const exported = await tools.run([gpg, "--batch", "--armor", "--export", fingerprint], log, { quiet: true });
  if (exported.exitCode !== 0 || !exported.stdout.includes("BEGIN PGP PUBLIC KEY BLOCK")) {
    throw failure(`gpg --armor --export ${fingerprint} exited with ${exported.exitCode}`, exported.lines);
  }
  return { fingerprint, publicKey: exported.stdout.trim(), created };
}

/** Fingerprints of the user's secret keys that can sign, from gpg's machine-readable listing. */
async function secretKeys(gpg: string, tools: ToolRunner): Promise<string[]> {
  const listed = await tools.run([gpg, "--batch", "--with-colons", "--list-secret-keys"], undefined, { quiet: true });
  // No keyring yet is exit 2 with nothing listed: that just means no keys.
  const out: string[] = [];
  let canSign = false;
  for (const line of listed.stdout.split("\n")) {
    const fields = line.split(":");
    if (fields[0] === "sec") canSign = (fields[11] ?? "").includes("S") && fields[1] !== "r" && fields[1] !== "e";
    else if (fields[0] === "fpr" && canSign) {
      out.push(fields[9]);
      canSign = false;
    } else if (fields[0] === "ssb") canSign = false;
  }
  return out;
}

function failure(message: string, lines: string[]): ConnectError {
  const tail = lines.slice(-10).join("\n");
  return new ConnectError(tail ? `${message}:\n${tail}` : message, Code.Internal);
}
