// The NAT event both encoders' tests format: A-box's TCP mapping to a web server, with the
// fields a test does not name at these values.
import { NatEvent } from "../../../src/nat/nat-events.ts";
import { ip } from "../../helpers/packets.ts";

export function sampleEvent(kind: number, over: Partial<NatEvent> = {}): NatEvent {
  return Object.assign(new NatEvent(), {
    kind,
    proto: 6,
    inAddr: ip("192.168.0.2"),
    inPort: 40000,
    outAddr: ip("198.51.100.7"),
    outPort: 40211,
    remAddr: ip("203.0.113.10"),
    remPort: 443,
    ...over,
  });
}
