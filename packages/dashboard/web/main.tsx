import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiFailure, api, followSandboxes, type Sandbox, type SandboxUsage, storedKey, storeKey } from "./api";
import { FilesPane } from "./files";
import { LogsPane } from "./logs";
import { MetricsPane, PortsPane } from "./metrics";
import "./style.css";
import { TemplatesPage, useTemplates } from "./templates";
import { TerminalPane } from "./terminal";

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function SignIn({ onSignedIn }: { onSignedIn: (team: string) => void }) {
  const [key, setKey] = useState("");
  const [error, setError] = useState("");
  const submit = async (e: Event) => {
    e.preventDefault();
    storeKey(key.trim());
    try {
      const { team } = await api<{ team: string }>("GET", "/dashboard/api/whoami");
      onSignedIn(team);
    } catch (err) {
      storeKey(null);
      setError(err instanceof ApiFailure && err.status === 401 ? "That API key is not valid." : String(err));
    }
  };
  return (
    <main class="signin">
      <form onSubmit={submit} class="panel">
        <h1>Tether</h1>
        <label for="apikey">API key</label>
        <input
          id="apikey"
          type="password"
          autocomplete="off"
          value={key}
          onInput={(e) => setKey((e.target as HTMLInputElement).value)}
          placeholder="e2b_…"
          required
        />
        <button type="submit">Sign in</button>
        {error && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <p class="muted">The key stays in this tab (session storage) and is sent only as a header.</p>
      </form>
    </main>
  );
}

function ago(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 60
    ? `${s}s`
    : s < 3600
      ? `${Math.floor(s / 60)}m`
      : `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}
function left(iso: string): string {
  const end = Date.parse(iso);
  if (end > Date.parse("9000-01-01")) return "never";
  const s = Math.round((end - Date.now()) / 1000);
  return s <= 0
    ? "expiring"
    : s < 60
      ? `${s}s`
      : s < 3600
        ? `${Math.floor(s / 60)}m ${s % 60}s`
        : `${Math.floor(s / 3600)}h`;
}
function parsePairs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/[\n,]/)) {
    const i = line.indexOf("=");
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

function CreateForm({ onError }: { onError: (m: string) => void }) {
  const [template, setTemplate] = useState("");
  const [timeout, setTimeoutS] = useState(300);
  const [env, setEnv] = useState("");
  const [meta, setMeta] = useState("");
  // Empty: the template's (or the host's) limits.
  const [cpus, setCpus] = useState("");
  const [memory, setMemory] = useState("");
  const [busy, setBusy] = useState(false);
  const [templates] = useTemplates();
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const made = await api<{ sandboxID: string }>("POST", "/v2/sandboxes", {
        templateID: template.trim(),
        timeout,
        envVars: parsePairs(env),
        metadata: parsePairs(meta),
        // Tether's extension to E2B's create body (the README lists it).
        ...(cpus ? { cpuCount: Number(cpus) } : {}),
        ...(memory ? { memoryMB: Number(memory) } : {}),
      });
      location.hash = `#/sandbox/${made.sandboxID}`;
    } catch (err) {
      onError(`create: ${(err as Error).message}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="panel create" onSubmit={submit} aria-label="New sandbox">
      <h2>New sandbox</h2>
      <div class="grid">
        <label>
          Template or image
          <input
            name="template"
            required
            value={template}
            onInput={(e) => setTemplate((e.target as HTMLInputElement).value)}
            placeholder="base"
            list="template-names"
          />
          <datalist id="template-names">
            {templates.map((t) => (
              <option key={t.name} value={t.name} />
            ))}
          </datalist>
        </label>
        <label>
          Timeout (s)
          <input
            name="timeout"
            type="number"
            min={1}
            value={timeout}
            onInput={(e) => setTimeoutS(Number((e.target as HTMLInputElement).value))}
          />
        </label>
        <label>
          CPUs
          <input
            name="cpus"
            type="number"
            min={1}
            step={1}
            value={cpus}
            placeholder="template's"
            onInput={(e) => setCpus((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          Memory (MiB)
          <input
            name="memory"
            type="number"
            min={64}
            step={1}
            value={memory}
            placeholder="template's"
            onInput={(e) => setMemory((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          Env (KEY=value, one a line)
          <textarea name="env" rows={2} value={env} onInput={(e) => setEnv((e.target as HTMLTextAreaElement).value)} />
        </label>
        <label>
          Metadata (key=value)
          <textarea
            name="metadata"
            rows={2}
            value={meta}
            onInput={(e) => setMeta((e.target as HTMLTextAreaElement).value)}
          />
        </label>
      </div>
      <button type="submit" disabled={busy}>
        {busy ? "Creating…" : "Create"}
      </button>
    </form>
  );
}

function Actions({ s, onError }: { s: Sandbox; onError: (m: string) => void }) {
  const [busy, setBusy] = useState(false);
  const act = (what: string, method: string, path: string, body?: unknown) => async () => {
    setBusy(true);
    try {
      await api(method, path, body);
    } catch (err) {
      onError(`${what}: ${(err as Error).message}`);
    } finally {
      setBusy(false);
    }
  };
  const id = s.sandboxID;
  return (
    <div class="actions">
      {s.state === "running" ? (
        <button type="button" disabled={busy} onClick={act("pause", "POST", `/sandboxes/${id}/pause`, {})}>
          Pause
        </button>
      ) : (
        <button type="button" disabled={busy} onClick={act("resume", "POST", `/sandboxes/${id}/resume`, {})}>
          Resume
        </button>
      )}
      <button
        type="button"
        disabled={busy || s.state !== "running"}
        onClick={act("extend", "POST", `/sandboxes/${id}/refreshes`, { duration: 600 })}
        title="Keep it for 10 more minutes from now"
      >
        +10 min
      </button>
      <button
        type="button"
        class="danger"
        disabled={busy}
        onClick={() => {
          if (confirm(`Kill sandbox ${id}?`)) void act("kill", "DELETE", `/sandboxes/${id}`)();
        }}
      >
        Kill
      </button>
    </div>
  );
}

/** CPU and memory now, as the server last sampled them (every few seconds while the page is open). */
function UsageCell({ s, usage }: { s: Sandbox; usage: SandboxUsage | undefined }) {
  if (s.state !== "running") return <>—</>;
  if (!usage) return <span class="muted">sampling…</span>;
  return (
    <span class="usage" data-testid="usage" title={`at ${usage.timestamp}`}>
      {usage.cpuUsedPct.toFixed(1)}% CPU · {(usage.memUsed / 2 ** 20).toFixed(1)} MiB
    </span>
  );
}

function SandboxTable({
  list,
  usage,
  onError,
}: {
  list: Sandbox[];
  usage: Map<string, SandboxUsage>;
  onError: (m: string) => void;
}) {
  const [query, setQuery] = useState("");
  const [state, setState] = useState("all");
  const shown = list.filter(
    (s) =>
      (state === "all" || s.state === state) &&
      (query === "" ||
        `${s.sandboxID} ${s.templateID} ${Object.entries(s.metadata)
          .map(([k, v]) => `${k}=${v}`)
          .join(" ")}`
          .toLowerCase()
          .includes(query.toLowerCase())),
  );
  return (
    <section class="panel" aria-label="Sandboxes">
      <div class="panel-head">
        <h2>Sandboxes</h2>
        <div class="filters">
          <label>
            <span class="sr-only">Search</span>
            <input
              type="search"
              placeholder="Search id, template, metadata"
              value={query}
              onInput={(e) => setQuery((e.target as HTMLInputElement).value)}
            />
          </label>
          <label>
            <span class="sr-only">State</span>
            <select value={state} onChange={(e) => setState((e.target as HTMLSelectElement).value)}>
              <option value="all">All states</option>
              <option value="running">Running</option>
              <option value="paused">Paused</option>
            </select>
          </label>
        </div>
      </div>
      {shown.length === 0 ? (
        <p class="muted" data-testid="empty">
          No sandboxes.
        </p>
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Sandbox</th>
                <th scope="col">State</th>
                <th scope="col">Template</th>
                <th scope="col">Backend</th>
                <th scope="col">Age</th>
                <th scope="col">Time left</th>
                <th scope="col">Metadata</th>
                <th scope="col">Now</th>
                <th scope="col">Limits</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((s) => (
                <tr key={s.sandboxID} data-sandbox={s.sandboxID}>
                  <td>
                    <a href={`#/sandbox/${s.sandboxID}`}>{s.sandboxID}</a>
                  </td>
                  <td>
                    <span class={`state ${s.state}`} data-testid="state">
                      {s.state}
                    </span>
                  </td>
                  <td>{s.templateID}</td>
                  <td>{s.backend}</td>
                  <td>{ago(s.startedAt)}</td>
                  <td>{s.state === "running" ? left(s.endAt) : "—"}</td>
                  <td>
                    {Object.entries(s.metadata).map(([k, v]) => (
                      <span class="tag" key={k}>
                        {k}={v}
                      </span>
                    ))}
                  </td>
                  <td>
                    <UsageCell s={s} usage={usage.get(s.sandboxID)} />
                  </td>
                  <td data-testid="limits">
                    {s.cpuCount} CPU, {s.memoryMB} MiB
                  </td>
                  <td>
                    <Actions s={s} onError={onError} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function SandboxDetail({ s, onError }: { s: Sandbox | undefined; onError: (m: string) => void }) {
  if (!s) {
    return (
      <section class="panel">
        <p>
          This sandbox is gone (or not yours). <a href="#/">Back to sandboxes</a>
        </p>
      </section>
    );
  }
  return (
    <>
      <section class="panel detail-head" aria-label="Sandbox">
        <div>
          <a href="#/">← Sandboxes</a>
          <h2>
            {s.sandboxID}{" "}
            <span class={`state ${s.state}`} data-testid="detail-state">
              {s.state}
            </span>
          </h2>
          <p class="muted">
            {s.templateID} on {s.backend} · up {ago(s.startedAt)} ·{" "}
            {s.state === "running" ? `${left(s.endAt)} left` : "paused"}
          </p>
        </div>
        <Actions s={s} onError={onError} />
      </section>
      {s.state === "running" ? (
        <div class="detail">
          <TerminalPane sandboxID={s.sandboxID} />
          <div class="side">
            <FilesPane sandboxID={s.sandboxID} onError={onError} />
            <MetricsPane sandboxID={s.sandboxID} />
            <PortsPane sandboxID={s.sandboxID} />
          </div>
        </div>
      ) : (
        <section class="panel">
          <p class="muted">Paused: resume it to use its terminal and files.</p>
        </section>
      )}
      <LogsPane sandboxID={s.sandboxID} />
    </>
  );
}

function App() {
  const [team, setTeam] = useState<string | null>(null);
  const [list, setList] = useState<Map<string, Sandbox>>(new Map());
  const [usage, setUsage] = useState<Map<string, SandboxUsage>>(new Map());
  const [live, setLive] = useState(false);
  const [error, setError] = useState("");
  const [, tick] = useState(0);
  const hash = useHash();

  useEffect(() => {
    if (!storedKey()) return;
    api<{ team: string }>("GET", "/dashboard/api/whoami").then(
      (r) => setTeam(r.team),
      () => storeKey(null),
    );
  }, []);
  useEffect(() => {
    if (!team) return;
    const stop = followSandboxes((e) => {
      if (e.type === "usage") {
        // Each event is a whole round of the team's running sandboxes.
        setUsage(new Map(e.usage.map((u) => [u.sandboxID, u])));
        return;
      }
      setList((prev) => {
        if (e.type === "snapshot") return new Map(e.sandboxes.map((s) => [s.sandboxID, s]));
        const next = new Map(prev);
        if (e.type === "changed") next.set(e.sandbox.sandboxID, e.sandbox);
        else next.delete(e.sandboxID);
        return next;
      });
    }, setLive);
    // Ages and time left count down on screen.
    const timer = setInterval(() => tick((n) => n + 1), 1000);
    return () => {
      stop();
      clearInterval(timer);
    };
  }, [team]);
  const sorted = useMemo(() => [...list.values()].sort((a, b) => b.startedAt.localeCompare(a.startedAt)), [list]);

  if (!team) return <SignIn onSignedIn={setTeam} />;
  const m = /^#\/sandbox\/([a-z0-9]+)/.exec(hash);
  return (
    <>
      <header class="top">
        <a href="#/" class="brand">
          Tether
        </a>
        <nav aria-label="Main">
          <a href="#/">Sandboxes</a>
          <a href="#/templates">Templates</a>
        </nav>
        <span class="muted">
          team <strong data-testid="team">{team}</strong> ·{" "}
          <span class={live ? "live" : "offline"}>{live ? "live" : "reconnecting"}</span>
        </span>
        <button
          type="button"
          onClick={() => {
            storeKey(null);
            setTeam(null);
          }}
        >
          Sign out
        </button>
      </header>
      <main class="content">
        {error && (
          <div role="alert" class="error banner">
            {error}{" "}
            <button type="button" onClick={() => setError("")}>
              Dismiss
            </button>
          </div>
        )}
        {hash.startsWith("#/templates") ? (
          <TemplatesPage onError={setError} />
        ) : m ? (
          <SandboxDetail s={list.get(m[1] as string)} onError={setError} />
        ) : (
          <>
            <CreateForm onError={setError} />
            <SandboxTable list={sorted} usage={usage} onError={setError} />
          </>
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app") as HTMLElement);
