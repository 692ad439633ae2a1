// Table memory on transparent huge pages, through the native addon when it is built; plain
// ArrayBuffers otherwise. The engine takes either (see nat/table-memory.ts).
import type { TableAllocator } from "../nat/table-memory.ts";
import { tryLoadAddon } from "./addon.ts";

/** Below this a table fits in a few 4 KiB pages' worth of TLB reach anyway. */
const HUGE_PAGE_THRESHOLD = 4 * 1024 * 1024;

export function hugePageAllocator(): TableAllocator | undefined {
  const addon = tryLoadAddon();
  if (!addon) return undefined;
  return (bytes) => (bytes >= HUGE_PAGE_THRESHOLD ? addon.allocHugePages(bytes) : new ArrayBuffer(bytes));
}
