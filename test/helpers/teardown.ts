// The end of every end-to-end suite: stop masq if it still runs, then remove the namespaces and
// the temporary folder even when stopping failed, so no test leaves anything behind.
import { rmSync } from "node:fs";

export interface TearDownParts {
  masq?: { proc: { running: boolean }; stop(): Promise<unknown> };
  net?: { destroy(): Promise<unknown> };
  tmp?: string;
}

export async function tearDown({ masq, net, tmp }: TearDownParts): Promise<void> {
  try {
    if (masq?.proc.running) await masq.stop();
  } finally {
    await net?.destroy();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}
