/** AF_VSOCK socket calls; file descriptors are handed to JavaScript to wrap. */

/** The host's context id (VMADDR_CID_HOST, 2). */
export declare const HOST_CID: number;

/** socket + bind(VMADDR_CID_ANY, port) + listen; port 0 picks one. Throws an Error with code (EAFNOSUPPORT, EADDRINUSE...). */
export declare function listen(port: number): { fd: number; port: number };

/**
 * Accepts on a listening fd in a thread; each connection calls back with its fd and the
 * peer's cid and port, a failed accept with a negative errno as fd.
 */
export declare function accept(fd: number, callback: (fd: number, cid: number, port: number) => void): void;

/** Stops accepting and closes the listening fd. */
export declare function stop(fd: number): void;

/** A blocking connect to cid:port; returns the connected fd. */
export declare function connect(cid: number, port: number): number;
