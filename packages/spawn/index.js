// The compiled addon (see src/spawn.c) with Node-style errors and signal names.
// CommonJS so the agent's bundle can require it as is.
const { constants } = require("node:os");
const path = require("node:path");
const { getSystemErrorName } = require("node:util");
const addon = require("./build/Release/spawn.node");

/** The static helper that sets a user's groups, gid and uid, then execs (src/exec-as.c). */
exports.execAsPath = path.join(__dirname, "build", "Release", "tether-exec-as");

/** Runs a synchronous fn with this thread's fsuid, fsgid and groups set to a user's (src/fs-ids.c). */
exports.withFsIds = (ids, fn) => {
  const result = addon.withFsIds(ids.uid, ids.gid, ids.groups, fn);
  // Whatever an async fn does after its first await runs with the agent's own rights.
  if (typeof result?.then === "function") throw new TypeError("withFsIds needs a synchronous function");
  return result;
};

const signalNames = new Map(Object.entries(constants.signals).map(([name, number]) => [number, name]));

/** Why spawning cannot work here (no pidfd_open), or null. */
exports.supported = () => addon.supported();

exports.spawn = (file, args, options, onExit) => {
  try {
    return addon.spawn(file, args, options.env, options.cwd, options, (code, signo) =>
      onExit(code, signo === null ? null : (signalNames.get(signo) ?? null)),
    );
  } catch (err) {
    if (typeof err.errno !== "number") throw err;
    // The shape of Node's spawn errors: code, errno, syscall, path, spawnargs.
    const code = getSystemErrorName(err.errno);
    const wrapped = new Error(`spawn ${file} ${code} (${err.syscall}: ${err.message})`);
    wrapped.code = code;
    wrapped.errno = err.errno;
    wrapped.syscall = `spawn ${file}`;
    wrapped.path = file;
    wrapped.spawnargs = args.slice(1);
    // clone or pidfd_open refused outright (an old kernel, gVisor, seccomp): nothing here can spawn.
    wrapped.unsupported =
      (err.syscall === "clone" || err.syscall === "pidfd_open") && (code === "ENOSYS" || code === "EPERM");
    throw wrapped;
  }
};
