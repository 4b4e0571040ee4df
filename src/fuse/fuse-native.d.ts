// Minimal typings for fuse-native 2.2.6, which ships none.
declare module 'fuse-native' {
  type Cb = (...args: unknown[]) => void;
  class Fuse {
    constructor(mnt: string, ops: Record<string, (...args: any[]) => void>, opts?: Record<string, unknown>);
    mnt: string;
    opts: Record<string, unknown>;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    _fuseOptions(): string;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
  }
  export = Fuse;
}
