import { useEffect, useRef, useState } from "preact/hooks";
import { readEvents } from "./api";

interface LogLine {
  timestamp: string;
  level: string;
  message: string;
  stream: "stdout" | "stderr";
}

/** Lines kept on screen; older ones scroll away. */
const KEEP = 1000;

/**
 * The sandbox's log (its agent's and its command's output), followed over a server-sent
 * stream: the server sends its last lines, then each new one as the engine records it.
 * A dropped stream is opened again after a pause and starts over from the last lines.
 */
export function LogsPane({ sandboxID }: { sandboxID: string }) {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [status, setStatus] = useState("connecting…");
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const abort = new AbortController();
    const run = async () => {
      while (!abort.signal.aborted) {
        let ended = false;
        try {
          await readEvents(
            `/dashboard/api/sandboxes/${sandboxID}/logs`,
            abort.signal,
            (name, data) => {
              if (name === "line") setLines((prev) => [...prev, data as LogLine].slice(-KEEP));
              else if (name === "end") ended = true;
              else if (name === "error") setStatus(`error: ${(data as { message: string }).message}`);
            },
            () => {
              setLines([]);
              setStatus("following");
            },
          );
        } catch {
          if (abort.signal.aborted) return;
        }
        if (ended) {
          setStatus("the sandbox stopped");
          return;
        }
        setStatus("reconnecting…");
        await new Promise((r) => setTimeout(r, 2000));
      }
    };
    void run();
    return () => abort.abort();
  }, [sandboxID]);
  // Kept at the bottom while the reader is there; left alone once they scroll up.
  const atBottom = useRef(true);
  useEffect(() => {
    const el = box.current;
    if (el && atBottom.current) el.scrollTop = el.scrollHeight;
  }, [lines]);
  return (
    <section class="panel logs" aria-label="Logs">
      <div class="panel-head">
        <h3>Logs</h3>
        <span class="muted" data-testid="logs-status">
          {status}
        </span>
      </div>
      <div
        class="log"
        role="log"
        aria-label="Sandbox log"
        data-testid="logs"
        ref={box}
        onScroll={(e) => {
          const el = e.currentTarget as HTMLDivElement;
          atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 8;
        }}
      >
        {lines.length === 0 ? (
          <span class="log-empty">No output yet.</span>
        ) : (
          lines.map((l, i) => (
            // Lines only append (past KEEP the oldest go, and all re-render once): keyed by place.
            <div key={i} class={`log-line ${l.stream} ${l.level}`}>
              <time dateTime={l.timestamp}>{l.timestamp.slice(11, 23)}</time> {l.message}
            </div>
          ))
        )}
      </div>
    </section>
  );
}
