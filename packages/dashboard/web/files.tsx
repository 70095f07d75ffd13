import { useCallback, useEffect, useState } from "preact/hooks";
import { api, storedKey } from "./api";

interface Entry {
  name: string;
  path: string;
  type: string;
  size: number;
}

const fileUrl = (id: string, path: string) => `/dashboard/api/sandboxes/${id}/file?path=${encodeURIComponent(path)}`;

/** Uploads with XMLHttpRequest, the one browser API that reports upload progress. */
function upload(id: string, path: string, file: File, onProgress: (pct: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", fileUrl(id, path));
    xhr.setRequestHeader("x-api-key", storedKey() ?? "");
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(Math.round((e.loaded / e.total) * 100));
    xhr.onload = () => (xhr.status < 300 ? resolve() : reject(new Error(`${xhr.status} ${xhr.responseText}`)));
    xhr.onerror = () => reject(new Error("upload failed"));
    xhr.send(file);
  });
}

/** A sandbox's files: a directory listing, text files opened inline, drag-and-drop upload, download. */
export function FilesPane({ sandboxID, onError }: { sandboxID: string; onError: (m: string) => void }) {
  const [dir, setDir] = useState("/tmp");
  const [entries, setEntries] = useState<Entry[]>([]);
  const [open, setOpen] = useState<{ path: string; text: string } | null>(null);
  const [progress, setProgress] = useState<string>("");
  const [over, setOver] = useState(false);

  const refresh = useCallback(async () => {
    try {
      const list = await api<Entry[]>(
        "GET",
        `/dashboard/api/sandboxes/${sandboxID}/files?path=${encodeURIComponent(dir)}`,
      );
      setEntries(list.sort((a, b) => (a.type === b.type ? a.name.localeCompare(b.name) : a.type === "dir" ? -1 : 1)));
    } catch (err) {
      onError(`files: ${(err as Error).message}`);
    }
  }, [sandboxID, dir, onError]);
  useEffect(() => {
    void refresh();
  }, [refresh]);

  const get = async (path: string) => {
    const res = await fetch(fileUrl(sandboxID, path), { headers: { "x-api-key": storedKey() ?? "" } });
    if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
    return res.blob();
  };
  const download = async (e: Entry) => {
    try {
      const blob = await get(e.path);
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = e.name;
      a.click();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    } catch (err) {
      onError(`download: ${(err as Error).message}`);
    }
  };
  const view = async (e: Entry) => {
    try {
      const blob = await get(e.path);
      const text = await blob.slice(0, 256 * 1024).text();
      setOpen({ path: e.path, text: text.includes("\0") ? "(binary file: download it instead)" : text });
    } catch (err) {
      onError(`open: ${(err as Error).message}`);
    }
  };
  const drop = async (files: FileList | null) => {
    for (const file of Array.from(files ?? [])) {
      try {
        await upload(sandboxID, `${dir.replace(/\/$/, "")}/${file.name}`, file, (pct) =>
          setProgress(`${file.name}: ${pct}%`),
        );
        setProgress(`${file.name}: uploaded`);
      } catch (err) {
        onError(`upload: ${(err as Error).message}`);
      }
    }
    await refresh();
  };
  const up = dir === "/" ? null : dir.replace(/\/[^/]+\/?$/, "") || "/";

  return (
    <section class="panel" aria-label="Files">
      <div class="panel-head">
        <h3>Files</h3>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void refresh();
          }}
        >
          <label>
            <span class="sr-only">Directory</span>
            <input value={dir} onChange={(e) => setDir((e.target as HTMLInputElement).value)} aria-label="Directory" />
          </label>
        </form>
      </div>
      <section
        aria-label="Upload: drop files here"
        class={`dropzone${over ? " over" : ""}`}
        data-testid="dropzone"
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          void drop(e.dataTransfer?.files ?? null);
        }}
      >
        <label>
          Drop files here or <span class="link">choose</span>
          <input
            type="file"
            multiple
            class="sr-only"
            data-testid="upload"
            onChange={(e) => void drop((e.target as HTMLInputElement).files)}
          />
        </label>
        {progress && (
          <span role="status" data-testid="upload-progress">
            {progress}
          </span>
        )}
      </section>
      <ul class="files" data-testid="files">
        {up !== null && (
          <li>
            <button type="button" class="link" onClick={() => setDir(up)}>
              ..
            </button>
          </li>
        )}
        {entries.map((e) => (
          <li key={e.path} data-file={e.name}>
            {e.type === "dir" ? (
              <button type="button" class="link" onClick={() => setDir(e.path)}>
                {e.name}/
              </button>
            ) : (
              <>
                <button type="button" class="link" onClick={() => void view(e)}>
                  {e.name}
                </button>
                <span class="muted">{e.size} B</span>
                <button type="button" onClick={() => void download(e)} aria-label={`Download ${e.name}`}>
                  Download
                </button>
              </>
            )}
          </li>
        ))}
      </ul>
      {open && (
        <div class="viewer">
          <div class="panel-head">
            <strong>{open.path}</strong>
            <button type="button" onClick={() => setOpen(null)}>
              Close
            </button>
          </div>
          <pre>{open.text}</pre>
        </div>
      )}
    </section>
  );
}
