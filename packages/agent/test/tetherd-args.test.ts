import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AGENT_DEFAULT_PORT, COCOON_DEFAULT_VSOCK_PORT } from "@tether/protocol/constants";
import { parseTetherdArgs, type TetherdArgs, tetherdHelp, UsageError } from "../src/tetherd-args.js";

function parse(args: string[], env: Record<string, string> = {}): TetherdArgs {
  const parsed = parseTetherdArgs(args, env);
  assert.notEqual(parsed, "help");
  return parsed as TetherdArgs;
}

describe("tetherd's command line", () => {
  test("defaults", () => {
    const args = parse([]);
    assert.equal(args.host, "127.0.0.1");
    assert.equal(args.port, AGENT_DEFAULT_PORT);
    assert.equal(args.tcp, true);
    assert.equal(args.exposeLoopback, false);
    assert.equal(args.stopTimeout, 5000);
    assert.equal(args.logLevel, "info");
    assert.equal(args.cocoonVsock, undefined);
    assert.deepEqual(args.command, []);
    assert.equal(parse([], { TETHER_LOG_LEVEL: "debug" }).logLevel, "debug");
  });

  test("values are parsed and checked", () => {
    const args = parse([
      "--no-tcp",
      "--socket",
      "/run/a.sock",
      "--socket-owner",
      "1000:100",
      "--stop-timeout",
      "250",
      "--cocoon-tcp",
      "[::1]:2000",
      "--inherit-env",
      "--user=alice",
    ]);
    assert.equal(args.tcp, false);
    assert.equal(args.socket, "/run/a.sock");
    assert.deepEqual(args.socketOwner, { uid: 1000, gid: 100 });
    assert.equal(args.stopTimeout, 250);
    assert.deepEqual(args.cocoonTcp, { host: "::1", port: 2000 });
    assert.equal(args.cocoonTcpInsecure, false);
    assert.equal(args.inheritEnv, true);
    assert.equal(args.user, "alice");
    assert.equal(parse(["--cocoon-tcp", "0.0.0.0:1024", "--cocoon-tcp-insecure"]).cocoonTcpInsecure, true);
  });

  test("the command starts at its name; everything from there is the command's", () => {
    const args = parse(["--port", "0", "sh", "-c", "echo --port 1", "--socket"]);
    assert.equal(args.port, 0);
    assert.equal(args.socket, undefined);
    assert.deepEqual(args.command, ["sh", "-c", "echo --port 1", "--socket"]);
    assert.deepEqual(parse(["--port", "0", "--", "--odd-name", "x"]).command, ["--odd-name", "x"]);
  });

  test("--cocoon-vsock takes a port or stands alone for the default one", () => {
    assert.equal(parse(["--cocoon-vsock"]).cocoonVsock, COCOON_DEFAULT_VSOCK_PORT);
    const bare = parse(["--cocoon-vsock", "--port", "7"]);
    assert.equal(bare.cocoonVsock, COCOON_DEFAULT_VSOCK_PORT);
    assert.equal(bare.port, 7);
    assert.equal(parse(["--cocoon-vsock", "2048", "sleep", "1"]).cocoonVsock, 2048);
    assert.equal(parse(["--cocoon-vsock=4096"]).cocoonVsock, 4096);
    const inCommand = parse(["--port", "0", "--", "client", "--cocoon-vsock"]);
    assert.equal(inCommand.cocoonVsock, undefined);
    assert.deepEqual(inCommand.command, ["client", "--cocoon-vsock"]);
  });

  test("of --expose-loopback and --no-expose-loopback the last one counts", () => {
    assert.equal(parse(["--expose-loopback"]).exposeLoopback, true);
    assert.equal(parse(["--expose-loopback", "--no-expose-loopback"]).exposeLoopback, false);
    assert.equal(parse(["--no-expose-loopback", "--expose-loopback"]).exposeLoopback, true);
  });

  test("a bad command line is a UsageError that says what is wrong", () => {
    const refused = (args: string[], message: RegExp) =>
      assert.throws(
        () => parseTetherdArgs(args, {}),
        (err: unknown) => err instanceof UsageError && message.test(err.message),
      );
    refused(["--port", "70000"], /--port .*70000.*expected a port 0-65535/);
    refused(["--port", "-1"], /--port/);
    refused(["--socket-owner", "alice"], /expected UID:GID/);
    refused(["--stop-timeout", "1.5"], /expected milliseconds/);
    refused(["--bogus"], /Unknown option '--bogus'/);
    refused(["--socket"], /--socket/);
    refused(["--no-tcp"], /--no-tcp needs --socket/);
    refused(["--access-token", "a", "--access-token-file", "/f"], /not both/);
  });

  test("--help lists every flag", () => {
    assert.equal(parseTetherdArgs(["--socket", "/s", "--help"]), "help");
    assert.equal(parseTetherdArgs(["-h"]), "help");
    const help = tetherdHelp();
    for (const flag of ["--socket <path>", "--no-tcp", "--cocoon-vsock [port]", "--stop-timeout <ms>", "-h, --help"]) {
      assert.ok(help.includes(flag), `help lacks ${flag}`);
    }
  });
});
