// Small traffic programs for the end-to-end benchmark, run with `python3 -c` inside the lab's
// namespaces (standard library and ctypes only: no package to install). Python because the
// generators must batch system calls (sendmmsg) and build raw packets, which Node cannot.
import { existsSync } from "node:fs";

/** Debian's interpreter when present (starts faster than a pyenv shim), else whatever is on PATH. */
export const PYTHON = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

/** argv running one of the scripts below with its arguments. */
export function pyArgv(source: string, args: readonly (string | number)[]): string[] {
  return [PYTHON, "-c", source, ...args.map(String)];
}

/** libc's sendmmsg structures for ctypes (struct iovec, msghdr, mmsghdr), shared by the scripts. */
const MMSG_CTYPES = `libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
class msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t), ("flags", ctypes.c_int)]
class mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]`;

/**
 * UDP blaster: 64-byte datagrams to HOST:PORT for DURATION seconds on one connected socket,
 * `sendmmsg` (through ctypes) sending VLEN datagrams per system call, so the generator costs
 * little next to the path under test (plain `send` in Python tops out near 200 kpps here).
 * argv: host port duration_s payload_len vlen. Prints {"sent":n,"errors":n,"mmsg":bool}.
 */
export const UDP_BLASTER = `
import ctypes, json, socket, sys, time
host, port, dur, plen, vlen = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((host, port))
payload = b"m" * plen
sent = 0
errors = 0
use_mmsg = False
${MMSG_CTYPES}
try:
    buf = ctypes.create_string_buffer(payload, plen)
    iov = iovec(ctypes.cast(buf, ctypes.c_void_p), plen)
    msgs = (mmsghdr * vlen)()
    for m in msgs:
        m.hdr.iov = ctypes.pointer(iov)
        m.hdr.iovlen = 1
    sendmmsg = libc.sendmmsg
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    sendmmsg.restype = ctypes.c_int
    use_mmsg = True
except Exception:
    use_mmsg = False
fd = s.fileno()
end = time.monotonic() + dur
if use_mmsg:
    while time.monotonic() < end:
        r = sendmmsg(fd, msgs, vlen, 0)
        if r < 0:
            errors += 1
        else:
            sent += r
else:
    send = s.send
    while time.monotonic() < end:
        for _ in range(256):
            try:
                send(payload)
                sent += 1
            except OSError:
                errors += 1
print(json.dumps({"sent": sent, "errors": errors, "mmsg": use_mmsg}), flush=True)
`;

/**
 * New-flow generator: COUNT UDP requests from source ports FIRST, FIRST+1, … (one per port, so
 * every request opens a new flow at the gateway) to HOST:PORT, at most WINDOW unanswered at a
 * time (closed loop: the rate is what the path sustains, not what a queue drops). Requests go
 * out through a raw socket (IP_HDRINCL; the kernel fills in the IP checksum and id) with
 * `sendmmsg`, all built before the clock starts: a socket per flow costs Python ~25 µs and
 * would cap the test near 40 k flows/s. Replies are read on a raw UDP socket (no socket is bound
 * to their ports; nftables keeps the kernel from answering them with port-unreachable errors).
 * When nothing comes back for 50 ms the outstanding requests count as lost. Waits until the
 * wall-clock time START_AT so the generators start together; gives up after MAX_S.
 * argv: src host port first count window start_at max_s.
 * Prints {"sent","got","t0","t1","timedOut","cpu","wall"} (t0 first request, t1 last reply,
 * epoch seconds; cpu: its own CPU seconds from t0 to its end, wall: the seconds in between).
 */
export const FLOW_GENERATOR = `
import ctypes, errno, json, select, socket, struct, sys, time
src, dst, dport = sys.argv[1], sys.argv[2], int(sys.argv[3])
first, count, window = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
start_at, max_s = float(sys.argv[7]), float(sys.argv[8])
VLEN = 32
${MMSG_CTYPES}
sendmmsg = libc.sendmmsg
sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
sendmmsg.restype = ctypes.c_int
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
s.connect((dst, 0))
fd = s.fileno()
rs = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
rs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
rs.setblocking(False)
payload = b"flow"
ulen = 8 + len(payload)
tot = 20 + ulen
sa, da = socket.inet_aton(src), socket.inet_aton(dst)
def words(b):
    return sum(struct.unpack("!%dH" % (len(b) // 2), b))
# UDP checksum without the source port: pseudo-header + dport + length + payload.
base = words(sa) + words(da) + 17 + ulen + dport + ulen + words(payload)
iphdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, tot, 0, 0, 64, 17, 0, sa, da)
total = max(min(first + count, 65536) - first, 0)
buf = ctypes.create_string_buffer(tot * max(total, 1))
addr = ctypes.addressof(buf)
iovs = (iovec * max(total, 1))()
msgs = (mmsghdr * max(total, 1))()
for i in range(total):
    p = first + i
    c = base + p
    c = (c & 0xFFFF) + (c >> 16)
    c = (c & 0xFFFF) + (c >> 16)
    c = (~c & 0xFFFF) or 0xFFFF
    struct.pack_into("!20sHHHH4s", buf, i * tot, iphdr, p, dport, ulen, c, payload)
    iovs[i].base = addr + i * tot
    iovs[i].len = tot
    msgs[i].hdr.iov = ctypes.pointer(iovs[i])
    msgs[i].hdr.iovlen = 1
base_msgs = ctypes.addressof(msgs)
msz = ctypes.sizeof(mmsghdr)
rbuf = bytearray(2048)
recv_into = rs.recv_into
hi, lo = dport >> 8, dport & 0xFF
now = time.time
wait = start_at - now()
if 0 < wait < 30:
    time.sleep(wait)
t0 = t1 = last = now()
c0 = time.process_time()
deadline = t0 + max_s
i = got = lost = 0
timed_out = False
while True:
    if now() >= deadline:
        timed_out = True
        break
    out = i - got - lost
    if i < total and out < window:
        k = sendmmsg(fd, base_msgs + i * msz, min(VLEN, window - out, total - i), 0)
        if k > 0:
            i += k
        elif ctypes.get_errno() not in (errno.ENOBUFS, errno.EAGAIN):
            raise OSError(ctypes.get_errno(), "sendmmsg")
    n = 0
    while True:
        try:
            ln = recv_into(rbuf)
        except BlockingIOError:
            break
        if ln >= 28 and rbuf[20] == hi and rbuf[21] == lo:
            n += 1
    if n:
        got += n
        last = t1 = now()
    elif i >= total or out >= window:
        if i >= total and i - got - lost <= 0:
            break
        select.select([rs], [], [], 0.005)
        if now() - last > 0.05:
            lost = i - got
            last = now()
cpu, wall = time.process_time() - c0, now() - t0
print(json.dumps({"sent": i, "got": got, "t0": t0, "t1": t1, "timedOut": timed_out, "cpu": cpu, "wall": wall}), flush=True)
`;

/**
 * UDP echo server: every datagram straight back to its sender. Several may share the port
 * (SO_REUSEPORT spreads the flows over them). argv: port. Prints "echo ready".
 */
export const UDP_ECHO = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("echo ready", flush=True)
r, w = s.recvfrom, s.sendto
while True:
    d, a = r(2048)
    try:
        w(d, a)
    except OSError:
        pass
`;
