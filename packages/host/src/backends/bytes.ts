import { InvalidSandboxSpecError } from "../errors.js";

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1 << 10, m: 1 << 20, g: 1 << 30, t: 2 ** 40 };

/** "512m" -> bytes; numbers pass through. Docker's units: b, k, m, g (powers of 1024). */
export function parseBytes(value: number | string): number {
  if (typeof value === "number") return value;
  const match = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(value.trim());
  if (!match) throw new InvalidSandboxSpecError(`memory ${JSON.stringify(value)}: expected bytes or e.g. 512m, 2g`);
  return Math.floor(Number(match[1]) * UNITS[match[2].toLowerCase()]);
}
