// The typed in-arguments of IGD actions (UDA 1.1 §2.5 data types): a missing argument or one of
// the wrong type is 402 Invalid Args.

import { parseIpv4 } from "../../packet/addr.ts";
import type { Proto } from "../leases.ts";
import { UpnpError, UpnpFault } from "./errors.ts";

export class ActionArgs {
  constructor(private readonly args: Map<string, string>) {}

  private raw(name: string): string {
    const v = this.args.get(name);
    if (v === undefined) throw new UpnpFault(UpnpError.INVALID_ARGS, `${name} missing`);
    return v;
  }

  private unsigned(name: string, max: number): number {
    const v = this.raw(name).trim();
    const n = /^\d{1,10}$/.test(v) ? Number(v) : Number.NaN;
    if (!(n <= max)) throw new UpnpFault(UpnpError.INVALID_ARGS, `${name} is not a number 0-${max}`);
    return n;
  }

  ui2(name: string): number {
    return this.unsigned(name, 0xffff);
  }

  ui4(name: string): number {
    return this.unsigned(name, 0xffffffff);
  }

  boolean(name: string): boolean {
    const v = this.raw(name).trim().toLowerCase();
    if (v === "1" || v === "true" || v === "yes") return true;
    if (v === "0" || v === "false" || v === "no") return false;
    throw new UpnpFault(UpnpError.INVALID_ARGS, `${name} is not a boolean`);
  }

  protocol(name = "NewProtocol"): Proto {
    const v = this.raw(name).trim().toUpperCase();
    if (v === "TCP") return "tcp";
    if (v === "UDP") return "udp";
    throw new UpnpFault(UpnpError.INVALID_ARGS, `${name} must be TCP or UDP`);
  }

  /** An IPv4 address; with `wildcard`, "" (and 0.0.0.0) is 0, any remote. */
  address(name: string, wildcard: boolean): number {
    const v = this.raw(name).trim();
    if (wildcard && (v === "" || v === "0.0.0.0")) return 0;
    const a = parseIpv4(v);
    if (a === undefined || a === 0)
      throw new UpnpFault(UpnpError.INVALID_ARGS, `${name} is not an IPv4 address`);
    return a;
  }

  string(name: string): string {
    return this.raw(name);
  }

  /** An optional string (absent: ""). */
  optionalString(name: string): string {
    return this.args.get(name) ?? "";
  }
}
