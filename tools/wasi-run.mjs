// Cargo runner for wasm32-wasip1 test binaries on Node >= 18 (node:wasi, preview 1).
// Exits with the module's exit code; a trap (a panic aborts on wasm) exits with 101.
import { readFile } from 'node:fs/promises';
import process from 'node:process';
import { WASI } from 'node:wasi';

const [, , file, ...args] = process.argv;
if (!file) {
  console.error('usage: node wasi-run.mjs FILE.wasm [args...]');
  process.exit(2);
}
const wasi = new WASI({
  version: 'preview1',
  args: [file, ...args],
  env: process.env,
  preopens: { '.': '.' },
  returnOnExit: true,
});
try {
  const module = await WebAssembly.compile(await readFile(file));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  process.exitCode = wasi.start(instance) ?? 0;
} catch (e) {
  if (e instanceof WebAssembly.RuntimeError) {
    console.error(`wasi-run: trap (${e.message}): a panic aborted the test binary`);
    process.exitCode = 101;
  } else {
    throw e;
  }
}
