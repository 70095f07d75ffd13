import { LIFETIME_STATES, type Sandboxes } from "@tether/host";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { TeamLimits } from "./auth/limits.js";

/** The server's Prometheus metrics: requests, latencies, sandboxes by state, creates in flight. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<"method" | "route" | "status">;
  readonly latency: Histogram<"method" | "route">;

  constructor(sandboxes: Sandboxes, limits: TeamLimits) {
    this.requests = new Counter({
      name: "tether_http_requests_total",
      help: "API requests answered, by method, route and status",
      labelNames: ["method", "route", "status"],
      registers: [this.registry],
    });
    this.latency = new Histogram({
      name: "tether_http_request_duration_seconds",
      help: "API request latency, by method and route",
      labelNames: ["method", "route"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
    new Gauge({
      name: "tether_sandboxes",
      help: "Sandboxes in the registry, by state",
      labelNames: ["state"],
      registers: [this.registry],
      collect() {
        const counts = new Map<string, number>();
        for (const s of LIFETIME_STATES) counts.set(s, 0);
        for (const record of sandboxes.registry?.list() ?? []) {
          counts.set(record.state, (counts.get(record.state) ?? 0) + 1);
        }
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: "tether_sandbox_creates_queued",
      help: "Sandbox creations waiting for a slot (a team at its in-flight limit)",
      registers: [this.registry],
      collect() {
        this.set(limits.queued);
      },
    });
    new Gauge({
      name: "tether_sandbox_creates_in_flight",
      help: "Sandbox creations under way",
      registers: [this.registry],
      collect() {
        this.set(limits.creating);
      },
    });
  }
}
