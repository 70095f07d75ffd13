import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { useEffect, useRef, useState } from "preact/hooks";
import { storedKey } from "./api";

/**
 * A shell in the sandbox: xterm.js over a WebSocket to the agent's PTY. The key goes in
 * the first message; the shell's pid is kept in session storage so a reload reattaches.
 */
export function TerminalPane({ sandboxID }: { sandboxID: string }) {
  const host = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState("connecting");
  useEffect(() => {
    const pidKey = `tether.pty.${sandboxID}`;
    const term = new Terminal({
      cursorBlink: true,
      fontSize: 13,
      fontFamily: "ui-monospace, Menlo, Consolas, monospace",
      theme: { background: "#0b0f14", foreground: "#e6edf3" },
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(host.current as HTMLDivElement);
    fit.fit();
    let ws: WebSocket | undefined;
    let closed = false;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const connect = () => {
      const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/dashboard/terminal`;
      const socket = new WebSocket(url);
      ws = socket;
      socket.binaryType = "arraybuffer";
      socket.onopen = () => {
        const pid = Number(sessionStorage.getItem(pidKey)) || undefined;
        socket.send(JSON.stringify({ key: storedKey(), sandboxID, pid, cols: term.cols, rows: term.rows }));
      };
      socket.onmessage = (m) => {
        if (typeof m.data === "string") {
          const msg = JSON.parse(m.data) as { type: string; pid: number; reattached: boolean };
          if (msg.type === "ready") {
            sessionStorage.setItem(pidKey, String(msg.pid));
            setStatus(msg.reattached ? `reattached to shell ${msg.pid}` : `shell ${msg.pid}`);
            if (msg.reattached) term.reset();
            term.focus();
          }
          return;
        }
        term.write(new Uint8Array(m.data as ArrayBuffer));
      };
      socket.onclose = (e) => {
        if (closed) return;
        if (e.code === 1000) {
          // The shell ended: the next connection starts a new one.
          sessionStorage.removeItem(pidKey);
          setStatus(`closed: ${e.reason || "shell exited"}`);
          return;
        }
        if (e.code === 4000) {
          setStatus(`refused: ${e.reason}`);
          return;
        }
        setStatus("disconnected, reconnecting");
        retry = setTimeout(connect, 1500);
      };
    };
    connect();
    const input = term.onData((data) => {
      if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "input", data }));
    });
    const resize = term.onResize(({ cols, rows }) => {
      if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "resize", cols, rows }));
    });
    const observer = new ResizeObserver(() => fit.fit());
    observer.observe(host.current as HTMLDivElement);
    return () => {
      closed = true;
      if (retry) clearTimeout(retry);
      observer.disconnect();
      input.dispose();
      resize.dispose();
      ws?.close();
      term.dispose();
    };
  }, [sandboxID]);
  return (
    <section class="panel terminal-panel" aria-label="Terminal">
      <div class="panel-head">
        <h3>Terminal</h3>
        <span class="muted" role="status" data-testid="terminal-status">
          {status}
        </span>
      </div>
      <div class="terminal" ref={host} data-testid="terminal" />
    </section>
  );
}
