// The gateway's own addresses, for the ICMP errors its own stack sends about packets masq
// translated. Forwarding a packet masq wrote back, the kernel reports a problem with it
// (fragmentation needed on a smaller WAN, host unreachable) to the packet's source, masq's
// public address, so the error reaches masq (the host plan steers it there) instead of the
// inside host that sent the packet. Its source is an address of the gateway's, which the kernel
// picks itself, often the first address it finds on any interface (the TUN has none), so it may
// well lie on an inside network.
//
// Such a source is no forgery: the kernel drops a packet arriving on an interface with one of the
// gateway's own addresses as its source (a martian, unless that interface has accept_local), so
// one that reaches masq with it was made by the gateway itself.
import { icmpIsError } from "../packet/l4.ts";

export class GatewayAddresses {
  private addrs: Uint32Array;
  /** Per inside network (the engine's order), the gateway's first address on it, 0 when none. */
  private readonly onNetwork: Uint32Array;
  private readonly netAddr: Uint32Array;
  private readonly netMask: Uint32Array;
  /** The gateway's first address on any inside network, 0 when none. */
  private readonly anyInside: number;

  /** `insideAddr`/`insideMask`: the inside networks, as the engine holds them. */
  constructor(addrs: readonly number[], insideAddr: Uint32Array, insideMask: Uint32Array) {
    this.addrs = new Uint32Array(addrs);
    this.netAddr = insideAddr;
    this.netMask = insideMask;
    this.onNetwork = new Uint32Array(insideAddr.length);
    for (let k = 0; k < insideAddr.length; k++) {
      const a = this.addrs.find((g) => (g & insideMask[k]) >>> 0 === insideAddr[k]);
      this.onNetwork[k] = a ?? 0;
    }
    this.anyInside = this.onNetwork.find((a) => a !== 0) ?? 0;
  }

  /**
   * The outside interface's address changed (interface mode): `from` is no longer the gateway's,
   * `to` is (0: none on either side). The inside addresses, which `facing` uses, stay.
   */
  replace(from: number, to: number): void {
    const kept = Array.from(this.addrs).filter((a) => a !== from && a !== to);
    if (to !== 0) kept.push(to);
    this.addrs = new Uint32Array(kept);
  }

  has(a: number): boolean {
    const g = this.addrs;
    for (let i = 0; i < g.length; i++) if (g[i] === a) return true;
    return false;
  }

  /**
   * Whether the validated ICMP packet at `off` (header length `hl`, source `src`) is an error the
   * gateway sent: unfragmented (the kernel's are at most 576 bytes), an error type, from one of
   * its addresses.
   */
  sentError(b: Uint8Array, off: number, hl: number, src: number): boolean {
    // The fast path passes addresses signed (never boxed); here they are unsigned again.
    src >>>= 0;
    return (
      this.addrs.length > 0 &&
      (((b[off + 6] << 8) | b[off + 7]) & 0x3fff) === 0 &&
      icmpIsError(b[off + hl]) &&
      this.has(src)
    );
  }

  /**
   * The address the gateway would send an ICMP error to inside host `host` from, as the kernel's
   * own NAT does (the error goes out the inside interface with that interface's address): its
   * address on the host's network, else on any inside network; 0 when it has none.
   */
  facing(host: number): number {
    const n = this.netAddr.length;
    for (let k = 0; k < n; k++)
      if ((host & this.netMask[k]) >>> 0 === this.netAddr[k] && this.onNetwork[k] !== 0)
        return this.onNetwork[k];
    return this.anyInside;
  }
}
