// A very small eBPF assembler: enough instructions to write the TUN's queue-selection program
// (src/datapath/steering-program.ts) by hand, without libbpf or a compiler. Each instruction is
// struct bpf_insn of include/uapi/linux/bpf.h: opcode, dst and src registers (4 bits each),
// a signed 16-bit offset and a signed 32-bit immediate, little-endian. Jumps name labels that
// are resolved when the program is built; the verifier refuses backward jumps we never emit.

// Instruction classes, sizes, modes, operations and sources (include/uapi/linux/bpf_common.h).
const LD = 0x00;
const LDX = 0x01;
const STX = 0x03;
const ALU = 0x04;
const JMP = 0x05;
const ALU64 = 0x07;
export const W = 0x00;
export const H = 0x08;
export const B = 0x10;
const DW = 0x18;
const IMM = 0x00;
const ABS = 0x20;
const IND = 0x40;
const MEM = 0x60;
const K = 0x00;
const X = 0x08;

export const ADD = 0x00;
export const SUB = 0x10;
export const MUL = 0x20;
export const DIV = 0x30;
export const AND = 0x50;
export const LSH = 0x60;
export const RSH = 0x70;
export const MOD = 0x90;
export const XOR = 0xa0;
export const MOV = 0xb0;

export const JEQ = 0x10;
export const JGT = 0x20;
export const JSET = 0x40;
export const JLT = 0xa0;
const CALL = 0x80;
const EXIT = 0x90;

/** bpf_map_lookup_elem, helper 1. */
export const HELPER_MAP_LOOKUP = 1;
/** ld_imm64's src register when its immediate is a map's fd. */
const PSEUDO_MAP_FD = 1;

interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
  /** A jump's target, resolved into `off` by build(). */
  target?: string;
}

export class BpfAsm {
  private readonly insns: Insn[] = [];
  private readonly labels = new Map<string, number>();

  /** The number of instruction slots so far (ld_imm64 takes two). */
  get length(): number {
    return this.insns.length;
  }

  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`bpf: label ${name} defined twice`);
    this.labels.set(name, this.insns.length);
    return this;
  }

  private emit(code: number, dst: number, src: number, off: number, imm: number, target?: string): this {
    this.insns.push({ code, dst, src, off, imm: imm | 0, ...(target ? { target } : {}) });
    return this;
  }

  /** dst op= imm, on 32 bits (the upper half is zeroed) or 64 (`wide`). */
  aluImm(op: number, dst: number, imm: number, wide = false): this {
    return this.emit((wide ? ALU64 : ALU) | op | K, dst, 0, 0, imm);
  }

  /** dst op= src, on 32 bits or 64 (`wide`). */
  aluReg(op: number, dst: number, src: number, wide = false): this {
    return this.emit((wide ? ALU64 : ALU) | op | X, dst, src, 0, 0);
  }

  /** r0 = the packet's `size` bytes at `off`, in host order (exits with 0 beyond the packet); r6 is the context. */
  ldAbs(size: number, off: number): this {
    return this.emit(LD | ABS | size, 0, 0, 0, off);
  }

  /** r0 = the packet's `size` bytes at reg + off, as ldAbs. */
  ldInd(size: number, reg: number, off: number): this {
    return this.emit(LD | IND | size, 0, reg, 0, off);
  }

  /** dst = *(size *)(src + off). */
  ldx(size: number, dst: number, src: number, off: number): this {
    return this.emit(LDX | MEM | size, dst, src, off, 0);
  }

  /** *(size *)(dst + off) = src. */
  stx(size: number, dst: number, off: number, src: number): this {
    return this.emit(STX | MEM | size, dst, src, off, 0);
  }

  /** dst = the map whose fd is `fd` (two slots). */
  ldMapFd(dst: number, fd: number): this {
    this.emit(LD | DW | IMM, dst, PSEUDO_MAP_FD, 0, fd);
    return this.emit(0, 0, 0, 0, 0);
  }

  /** if (reg op imm) goto label; the comparison is unsigned on 64 bits. */
  jmpImm(op: number, reg: number, imm: number, label: string): this {
    return this.emit(JMP | op | K, reg, 0, 0, imm, label);
  }

  call(helper: number): this {
    return this.emit(JMP | CALL, 0, 0, 0, helper);
  }

  exit(): this {
    return this.emit(JMP | EXIT, 0, 0, 0, 0);
  }

  /** The program as the kernel's BPF_PROG_LOAD takes it. */
  build(): Uint8Array {
    const out = new Uint8Array(this.insns.length * 8);
    const view = new DataView(out.buffer);
    this.insns.forEach((insn, pc) => {
      let off = insn.off;
      if (insn.target !== undefined) {
        const to = this.labels.get(insn.target);
        if (to === undefined) throw new Error(`bpf: no label ${insn.target}`);
        if (to <= pc) throw new Error(`bpf: backward jump to ${insn.target}`);
        off = to - pc - 1;
      }
      out[pc * 8] = insn.code;
      out[pc * 8 + 1] = (insn.src << 4) | insn.dst;
      view.setInt16(pc * 8 + 2, off, true);
      view.setInt32(pc * 8 + 4, insn.imm, true);
    });
    return out;
  }
}
