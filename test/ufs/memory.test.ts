/** The in-memory (`mem://`) under-store: the shared conformance suite plus its sharing semantics. */

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createUfs, SUPPORTED_SCHEMES } from '../../src/ufs';
import { MemoryUnderFileSystem } from '../../src/ufs/memory';
import type { UnderFileSystem } from '../../src/ufs/ufs';
import { ufsConformance, putFile, readFile, rejectsCode } from './conformance';

let stores = 0;
const uniqueUri = () => `mem://strata-test-${process.pid}-${++stores}-${randomBytes(4).toString('hex')}`;

/** Empties a store through its own API (a mem:// store cannot be dropped otherwise). */
async function wipe(ufs: UnderFileSystem, dir = '/'): Promise<void> {
  for (const e of await ufs.list(dir)) {
    const p = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
    if (e.type === 'directory') {
      await wipe(ufs, p);
      await ufs.rmdir(p);
    } else {
      await ufs.delete(p);
    }
  }
}

ufsConformance(t, 'memory', async () => {
  const ufs = createUfs(uniqueUri());
  return {
    ufs,
    cleanup: async () => {
      await wipe(ufs);
    },
  };
});

t.test('createUfs picks the memory driver for mem:// URIs', async (t) => {
  const uri = uniqueUri();
  const ufs = createUfs(uri);
  t.ok(ufs instanceof MemoryUnderFileSystem);
  t.equal(ufs.uri, uri);
  t.same(SUPPORTED_SCHEMES.slice().sort(), ['file', 'hdfs', 'mem', 's3'], 'the scheme map lists every driver');
});

t.test('stores with the same name share contents; different names are isolated', async (t) => {
  const uri = uniqueUri();
  const a = createUfs(uri);
  const b = createUfs(uri);
  const other = createUfs(uniqueUri());
  t.teardown(() => wipe(a));
  await a.mkdir('/shared');
  await putFile(a, '/shared/f', 'written through a');
  t.equal((await readFile(b, '/shared/f')).toString(), 'written through a', 'visible through a second instance of the same URI');
  await b.delete('/shared/f');
  t.equal(await a.stat('/shared/f'), null, 'a delete through b is seen by a');
  t.same(await other.list('/'), [], 'a store of another name is empty');
  t.equal(await other.stat('/shared'), null);
});

t.test('createUfs rejects unknown schemes and malformed URIs with CONFIG', async (t) => {
  await rejectsCode(t, async () => createUfs('not a uri'), 'CONFIG', 'malformed URI');
  await rejectsCode(t, async () => createUfs(''), 'CONFIG', 'empty URI');
  await rejectsCode(t, async () => createUfs('nosuch://bucket/x'), 'CONFIG', 'unknown scheme');
  await rejectsCode(t, async () => new MemoryUnderFileSystem('file:///tmp'), 'CONFIG', 'memory driver given a file:// URI');
});

t.test('the memory root cannot be removed', async (t) => {
  const ufs = createUfs(uniqueUri());
  await rejectsCode(t, () => ufs.rmdir('/'), 'NOT_PERMITTED', 'rmdir /');
  t.equal((await ufs.stat('/'))?.type, 'directory', 'the root is still there');
});
