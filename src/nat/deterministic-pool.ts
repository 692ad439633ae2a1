// Deterministic NAT over several gateways that share one outside pool and nothing else
// (`[cgnat] nodes = N`, `node = k`): the kernel's ECMP routing on the inside hashes every inside
// host to one of them, and a host moves to another when its gateway fails. Which gateway a host
// reaches is the router's choice, not the configuration's, so every node must be able to
// translate every inside address: each node owns a disjoint part of the pool and runs the
// single-node function (deterministic.ts) of the whole inside prefix over its own part.
//
// The parts. The pool's A addresses (index 0..A-1, in configuration order) are cut into N
// contiguous parts: node k owns indexes floor(k*A/N) .. floor((k+1)*A/N) - 1, so the parts are
// disjoint, cover the pool, and differ in size by one address at most (N <= A).
//
// The whole-pool function, the same on every node because it reads only the configuration:
// inside address X through node k leaves as part k's Deterministic(X); its inverse, for an
// outside address of part k and a port, names node k and the inside address. So `masq whois` on
// any node answers for every address of the pool, whichever node the host was hashed to.
import { Deterministic, type DeterministicPlan } from "./deterministic.ts";

/** Node `node`'s part of a pool of `addresses` addresses shared by `nodes` nodes: first index and count. */
export function nodePart(addresses: number, nodes: number, node: number): { first: number; count: number } {
  const first = Math.floor((node * addresses) / nodes);
  const end = Math.floor(((node + 1) * addresses) / nodes);
  return { first, count: end - first };
}

export interface WholePoolHolder {
  /** The node whose part holds the address. */
  node: number;
  inAddr: number;
  first: number;
  last: number;
}

export class DeterministicPool {
  readonly nodes: number;
  /** Each node's function over its own part (the one its engine runs). */
  readonly parts: Deterministic[];
  /** Outside address -> [node, index within the node's part]. */
  private readonly where = new Map<number, [number, number]>();
  private readonly pool: readonly number[];

  /**
   * `pool`: every outside address of the whole pool, in configuration order; `inside`, `lo` and
   * `hi` as in DeterministicPlan (its `addresses` is each part's own size).
   */
  constructor(pool: readonly number[], nodes: number, inside: Omit<DeterministicPlan, "addresses">) {
    this.nodes = nodes;
    this.pool = pool;
    this.parts = [];
    for (let k = 0; k < nodes; k++) {
      const part = nodePart(pool.length, nodes, k);
      this.parts.push(new Deterministic({ ...inside, addresses: part.count }));
      for (let j = 0; j < part.count; j++) this.where.set(pool[part.first + j] >>> 0, [k, j]);
    }
  }

  /** The node owning outside address `outAddr`, or -1 when it is not in the pool. */
  nodeOf(outAddr: number): number {
    return this.where.get(outAddr >>> 0)?.[0] ?? -1;
  }

  /** Who held `outAddr`:`port`: the node and the inside address with its range; undefined: nobody. */
  whois(outAddr: number, port: number): WholePoolHolder | undefined {
    const at = this.where.get(outAddr >>> 0);
    if (at === undefined) return undefined;
    const [node, idx] = at;
    const d = this.parts[node];
    const inAddr = d.insideOf(idx, port);
    if (inAddr < 0) return undefined;
    const first = d.firstPort(d.indexOf(inAddr));
    return { node, inAddr, first, last: first + d.ports - 1 };
  }

  /** The outside address and port range inside address `inAddr` has through node `node`; undefined: none. */
  rangeOf(node: number, inAddr: number): { outAddr: number; first: number; last: number } | undefined {
    const d = this.parts[node];
    const i = d?.indexOf(inAddr) ?? -1;
    if (i < 0) return undefined;
    const part = nodePart(this.pool.length, this.nodes, node);
    const first = d.firstPort(i);
    return { outAddr: this.pool[part.first + d.addressOf(i)] >>> 0, first, last: first + d.ports - 1 };
  }
}
