// The deterministic test body served by the lab's Internet host, so a client can check a
// transfer byte for byte without the body being stored anywhere.
import { createHash } from "node:crypto";

/** Byte i of the body: cheap to compute, not periodic over short spans. */
export function bodyByte(i: number): number {
  return (Math.imul(i, 2654435761) >>> 24) & 0xff;
}

export function fillBody(b: Uint8Array, from: number): void {
  for (let i = 0; i < b.length; i++) b[i] = bodyByte(from + i);
}

export function bodySha256(n: number): string {
  const h = createHash("sha256");
  const chunk = new Uint8Array(1 << 16);
  for (let sent = 0; sent < n; sent += chunk.length) {
    const part = chunk.subarray(0, Math.min(chunk.length, n - sent));
    fillBody(part, sent);
    h.update(part);
  }
  return h.digest("hex");
}
