// The virtio-net header's layout (include/uapi/linux/virtio_net.h): the fields where the kernel
// puts them, decode and encode inverse of each other, and the constants the kernel's (as the
// addon, compiled against the kernel headers, reports them when it is built).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { tryLoadAddon } from "../../../src/io/addon.ts";
import {
  clearVirtioNetHdr,
  decodeVirtioNetHdr,
  emptyVirtioNetHdr,
  encodeVirtioNetHdr,
  needsChecksum,
  VIRTIO_NET_HDR_BYTES,
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  type VirtioNetHdr,
} from "../../../src/packet/virtio-net.ts";
import { assertProperty } from "../../helpers/property.ts";

const USO: VirtioNetHdr = {
  flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
  gsoType: VIRTIO_NET_HDR_GSO_UDP_L4,
  hdrLen: 28,
  gsoSize: 1200,
  csumStart: 20,
  csumOffset: 6,
};

describe("virtio-net header", () => {
  it("is 10 bytes: flags, gso_type, then hdr_len, gso_size, csum_start, csum_offset as little-endian u16", () => {
    const b = new Uint8Array(2 + VIRTIO_NET_HDR_BYTES + 2).fill(0xee);
    encodeVirtioNetHdr(USO, b, 2);
    assert.deepEqual([...b], [0xee, 0xee, 1, 5, 28, 0, 0xb0, 0x04, 20, 0, 6, 0, 0xee, 0xee]);
    assert.deepEqual(decodeVirtioNetHdr(b, 2, emptyVirtioNetHdr()), USO);
    assert.equal(needsChecksum(b, 2), true);
  });

  it("decode reads what encode wrote, for any field values", () => {
    const u16 = fc.integer({ min: 0, max: 0xffff });
    const u8 = fc.integer({ min: 0, max: 0xff });
    assertProperty(
      fc.property(
        fc.record({ flags: u8, gsoType: u8, hdrLen: u16, gsoSize: u16, csumStart: u16, csumOffset: u16 }),
        (h) => {
          const b = new Uint8Array(VIRTIO_NET_HDR_BYTES);
          encodeVirtioNetHdr(h, b, 0);
          assert.deepEqual(decodeVirtioNetHdr(b, 0, emptyVirtioNetHdr()), { ...h });
        },
      ),
      200,
    );
  });

  it("a cleared header says: complete checksums, no segmentation", () => {
    const b = new Uint8Array(VIRTIO_NET_HDR_BYTES + 1).fill(0xff);
    clearVirtioNetHdr(b, 0);
    assert.deepEqual(decodeVirtioNetHdr(b, 0, emptyVirtioNetHdr()), emptyVirtioNetHdr());
    assert.equal(needsChecksum(b, 0), false);
    assert.equal(b[VIRTIO_NET_HDR_BYTES], 0xff, "nothing past the header");
  });

  it("has the kernel's flag and GSO type values", () => {
    assert.deepEqual([VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_DATA_VALID], [1, 2]);
    assert.deepEqual(
      [
        VIRTIO_NET_HDR_GSO_NONE,
        VIRTIO_NET_HDR_GSO_TCPV4,
        VIRTIO_NET_HDR_GSO_UDP,
        VIRTIO_NET_HDR_GSO_TCPV6,
        VIRTIO_NET_HDR_GSO_UDP_L4,
        VIRTIO_NET_HDR_GSO_ECN,
      ],
      [0, 1, 3, 4, 5, 0x80],
    );
    const addon = tryLoadAddon();
    if (addon) {
      assert.equal(addon.VIRTIO_NET_HDR_BYTES, VIRTIO_NET_HDR_BYTES, "sizeof(struct virtio_net_hdr)");
      assert.equal(addon.VIRTIO_NET_HDR_GSO_UDP_L4, VIRTIO_NET_HDR_GSO_UDP_L4);
      assert.equal(addon.VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV4);
      assert.equal(addon.VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_F_NEEDS_CSUM);
    }
  });
});
