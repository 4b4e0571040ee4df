#!/usr/bin/env node
'use strict';
// Runs before `npm start` and `npm test`: checks the system, installs the project's
// npm dependencies if they are missing (npm ci, announced), and builds when dist/ is
// missing or older than a source file. It never installs system packages.
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync, spawnSync } = require('node:child_process');

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

const fusermount = spawnSync('sh', ['-c', 'command -v fusermount || command -v fusermount3'], { encoding: 'utf8' });
if (fusermount.status !== 0 || !fs.existsSync('/dev/fuse')) {
  process.stderr.write('strata: FUSE is missing; install it with: apt-get install -y fuse3 libfuse3-dev pkg-config\n');
  process.exit(2);
}

if (!fs.existsSync(path.join(root, 'node_modules', '.package-lock.json'))) {
  process.stderr.write('strata: installing npm dependencies (npm ci)…\n');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
}
if (!fs.existsSync(path.join(root, 'build', 'Release', 'strata_fuse.node'))) {
  process.stderr.write('strata: building the FUSE addon (node-gyp)…\n');
  execFileSync('npm', ['run', 'build:native'], { cwd: root, stdio: 'inherit' });
}
const built = fs.existsSync(marker) ? fs.statSync(marker).mtimeMs : 0;
const sources = Math.max(newest(path.join(root, 'src')), newest(path.join(root, 'test')), newest(path.join(root, 'scripts')));
if (built < sources) {
  process.stderr.write('strata: building (tsc)…\n');
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc', { paths: [root] }), '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });
}
