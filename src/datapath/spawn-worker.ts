// Starting a worker thread on one of masq's modules. Built, the module is JavaScript (dist/); run
// from the sources (tests, `node --import tsx`), a worker does not inherit the TypeScript loader,
// so it registers tsx before importing the module.
import { Worker, type WorkerOptions } from "node:worker_threads";

export function spawnModuleWorker(module: URL, options: WorkerOptions = {}): Worker {
  if (!module.pathname.endsWith(".ts")) return new Worker(module, options);
  const code = `import("tsx/esm/api").then((m) => { m.register(); return import(${JSON.stringify(module.href)}); })`;
  return new Worker(code, { ...options, eval: true });
}
