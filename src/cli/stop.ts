// `masq stop [--keep-state]`: asks the running masq to stop over its control socket and waits,
// bounded, until its process is gone, so that a `masq run` right after it finds the host as the
// stop left it (undone, or kept with the state for it).
import { setTimeout as sleep } from "node:timers/promises";
import { ControlClientError, controlCall } from "../control/client.ts";
import { isLiveMasq } from "../host/index.ts";

export interface StopFlags {
  keepState: boolean;
  socket: string;
  /** Seconds to wait for the process to be gone. */
  timeout: number;
}

export async function runStop(opts: StopFlags): Promise<number> {
  const reply = (await controlCall(opts.socket, "POST", "/v1/stop", { keepState: opts.keepState })) as {
    pid: number;
  };
  const deadline = performance.now() + opts.timeout * 1000;
  // Gone or a zombie (exited, not yet reaped by its parent): either way it has let go of the host.
  while (isLiveMasq(reply.pid, null)) {
    if (performance.now() > deadline)
      throw new ControlClientError(
        "MASQ_ERR_NO_ANSWER",
        `masq (pid ${reply.pid}) is still running ${opts.timeout} s after it was asked to stop`,
      );
    await sleep(20);
  }
  process.stdout.write(
    opts.keepState
      ? `masq (pid ${reply.pid}) stopped; its state, TUNs and host setup are kept for the next masq run\n`
      : `masq (pid ${reply.pid}) stopped\n`,
  );
  return 0;
}
