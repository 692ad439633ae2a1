// The steering of a multi-queue TUN pair: loads the two queue-selection programs
// (steering-program.ts) and the outside one's override table, and attaches them. Where the kernel
// refuses a step (no bpf(), no TUNSETSTEERINGEBPF, a verifier that says no), the caller falls
// back to one queue and says why.
import { loadAddon, type NativeAddon } from "../io/addon.ts";
import type { TunDevice } from "../io/tun.ts";
import { OVERRIDE_ENTRIES, overrideKey, type SteeringPlan } from "./steering-model.ts";
import { insideProgram, outsideProgram } from "./steering-program.ts";

export class TunSteering {
  private readonly addon: NativeAddon;
  private readonly fds: number[];
  private readonly mapFd: number;

  private constructor(addon: NativeAddon, mapFd: number, fds: number[]) {
    this.addon = addon;
    this.mapFd = mapFd;
    this.fds = fds;
  }

  /** Loads and attaches the programs (any queue of each device will do); throws what the kernel said. */
  static attach(inside: TunDevice, outside: TunDevice, plan: SteeringPlan): TunSteering {
    const addon = loadAddon();
    const mapFd = addon.bpfArrayMap(OVERRIDE_ENTRIES);
    const fds: number[] = [mapFd];
    try {
      const inProg = addon.bpfLoadSocketFilter(insideProgram(plan.queues));
      fds.push(inProg);
      const outProg = addon.bpfLoadSocketFilter(outsideProgram(plan, mapFd));
      fds.push(outProg);
      inside.attachSteering(inProg);
      outside.attachSteering(outProg);
    } catch (err) {
      for (const fd of fds) addon.closeFd(fd);
      throw err;
    }
    return new TunSteering(addon, mapFd, fds);
  }

  /**
   * Packets from outside to TCP/UDP `port` go to `worker` whatever the port's slice: a forward or
   * a pin whose port its owner chose. undefined: back to the slice.
   */
  setOverride(proto: number, port: number, worker: number | undefined): void {
    this.addon.bpfMapSet(this.mapFd, overrideKey(proto, port), worker === undefined ? 0 : worker + 1);
  }

  /** Closes our fds; the devices keep the programs until they close. */
  close(): void {
    for (const fd of this.fds.splice(0)) this.addon.closeFd(fd);
  }
}
