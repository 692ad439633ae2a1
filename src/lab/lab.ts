// `masq lab`: the classic masquerade network of the Linux IP-Masquerade HOWTO, built in network
// namespaces on this machine — A-box, B-box and C-box on 192.168.0.0/24 behind the gateway
// masq-gate (192.168.0.1), which has one public address toward an ISP router and an "Internet"
// host that has no route back to the private network. masq runs in the gateway; every box then
// uses the web, ping, traceroute and UDP through it, and the lab shows what the Internet host
// saw and masq's connection table.
import { DEFAULT_STATE_DIR } from "../host/apply.ts";
import { labScript, leftInStateDir, type MasqProcess, startMasq } from "./masq-process.ts";
import {
  buildMasqNetwork,
  handleSignalsInCaller,
  type InsideHost,
  type LabProcess,
  type MasqMode,
  type MasqNetwork,
} from "./netns.ts";
import { udpAsk } from "./udp-ask.ts";
import { upnpStep } from "./upnp-step.ts";

export interface LabOptions {
  keep: boolean;
  mode: MasqMode;
  /** Also show a UPnP IGD mapping asked for from A-box (masq runs with --upnp). */
  upnp?: boolean;
  /** Where to write (default stdout). */
  out?: (line: string) => void;
  /** 2: deterministic NAT on two gateways behind ECMP (scaleout-lab.ts) instead. */
  gateways?: number;
}

interface StepResult {
  ok: boolean;
  text: string;
}

const BOX_NAMES: Record<InsideHost["name"], string> = { abox: "A-box", bbox: "B-box", cbox: "C-box" };

export async function runLab(opts: LabOptions): Promise<number> {
  const say = opts.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  if (process.getuid?.() !== 0) {
    say("masq lab: needs root (it builds network namespaces); run it with sudo");
    return 1;
  }
  if ((opts.gateways ?? 1) > 1) {
    if (opts.keep || opts.upnp) {
      say("masq lab: --gateways 2 does not take --keep or --upnp yet (they are for the one-gateway lab)");
      return 1;
    }
    const { runScaleoutLab } = await import("./scaleout-lab.ts");
    return runScaleoutLab(say);
  }
  say(`masq lab: building the classic masquerade network (${opts.mode} mode) in network namespaces ...`);
  const net = await buildMasqNetwork({ prefix: "masqlab", mode: opts.mode });
  let masq: MasqProcess | undefined;
  let failures = 0;
  // From here the lab tears itself down in order (masq first, so it removes its own rules and
  // files). The first Ctrl-C or SIGTERM ends `--keep`'s wait, or lets the checks finish; a
  // second one ends at once (the namespaces still go, when the process exits).
  handleSignalsInCaller();
  let signalled = false;
  let endKeep = () => {};
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) process.exit(signal === "SIGINT" ? 130 : 143);
    signalled = true;
    endKeep();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    say("");
    say("   A-box 192.168.0.2 ─┐");
    say(
      `   B-box 192.168.0.3 ─┼─ 192.168.0.1 [masq-gate] ${net.gate.wanAddr} ── 198.51.100.1 [isp] ── 203.0.113.10 [Internet host]`,
    );
    say("   C-box 192.168.0.4 ─┘");
    say(
      `   public address: ${net.publicAddr}${opts.mode === "pool" ? " (held by no interface: masq owns it)" : " (the gateway's own, shared with it)"}`,
    );
    say("");
    const inet = net.lab.spawn(net.inet.ns, [...labScript("inet-service"), "--http", "80", "--udp", "7"]);
    await inet.waitFor(/"proto":"udp"/, 10_000);
    say("starting masq in the gateway namespace ...");
    masq = await startMasq(net, opts.upnp ? { flags: ["--upnp"] } : {});
    say(`masq is running (pid ${masq.proc.pid}); control socket ${masq.socket}`);
    say("");

    const results = await Promise.all(net.inside.map((box) => exerciseBox(net, box)));
    for (const [i, box] of net.inside.entries()) {
      say(`── ${BOX_NAMES[box.name]} (${box.addr})`);
      for (const r of results[i]) {
        say(`   ${r.ok ? "✔" : "✘"} ${r.text}`);
        if (!r.ok) failures++;
      }
    }
    if (opts.upnp) {
      say("");
      say("── UPnP IGD from A-box (miniupnpc):");
      const r = await upnpStep(net);
      for (const line of r.lines) say(`   ${r.ok ? "✔" : "✘"} ${line}`);
      if (!r.ok) failures++;
    }
    say("");
    say(`── What the Internet host (${net.inet.addr}) saw:`);
    for (const line of seenBy(inet)) say(`   ${line}`);
    say("");
    say("── masq's connection table (masq conns):");
    for (const line of (await masq.cli(["conns"])).trimEnd().split("\n")) say(`   ${line}`);
    say("");
    if (opts.keep) {
      say("The lab stays up. Enter a box with:");
      for (const box of net.inside)
        say(`   ip netns exec ${box.ns} bash      # ${BOX_NAMES[box.name]} ${box.addr}`);
      say(
        `   ip netns exec ${net.gate.ns} bash      # masq-gate (try: node ${process.argv[1]} conns --socket ${masq.socket})`,
      );
      say(`   ip netns exec ${net.inet.ns} bash      # the Internet host ${net.inet.addr}`);
      say("Press Ctrl-C to tear it down.");
      await new Promise<void>((resolve) => {
        endKeep = resolve;
        if (signalled) resolve();
      });
    }
    say(failures === 0 ? "Everything worked through masq." : `${failures} check(s) failed.`);
  } finally {
    say("tearing the lab down ...");
    if (masq) {
      const code = await masq.stop();
      if (code !== 0) {
        say(`masq exited with ${code}: ${masq.proc.stderr.slice(-2000)}`);
        failures++;
      }
    }
    await net.destroy();
    const left = leftInStateDir(net.gate.ns);
    if (left.length === 0) say("done: no namespace, process, route or file of the lab is left.");
    else {
      say(`left behind in ${DEFAULT_STATE_DIR}: ${left.join(", ")}`);
      failures++;
    }
  }
  return failures === 0 ? 0 : 1;
}

/** What each box does through the gateway: the web, ping, traceroute and a UDP exchange. */
async function exerciseBox(net: MasqNetwork, box: InsideHost): Promise<StepResult[]> {
  const lab = net.lab;
  const target = net.inet.addr;
  const out: StepResult[] = [];
  const web = await lab.exec(box.ns, ["curl", "-sS", "--max-time", "10", `http://${target}/`], {
    timeoutMs: 15_000,
  });
  out.push({
    ok: web.code === 0 && web.stdout.includes(net.publicAddr),
    text: `web: ${oneLine(web.stdout || web.stderr)}`,
  });
  const ping = await lab.exec(box.ns, ["ping", "-c", "3", "-i", "0.2", "-W", "2", target], {
    timeoutMs: 15_000,
  });
  const loss = /(\d+) received/.exec(ping.stdout)?.[1] ?? "0";
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping.stdout)?.[1];
  out.push({ ok: ping.code === 0, text: `ping ${target}: ${loss}/3 replies${rtt ? `, avg ${rtt} ms` : ""}` });
  const tr = await lab.exec(box.ns, ["traceroute", "-n", "-q", "1", "-w", "2", "-m", "6", target], {
    timeoutMs: 30_000,
  });
  const hops = tr.stdout
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/).slice(0, 2).join(" "))
    .filter((l) => l.length > 0);
  out.push({
    ok: tr.code === 0 && hops.at(-1)?.endsWith(` ${target}`) === true,
    text: `traceroute: ${hops.join("  ") || oneLine(tr.stderr)}`,
  });
  const udp = await udpAsk(lab, box.ns, target, 7, `hello from ${box.name}`);
  out.push({
    ok: udp.code === 0 && udp.stdout.includes(net.publicAddr),
    text: `UDP: ${oneLine(udp.stdout || udp.stderr)}`,
  });
  return out;
}

function seenBy(inet: LabProcess): string[] {
  const lines: string[] = [];
  for (const l of inet.stdout.split("\n")) {
    try {
      const o = JSON.parse(l) as { proto?: string; peer?: string; port?: number; path?: string };
      if (o.peer) lines.push(`${o.proto} from ${o.peer}:${o.port}${o.path ? ` ${o.path}` : ""}`);
    } catch {
      // not a log line
    }
  }
  return lines.length > 0 ? lines : ["(nothing)"];
}

function oneLine(s: string): string {
  return s.trim().replace(/\s+/g, " ").slice(0, 160);
}
