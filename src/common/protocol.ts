/**
 * The wire protocol shared by master, worker and client: JSON bodies over HTTP.
 * Master and worker implement these shapes; the client only ever sees them, so
 * nothing here may import from src/master or src/worker.
 */

/** API prefix of the master's JSON API. */
export const MASTER_API = '/api/v1';

/** Special files (fifo, socket, devices) live only in the namespace, never in a store. */
export type FileType = 'file' | 'directory' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

/** A point in time with nanosecond precision (seconds since the epoch + nanoseconds). */
export interface Timespec {
  sec: number;
  nsec: number;
}

export function timespecNow(): Timespec {
  const ns = process.hrtime.bigint() - HR_BASE + EPOCH_BASE_NS;
  return { sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) };
}
const HR_BASE = process.hrtime.bigint();
const EPOCH_BASE_NS = BigInt(Date.now()) * 1_000_000n;

/** The later of two times. */
export function laterTimespec(a: Timespec, b: Timespec): Timespec {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec >= b.nsec) ? a : b;
}

export function timespecFromMs(ms: number): Timespec {
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: Math.round((ms - sec * 1000) * 1e6) };
}

export function timespecToMs(t: Timespec): number {
  return t.sec * 1000 + Math.floor(t.nsec / 1e6);
}

/** Alluxio's write types; see README ("Write types"). */
export type WriteType = 'MUST_CACHE' | 'CACHE_THROUGH' | 'THROUGH' | 'ASYNC_THROUGH';
export const WRITE_TYPES: readonly WriteType[] = ['MUST_CACHE', 'CACHE_THROUGH', 'THROUGH', 'ASYNC_THROUGH'];

/** Longest TTL (`fs setTtl`): 100 years, so that now + ttl stays a plain integer of ms. */
export const MAX_TTL_MS = 100 * 365 * 24 * 3600 * 1000;

/** Mount option keys Strata reads itself (`fs mount --option`); the other keys go to the store's driver. */
export const MOUNT_OWN_OPTIONS: readonly string[] = ['readonly', 'sync.interval.ms', 'write.type'];

/** One entry of the mount table, as `strata fs mount` shows it (secrets masked). */
export interface MountInfo {
  path: string;
  uri: string;
  readOnly: boolean;
  options: Record<string, string>;
}

/** Persistence state of a file's bytes in its under-store. */
export type PersistState = 'persisted' | 'not_persisted';

/** Attributes of one inode, as stat(2) shows them. */
export interface FileAttributes {
  ino: number;
  type: FileType;
  /** Permission bits only (07777); the type is in `type`. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  blockSize: number;
  persistState: PersistState;
  /** Symlink target, for symlinks. */
  target?: string;
  /** Device number, for character and block devices. */
  rdev?: number;
}

export interface DirEntry extends FileAttributes {
  name: string;
  /**
   * Whether the inode had any extended attribute when it was listed (absent from masters
   * before 2026-12-06). `ls -l` asks for two of them per entry; a mount answers those of
   * entries listed without any itself, while its change-feed lease runs.
   */
  xattrs?: boolean;
  /**
   * Asked with `blocks=true` (a page of `GET /api/v1/list`): a regular file of at most
   * LOOKUP_BLOCKS_MAX blocks comes with its blocks, as a lookup's (LookupResponse).
   */
  fileBlocks?: Omit<FileBlocksResponse, 'attrs'>;
}

/** ACLs travel as these xattrs. Strata keeps mode bits only: setting one is ENOTSUP (master and mount). */
export const POSIX_ACL_XATTRS: ReadonlySet<string> = new Set(['system.posix_acl_access', 'system.posix_acl_default']);

/** The most entries one page of `GET /api/v1/list?limit=` holds. */
export const LIST_PAGE_MAX = 1000;

export interface ListResponse {
  entries: DirEntry[];
  /**
   * The change feed's seq read right before the entries were: they show every change up
   * to it (absent from masters before 2026-12-06).
   */
  seq?: number;
  /**
   * How much longer (ms) the master answers listings of this directory without asking its
   * store again (what is left of its sync interval; -1: it never will, 0: it asks every
   * time). A copy kept longer could hide objects put straight into the store for more than
   * the interval. Absent from masters before 2026-12-06.
   */
  freshForMs?: number;
  /** Asked with `limit`: the name to pass as `after` for the next page; absent at the end. */
  next?: string;
}

/** One block of a file and the workers that cache it. */
export interface BlockInfo {
  id: number;
  index: number;
  /** Offset of the block's first byte within the file. */
  offset: number;
  length: number;
  /** Worker ids holding this block (some or all of its pages). */
  locations: number[];
  /** Where the block's bytes are cached: worker, tier and how many of its bytes. */
  cached?: BlockCacheLocation[];
}

export interface BlockCacheLocation {
  workerId: number;
  /** Tier name (MEM, SSD, HDD …) holding most of the block's cached pages. */
  tier: string;
  /** Bytes of the block cached on that worker. */
  bytes: number;
}

/** Alluxio's read types: cache on read (default), also move to the top tier, or read without caching. */
export type ReadType = 'CACHE' | 'CACHE_PROMOTE' | 'NO_CACHE';
export const READ_TYPES: readonly ReadType[] = ['CACHE', 'CACHE_PROMOTE', 'NO_CACHE'];

/** One storage tier of a worker, top (fastest) first. */
export interface TierInfo {
  name: string;
  dir: string;
  capacityBytes: number;
  usedBytes: number;
  /** The worker's last check of the tier's disk (see worker/tier-check.ts); absent = ok. */
  state?: TierState;
}

/** ok; failing: a small write to its disk fails; stalled: one has not returned (clients avoid the worker). */
export type TierState = 'ok' | 'failing' | 'stalled';
export const TIER_STATES: readonly TierState[] = ['ok', 'failing', 'stalled'];

/** One block in a worker's block report. */
export interface BlockReport {
  id: number;
  tier: string;
  bytes: number;
}

export interface FileBlocksResponse {
  attrs: FileAttributes;
  blocks: BlockInfo[];
  /** Pinned by the user (`strata fs pin`): its blocks are never evicted. */
  pinned?: boolean;
  /** Time to live set by `strata fs setTtl`, if any. */
  ttl?: { expiresAtMs: number; action: TtlAction } | null;
}

/**
 * A lookup's answer. Asked with `blocks=true`, a regular file of at most
 * LOOKUP_BLOCKS_MAX blocks comes with its blocks as /blocks answers them: the
 * kernel opens most files it looks up, and then the open needs no request.
 */
export interface LookupResponse extends FileAttributes {
  fileBlocks?: Omit<FileBlocksResponse, 'attrs'>;
}
export const LOOKUP_BLOCKS_MAX = 16;

/** A live worker as the master knows it. */
/** Per worker tier: where a same-host client links a staged file it wants written (a request names only the file). */
export const INCOMING_DIR = '.incoming';

export interface WorkerInfo {
  id: number;
  address: string;
  /** Machine identity of the worker's host (see common/host.ts). */
  host: string;
  /** Tiers, top first; their dirs allow short-circuit reads of page files on the same host. */
  tiers: TierInfo[];
  /** Page size of the worker's cache: the unit of caching inside a block. */
  pageSize: number;
  /** Totals over the tiers. */
  capacityBytes: number;
  usedBytes: number;
  lastHeartbeatMs: number;
  live: boolean;
}

export interface WriteBeginResponse {
  ino: number;
  /** The write type of the file's mount, unless the client asks for another. */
  writeType: WriteType;
  /** Block ids of this write are `containerId * BLOCKS_PER_CONTAINER + index`. */
  containerId: number;
  blockSize: number;
}

/** Block ids are grouped in containers, one container per file version, as in Alluxio. */
export const BLOCKS_PER_CONTAINER = 2 ** 20;

/** The largest container id whose block ids are all exact (safe) integers. */
export const MAX_CONTAINER_ID = Math.floor(Number.MAX_SAFE_INTEGER / BLOCKS_PER_CONTAINER) - 1;

export function blockIdOf(containerId: number, index: number): number {
  return containerId * BLOCKS_PER_CONTAINER + index;
}

export interface CommittedBlock {
  id: number;
  length: number;
  /** The writing worker keeps none of it (a write-through's whole block of hole): no location is recorded. */
  uncached?: boolean;
}

export interface WriteCommitRequest {
  ino: number;
  containerId: number;
  size: number;
  blocks: CommittedBlock[];
  workerId: number;
  /** Fingerprint of the under-store object after the write-through, if persisted. */
  ufsFingerprint: string | null;
  mtime?: Timespec;
  /** False when the worker did not cache the blocks (THROUGH): no locations are recorded. */
  cached?: boolean;
  /** ASYNC_THROUGH commits queue the file for persisting. */
  writeType?: WriteType;
  /** With a fingerprint: where the worker wrote the object (WriteFileResponse.ufsAt). */
  ufsAt?: UfsPlace;
}

/** Where a file's bytes live in its under-store; only workers ask for this. */
export interface UfsLocation {
  mountUri: string;
  /** Driver options of the mount (endpoint, credentials…): for workers only, never shown. */
  options: Record<string, string>;
  /** Path relative to the mount's root, '/'-separated, already validated by the master. */
  path: string;
  /**
   * For a write or persist: the master listed the file's directory within its sync interval
   * and holds no directory at `path`, a knowledge good for this many more ms. Until then the
   * writer need not look for a directory there in the store (UfsCallOptions.noDirectoryUntil).
   */
  noDirectoryForMs?: number;
}

/** What a worker needs to fill one block from the under-store. */
export interface BlockSource {
  blockId: number;
  ino: number;
  offset: number;
  length: number;
  ufs: UfsLocation;
  /**
   * The version of the file in its store that this block is part of (UfsStatus.fingerprint): a
   * fill reads only from it (STORE_CHANGED otherwise). Absent when the master knows none.
   */
  fingerprint?: string;
}

export interface SetAttrRequest {
  path?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  atime?: Timespec | 'now';
  mtime?: Timespec | 'now';
}

export interface RegisterWorkerRequest {
  /** Persistent identity of the worker, kept in its home directory. */
  uuid: string;
  address: string;
  host: string;
  tiers: TierInfo[];
  pageSize: number;
  capacityBytes: number;
  usedBytes: number;
  /** Full block report. */
  blocks: BlockReport[];
  /**
   * What writes of the worker's previous run, cut off by a crash, left in their
   * under-stores (see UfsWriter.leftover): the master discards them.
   */
  leftovers?: UfsLeftover[];
}

/** One unfinished write's remains: the mount's store URI and the driver's handle. */
export interface UfsLeftover {
  mountUri: string;
  handle: string;
}

/** Limits on a register's leftovers; a worker keeps back what does not fit. */
export const LEFTOVERS_MAX = 10_000;
export const LEFTOVER_HANDLE_MAX = 16_384;
export const LEFTOVER_URI_MAX = 4096;

export interface RegisterWorkerResponse {
  workerId: number;
  /**
   * Indices into the request's `leftovers` the master is done with: discarded, or
   * beyond help (their mount is gone). The worker sends the others again later.
   */
  leftoversDone?: number[];
  /**
   * The stores the mount table names (each once), so the worker makes their drivers
   * before a first read needs one: loading the S3 SDK costs a fresh worker about
   * 0.2-0.4 s of CPU, which otherwise lands on the first cold read after a start.
   */
  underStores?: UnderStoreRef[];
}

/** A mounted store as a worker's driver sees it: no path. */
export interface UnderStoreRef {
  mountUri: string;
  /** Driver options of the mount (endpoint, credentials…): for workers only, never shown. */
  options: Record<string, string>;
}

export interface HeartbeatRequest {
  workerId: number;
  usedBytes: number;
  capacityBytes: number;
  tiers: TierInfo[];
  /** Blocks new here, or whose tier or cached bytes changed. */
  addedBlocks: BlockReport[];
  removedBlocks: number[];
  /** Containers this worker is writing right now (uploads in flight): keeps their blocks from being taken for orphans. */
  openWrites?: number[];
  /** Version of the pinned-block set the worker has; the master sends the set when it changed. */
  pinVersion: number;
  /**
   * Some of the blocks this worker keeps because their bytes may exist nowhere else
   * (at most PINNED_REPORT_MAX a beat, taking turns): the master answers those it
   * may let go (`unpin`). The worker never decides that alone: a persist or a
   * write-through that looked done may still be undone by a rename.
   */
  pinned?: number[];
}

/** Most block ids in a heartbeat's `pinned`: a worker with more sends them over several beats. */
export const PINNED_REPORT_MAX = 4096;

/**
 * A directory a namespace change just changed (its mtime, nlink), as it is right
 * after: answers to create, mkdir, unlink, rename… carry them (`dirs`), so a mount
 * has the directory's new attributes before the kernel asks for them (it asks at
 * once: a change in a directory drops the kernel's copy of its attributes).
 * `seq`: the change-feed seq read before the attributes; they reflect every change up to it.
 */
export interface DirAfterChange {
  attrs: FileAttributes;
  seq: number;
}

/** The `dirs` part of the answer to a change by inode (absent for path-based requests). */
export interface DirsAfterChange {
  dirs?: DirAfterChange[];
}

/** `GET /changes`: inodes changed after `since` (see master/change-feed.ts). */
export interface ChangesResponse {
  /** Changes on this master since it started; another epoch means start over. */
  epoch: string;
  /** The last change included (the next `since`). */
  seq: number;
  /** The client's cache may hold anything: drop it all and continue from `seq`. */
  reset: boolean;
  /** Inodes whose attributes or blocks changed. */
  inos: number[];
  /** The seq of each inode's last change in this answer (same order as `inos`). */
  seqs: number[];
  /** Names added, removed or renamed: [directory inode, name, seq of the last change]. */
  names: [number, string, number][];
  /** Files whose cached copies (block locations) changed: [inode, seq]. */
  located: [number, number][];
  /**
   * Of `inos`, those whose changes in this answer altered nothing stat shows, nor the
   * file's bytes: its persist state, store fingerprint, sync time, pin or TTL. A client
   * drops what it cached of them (`fs stat` shows the persist state), but a kernel's
   * copy of their attributes and pages stays current. Absent from older masters.
   */
  quiet?: number[];
  /** The feed lease granted to a subscriber's poll (ms, from when it sent the poll); see master/feed-leases.ts. */
  leaseMs?: number;
  /**
   * How long the master held this poll before answering (ms). The rest of the round
   * trip is the network's (and any proxy's), which a mount leaves room for when it
   * picks how long its next poll may be held. Absent from older masters.
   */
  heldMs?: number;
  /**
   * This master reports a directory whose names may change without a name changing
   * by its empty name (Metastore.markSynced at 0). Clients know directories whole only
   * from masters that say so (an older one would leave them unaware).
   */
  listingMarks?: boolean;
  /**
   * How long a client may keep what it cached (ms; -1 = no limit, 0 = do not
   * cache): the shortest under-store sync interval, so changes made directly in a
   * store are seen as late as without a cache, and no later.
   */
  ttlMs?: number;
}

/** Response header of every master answer: `<epoch>:<seq at request start>:<seq at response>`. */
export const CHANGES_HEADER = 'strata-changes';
/** Sent by a mount that holds change-feed leases (master/feed-leases.ts) with its changes, so the master does not wait for its own acknowledgement. */
export const SUBSCRIBER_HEADER = 'strata-subscriber';
/** On a NOT_LEADER reply: the leader's URL, when one is known. */
export const LEADER_HEADER = 'strata-leader';
/** On every answer of a master elected by lease: its term, so workers see a new leader (and register again). */
export const LEADER_TERM_HEADER = 'strata-leader-term';

/** `GET /api/v1/leader`: who leads, as this master knows it. */
export interface LeaderResponse {
  /** The leader's URL, or null while none holds the lease. */
  leader: string | null;
  /** The leader's term (0 when there is no leader election: the master always leads). */
  term: number;
  /** This master's own advertised URL. */
  self: string;
  role: 'leader' | 'standby';
}

export interface HeartbeatResponse {
  /** Blocks the worker should drop: no file refers to them any more. */
  deleteBlocks: number[];
  /** True when the master does not know this worker (e.g. it was marked lost): register again. */
  reregister: boolean;
  /** Set when the user-pinned blocks changed since `pinVersion`: every block that must not be evicted. */
  pins?: { version: number; blocks: number[] };
  /**
   * Of the request's `pinned`, the blocks the worker may evict again: neither the
   * current version of a file not persisted yet nor a write in flight.
   */
  unpin?: number[];
}

/** A worker's answer to `POST /blocks/:id/load`: the block is cached whole. */
export interface LoadBlockResponse {
  blockId: number;
  length: number;
  /** Bytes read from the under-store for it (0 when it was cached already). */
  ufsBytes: number;
  /**
   * The page files now holding the loaded range (or block), as the worker verified
   * or wrote them, so a same-host reader can trust exactly those file versions.
   */
  pages?: PageFileInfo[];
}

export interface PageFileInfo {
  index: number;
  tier: string;
  ino: number;
  /** ctime in ns, as a decimal string (beyond 2^53). */
  ctimeNs: string;
  size: number;
}

/** `GET /du`: a subtree's size and how much of it is cached. */
export interface DuResponse {
  files: number;
  directories: number;
  size: number;
  cachedBytes: number;
}

/** `POST /free`: cached copies dropped (persisted files only). */
export interface FreeResponse {
  files: number;
  bytes: number;
  /** Files skipped because their bytes are not in the under-store yet. */
  skippedNotPersisted: number;
}

export type TtlAction = 'free' | 'delete';

export interface WriteFileResponse {
  size: number;
  blocks: CommittedBlock[];
  ufsFingerprint: string | null;
  /** Whether the worker kept the blocks (false for THROUGH). */
  cached: boolean;
  /** With a fingerprint: where the object was written (the commit checks the file is still there). */
  ufsAt?: UfsPlace;
}

/** An object's place: the mount's store and the path in it. */
export interface UfsPlace {
  mountUri: string;
  path: string;
}

/** A worker's answer to a persist request. */
export interface PersistResponse {
  ufsFingerprint: string;
  /**
   * Where the bytes went: the master checks it still names this file before it counts
   * the persist (a file renamed or unlinked during its upload), else removes the object.
   */
  mountUri: string;
  path: string;
}

export interface ErrorBody {
  code: string;
  message: string;
}
