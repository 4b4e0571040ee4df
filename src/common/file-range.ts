/**
 * Reads answered without copying: the client hands the FUSE layer ranges of open
 * files (a same-host worker's page files), which the kernel takes straight from them.
 */

/** `len` bytes at `pos` of the open file `fd`. */
export interface FileRange {
  readonly fd: number;
  readonly pos: number;
  readonly len: number;
}

/**
 * A read's bytes in order: buffers, and ranges of open files whose descriptors
 * stay open until `done()` (called once the bytes were used or sent).
 */
export interface ReadParts {
  parts: (Buffer | FileRange)[];
  done(): void;
}
