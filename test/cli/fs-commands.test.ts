/** The `strata fs` command definitions in process: help with examples, --json everywhere data is printed, durations. */

import t from 'tap';
import { Command } from 'commander';
import { parseDuration, registerFsCommands } from '../../src/cli/fs-commands';
import { StrataError } from '../../src/common/errors';

function fsCommands(): Command {
  const program = new Command('strata');
  const fsCmd = program.command('fs');
  registerFsCommands(fsCmd);
  return fsCmd;
}

/** What `--help` prints, with the text added after the generated part. */
function helpOf(c: Command): string {
  let out = '';
  c.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  c.outputHelp();
  return out;
}

t.test('every fs command shows its usage and a few examples', async (t) => {
  const fsCmd = fsCommands();
  const names = fsCmd.commands.map((c) => c.name());
  t.same([...names].sort(), ['cat', 'cp', 'du', 'free', 'load', 'ls', 'mkdir', 'mount', 'mv', 'persist', 'pin', 'report', 'rm', 'setTtl', 'stat', 'sync', 'unmount', 'unpin', 'unsetTtl'].sort());
  for (const c of fsCmd.commands) {
    const help = helpOf(c);
    t.match(help, new RegExp(`^Usage: strata fs ${c.name()} `), `${c.name()}: usage line`);
    t.match(help, new RegExp(`\\nExamples:\\n( {2}\\$ strata fs ${c.name()}\\b.*\\n)+$`), `${c.name()}: examples at the end`);
    t.ok(c.options.some((o) => o.long === '--master'), `${c.name()}: --master`);
  }
  const group = helpOf(fsCmd);
  t.match(group, /glob patterns/, 'the group help explains patterns');
  t.match(group, /Exit codes: 0 ok, 1 operation failed, 2 bad usage/);
});

t.test('--json on every command that prints data or changes something', async (t) => {
  for (const c of fsCommands().commands) {
    const has = c.options.some((o) => o.long === '--json');
    if (c.name() === 'cat') t.notOk(has, 'cat prints the bytes themselves');
    else t.ok(has, `${c.name()} --json`);
  }
});

t.test('parseDuration', async (t) => {
  t.equal(parseDuration('1500'), 1500);
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('1.5h'), 5_400_000);
  t.equal(parseDuration('1d'), 86_400_000);
  for (const bad of ['', '0', '-1s', 'soon', '10x']) t.throws(() => parseDuration(bad), { code: 'CONFIG' }, `'${bad}' is bad usage`);
  t.throws(() => parseDuration('soon'), StrataError);
});
