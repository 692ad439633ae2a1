// Where the NAT log goes: a collector over UDP, TCP (RFC 6587 octet counting, framed by the
// caller) or a Unix datagram socket (a local syslog daemon's). A sender never blocks and never
// holds more than its bound: what does not fit is dropped and counted by reason, so a slow or
// absent collector costs the gateway nothing but log records (RFC 6888 §4 asks for the log; the
// packet path cannot wait for it).
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { connect, type Socket as TcpSocket } from "node:net";

export interface SenderCounters {
  /** Messages handed to the kernel. */
  sent: number;
  /** Dropped: the bounded queue was full (collector slow, or TCP not connected). */
  dropped_queue_full: number;
  /** Dropped: the socket refused them (no route, refused, no such socket). */
  dropped_send_error: number;
  /** TCP connections (re)established. */
  connects: number;
}

export interface Sender {
  readonly target: string;
  readonly counters: SenderCounters;
  send(msg: Buffer): void;
  close(): void;
}

export type LogTarget =
  | { kind: "udp"; host: string; port: number }
  | { kind: "tcp"; host: string; port: number }
  | { kind: "unix"; path: string };

const HOST_PORT = /^([A-Za-z0-9.-]{1,253}):(\d{1,5})$/;

/**
 * "udp://HOST:PORT", "tcp://HOST:PORT" or "unix:/path" (`unix` false: UDP only); a string naming
 * the problem when it is none of them.
 */
export function parseLogTarget(text: string, unix = true): LogTarget | string {
  const shapes = unix ? '"udp://HOST:PORT", "tcp://HOST:PORT" or "unix:/path"' : '"udp://HOST:PORT"';
  const m = /^(udp|tcp):\/\/(.*)$/.exec(text);
  if (m && (unix || m[1] === "udp")) {
    const hp = HOST_PORT.exec(m[2]);
    const port = Number(hp?.[2]);
    if (!hp || port < 1 || port > 65535)
      return `${JSON.stringify(text)} must be ${shapes} with a port 1-65535`;
    return { kind: m[1] as "udp" | "tcp", host: hp[1], port };
  }
  if (unix && text.startsWith("unix:/") && text.length > 6 && text.length < 6 + 108)
    return { kind: "unix", path: text.slice(5) };
  return `${JSON.stringify(text)} must be ${shapes}`;
}

export function newCounters(): SenderCounters {
  return { sent: 0, dropped_queue_full: 0, dropped_send_error: 0, connects: 0 };
}

/** Datagrams handed to node:dgram and not yet sent, at most. */
const MAX_DATAGRAMS_IN_FLIGHT = 1024;

export class UdpSender implements Sender {
  readonly counters = newCounters();
  private readonly socket: UdpSocket;
  private inFlight = 0;
  private closing = false;

  constructor(
    readonly target: string,
    private readonly host: string,
    private readonly port: number,
  ) {
    this.socket = createSocket("udp4");
    // An ICMP port unreachable from the collector comes back as an error on the socket.
    this.socket.on("error", () => this.counters.dropped_send_error++);
    this.socket.unref();
  }

  send(msg: Buffer): void {
    if (this.closing) return;
    if (this.inFlight >= MAX_DATAGRAMS_IN_FLIGHT) {
      this.counters.dropped_queue_full++;
      return;
    }
    this.inFlight++;
    this.socket.send(msg, this.port, this.host, (err) => {
      this.inFlight--;
      if (err) this.counters.dropped_send_error++;
      else this.counters.sent++;
      if (this.closing && this.inFlight === 0) this.socket.close();
    });
  }

  /**
   * Closes once what was sent has gone: a datagram handed to send() leaves after a lookup on a
   * later tick, and closing at once would drop the last records (the end of the table's).
   */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.inFlight === 0) this.socket.close();
  }
}

/** Bytes a TCP sender holds (unsent in the socket, or queued while it connects), at most. */
const MAX_TCP_BYTES = 1 << 20;
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 30_000;

/** TCP to a collector, reconnecting with backoff; while down it queues up to its bound. */
export class TcpSender implements Sender {
  readonly counters = newCounters();
  private socket: TcpSocket | undefined;
  private connected = false;
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  private backoffMs = RECONNECT_MIN_MS;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly target: string,
    private readonly host: string,
    private readonly port: number,
  ) {
    this.open();
  }

  private open(): void {
    const s = connect({ host: this.host, port: this.port });
    this.socket = s;
    s.unref();
    s.setNoDelay(true);
    s.on("connect", () => {
      this.connected = true;
      this.backoffMs = RECONNECT_MIN_MS;
      this.counters.connects++;
      const q = this.queue;
      this.queue = [];
      this.queuedBytes = 0;
      for (const m of q) this.write(m);
    });
    // The collector never speaks; what it might send is read and dropped.
    s.on("data", () => {});
    s.on("error", () => {});
    s.on("close", () => {
      this.connected = false;
      this.socket = undefined;
      if (this.closed) return;
      this.timer = setTimeout(() => this.open(), this.backoffMs);
      this.timer.unref();
      this.backoffMs = Math.min(RECONNECT_MAX_MS, this.backoffMs * 2);
    });
  }

  private write(msg: Buffer): void {
    const s = this.socket!;
    if (s.writableLength + msg.length > MAX_TCP_BYTES) {
      this.counters.dropped_queue_full++;
      return;
    }
    s.write(msg);
    this.counters.sent++;
  }

  send(msg: Buffer): void {
    if (this.connected && this.socket) {
      this.write(msg);
      return;
    }
    if (this.queuedBytes + msg.length > MAX_TCP_BYTES) {
      this.counters.dropped_queue_full++;
      return;
    }
    this.queue.push(msg);
    this.queuedBytes += msg.length;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.end();
  }
}

/** What a Unix datagram socket needs from the addon (native/unix-dgram.cc). */
export interface UnixDatagramNative {
  /** A non-blocking AF_UNIX SOCK_DGRAM socket's fd (not connected). */
  unixDgramSocket(): number;
  /** Sends buf to `path` without waiting: 0, or the errno (EAGAIN: the receiver's queue is full). */
  unixDgramSend(fd: number, path: string, buf: Uint8Array): number;
  closeFd(fd: number): void;
}

const EAGAIN = 11;

/** A local syslog daemon's socket (rsyslog's imuxsock, /dev/log): datagrams, never waited for. */
export class UnixDatagramSender implements Sender {
  readonly counters = newCounters();
  private readonly fd: number;

  constructor(
    readonly target: string,
    private readonly path: string,
    private readonly native: UnixDatagramNative,
  ) {
    this.fd = native.unixDgramSocket();
  }

  send(msg: Buffer): void {
    const err = this.native.unixDgramSend(this.fd, this.path, msg);
    if (err === 0) this.counters.sent++;
    else if (err === EAGAIN) this.counters.dropped_queue_full++;
    else this.counters.dropped_send_error++;
  }

  close(): void {
    this.native.closeFd(this.fd);
  }
}
