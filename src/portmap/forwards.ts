// Port forwards (the old `ipmasqadm portfw`): `outside [address:]port[-port]/proto → inside
// host[:port]`, from the config file and added at runtime through the control socket. Each
// forwarded port is an engine pin (see nat/pins.ts), so forwarded connections are ordinary
// tracked flows and hairpinning works for them. Forwards added at runtime are written to a state
// file so that a restart of masq keeps them; those from the config come from the config again.
//
// In interface mode the public address is the gateway's own: the kernel steers only masq's own
// port range of TCP into the TUN, and delivers what inside hosts send to it locally. A forward
// then needs policy rules of its own (TCP from outside, and both protocols from inside for
// hairpinning), which the daemon supplies as `steer`.
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import type { ErrorCode } from "../errors/codes.ts";
import { MasqError } from "../errors/masq-error.ts";
import type { PinRequest, PinResult } from "../nat/engine.ts";
import type { PinView } from "../nat/view.ts";
import { formatIpv4, parseIpv4 } from "../packet/addr.ts";

export type ForwardProto = "tcp" | "udp";

/** A forward as written: `outside` "[address:]port[-port]/proto", `inside` "host[:port]". */
export interface ForwardText {
  outside: string;
  inside: string;
  /** Only this remote address may connect (default any). */
  remote?: string;
  note?: string;
}

/** A parsed forward. Port p of the outside range goes to inside port inPort + (p - first). */
export interface ForwardSpec {
  proto: ForwardProto;
  /** Outside address (32-bit); undefined: masq's first public address. */
  outAddr?: number;
  first: number;
  last: number;
  inAddr: number;
  inPort: number;
  remote?: number;
  note?: string;
}

export interface Forward {
  id: number;
  spec: ForwardSpec;
  /** "config" (from the config file) or "runtime" (added through the control socket, persisted). */
  source: "config" | "runtime";
  /** One pin per forwarded port. */
  pinIds: number[];
  /** The outside address actually used. */
  outAddr: number;
}

/** What a listing shows of a forward. */
export interface ForwardView {
  id: number;
  protocol: ForwardProto;
  /** "198.51.100.2:8080" or "198.51.100.2:8000-8010". */
  outside: string;
  inside: string;
  remote: string;
  source: "config" | "runtime";
  note: string;
  /** The forward as `masq forward add` takes it. */
  text: string;
  pins: number[];
  flows: number;
}

/** Ports one forward may cover (each is a pin and a mapping). */
export const MAX_FORWARD_PORTS = 1024;

/**
 * A forward refused, with its code. A forward that is badly written also names the field it
 * concerns (`key`, e.g. "forward.0.inside") and the problem apart, so the config can report it
 * under its own key without taking the message apart.
 */
export class ForwardError extends MasqError {
  constructor(
    code: ErrorCode,
    readonly problem: string,
    readonly key?: string,
  ) {
    super(code, key === undefined ? problem : `${key}: ${problem}`);
    this.name = "ForwardError";
  }
}

/** A forward that is not written like one: `problem` with the field `key` it is in. */
function invalid(key: string, problem: string): ForwardError {
  return new ForwardError("MASQ_ERR_FORWARD_INVALID", problem, key);
}

/** The engine's pin primitive (NatEngine fits). */
export interface PinEngine {
  pinMapping(req: PinRequest): PinResult;
  unpin(id: number): boolean;
  pinList(): PinView[];
}

/** Interface mode: steer a forwarded port range into the TUN (and stop again). */
export interface Steering {
  add(proto: ForwardProto, first: number, last: number): Promise<void>;
  remove(proto: ForwardProto, first: number, last: number): Promise<void>;
}

// ---------------------------------------------------------------- parsing

const OUTSIDE = /^\s*(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5})(?:-(\d{1,5}))?\/(tcp|udp)\s*$/i;
const INSIDE = /^\s*(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?\s*$/;

function port(text: string, where: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw invalid(where, `port ${text} is not 1-65535`);
  return n;
}

function address(text: string, where: string): number {
  const a = parseIpv4(text);
  if (a === undefined) throw invalid(where, `${JSON.stringify(text)} is not an IPv4 address`);
  return a;
}

/** Parses a forward; errors name `where` (a config key or "forward"). */
export function parseForward(t: ForwardText, where = "forward"): ForwardSpec {
  const o = OUTSIDE.exec(t.outside ?? "");
  if (!o)
    throw invalid(
      `${where}.outside`,
      `${JSON.stringify(t.outside)} is not like "8080/tcp", "8000-8010/udp" or "198.51.100.2:8080/tcp"`,
    );
  const first = port(o[2], `${where}.outside`);
  const last = o[3] === undefined ? first : port(o[3], `${where}.outside`);
  if (last < first) throw invalid(`${where}.outside`, `the range ${first}-${last} runs backwards`);
  if (last - first + 1 > MAX_FORWARD_PORTS)
    throw invalid(`${where}.outside`, `at most ${MAX_FORWARD_PORTS} ports per forward`);
  const i = INSIDE.exec(t.inside ?? "");
  if (!i)
    throw invalid(
      `${where}.inside`,
      `${JSON.stringify(t.inside)} is not like "192.168.0.2:80" or "192.168.0.2"`,
    );
  const inPort = i[2] === undefined ? first : port(i[2], `${where}.inside`);
  if (inPort + (last - first) > 65535)
    throw invalid(`${where}.inside`, "the range would run past port 65535 on the inside host");
  const spec: ForwardSpec = {
    proto: o[4].toLowerCase() as ForwardProto,
    first,
    last,
    inAddr: address(i[1], `${where}.inside`),
    inPort,
  };
  if (o[1] !== undefined) spec.outAddr = address(o[1], `${where}.outside`);
  if (t.remote !== undefined && t.remote !== "" && t.remote !== "*")
    spec.remote = address(t.remote, `${where}.remote`);
  if (t.note !== undefined && t.note !== "") spec.note = t.note;
  return spec;
}

function range(first: number, last: number): string {
  return first === last ? String(first) : `${first}-${last}`;
}

/** The forward as text, with the outside address when it was given. */
export function forwardText(s: ForwardSpec): ForwardText {
  const addr = s.outAddr === undefined ? "" : `${formatIpv4(s.outAddr)}:`;
  const t: ForwardText = {
    outside: `${addr}${range(s.first, s.last)}/${s.proto}`,
    inside: `${formatIpv4(s.inAddr)}:${s.inPort}`,
  };
  if (s.remote !== undefined) t.remote = formatIpv4(s.remote);
  if (s.note !== undefined) t.note = s.note;
  return t;
}

// ---------------------------------------------------------------- registry

/** A state file that exists but cannot be what masq wrote (not JSON, or not its format). */
class CorruptStateError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

function isForwardText(t: unknown): t is ForwardText {
  if (typeof t !== "object" || t === null) return false;
  const f = t as Record<string, unknown>;
  return (
    typeof f.outside === "string" &&
    typeof f.inside === "string" &&
    (f.remote === undefined || typeof f.remote === "string") &&
    (f.note === undefined || typeof f.note === "string")
  );
}

interface StateFile {
  version: 1;
  forwards: ForwardText[];
}

export interface ForwardRegistryOptions {
  engine: PinEngine;
  /** masq's public addresses (32-bit); the first is the default outside address. */
  publicAddresses: number[];
  /** Where runtime forwards are kept across restarts; none: not persisted. */
  stateFile?: string;
  /** Interface mode: per-forward policy rules. */
  steer?: Steering;
  /** Why a forward may not send to this inside address (the gateway itself …), or undefined. */
  refuseTarget?: (inAddr: number) => string | undefined;
}

export class ForwardRegistry {
  private readonly forwards = new Map<number, Forward>();
  private nextId = 1;
  /** A corrupt state file that could not be moved aside: never overwritten. */
  private corruptState: string | undefined;
  /** Serializes changes: each one may wait for `ip rule`, and two must not interleave. */
  private queue: Promise<unknown> = Promise.resolve();

  /** The file the runtime forwards are kept in, if any. */
  get stateFile(): string | undefined {
    return this.opts.stateFile;
  }

  constructor(private readonly opts: ForwardRegistryOptions) {
    if (opts.publicAddresses.length === 0) throw new Error("forwards: no public address");
  }

  /**
   * Interface mode: the public address changed from `from` to `to` (the engine moved the pins,
   * src/nat/public-address.ts); the forwards say so from now on.
   */
  movePublicAddress(from: number, to: number): void {
    const pub = this.opts.publicAddresses;
    for (let i = 0; i < pub.length; i++) if (pub[i] === from) pub[i] = to;
    for (const f of this.forwards.values()) {
      if (f.outAddr === from) f.outAddr = to;
      if (f.spec.outAddr === from) f.spec.outAddr = to;
    }
  }

  /** Adds a forward: pins every port, then (interface mode, TCP) steers the ports into the TUN. */
  add(spec: ForwardSpec, source: "config" | "runtime"): Promise<Forward> {
    return this.serial(async () => {
      if (source === "runtime" && this.corruptState !== undefined)
        throw new ForwardError(
          "MASQ_ERR_FORWARD_STATE_CORRUPT",
          `the forward state file ${this.corruptState} is corrupt and could not be moved aside: fix or remove it first`,
        );
      const f = await this.install(spec, source);
      if (source === "runtime") this.save();
      return f;
    });
  }

  /** Removes the forward with this id or outside text ("8080/tcp", "198.51.100.2:8080/tcp"). */
  remove(key: string | number): Promise<Forward> {
    return this.serial(async () => {
      const f = this.find(key);
      if (!f)
        throw new ForwardError(
          "MASQ_ERR_FORWARD_NOT_FOUND",
          `no forward ${JSON.stringify(String(key))} (see masq forward list)`,
        );
      this.forwards.delete(f.id);
      // Stop steering first, so no packet arrives for a mapping that is going.
      const s = f.spec;
      await this.opts.steer?.remove(s.proto, s.first, s.last);
      for (const id of f.pinIds) this.opts.engine.unpin(id);
      if (f.source === "runtime") this.save();
      return f;
    });
  }

  list(): Forward[] {
    return [...this.forwards.values()];
  }

  /** Forwards with their flow counts, for `masq forward list`. */
  views(pins: PinView[] = this.opts.engine.pinList()): ForwardView[] {
    const byId = new Map(pins.map((p) => [p.id, p]));
    return this.list().map((f) => {
      const s = f.spec;
      const t = forwardText(s);
      return {
        id: f.id,
        protocol: s.proto,
        outside: `${formatIpv4(f.outAddr)}:${range(s.first, s.last)}`,
        inside: `${formatIpv4(s.inAddr)}:${range(s.inPort, s.inPort + (s.last - s.first))}`,
        remote: s.remote === undefined ? "*" : formatIpv4(s.remote),
        source: f.source,
        note: s.note ?? "",
        text: `${t.outside} ${t.inside}`,
        pins: f.pinIds,
        flows: f.pinIds.reduce((n, id) => n + (byId.get(id)?.flows ?? 0), 0),
      };
    });
  }

  /**
   * Re-adds the forwards of the state file; returns those that could not be (with why). An
   * unreadable file is reported the same way rather than keeping the gateway down; a corrupt one
   * is moved aside to `<file>.corrupt-<ISO time>` first (and the report names it), so the next
   * `forward add` writes a new file without destroying what the old one held.
   */
  async restore(): Promise<Array<{ forward: ForwardText | null; error: string }>> {
    const failed: Array<{ forward: ForwardText | null; error: string }> = [];
    let saved: ForwardText[];
    try {
      saved = this.readState();
    } catch (err) {
      if (!(err instanceof CorruptStateError)) return [{ forward: null, error: (err as Error).message }];
      return [{ forward: null, error: this.keepAside(err) }];
    }
    for (const t of saved) {
      try {
        await this.serial(() => this.install(parseForward(t, "state"), "runtime"));
      } catch (err) {
        failed.push({ forward: t, error: (err as Error).message });
      }
    }
    return failed;
  }

  /** Renames a corrupt state file out of the way; returns what to tell the operator. */
  private keepAside(err: CorruptStateError): string {
    const aside = `${err.path}.corrupt-${new Date().toISOString()}`;
    try {
      renameSync(err.path, aside);
    } catch (e) {
      // Left where it is: then no save may overwrite it either.
      this.corruptState = err.path;
      return `${err.message}; it could not be kept aside (${(e as Error).message}), so forward add is refused until it is fixed or removed`;
    }
    return `${err.message}; kept as ${aside}, masq starts without its forwards (the next forward add writes a new file)`;
  }

  /** Removes every forward (pins and rules), leaving the state file as it is (masq is stopping). */
  async clear(): Promise<void> {
    await this.serial(async () => {
      for (const f of [...this.forwards.values()].reverse()) {
        this.forwards.delete(f.id);
        const s = f.spec;
        await this.opts.steer?.remove(s.proto, s.first, s.last);
        for (const id of f.pinIds) this.opts.engine.unpin(id);
      }
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private find(key: string | number): Forward | undefined {
    const text = String(key).trim();
    if (/^\d+$/.test(text)) return this.forwards.get(Number(text));
    const o = OUTSIDE.exec(text);
    if (!o) return undefined;
    const proto = o[4].toLowerCase();
    const first = Number(o[2]);
    const last = o[3] === undefined ? first : Number(o[3]);
    const addr = o[1] === undefined ? undefined : parseIpv4(o[1]);
    for (const f of this.forwards.values())
      if (
        f.spec.proto === proto &&
        f.spec.first === first &&
        f.spec.last === last &&
        (addr === undefined || addr === f.outAddr)
      )
        return f;
    return undefined;
  }

  private async install(spec: ForwardSpec, source: "config" | "runtime"): Promise<Forward> {
    const outAddr = spec.outAddr ?? this.opts.publicAddresses[0];
    if (!this.opts.publicAddresses.includes(outAddr))
      throw new ForwardError(
        "MASQ_ERR_NOT_PUBLIC_ADDRESS",
        `${formatIpv4(outAddr)} is not a public address of masq`,
      );
    const refused = this.opts.refuseTarget?.(spec.inAddr);
    if (refused)
      throw new ForwardError(
        "MASQ_ERR_FORWARD_TARGET",
        `cannot forward to ${formatIpv4(spec.inAddr)}: ${refused}`,
      );
    const pinIds: number[] = [];
    const undo = () => {
      for (const id of pinIds) this.opts.engine.unpin(id);
    };
    const note = spec.note ?? source;
    for (let p = spec.first; p <= spec.last; p++) {
      const r = this.opts.engine.pinMapping({
        proto: spec.proto,
        inAddr: spec.inAddr,
        inPort: spec.inPort + (p - spec.first),
        outAddr,
        outPort: p,
        ...(spec.remote === undefined ? {} : { remoteAddr: spec.remote }),
        origin: "forward",
        note,
        // The administrator's decision: not part of the host's own share of the ports.
        hostQuota: false,
      });
      if ("error" in r) {
        undo();
        throw new ForwardError(
          r.code,
          `cannot forward ${formatIpv4(outAddr)}:${p}/${spec.proto}: ${r.error}`,
        );
      }
      pinIds.push(r.id);
    }
    const steer = this.opts.steer;
    if (steer) {
      try {
        await steer.add(spec.proto, spec.first, spec.last);
      } catch (err) {
        undo();
        throw new ForwardError(
          "MASQ_ERR_HOST_SETUP",
          `cannot steer ${spec.proto.toUpperCase()} ${range(spec.first, spec.last)} into masq: ${(err as Error).message}`,
        );
      }
    }
    const f: Forward = { id: this.nextId++, spec, source, pinIds, outAddr };
    this.forwards.set(f.id, f);
    return f;
  }

  private readState(): ForwardText[] {
    const path = this.opts.stateFile;
    if (!path) return [];
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    let state: Partial<StateFile>;
    try {
      state = JSON.parse(text) as Partial<StateFile>;
    } catch {
      throw new CorruptStateError(path, `forward state file ${path} is not valid JSON`);
    }
    if (
      typeof state !== "object" ||
      state === null ||
      state.version !== 1 ||
      !Array.isArray(state.forwards) ||
      !state.forwards.every(isForwardText)
    )
      throw new CorruptStateError(path, `forward state file ${path} has an unknown format`);
    return state.forwards;
  }

  /** Writes the runtime forwards atomically (write + rename): a crash leaves the old or the new. */
  private save(): void {
    const path = this.opts.stateFile;
    if (!path) return;

    const forwards = this.list()
      .filter((f) => f.source === "runtime")
      .map((f) => forwardText(f.spec));
    if (forwards.length === 0) {
      rmSync(path, { force: true });
      return;
    }
    const state: StateFile = { version: 1, forwards };
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, path);
  }
}
