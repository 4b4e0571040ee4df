#!/usr/bin/env node
'use strict';
// Runs before `npm start` and `npm test`: installs the Debian packages they need when
// missing (as root, with apt-get, announced; otherwise it names them and stops), the
// project's npm dependencies if they are missing (npm ci, announced), and builds when
// dist/ is missing or older than a source file.
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

// The Debian packages: for `npm test`, also the tools the tests drive (scripts/system-deps.sh).
// As root they are installed; otherwise a missing FUSE or compiler stops here, a missing test tool is named.
const deps = path.join(root, 'scripts', 'system-deps.sh');
const canInstall = process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status === 0;
for (const mode of process.env.npm_lifecycle_event === 'pretest' ? ['start', 'test'] : ['start']) {
  const missing = spawnSync('bash', [deps, mode, '--check'], { encoding: 'utf8' });
  if (missing.status === 0) continue;
  const list = missing.stdout.trim();
  if (canInstall) execFileSync('bash', [deps, mode], { stdio: 'inherit' });
  else if (mode === 'start') {
    process.stderr.write(`strata: missing system packages: ${list}\n  install them (as root): bash scripts/system-deps.sh start\n`);
    process.exit(2);
  } else process.stderr.write(`strata: the tests that drive ${list} will fail or be skipped; install them (as root): bash scripts/system-deps.sh test\n`);
}
if (!fs.existsSync('/dev/fuse')) {
  process.stderr.write('strata: /dev/fuse is missing: this machine (or container) has no FUSE device\n');
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
