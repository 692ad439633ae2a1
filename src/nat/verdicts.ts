// What NatEngine.process() is told (the arrival side) and what it answers (the verdict).

/** The packet (rewritten in place) goes out; its length is `outLen`. */
export const FORWARD = 0;
/** The packet is dropped; the reason is `lastDrop` (and counted). */
export const DROP = 1;
/** Send `replyBuf[0, outLen)` instead (an ICMP message the engine built). */
export const REPLY = 2;
/** The engine kept the packet (a fragment waiting for its first); nothing to send now. */
export const HELD = 3;
/**
 * Several workers: the packet (a fragment of another worker's datagram) was copied into the
 * handoff outbox for that worker (fragment-handoff.ts); nothing to send here.
 */
export const HANDED = 4;
/**
 * Several workers: the packet, as it is now (its outbound half of a hairpin done), goes to worker
 * `handoffWorker` for the inbound half, header and all (the datapath copies it).
 */
export const HAND_OVER = 5;
/**
 * Not a verdict: a check on the way (firewall, half-open room) has nothing against the packet
 * and the path goes on. Never returned by process().
 */
export const PROCEED = -1;

/**
 * Where a packet came from. The datapath knows (one TUN device per side, fed by the host plan's
 * rules on the arrival interface), and then a packet's side, not its source address, decides
 * inside from outside: a frame from the Internet with an inside source is a forgery, a packet
 * from the LAN with a foreign source is spoofed (BCP 38). Offline replay and most unit tests
 * have no arrival side; there the source address decides, as a capture of one device shows.
 */
export const SIDE_BY_ADDRESS = 0;
/** Arrived on an inside interface. */
export const SIDE_INSIDE = 1;
/** Arrived on the outside interface. */
export const SIDE_OUTSIDE = 2;
/**
 * Several workers: the inbound half of a hairpin another worker began (HAND_OVER): from one of
 * our addresses to one of our addresses, its mapping this worker's.
 */
export const SIDE_HAIRPIN = 3;
