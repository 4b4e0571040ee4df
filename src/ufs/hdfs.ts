/** Placeholder: the driver is being written. */

import { StrataError } from '../common/errors';
import { MemoryUnderFileSystem } from './memory';

export class HdfsUnderFileSystem extends MemoryUnderFileSystem {
  constructor(uri: string, _options: Record<string, string> = {}) {
    super('mem://unused');
    throw new StrataError('NOT_SUPPORTED', `not implemented yet: ${uri}`);
  }
}
