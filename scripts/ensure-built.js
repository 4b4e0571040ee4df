#!/usr/bin/env node
'use strict';
// `npm start` runs this first: build when dist/ is missing or older than a source file.
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const marker = path.join(root, 'dist', 'src', 'cli', 'main.js');

function newest(dir) {
  let t = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : fs.statSync(p).mtimeMs);
  }
  return t;
}

if (!fs.existsSync(path.join(root, 'node_modules'))) {
  process.stderr.write('strata: dependencies are not installed; run `npm ci` first (see README)\n');
  process.exit(2);
}
const built = fs.existsSync(marker) ? fs.statSync(marker).mtimeMs : 0;
if (built < newest(path.join(root, 'src'))) {
  process.stderr.write('strata: building…\n');
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });
}
