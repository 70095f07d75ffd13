import { createClient } from "@connectrpc/connect";
import { Workspace as WorkspaceService } from "@tether/protocol/workspace";
import type { Connection } from "../connection.js";
import { AgentProtocolError, toTetherError } from "../errors.js";

/** A repository to clone: a git URL (file:// included), or the URL with a target and branch. */
export type RepositorySpec = string | { url: string; dir?: string; branch?: string };

export interface WorkspaceInitOptions {
  repositories?: RepositorySpec[];
  /** git config --global user.name / user.email. */
  gitUserName?: string;
  gitUserEmail?: string;
  /** Make ~/.ssh/id_ed25519 when missing; default true. */
  sshKey?: boolean;
  /** Make a GPG signing key when missing and sign commits with it; default true. */
  gpgKey?: boolean;
  /** Unix user to set up (the agent must run as root to pick another). */
  user?: string;
  signal?: AbortSignal;
}

/** A line of an init's log: a step's header, or a line that step (or its tool) printed. */
export interface WorkspaceLogLine {
  step: string;
  text: string;
  header: boolean;
}

export interface WorkspaceInitResult {
  /** authorized_keys format. */
  sshPublicKey: string;
  /** ASCII-armored. */
  gpgPublicKey: string;
  gpgFingerprint: string;
  /** False when everything was already in place. */
  changed: boolean;
}

/**
 * A running init: iterate it for the log lines as they come; `result` resolves at the end
 * (or rejects with the failure, e.g. an InvalidArgumentError naming a tool the image lacks).
 * Lines are kept until read, so awaiting only `result` is fine.
 */
export class WorkspaceInitRun implements AsyncIterable<WorkspaceLogLine> {
  readonly result: Promise<WorkspaceInitResult>;
  private readonly lines: WorkspaceLogLine[] = [];
  private ended = false;
  private wake: (() => void) | undefined;

  constructor(source: AsyncIterable<WorkspaceLogLine | WorkspaceInitResult>) {
    this.result = this.consume(source);
    // Iterating is optional; an unobserved failure still surfaces through `result`.
    this.result.catch(() => {});
  }

  async *[Symbol.asyncIterator](): AsyncIterator<WorkspaceLogLine> {
    for (;;) {
      while (this.lines.length > 0) yield this.lines.shift() as WorkspaceLogLine;
      if (this.ended) {
        await this.result;
        return;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private async consume(source: AsyncIterable<WorkspaceLogLine | WorkspaceInitResult>): Promise<WorkspaceInitResult> {
    try {
      for await (const item of source) {
        if ("changed" in item) return item;
        this.lines.push(item);
        this.notify();
      }
      throw new AgentProtocolError("workspace init ended without a result");
    } finally {
      this.ended = true;
      this.notify();
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/** Workspace set-up in the agent: repositories, SSH and GPG keys, git identity. */
export class Workspace {
  private readonly client;

  constructor(private readonly connection: Connection) {
    this.client = createClient(WorkspaceService, connection.transport);
  }

  /** Clones, makes keys and sets git up; idempotent (a second run reports `changed: false`). */
  init(options: WorkspaceInitOptions = {}): WorkspaceInitRun {
    const request = {
      repositories: (options.repositories ?? []).map((r) => (typeof r === "string" ? { url: r } : r)),
      gitUserName: options.gitUserName ?? "",
      gitUserEmail: options.gitUserEmail ?? "",
      sshKey: options.sshKey,
      gpgKey: options.gpgKey,
    };
    const headers = this.connection.headers(options.user ?? this.connection.user);
    const stream = this.client.init(request, { headers, signal: options.signal });
    const address = this.connection.address;
    return new WorkspaceInitRun(
      (async function* () {
        try {
          for await (const res of stream) {
            if (res.event.case === "log") {
              const { step, text, header } = res.event.value;
              yield { step, text, header };
            } else if (res.event.case === "result") {
              const { sshPublicKey, gpgPublicKey, gpgFingerprint, changed } = res.event.value;
              yield { sshPublicKey, gpgPublicKey, gpgFingerprint, changed };
            }
          }
        } catch (err) {
          throw toTetherError(err, "workspace init", address);
        }
      })(),
    );
  }
}
