import { useEffect, useState } from "preact/hooks";
import { api } from "./api";

interface Metric {
  timestampUnix: number;
  cpuUsedPct: number;
  memUsed: number;
  memTotal: number;
}

/** A small line chart as SVG: the last values, scaled to the panel. */
function Spark({ values, max, label, unit }: { values: number[]; max: number; label: string; unit: string }) {
  const w = 240;
  const h = 48;
  const top = Math.max(max, 1e-9);
  const points = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${h - (v / top) * h}`).join(" ");
  const last = values.at(-1);
  return (
    <figure class="spark">
      <figcaption>
        {label}: <strong>{last === undefined ? "—" : `${last.toFixed(1)} ${unit}`}</strong>
      </figcaption>
      <svg
        viewBox={`0 0 ${w} ${h}`}
        role="img"
        aria-label={`${label} over the last minutes`}
        preserveAspectRatio="none"
      >
        <polyline points={points} fill="none" stroke="currentColor" stroke-width="2" />
        {last !== undefined && (
          <circle cx={values.length > 1 ? w - 3 : 3} cy={h - (last / top) * h} r="3" fill="currentColor" />
        )}
      </svg>
    </figure>
  );
}

/**
 * CPU and memory over the last minutes: one sample every 3 s from the sandbox's metrics
 * endpoint while this page is open (the server keeps no history).
 */
export function MetricsPane({ sandboxID }: { sandboxID: string }) {
  const [samples, setSamples] = useState<Metric[]>([]);
  useEffect(() => {
    let stop = false;
    const take = async () => {
      try {
        const got = await api<Metric[]>("GET", `/sandboxes/${sandboxID}/metrics`);
        if (!stop && got.length > 0) setSamples((prev) => [...prev, ...got].slice(-100));
      } catch {}
    };
    void take();
    const timer = setInterval(take, 3000);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [sandboxID]);
  const mem = samples.map((s) => s.memUsed / 2 ** 20);
  const memTotal = (samples.at(-1)?.memTotal ?? 0) / 2 ** 20;
  return (
    <section class="panel" aria-label="Metrics">
      <h3>Metrics</h3>
      <Spark values={samples.map((s) => s.cpuUsedPct)} max={100} label="CPU" unit="%" />
      <Spark values={mem} max={Math.max(memTotal, ...mem)} label="Memory" unit="MiB" />
    </section>
  );
}

/** The ports listening in the sandbox, each with its link through the server's proxy. */
export function PortsPane({ sandboxID }: { sandboxID: string }) {
  const [ports, setPorts] = useState<{ port: number; address: string }[] | null>(null);
  const [domain, setDomain] = useState<string | null>(null);
  useEffect(() => {
    let stop = false;
    const look = async () => {
      try {
        const [list, info] = await Promise.all([
          api<{ port: number; address: string }[]>("GET", `/dashboard/api/sandboxes/${sandboxID}/ports`),
          api<{ domain: string | null }>("GET", `/sandboxes/${sandboxID}`),
        ]);
        if (stop) return;
        setPorts(list.filter((p) => p.port !== 49983));
        setDomain(info.domain);
      } catch {}
    };
    void look();
    const timer = setInterval(look, 5000);
    return () => {
      stop = true;
      clearInterval(timer);
    };
  }, [sandboxID]);
  return (
    <section class="panel" aria-label="Ports">
      <h3>Ports</h3>
      {ports === null ? (
        <p class="muted">…</p>
      ) : ports.length === 0 ? (
        <p class="muted">Nothing listens.</p>
      ) : (
        <ul>
          {ports.map((p) => (
            <li key={`${p.address}:${p.port}`}>
              {p.port} <span class="muted">({p.address})</span>{" "}
              {domain ? (
                <a
                  href={`${location.protocol}//${p.port}-${sandboxID}.${domain}${location.port ? `:${location.port}` : ""}/`}
                  target="_blank"
                  rel="noreferrer"
                >
                  open
                </a>
              ) : (
                <span class="muted">no --domain: reach it with headers e2b-sandbox-id / e2b-sandbox-port</span>
              )}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
