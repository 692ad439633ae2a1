// Where the engine's big tables get their memory. The engine itself does no I/O and loads no
// native code: a caller may hand it an allocator (huge pages, see io/huge-pages.ts).

/** Returns a zeroed ArrayBuffer of exactly `bytes` bytes. */
export type TableAllocator = (bytes: number) => ArrayBuffer;

export const plainAllocator: TableAllocator = (bytes) => new ArrayBuffer(bytes);
