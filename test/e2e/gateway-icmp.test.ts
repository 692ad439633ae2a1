// End to end (issue 17 item 3): the WAN at MTU 1492 (PPPoE) between the gateway and the ISP, the
// LAN and the Internet beyond the ISP at 1500, no MSS clamping. An inside host's full-size
// packets fit the LAN but not the WAN, so the gateway's kernel answers each translated one with
// fragmentation-needed to its source, masq's public address: in interface mode its own (the error
// was delivered to the gateway itself), in pool mode one routed to masq (which dropped it). The
// inside host never heard of the smaller MTU: an upload hung with 0 bytes sent and tracepath saw
// no replies, where the kernel's own NAT handles both. Both modes, real programs: socat uploads
// 50 MB (offloads on, the default), tracepath, ping, scapy for the forgeries.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { ConnsReply, StatsReply } from "../../src/control/format.ts";
import { bodySha256, fillBody } from "../../src/lab/body.ts";
import { type MasqProcess, startMasq } from "../../src/lab/masq-process.ts";
import { buildMasqNetwork, type MasqMode, type MasqNetwork } from "../../src/lab/netns.ts";
import { waitListening, waitUntil } from "../../src/lab/wait.ts";
import { tearDown } from "../helpers/teardown.ts";

const root = process.getuid?.() === 0;
const skip = root ? false : "needs root (network namespaces)";
const FORGE = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "forge.py");
const UPLOAD_BYTES = 50_000_000;
/** Seconds the upload may take: about 1.5 s here when it works; it hangs when it does not. */
const UPLOAD_LIMIT_SEC = 60;

for (const mode of ["interface", "pool"] as MasqMode[]) {
  describe(`the gateway's own ICMP errors, WAN 1492 and LAN 1500, ${mode} mode`, { skip }, () => {
    let net: MasqNetwork;
    let masq: MasqProcess;
    let tmp: string;
    let upload: string;

    const counters = async () =>
      (JSON.parse(await masq.cli(["stats", "--json"])) as StatsReply).engine.counters;

    before(async () => {
      tmp = mkdtempSync(join(tmpdir(), "masq-gwicmp-"));
      upload = join(tmp, "upload.bin");
      const body = new Uint8Array(UPLOAD_BYTES);
      fillBody(body, 0);
      writeFileSync(upload, body);
      net = await buildMasqNetwork({ prefix: "masqgwicmp", mode, wanMtu: 1492 });
      masq = await startMasq(net);
    });

    after(async () => {
      await tearDown({ masq, net, tmp });
    });

    it("a 50 MB upload from A-box to the Internet host arrives byte-exact: A-box hears of the WAN's MTU", async () => {
      const inet = net.inet.ns;
      const sink = net.lab.spawn(inet, ["sh", "-c", "socat -u TCP-LISTEN:9000 STDOUT | sha256sum"]);
      await waitListening(net.lab, inet, "tcp", 9000);
      const box = net.inside[0];
      const sent = await net.lab.exec(
        box.ns,
        [
          "timeout",
          String(UPLOAD_LIMIT_SEC),
          "socat",
          "-u",
          `OPEN:${upload}`,
          `TCP:${net.inet.addr}:9000,connect-timeout=5`,
        ],
        { timeoutMs: (UPLOAD_LIMIT_SEC + 10) * 1000 },
      );
      const c = await counters();
      assert.equal(
        sent.code,
        0,
        `the upload did not complete in ${UPLOAD_LIMIT_SEC} s (${sent.code}): ${sent.stderr} ${JSON.stringify(c)}`,
      );
      assert.ok(await sink.waitExit(15_000), "the sink sees the end of the upload");
      assert.equal(sink.stdout.split(" ")[0], bodySha256(UPLOAD_BYTES), "what arrived is what was sent");
      // It went the way this is about: the gateway's errors, translated back to A-box.
      assert.ok(c.gateway_icmp_errors_translated >= 1, JSON.stringify(c));
      assert.equal(c.drop_inside_source_from_outside, 0, JSON.stringify(c));
      assert.equal(c.drop_icmp_error_no_flow, 0, JSON.stringify(c));
    });

    it("tracepath -n from B-box reports pmtu 1492 at the gateway, from its LAN address with TTL 64, as through the kernel's NAT", async () => {
      const box = net.inside[1];
      // What B-box receives: the fragmentation-needed, as the kernel's NAT would send it.
      const seen = net.lab.spawn(box.ns, [
        "tcpdump",
        "-l",
        "-n",
        "-v",
        "-i",
        box.dev,
        "-c",
        "1",
        "icmp[icmptype] = icmp-unreach and icmp[icmpcode] = 4",
      ]);
      await seen.waitFor("listening on", 10_000);
      const r = await net.lab.exec(box.ns, ["tracepath", "-n", "-m", "5", net.inet.addr], {
        timeoutMs: 60_000,
      });
      assert.equal(r.code, 0, r.stderr);
      // The second probe (1500 bytes, TTL 2) meets the WAN: the gateway says 1492.
      assert.match(r.stdout, /^\s*2:\s+192\.168\.0\.1\s+\S+ms pmtu 1492$/m, r.stdout);
      assert.match(
        r.stdout,
        new RegExp(`^\\s*3:\\s+${net.inet.addr.replaceAll(".", "\\.")}\\s+\\S+ms reached$`, "m"),
        r.stdout,
      );
      assert.match(r.stdout, /Resume: pmtu 1492 hops 3 back 3/, r.stdout);
      assert.ok(await seen.waitExit(10_000), `tcpdump saw no fragmentation-needed: ${seen.stderr}`);
      assert.match(
        seen.stdout,
        new RegExp(
          `ttl 64,.*\\n\\s*192\\.168\\.0\\.1 > ${box.addr.replaceAll(".", "\\.")}: ICMP ${net.inet.addr.replaceAll(".", "\\.")} unreachable - need to frag \\(mtu 1492\\)`,
        ),
        seen.stdout,
      );
    });

    it("an error forged from the Internet with one of the gateway's addresses as source translates nothing", async () => {
      // A live UDP flow of C-box's for the forgeries to name.
      const box = net.inside[2];
      const hello = await net.lab.exec(
        box.ns,
        ["socat", "-u", "-", `UDP:${net.inet.addr}:7000,sourceport=40000`],
        {
          input: "hello\n",
        },
      );
      assert.equal(hello.code, 0, hello.stderr);
      const flow = await waitUntil("C-box's UDP flow is in the table", async () =>
        (JSON.parse(await masq.cli(["conns", "--json", "--host", box.addr])) as ConnsReply).flows.find(
          (f) => f.protocol === "udp" && f.remote.port === 7000,
        ),
      );
      const before = await counters();
      // From the ISP's side of the WAN: the gateway's LAN and WAN addresses (its own), then an
      // echo request from the ISP router's own address that masq does see (it marks the end).
      const quote = `${net.publicAddr}:${flow.outside.port}:${net.inet.addr}:7000`;
      for (const src of [net.gate.lanAddr, net.gate.wanAddr]) {
        const f = await net.lab.exec(net.isp.ns, [
          "/usr/bin/python3",
          FORGE,
          "--src",
          src,
          "--dst",
          net.publicAddr,
          "--frag-needed",
          quote,
          "--count",
          "1",
        ]);
        assert.equal(f.code, 0, f.stderr);
      }
      const marker = mode === "interface" ? "passthrough" : "replies_generated";
      const m = await net.lab.exec(net.isp.ns, [
        "/usr/bin/python3",
        FORGE,
        "--src",
        net.isp.toGate,
        "--dst",
        net.publicAddr,
        "--icmp",
        "--count",
        "1",
      ]);
      assert.equal(m.code, 0, m.stderr);
      const after = await waitUntil("masq sees the marker", async () => {
        const c = await counters();
        return c[marker] > before[marker] ? c : undefined;
      });
      // The kernel drops a packet from the wire with one of its own addresses as source (a
      // martian): what masq takes for the gateway's own error can only be the gateway's.
      for (const k of [
        "gateway_icmp_errors_translated",
        "icmp_errors_translated",
        "drop_inside_source_from_outside",
        "drop_icmp_error_no_flow",
      ])
        assert.equal(after[k], before[k], `${k}: ${JSON.stringify({ before, after })}`);
    });

    if (mode === "interface")
      it("the gateway's own ICMP still works: its pings, its tracepath, a port unreachable from its own address", async () => {
        const gate = net.gate.ns;
        // An identifier outside masq's range: masq owns replies with its own identifiers.
        for (const to of [net.inet.addr, net.publicAddr]) {
          const p = await net.lab.exec(gate, ["ping", "-n", "-c", "2", "-W", "5", "-e", "4242", to], {
            timeoutMs: 20_000,
          });
          assert.equal(p.code, 0, `ping ${to}: ${p.stdout} ${p.stderr}`);
        }
        // Its probes' answers come back to its own address through masq, untouched.
        const t = await net.lab.exec(gate, ["tracepath", "-n", "-m", "4", net.inet.addr], {
          timeoutMs: 60_000,
        });
        assert.match(t.stdout, /Resume: pmtu 1492 hops 2 back 2/, t.stdout);
        // Its own error about its own datagram to its own address goes through masq and back.
        const before = await counters();
        const refused = await net.lab.exec(gate, [
          "/usr/bin/python3",
          "-c",
          [
            "import socket",
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
            "s.settimeout(10)",
            `s.connect(("${net.publicAddr}", 5999))`,
            's.send(b"x")',
            "try:\n    s.recv(1)\nexcept ConnectionRefusedError:\n    print('refused')",
          ].join("\n"),
        ]);
        assert.equal(refused.stdout.trim(), "refused", refused.stderr);
        const after = await counters();
        assert.ok(after.passthrough > before.passthrough, "the error went through masq");
      });
  });
}
