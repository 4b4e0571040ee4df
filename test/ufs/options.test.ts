/**
 * Mount option keys: a key the store's driver does not read is refused (CONFIG) when a
 * mount is made or a master starts, so a misspelt `s3.endpint` is not stored to do
 * nothing. The list of keys per driver (ufs/index.ts) must match what the drivers read.
 */

import t from 'tap';
import { readFileSync } from 'node:fs';
import { checkUfsOptions, driverOptionKeys } from '../../src/ufs';
import { parseS3Options } from '../../src/ufs/s3';
import { HdfsUnderFileSystem } from '../../src/ufs/hdfs';
import { MOUNT_OWN_OPTIONS } from '../../src/common/protocol';
import { StrataError } from '../../src/common/errors';

function failure(fn: () => unknown): StrataError | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err as StrataError;
  }
}

t.test('keys a driver does not read are refused, with the nearest known key', async (t) => {
  t.equal(failure(() => checkUfsOptions('s3://b/p', { 's3.endpoint': 'http://x', 's3.pathStyle': 'true' })), undefined, 'known keys pass');
  t.equal(failure(() => checkUfsOptions('file:///d', { 'write.type': 'THROUGH' }, MOUNT_OWN_OPTIONS)), undefined, "the caller's own keys pass");
  const typo = failure(() => checkUfsOptions('s3://b/p', { 's3.endpint': 'http://x' }));
  t.equal(typo?.code, 'CONFIG');
  t.match(typo?.message, /unknown option 's3\.endpint' for a s3 store \(did you mean 's3\.endpoint'\?\)/);
  const caseTypo = failure(() => checkUfsOptions('s3://b/p', { 's3.pathstyle': 'true' }));
  t.match(caseTypo?.message, /did you mean 's3\.pathStyle'/, 'a key in the wrong case is unknown too, and named');
  const far = failure(() => checkUfsOptions('file:///d', { bogus: '1' }, MOUNT_OWN_OPTIONS));
  t.match(far?.message, /^unknown option 'bogus' for a file store; known: readonly, sync\.interval\.ms, write\.type$/, 'nothing near: no guess');
  t.match(failure(() => checkUfsOptions('mem://x', { 'write.type': 'x' }))?.message, /known: none/, 'a driver without options');
  t.match(failure(() => checkUfsOptions('file:///d', { 's3.region': 'x' }))?.message, /unknown option 's3\.region' for a file store/, "another driver's key");
});

t.test("every key listed for S3 is one the driver reads (a bad value of it is refused, naming it)", async (t) => {
  const keys = driverOptionKeys('s3://b/p');
  // And the other way round: every s3.* key the driver's code names is listed, or mounts using it would be refused.
  const named = new Set(readFileSync(require.resolve('../../src/ufs/s3'), 'utf8').match(/(?<=')s3\.[A-Za-z]+(?=')/g));
  t.same([...keys].sort(), [...named].sort(), 'the keys listed are the keys the driver names');
  for (const key of keys) {
    const e = failure(() => parseS3Options({ [key]: 'not a value' }));
    t.equal(e?.code, 'CONFIG', key);
    t.match(e?.message, key, `${key}: named in the refusal`);
  }
});

t.test('every key listed for HDFS is one the driver reads (it refuses hdfs.* keys it does not know)', async (t) => {
  const keys = driverOptionKeys('hdfs://nn:9870/p');
  t.same([...keys].sort(), ['hdfs.connectTimeoutMs', 'hdfs.scheme', 'hdfs.timeoutMs', 'hdfs.user']);
  for (const key of keys) {
    const value = key === 'hdfs.scheme' ? 'https' : key === 'hdfs.user' ? 'alice' : '1000';
    const ufs = new HdfsUnderFileSystem('hdfs://127.0.0.1:9/p', { [key]: value });
    await ufs.close();
    t.pass(`${key} accepted by the driver`);
  }
  t.match(failure(() => new HdfsUnderFileSystem('hdfs://127.0.0.1:9/p', { 'hdfs.usr': 'x' }))?.message, /unknown option 'hdfs\.usr'/, 'and refuses one it does not know');
});
