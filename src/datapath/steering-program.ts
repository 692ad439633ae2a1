// The TUN queue-selection programs (TUNSETSTEERINGEBPF), assembled by hand: the kernel runs one
// for each packet it routes into a TUN and puts the packet on the queue it returns (modulo the
// queues), so each worker reads only its own flows. The decision is steering-model.ts's, which
// the unit tests check against these programs in the kernel (BPF_PROG_TEST_RUN).
//
// A socket filter program (BPF_PROG_TYPE_SOCKET_FILTER, what TUN accepts) reads the packet with
// the classic loads (LD_ABS/LD_IND: the context in r6, the value in r0 in host order, and a
// load beyond the packet ends the program with 0). They clobber r1-r5, so the program keeps its
// state in r6-r9: r7 the L4 offset, r8 the protocol, r9 the port or hash being worked on.
import {
  ADD,
  AND,
  B,
  BpfAsm,
  DIV,
  H,
  HELPER_MAP_LOOKUP,
  JEQ,
  JGT,
  JLT,
  JSET,
  LSH,
  MOD,
  MOV,
  MUL,
  RSH,
  SUB,
  W,
  XOR,
} from "../io/bpf-asm.ts";
import type { PortRange } from "../nat/config.ts";
import { PPTP_CALL_IDS, portClasses, portsPerWorker } from "../nat/port-slices.ts";
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from "../packet/ipv4.ts";
import { HASH_MUL, IPPROTO_GRE, overrideKey, type SteeringPlan } from "./steering-model.ts";

const R0 = 0;
const R1 = 1;
const R2 = 2;
const R6 = 6;
const R7 = 7;
const R8 = 8;
const R9 = 9;
const R10 = 10;

/** r0 = hash(r0) % queues; exit (hostWorker of steering-model.ts). */
function hashAndExit(a: BpfAsm, queues: number): void {
  a.aluImm(MUL, R0, HASH_MUL).aluImm(RSH, R0, 16).aluImm(MOD, R0, queues).exit();
}

function returnZero(a: BpfAsm): void {
  a.aluImm(MOV, R0, 0).exit();
}

/** IPv6 at `label`: the address at `at` folded (its four words xor'ed), hashed; exit. */
function ipv6Tail(a: BpfAsm, label: string, at: number, queues: number): void {
  a.label(label).ldAbs(W, at).aluReg(MOV, R9, R0, true);
  for (const i of [4, 8, 12]) a.ldAbs(W, at + i).aluReg(XOR, R9, R0);
  a.aluReg(MOV, R0, R9);
  hashAndExit(a, queues);
}

/**
 * The inside TUN's program: a hash of the source address for TCP, UDP, ICMP and GRE, and for
 * IPv6 (the source address folded); else 0.
 */
export function insideProgram(queues: number): Uint8Array {
  const a = new BpfAsm();
  a.aluReg(MOV, R6, R1, true);
  a.ldAbs(B, 0).aluImm(RSH, R0, 4).jmpImm(JEQ, R0, 6, "v6");
  a.ldAbs(B, 9);
  for (const p of [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_GRE]) a.jmpImm(JEQ, R0, p, "hash");
  returnZero(a);
  a.label("hash").ldAbs(W, 12);
  hashAndExit(a, queues);
  ipv6Tail(a, "v6", 8, queues);
  return a.build();
}

/**
 * The outside TUN's program for `plan`; `overrideMapFd`: the override table (an array map of
 * OVERRIDE_ENTRIES u32, worker + 1), consulted for TCP and UDP ports before their slice.
 */
export function outsideProgram(plan: SteeringPlan, overrideMapFd?: number): Uint8Array {
  const a = new BpfAsm();
  const q = plan.queues;
  let n = 0;
  const fresh = (what: string) => `${what}${n++}`;

  /** Port in r9 of TCP/UDP `proto`: the override, else the slice. */
  const portTail = (proto: number) => {
    if (overrideMapFd !== undefined) {
      const none = fresh("none");
      a.aluReg(MOV, R0, R9, true).aluImm(ADD, R0, overrideKey(proto, 0));
      a.stx(W, R10, -4, R0);
      a.aluReg(MOV, R2, R10, true).aluImm(ADD, R2, -4, true);
      a.ldMapFd(R1, overrideMapFd).call(HELPER_MAP_LOOKUP);
      a.jmpImm(JEQ, R0, 0, none);
      a.ldx(W, R0, R0, 0).jmpImm(JEQ, R0, 0, none);
      a.aluImm(SUB, R0, 1).exit();
      a.label(none);
    }
    sliceTail(proto === IPPROTO_TCP ? plan.ports.tcp : plan.ports.udp, true);
  };
  /** Port in r9: the worker whose slice of `range` holds it (portOwner), else 0. */
  const sliceTail = (range: PortRange, keepClass: boolean) => {
    for (const c of portClasses(range, keepClass)) {
      const next = fresh("next");
      const done = fresh("done");
      a.jmpImm(JLT, R9, c.first, next).jmpImm(JGT, R9, c.last, next);
      a.aluReg(MOV, R0, R9, true)
        .aluImm(SUB, R0, c.first)
        .aluImm(DIV, R0, portsPerWorker(c.last - c.first + 1, q));
      a.jmpImm(JLT, R0, q, done).aluImm(MOV, R0, q - 1);
      a.label(done).exit();
      a.label(next);
    }
    returnZero(a);
  };

  /** At `label`: the 16 bits at r7 + off into r9, then the TCP/UDP port's worker. */
  const portAt = (label: string, off: number, proto: number) => {
    a.label(label).ldInd(H, R7, off).aluReg(MOV, R9, R0, true);
    portTail(proto);
  };
  /** At `label`: the 16 bits at r7 + off into r9, then the worker of its slice of `range`. */
  const idAt = (label: string, off: number, range: PortRange) => {
    a.label(label).ldInd(H, R7, off).aluReg(MOV, R9, R0, true);
    sliceTail(range, false);
  };

  a.aluReg(MOV, R6, R1, true);
  a.ldAbs(B, 0).aluImm(RSH, R0, 4).jmpImm(JEQ, R0, 6, "v6");
  a.ldAbs(H, 6).jmpImm(JSET, R0, 0x3fff, "frag");
  a.ldAbs(B, 0).aluImm(AND, R0, 0xf).aluImm(LSH, R0, 2).aluReg(MOV, R7, R0, true);
  a.ldAbs(B, 9).aluReg(MOV, R8, R0, true);
  a.jmpImm(JEQ, R8, IPPROTO_TCP, "tcp").jmpImm(JEQ, R8, IPPROTO_UDP, "udp");
  a.jmpImm(JEQ, R8, IPPROTO_ICMP, "icmp").jmpImm(JEQ, R8, IPPROTO_GRE, "gre");
  returnZero(a);

  portAt("tcp", 2, IPPROTO_TCP);
  portAt("udp", 2, IPPROTO_UDP);
  // PPTP's enhanced GRE (RFC 2637): the call id follows flags, protocol and payload length.
  idAt("gre", 6, PPTP_CALL_IDS);

  a.label("icmp").ldInd(B, R7, 0);
  a.jmpImm(JEQ, R0, 0, "echo").jmpImm(JEQ, R0, 8, "echo");
  for (const t of [3, 11, 12]) a.jmpImm(JEQ, R0, t, "error");
  returnZero(a);
  idAt("echo", 4, plan.ports.icmp);
  // An ICMP error quotes the packet we sent (RFC 792): its source port or identifier is ours.
  a.label("error").ldInd(B, R7, 8).aluImm(AND, R0, 0xf).aluImm(LSH, R0, 2).aluReg(MOV, R9, R0, true);
  a.ldInd(B, R7, 17).aluReg(MOV, R8, R0, true);
  a.aluImm(ADD, R7, 8, true).aluReg(ADD, R7, R9, true);
  a.jmpImm(JEQ, R8, IPPROTO_TCP, "qtcp")
    .jmpImm(JEQ, R8, IPPROTO_UDP, "qudp")
    .jmpImm(JEQ, R8, IPPROTO_ICMP, "qicmp");
  returnZero(a);
  portAt("qtcp", 0, IPPROTO_TCP);
  portAt("qudp", 0, IPPROTO_UDP);
  idAt("qicmp", 4, plan.ports.icmp);

  // Fragments: (source ^ destination ^ id), hashed as an address.
  a.label("frag").ldAbs(W, 12).aluReg(MOV, R9, R0, true);
  a.ldAbs(W, 16).aluReg(XOR, R9, R0);
  a.ldAbs(H, 4).aluReg(XOR, R9, R0);
  a.aluReg(MOV, R0, R9);
  hashAndExit(a, q);
  // IPv6: the destination, the inside host's address.
  ipv6Tail(a, "v6", 24, q);
  return a.build();
}
