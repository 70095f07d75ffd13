import { useCallback, useEffect, useState } from "preact/hooks";
import { api, storedKey } from "./api";

export interface TemplateRow {
  name: string;
  image: string;
  cpus: number | null;
  memoryMB: number | null;
  snapshot: boolean;
  createdAt: string;
}

export function useTemplates(): [TemplateRow[], () => Promise<void>] {
  const [list, setList] = useState<TemplateRow[]>([]);
  const refresh = useCallback(async () => {
    try {
      setList(await api<TemplateRow[]>("GET", "/dashboard/api/templates"));
    } catch {}
  }, []);
  useEffect(() => {
    void refresh();
  }, [refresh]);
  return [list, refresh];
}

/** Templates: the list, a new one from a local image, one built from a Dockerfile with its log streamed. */
export function TemplatesPage({ onError }: { onError: (m: string) => void }) {
  const [list, refresh] = useTemplates();
  const [name, setName] = useState("");
  const [image, setImage] = useState("");
  const [buildName, setBuildName] = useState("");
  const [dockerfile, setDockerfile] = useState("FROM debian:bookworm-slim\nRUN echo hello\n");
  const [log, setLog] = useState("");
  const [building, setBuilding] = useState(false);

  const register = async (e: Event) => {
    e.preventDefault();
    try {
      await api("POST", "/dashboard/api/templates", { name: name.trim(), image: image.trim() });
      setName("");
      setImage("");
      await refresh();
    } catch (err) {
      onError(`template: ${(err as Error).message}`);
    }
  };
  const build = async (e: Event) => {
    e.preventDefault();
    setBuilding(true);
    setLog("");
    try {
      const res = await fetch("/dashboard/api/templates/build", {
        method: "POST",
        headers: { "x-api-key": storedKey() ?? "", "content-type": "application/json" },
        body: JSON.stringify({ name: buildName.trim(), dockerfile }),
      });
      if (!res.ok || !res.body) {
        const text = await res.text();
        throw new Error((JSON.parse(text) as { message?: string }).message ?? text);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        setLog((prev) => prev + value);
      }
      await refresh();
    } catch (err) {
      onError(`build: ${(err as Error).message}`);
    } finally {
      setBuilding(false);
    }
  };

  return (
    <>
      <section class="panel" aria-label="Templates">
        <h2>Templates</h2>
        {list.length === 0 ? (
          <p class="muted">No templates yet: any local image name works as a template id too.</p>
        ) : (
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Image</th>
                  <th scope="col">Limits</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {list.map((t) => (
                  <tr key={t.name} data-template={t.name}>
                    <td>{t.name}</td>
                    <td>{t.image}</td>
                    <td>
                      {t.cpus ?? "all"} CPU, {t.memoryMB ?? "all"} MiB
                    </td>
                    <td>{t.snapshot ? "snapshot" : "template"}</td>
                    <td>{new Date(t.createdAt).toLocaleString()}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <form class="panel create" onSubmit={register} aria-label="Template from a local image">
        <h3>From a local image</h3>
        <div class="grid">
          <label>
            Template name
            <input required value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
          </label>
          <label>
            Local image
            <input
              required
              value={image}
              onInput={(e) => setImage((e.target as HTMLInputElement).value)}
              placeholder="debian:bookworm"
            />
          </label>
        </div>
        <button type="submit">Register</button>
      </form>
      <form class="panel create" onSubmit={build} aria-label="Template from a Dockerfile">
        <h3>Build from a Dockerfile</h3>
        <div class="grid">
          <label>
            Build name
            <input required value={buildName} onInput={(e) => setBuildName((e.target as HTMLInputElement).value)} />
          </label>
          <label>
            Dockerfile
            <textarea
              rows={5}
              class="mono"
              value={dockerfile}
              onInput={(e) => setDockerfile((e.target as HTMLTextAreaElement).value)}
            />
          </label>
        </div>
        <button type="submit" disabled={building}>
          {building ? "Building…" : "Build"}
        </button>
        {log && (
          <pre class="log" role="log" aria-label="Build log" data-testid="build-log">
            {log}
          </pre>
        )}
      </form>
    </>
  );
}
