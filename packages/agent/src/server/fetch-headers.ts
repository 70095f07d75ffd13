/**
 * The Fetch standard's `Headers`, for the bundled agent only: the bundle's esbuild injects this
 * class where its code (connect-es above all, which makes one per request) names the global
 * `Headers`. Node's global `Headers` is undici's, and its first use loads all of undici (a fetch
 * client the agent never uses): about 10 ms in a fresh sandbox's first exec. The dist agent, run
 * on a host's Node, keeps the global one.
 *
 * It follows https://fetch.spec.whatwg.org/#headers-class for what a server's headers need:
 * names are validated and kept lowercase, values validated and trimmed of HTTP whitespace,
 * `get` joins repeated values with ", ", iteration is sorted by name and gives each
 * `set-cookie` apart. Guards (immutable request headers) are not part of it.
 */
export class FetchHeaders implements Headers {
  readonly #values = new Map<string, string[]>();

  constructor(init?: ConstructorParameters<typeof Headers>[0]) {
    if (init === undefined || init === null) return;
    if (typeof init !== "object") throw new TypeError("Headers: init must be an object or a sequence of pairs");
    if (init instanceof FetchHeaders) {
      for (const [name, values] of init.#values) this.#values.set(name, [...values]);
    } else if (Symbol.iterator in init) {
      for (const pair of init as Iterable<Iterable<string>>) {
        const entry = [...pair];
        if (entry.length !== 2) throw new TypeError("Headers: each header must be a [name, value] pair");
        this.append(entry[0] as string, entry[1] as string);
      }
    } else {
      for (const [name, value] of Object.entries(init as Record<string, string>)) this.append(name, value);
    }
  }

  append(name: string, value: string): void {
    const key = headerName(name);
    const normalized = headerValue(value);
    const values = this.#values.get(key);
    if (values) values.push(normalized);
    else this.#values.set(key, [normalized]);
  }

  delete(name: string): void {
    this.#values.delete(headerName(name));
  }

  get(name: string): string | null {
    return this.#values.get(headerName(name))?.join(", ") ?? null;
  }

  getSetCookie(): string[] {
    return [...(this.#values.get("set-cookie") ?? [])];
  }

  has(name: string): boolean {
    return this.#values.has(headerName(name));
  }

  set(name: string, value: string): void {
    this.#values.set(headerName(name), [headerValue(value)]);
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [name, value] of this.entries()) callback.call(thisArg, value, name, this);
  }

  *entries(): Generator<[string, string]> {
    for (const name of [...this.#values.keys()].sort()) {
      const values = this.#values.get(name);
      if (!values) continue; // deleted by a callback while iterating
      if (name === "set-cookie") for (const value of values) yield [name, value];
      else yield [name, values.join(", ")];
    }
  }

  *keys(): Generator<string> {
    for (const [name] of this.entries()) yield name;
  }

  *values(): Generator<string> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): Generator<[string, string]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return "Headers";
  }
}

/** An RFC 9110 token: what a header's name may be made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What a header's value may not hold once trimmed. */
const FORBIDDEN_IN_VALUE = /[\0\r\n]/;

function headerName(name: string): string {
  const text = String(name);
  if (!TOKEN.test(text)) throw new TypeError(`Headers: invalid header name ${JSON.stringify(text)}`);
  return text.toLowerCase();
}

function headerValue(value: string): string {
  const text = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
  if (FORBIDDEN_IN_VALUE.test(text)) throw new TypeError(`Headers: invalid header value ${JSON.stringify(text)}`);
  return text;
}

/** The name esbuild's `inject` replaces: every free `Headers` in the bundled agent means this class. */
export { FetchHeaders as Headers };
