/** The glob matcher and expander of `strata fs` path arguments, without a cluster. */

import t from 'tap';
import { compileComponent, expandGlob, GlobEntry, hasGlob, literalPrefix, matchGlob, namesDirectory, unescapeGlob } from '../../src/cli/glob';

t.test('matchGlob: *, ? and literal characters', async (t) => {
  const yes: [string, string][] = [
    ['*', 'a'],
    ['*', 'part-0001.parquet'],
    ['*.parquet', 'x.parquet'],
    ['*.parquet', '.parquet.parquet'.slice(1)],
    ['x*', 'x'],
    ['x*y', 'xy'],
    ['x*y', 'xaaay'],
    ['*a*b*', 'zzazzbzz'],
    ['a*a*a', 'aaaaa'],
    ['**', 'abc'],
    ['?', 'a'],
    ['??', 'ab'],
    ['a?c', 'abc'],
    ['?', 'é'],
    ['?', '😀'],
    ['f?le*', 'file.txt'],
    ['plain', 'plain'],
  ];
  for (const [p, n] of yes) t.ok(matchGlob(p, n), `'${p}' matches '${n}'`);
  const no: [string, string][] = [
    ['*.parquet', 'x.parquet.tmp'],
    ['*.parquet', 'x.csv'],
    ['x*y', 'xya'],
    ['?', ''],
    ['?', 'ab'],
    ['??', 'a'],
    ['a?c', 'ac'],
    ['plain', 'plainer'],
    ['*a*b', 'zzbzza'],
    ['', 'a'],
  ];
  for (const [p, n] of no) t.notOk(matchGlob(p, n), `'${p}' does not match '${n}'`);
});

t.test('matchGlob: bracket expressions', async (t) => {
  t.ok(matchGlob('[abc]', 'b'));
  t.notOk(matchGlob('[abc]', 'd'));
  t.ok(matchGlob('part-[0-9][0-9]', 'part-07'));
  t.notOk(matchGlob('part-[0-9][0-9]', 'part-7x'));
  t.ok(matchGlob('[a-cx-z]', 'y'));
  t.notOk(matchGlob('[a-cx-z]', 'm'));
  t.ok(matchGlob('[!x]', 'y'), '[!x] matches anything but x');
  t.notOk(matchGlob('[!x]', 'x'));
  t.ok(matchGlob('[^x]', 'y'), '[^x] as bash allows');
  t.notOk(matchGlob('[!a-z]*', 'abc'));
  t.ok(matchGlob('[!a-z]*', 'Abc'));
  t.ok(matchGlob('[]]', ']'), 'a ] right after [ is a member');
  t.ok(matchGlob('[!]]', 'a'));
  t.notOk(matchGlob('[!]]', ']'));
  t.ok(matchGlob('[a-]', '-'), 'a trailing - is literal');
  t.ok(matchGlob('[-a]', '-'), 'a leading - is literal');
  t.ok(matchGlob('[\\]]', ']'), 'an escaped ] inside a class');
  t.notOk(matchGlob('[z-a]', 'm'), 'a reversed range matches nothing');
  t.ok(matchGlob('[é-ë]', 'ê'), 'ranges by code point');
  t.ok(matchGlob('[abc', '[abc'), 'an unclosed [ is literal');
  t.notOk(matchGlob('[abc', 'a'));
  t.ok(matchGlob('x[', 'x['));
});

t.test('matchGlob: escapes and hidden names', async (t) => {
  t.ok(matchGlob('a\\*b', 'a*b'), 'an escaped * is literal');
  t.notOk(matchGlob('a\\*b', 'axb'));
  t.ok(matchGlob('a\\?', 'a?'));
  t.notOk(matchGlob('a\\?', 'ab'));
  t.ok(matchGlob('\\[x]', '[x]'));
  t.ok(matchGlob('a\\\\b', 'a\\b'), 'an escaped backslash');
  t.ok(matchGlob('a\\b', 'a\\b'), 'a backslash before an ordinary character is itself');
  t.ok(matchGlob('a\\b*', 'a\\bc'));
  t.notOk(matchGlob('*', '.hidden'), '* does not match a leading dot');
  t.notOk(matchGlob('?hidden', '.hidden'));
  t.notOk(matchGlob('[.]hidden', '.hidden'), 'nor does a bracket');
  t.ok(matchGlob('.*', '.hidden'), 'a literal leading dot does');
  t.ok(matchGlob('.h?dden', '.hidden'));
  t.ok(matchGlob('*.*', 'a.b'), 'dots after the first character are ordinary');
});

t.test('hasGlob and unescapeGlob', async (t) => {
  for (const p of ['/data/*.parquet', '/a?', '/[ab]', '/x/*/y', '/tmp/x*']) t.ok(hasGlob(p), `${p} is a pattern`);
  for (const p of ['/', '/data/x.parquet', '/a\\*b', '/a\\?', '/\\[ab]', '/[ab', '/a]', '/a\\b']) t.notOk(hasGlob(p), `${p} is not a pattern`);
  t.equal(unescapeGlob('/a\\*b'), '/a*b');
  t.equal(unescapeGlob('/d\\[1]/f\\?'), '/d[1]/f?');
  t.equal(unescapeGlob('/a\\\\b'), '/a\\b');
  t.equal(unescapeGlob('/a\\b'), '/a\\b', 'other backslashes stay');
  t.equal(unescapeGlob('/plain/path'), '/plain/path');
  t.equal(unescapeGlob('/'), '/');
  t.equal(compileComponent('x\\*').literal, 'x*');
  t.equal(literalPrefix('/data/day=*/x'), '/data');
  t.equal(literalPrefix('/a\\*b/c?'), '/a*b');
  t.equal(literalPrefix('/*'), '/');
  t.equal(literalPrefix('/x/y'), '/x/y');
  t.ok(namesDirectory('/x/'));
  t.notOk(namesDirectory('/x'));
  t.notOk(namesDirectory('/'), 'the root is a directory anyway');
});

/** A fake namespace: directory path -> entries. */
function lister(tree: Record<string, GlobEntry[]>) {
  const calls: string[] = [];
  const list = async (dir: string) => {
    calls.push(dir);
    return tree[dir];
  };
  return { list, calls };
}

const f = (name: string): GlobEntry => ({ name, type: 'file' });
const d = (name: string): GlobEntry => ({ name, type: 'directory' });

t.test('expandGlob against a namespace', async (t) => {
  const { list, calls } = lister({
    '/': [d('data'), d('tmp'), f('top.txt')],
    '/data': [f('b.parquet'), f('a.parquet'), f('c.csv'), f('.hidden.parquet'), d('day=1'), d('day=2'), f('day=3')],
    '/data/day=1': [f('x.parquet'), f('y.csv')],
    '/data/day=2': [f('x.parquet')],
    '/tmp': [f('x1'), f('x2'), f('y'), d('xdir')],
  });
  t.same(await expandGlob('/data/*.parquet', list), ['/data/a.parquet', '/data/b.parquet'], 'sorted, hidden names left out');
  t.same(calls, ['/data'], 'only the parent is listed');
  t.same(await expandGlob('/tmp/x*', list), ['/tmp/x1', '/tmp/x2', '/tmp/xdir'], 'files and directories match the last component');
  t.same(await expandGlob('/data/day=*/x.parquet', list), ['/data/day=1/x.parquet', '/data/day=2/x.parquet'], 'a pattern in the middle; day=3 is a file and is not descended');
  t.same(await expandGlob('/data/day=*/*.csv', list), ['/data/day=1/y.csv']);
  t.same(await expandGlob('/data/day=[2-9]', list), ['/data/day=2', '/data/day=3']);
  t.same(await expandGlob('/*/x?', list), ['/tmp/x1', '/tmp/x2']);
  t.same(await expandGlob('/data/*.json', list), [], 'no match is []');
  t.same(await expandGlob('/missing/*', list), [], 'a missing parent holds no matches');
  t.same(await expandGlob('/data/day=*/missing', list), [], 'literal components after a pattern must exist');
  t.same(await expandGlob('//data///?.csv', list), ['/data/c.csv'], 'doubled slashes are one');
  t.same(await expandGlob('/data/a.parquet', list), ['/data/a.parquet'], 'a path without patterns is itself, unchecked');
  // Reproduces a bug: the trailing `/` was dropped with the empty component after it, so `rm -r '/g/*/'` removed files too.
  t.same(await expandGlob('/tmp/x*/', list), ['/tmp/xdir'], 'a pattern ending in / matches directories only');
  t.same(await expandGlob('/data/day=*/', list), ['/data/day=1', '/data/day=2'], 'day=3 is a file');
  t.same(await expandGlob('/*/', list), ['/data', '/tmp']);
  t.same(await expandGlob('/data/*.parquet/', list), [], 'files only: no match');
});

t.test('expandGlob passes listing failures on', async (t) => {
  const list = async () => {
    throw new Error('master unreachable');
  };
  await t.rejects(expandGlob('/x/*', list), /master unreachable/);
});
