import path from "node:path";
import type { BindMount, CreateOptions, NetworkMode } from "@tether/host";
import { type Command, InvalidArgumentError, Option } from "commander";
import { collectEnv } from "./options.js";

/** The flags `create` and `run --image` share, as commander hands them over. */
export interface CreateFlags {
  name?: string;
  cpus?: number;
  memory?: string;
  pids?: number;
  network?: NetworkMode;
  runtime?: string;
  readOnly?: boolean;
  user?: string;
  env: Record<string, string>;
  workdir?: string;
  mount: BindMount[];
  label: Record<string, string>;
  /** False after --no-command. */
  command?: boolean;
}

/**
 * Adds the sandbox options to a command. `withProcessOptions` adds -e, -w and -u too
 * (`run` has its own, which apply to the command it runs).
 */
export function addCreateOptions(command: Command, withProcessOptions = true): Command {
  command
    .option("--name <name>", "container name (default tether-<id>)")
    .option("--cpus <n>", "CPU limit, e.g. 0.5", positiveNumber("--cpus"))
    .option("--memory <size>", "memory limit, e.g. 512m, 2g")
    .option("--pids <n>", "maximum number of processes", positiveInteger("--pids"))
    .addOption(
      new Option(
        "--network <mode>",
        "network: none (default) or bridge (outbound; on vm, a TAP on Tether's bridge where the host allows it, else QEMU's user-mode NAT, which reaches this machine's loopback too: see tether doctor)",
      ).choices(["none", "bridge"]),
    )
    .option("--runtime <name>", "OCI runtime: runc (default) or runsc (gVisor)")
    .option("--read-only", "mount the image's root filesystem read-only")
    .option("--mount <src:dst[:ro]>", "bind-mount a host path (repeatable)", collectMount, [])
    .option("--label <KEY=VALUE>", "label the sandbox (repeatable)", collectLabel, {});
  if (withProcessOptions) {
    command
      .option("-u, --user <user>", "default user for commands in the sandbox")
      .option("-e, --env <KEY=VALUE>", "set an environment variable (repeatable)", collectEnv, {})
      .option("-w, --workdir <dir>", "default working directory")
      .option("--no-command", "do not run the image's entrypoint/cmd (only the agent runs)");
  }
  return command;
}

/** The Sandboxes.create options the flags ask for. */
export function createOptionsFrom(flags: Partial<CreateFlags>): CreateOptions {
  const options: CreateOptions = {};
  if (flags.name !== undefined) options.name = flags.name;
  if (flags.cpus !== undefined) options.cpus = flags.cpus;
  if (flags.memory !== undefined) options.memory = flags.memory;
  if (flags.pids !== undefined) options.pidsLimit = flags.pids;
  if (flags.network !== undefined) options.network = flags.network;
  if (flags.runtime !== undefined) options.runtime = flags.runtime;
  if (flags.readOnly) options.readOnlyRootfs = true;
  if (flags.user !== undefined) options.user = flags.user;
  if (flags.env && Object.keys(flags.env).length > 0) options.env = flags.env;
  if (flags.workdir !== undefined) options.workdir = flags.workdir;
  if (flags.mount && flags.mount.length > 0) options.mounts = flags.mount;
  if (flags.label && Object.keys(flags.label).length > 0) options.labels = flags.label;
  if (flags.command === false) options.runCommand = false;
  return options;
}

/** Parses `--mount SRC:DST[:ro]`; a relative SRC is taken from the current directory. */
export function collectMount(value: string, previous: BindMount[]): BindMount[] {
  const parts = value.split(":");
  const readOnly = parts.length === 3 && parts[2] === "ro";
  if (parts.length < 2 || parts.length > 3 || (parts.length === 3 && !readOnly) || !parts[0] || !parts[1]) {
    throw new InvalidArgumentError(`"${value}" is not SRC:DST or SRC:DST:ro`);
  }
  if (!parts[1].startsWith("/")) throw new InvalidArgumentError(`the mount target "${parts[1]}" must be absolute`);
  return [...previous, { source: path.resolve(parts[0]), target: parts[1], ...(readOnly ? { readOnly } : {}) }];
}

/** Collects `--label KEY=VALUE`. */
export function collectLabel(value: string, previous: Record<string, string>): Record<string, string> {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InvalidArgumentError(`"${value}" is not KEY=VALUE`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

function positiveNumber(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0)
      throw new InvalidArgumentError(`${flag} takes a positive number, not "${value}"`);
    return n;
  };
}

function positiveInteger(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0)
      throw new InvalidArgumentError(`${flag} takes a positive integer, not "${value}"`);
    return n;
  };
}
