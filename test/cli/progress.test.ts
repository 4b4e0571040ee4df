/** Progress display of `fs load` and `fs cp -r` when stderr is not a terminal, and its number formats. */

import t from 'tap';
import { Progress, human, percent, rate } from '../../src/cli/progress';

function fakeStream(isTTY = false) {
  const lines: string[] = [];
  const stream = { isTTY, write: (s: string) => lines.push(s) > 0 } as unknown as NodeJS.WriteStream;
  return { stream, lines };
}

t.test('formats', async (t) => {
  t.equal(human(0), '0 B');
  t.equal(human(1536), '1.5 KiB');
  t.equal(human(3932160), '3.8 MiB');
  t.equal(percent(0, 0), '0%');
  t.equal(percent(1, 1000), '0.1%', 'a little is not 0%');
  t.equal(percent(999, 1000), '99.9%', 'almost is not 100%');
  t.equal(rate(1024 * 1024, 1000), '1.0 MiB/s');
  t.equal(rate(5, 0), '-');
});

t.test('plain lines: every 10 % of the bytes, then the final state once', async (t) => {
  const { stream, lines } = fakeStream();
  const p = new Progress('cp', 1000, 10, { stream, intervalMs: 60_000 });
  for (let i = 1; i <= 100; i++) p.update(i * 10, Math.floor(i / 10));
  t.equal(lines.length, 10, 'one line per tenth');
  for (const l of lines) t.match(l, /^cp: \d+% \d+ B of 1000 B, \d+\/10 files, (-|\S+ \S*B\/s)\n$/);
  t.match(lines[9], /^cp: 100% 1000 B of 1000 B, 10\/10 files, /);
  p.stop();
  t.equal(lines.length, 10, 'stop prints nothing the last line showed');

  const { stream: s2, lines: l2 } = fakeStream();
  const q = new Progress('load', 1000, 2, { stream: s2, intervalMs: 60_000 });
  q.update(50, 0);
  q.stop();
  t.equal(l2.length, 1, 'stop prints the state the lines have not shown');
  t.match(l2[0], /^load: 5% 50 B of 1000 B, 0\/2 files, /);
});

t.test('plain lines: by time when progress is slow, by files when there are no bytes', async (t) => {
  const { stream, lines } = fakeStream();
  const p = new Progress('cp', 1_000_000, 3, { stream, intervalMs: 0 });
  p.update(1, 0);
  p.update(2, 0);
  t.equal(lines.length, 2, 'a line whenever the interval has passed');
  const { stream: s2, lines: l2 } = fakeStream();
  const empty = new Progress('cp', 0, 4, { stream: s2, intervalMs: 60_000 });
  for (let f = 1; f <= 4; f++) empty.add(0, 1);
  t.equal(l2.length, 4, 'empty files move the progress');
  t.match(l2[3], /^cp: 100% 0 B of 0 B, 4\/4 files, /);
});
