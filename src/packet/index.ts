export * from "./checksum.ts";
export * from "./ipv4.ts";
export * from "./l4.ts";
export * from "./validate.ts";
