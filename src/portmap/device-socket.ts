// The sockets of the servers for inside hosts (NAT-PMP/PCP for IPv4, PCP for IPv6): bound to one
// interface through the addon (udpSocketOnDevice), so what arrives on another (a forged inside
// source from outside) is never seen, and closed together at the stop.
import type { Socket } from "node:dgram";

/**
 * Binds `s` to the fd `open()` gives; a failure of either is thrown as `refused(why)` (the error
 * that names the setting to turn the server off).
 */
export async function bindOnDevice(
  s: Socket,
  open: () => number,
  refused: (why: string) => Error,
): Promise<void> {
  let fd: number;
  try {
    fd = open();
  } catch (err) {
    throw refused((err as Error).message);
  }
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error) => reject(refused(err.message));
    s.once("error", failed);
    s.bind({ fd }, () => {
      s.off("error", failed);
      resolve();
    });
  });
}

/** Closes the sockets (and empties the list); one never bound is skipped. */
export async function closeSockets(sockets: Socket[]): Promise<void> {
  await Promise.all(
    sockets.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          try {
            s.close(() => resolve());
          } catch {
            resolve(); // never bound
          }
        }),
    ),
  );
}
