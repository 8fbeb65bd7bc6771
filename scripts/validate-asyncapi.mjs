// Parses an AsyncAPI document with @asyncapi/parser and reports its diagnostics.
// Usage: node validate-asyncapi.mjs TOOLS_DIR FILE — exits 1 on any error-severity diagnostic.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";

const [toolsDir, file] = process.argv.slice(2);
const require = createRequire(path.join(toolsDir, "package.json"));
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

const severityName = (s) => ["error", "warning", "info", "hint"][s] ?? String(s);
const parser = new Parser();
const source = await readFile(file, "utf8");
const { document, diagnostics } = await parser.parse(source, { source: path.resolve(file) });
let errors = 0;
for (const d of diagnostics) {
  if (d.severity === DiagnosticSeverity.Error) errors += 1;
  const where = (d.path ?? []).join("/");
  console.log(`${severityName(d.severity)}: ${d.code}: /${where}: ${d.message}`);
}
if (errors > 0 || !document) {
  console.error(`${file}: ${errors} error(s); document ${document ? "parsed" : "not parsed"}`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()} (${diagnostics.length} non-error diagnostic(s))`);
