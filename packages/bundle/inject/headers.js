// Injected by esbuild for every `Headers` the bundled agent names (connect's request and
// response headers). Node's global Headers is undici's: touching it the first time loads
// all of undici, about 20 ms of a sandbox's first exec. This one is plain JavaScript.
export { Headers } from "headers-polyfill";
