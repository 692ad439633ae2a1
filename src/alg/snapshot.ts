// What of the ALGs' state a snapshot keeps (src/nat/snapshot.ts): the per-flow records (line
// streams with their held partial lines, sequence corrections, the ALG's own record, the
// expectations a control flow announced) and the set of live expectation pins. The ALG list,
// the port tables and the scratch of a call are the configuration's and the new run's own.
import type { ImageParts } from "../nat/engine.ts";
import type { AlgRegistry } from "./registry.ts";
import { FlowState } from "./registry.ts";
import { SeqAdj } from "./seqadj.ts";
import { StreamDir, StreamPair } from "./tcp-stream.ts";

export function algImageParts(registry: AlgRegistry): ImageParts {
  if (!registry.idsAsAtStart())
    throw new Error(
      "a reload turned ALGs on or off since the start: flows name their ALG by an id the next run would give another",
    );
  return {
    roots: { alg: registry },
    skip: [
      "engine",
      "cfg",
      "tcpPorts",
      "udpPorts",
      "algs",
      "list",
      "cur",
      "curAlg",
      "curBuf",
      "curL4",
      "curPartial",
      "ctx",
      "limits",
      "maxRebuilt",
      "ttlMode",
      "scratch",
      "editAt",
      "editEnd",
      "editText",
    ],
    classes: { FlowState, StreamPair, StreamDir, SeqAdj },
  };
}
