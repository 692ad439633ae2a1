// NAT-PMP requests as a client sends them (RFC 6886 §3.3), for the port-mapping unit tests.

/** A mapping request: opcode 1 (UDP) or 2 (TCP), the internal and suggested ports, the lifetime. */
export function mapReq(op: 1 | 2, internal: number, suggested: number, lifetime: number): Uint8Array {
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  b[1] = op;
  dv.setUint16(4, internal);
  dv.setUint16(6, suggested);
  dv.setUint32(8, lifetime);
  return b;
}
