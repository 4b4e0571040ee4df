/*
 * Strata's FUSE binding: an N-API addon over libfuse3's low-level (inode-based) API.
 *
 * Threading: one libfuse thread reads requests from /dev/fuse. Each request is
 * copied into a `op_t` (names and write data included, because the loop reuses its
 * receive buffer) and queued to the JS thread with a non-blocking thread-safe
 * function; the libfuse thread goes straight back to reading. JS answers later,
 * from its own thread, through the reply_* functions below; libfuse's low-level
 * API allows a reply from any thread at any time. So no libfuse thread ever waits
 * on the JS event loop.
 *
 * A request handle crosses into JS as a BigInt holding the fuse_req_t pointer. The
 * TypeScript face (index.ts) guarantees exactly one reply per request.
 */

#define FUSE_USE_VERSION 35
#define _GNU_SOURCE
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <stdatomic.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <time.h>

#define NAPI_CALL(env, call)                                              \
  do {                                                                    \
    napi_status status_ = (call);                                         \
    if (status_ != napi_ok) {                                             \
      const napi_extended_error_info *info_ = NULL;                       \
      napi_get_last_error_info((env), &info_);                            \
      napi_throw_error((env), NULL, info_ && info_->error_message ? info_->error_message : #call); \
      return NULL;                                                        \
    }                                                                     \
  } while (0)

/* Op codes shared with index.ts (keep in sync). */
enum {
  OP_INIT = 0, OP_DESTROY, OP_LOOKUP, OP_FORGET, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD,
  OP_MKDIR, OP_UNLINK, OP_RMDIR, OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE,
  OP_FLUSH, OP_RELEASE, OP_FSYNC, OP_OPENDIR, OP_READDIR, OP_RELEASEDIR, OP_FSYNCDIR, OP_STATFS,
  OP_SETXATTR, OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR, OP_ACCESS, OP_CREATE, OP_GETLK, OP_SETLK,
  OP_FLOCK, OP_FALLOCATE, OP_READDIRPLUS, OP_COPY_FILE_RANGE, OP_LSEEK, OP_FORGET_MULTI,
  OP_COUNT
};

#define MAX_SAFE 9007199254740991.0

/*
 * The kernel asks for security.capability before every write to a FUSE file (it
 * would have to drop a capability the write invalidates), so a plain `write` costs
 * two round trips, and the first one needs no JS: JS names the inodes it found
 * without one, for a while, and the libfuse thread answers ENODATA for those itself.
 * JS may also name inodes known without any attribute (`ls -l` asks for two per
 * entry): for those every name is answered ENODATA here, but only while the mount's
 * change-feed lease runs (xattrsAbsentLease): past it, a change made elsewhere may
 * have been answered without this mount hearing of it.
 * Direct-mapped by inode: a collision only sends that getxattr to JS again.
 */
#define NOCAP_SLOTS 16384
#define CAPABILITY_XATTR "security.capability"

/*
 * Reads answered by the libfuse thread itself. JS names, per open handle, extents of
 * the file whose bytes are in a file it holds open (a page file in a memory tier:
 * immutable, and reading it cannot fail midway); a later read of that handle wholly
 * inside such extents is spliced from them here, without waking JS. A random reader
 * otherwise pays the hop to the JS thread for every 4 KiB. The table is direct-mapped
 * by (handle, 1 MiB unit, a page of the worker's default size): a collision only sends
 * that read to JS. JS closes a descriptor only after dropping its extents, and a reply
 * here runs under the lock, so no reply reads a descriptor JS has let go. Small reads
 * are read here in full before the reply (a failed or short one goes to JS instead);
 * larger ones are spliced.
 */
#define RX_UNIT_SHIFT 20
#define RX_SLOTS 32768
#define RX_MAX_PARTS 4
#define RX_COPY_MAX (128 * 1024)

typedef struct session {
  struct fuse_session *se;
  pthread_t thread;
  int thread_started;
  napi_threadsafe_function tsfn;
  atomic_long outstanding;
  atomic_int unmounted;
  /* No new invalidations (the unmount waits for those running: see js_stop_invalidations). */
  atomic_int invalidations_stopped;
  atomic_long invalidations_running;
  atomic_int destroy_when_idle;
  /* Who still holds this struct: the JS handle (until unmount or its finalizer) and the FUSE session (until destroyed). */
  atomic_int refs;
  int loop_result;
  uint8_t implemented[OP_COUNT];
  /* conn options applied in init */
  unsigned max_write;
  unsigned max_readahead;
  unsigned max_read;
  int writeback_cache;
  int splice_write;
  int want_locks;
  int want_flock;
  /* Inodes known to have no security.capability (cap_until) or no attribute at all (all_until), until monotonic times (see xattr_absent). */
  pthread_mutex_t nocap_lock;
  struct { uint64_t ino; int64_t cap_until_ms, all_until_ms; } nocap[NOCAP_SLOTS];
  /* What is known of inodes without any attribute holds until then (the feed lease). */
  int64_t nocap_lease_until_ms;
  /* Extents of open handles served here (see RX_UNIT_SHIFT); len 0 = a free slot. */
  pthread_mutex_t rx_lock;
  struct { uint64_t fh, ino, off, fd_off; uint32_t len; int fd; } rx[RX_SLOTS];
  /* The libfuse thread's bufvec and copy buffer for those replies (only that thread uses them). */
  struct fuse_bufvec *rx_bv;
  char *rx_copy;
  atomic_ulong rx_hits;
} session_t;

typedef struct op {
  int op;
  fuse_req_t req;
  session_t *s;
  uid_t uid;
  gid_t gid;
  pid_t pid;
  mode_t umask;
  uint64_t ino, ino2;
  char *name, *name2;
  char *data;
  size_t size;
  double off, off2, len;
  int flags;
  int mode_i;
  uint64_t fh, fh2;
  int has_fh;
  struct stat attr;
  int to_set;
  struct flock lock;
  int sleep;
  /* forget_multi */
  struct fuse_forget_data *forgets;
  size_t nforgets;
} op_t;

static void op_free(op_t *o) {
  free(o->name);
  free(o->name2);
  if (o->data) free(o->data);
  free(o->forgets);
  free(o);
}

static void maybe_destroy(session_t *s);

/* Sessions allocated and not freed yet (sessionsAlive(): an unmounted one must go). */
static atomic_long g_sessions_alive;

/* Frees a session nobody holds: its tables (about 2 MB) went unfreed after every unmount before. */
static void session_free(session_t *s) {
  pthread_mutex_destroy(&s->nocap_lock);
  pthread_mutex_destroy(&s->rx_lock);
  free(s->rx_bv);
  free(s->rx_copy);
  munmap(s, sizeof(session_t));
  atomic_fetch_sub(&g_sessions_alive, 1);
}

static void session_unref(session_t *s) {
  if (atomic_fetch_sub(&s->refs, 1) == 1) session_free(s);
}

/*
 * What JS holds: the session until the unmount lets it go (set and read on the JS thread
 * only), so a call with the handle afterwards finds NULL and does nothing.
 */
typedef struct session_handle {
  session_t *s;
} session_handle_t;

/*
 * Test hook (STRATA_FUSE_TEST_INVAL_DELAY_MS, read once at load): an invalidation thread waits
 * this long between counting itself out and looking at the session, the window in which an
 * unmount on the JS thread may let the session go. Zero (always, outside that test) costs nothing.
 */
static int g_test_inval_delay_ms;

/* Called when a reply was sent: one less outstanding request. `delay_ms`: see g_test_inval_delay_ms. */
static void req_done_after(session_t *s, int delay_ms) {
  long left = atomic_fetch_sub(&s->outstanding, 1) - 1;
  if (delay_ms > 0) usleep((useconds_t)delay_ms * 1000);
  if (left == 0 && atomic_load(&s->destroy_when_idle)) maybe_destroy(s);
}

static void req_done(session_t *s) { req_done_after(s, 0); }

static op_t *op_new(fuse_req_t req, int code) {
  op_t *o = calloc(1, sizeof(op_t));
  if (!o) return NULL;
  o->op = code;
  o->req = req;
  o->s = (session_t *)fuse_req_userdata(req);
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  o->uid = ctx->uid;
  o->gid = ctx->gid;
  o->pid = ctx->pid;
  o->umask = ctx->umask;
  return o;
}

/* Queue to JS; if that fails (shutting down), answer EIO here so no request hangs. */
static void dispatch(op_t *o) {
  session_t *s = o->s;
  atomic_fetch_add(&s->outstanding, 1);
  if (atomic_load(&s->unmounted) || napi_call_threadsafe_function(s->tsfn, o, napi_tsfn_nonblocking) != napi_ok) {
    if (o->op == OP_FORGET || o->op == OP_FORGET_MULTI) fuse_reply_none(o->req);
    else fuse_reply_err(o->req, EIO);
    req_done(s);
    op_free(o);
  }
}

static char *dupn(const char *p) { return p ? strdup(p) : NULL; }

#define NEW_OR_ENOMEM(code)                 \
  op_t *o = op_new(req, code);              \
  if (!o) { fuse_reply_err(req, ENOMEM); return; }

static void fi_copy(op_t *o, struct fuse_file_info *fi) {
  if (fi) {
    o->fh = fi->fh;
    o->has_fh = 1;
    o->flags = fi->flags;
  }
}

/* ---- libfuse callbacks (libfuse thread) ----------------------------------- */

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  session_t *s = userdata;
  if (s->max_write) conn->max_write = s->max_write;
  if (s->max_readahead) conn->max_readahead = s->max_readahead;
  if (s->max_read) conn->max_read = s->max_read;
  if (s->writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  else conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  if (!s->want_locks) conn->want &= ~FUSE_CAP_POSIX_LOCKS;
  if (!s->want_flock) conn->want &= ~FUSE_CAP_FLOCK_LOCKS;
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  /* Requests are read into memory (no SPLICE_READ: every handler wants its bytes). Replies
   * made of file ranges (replyData) are spliced; never moved, since their pages belong
   * to files that stay in use. */
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  if (s->splice_write && (conn->capable & FUSE_CAP_SPLICE_WRITE)) conn->want |= FUSE_CAP_SPLICE_WRITE;
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW_OR_ENOMEM(OP_LOOKUP);
  o->ino = parent;
  o->name = dupn(name);
  dispatch(o);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  session_t *s = fuse_req_userdata(req);
  if (!s->implemented[OP_FORGET]) { fuse_reply_none(req); return; }
  op_t *o = op_new(req, OP_FORGET);
  if (!o) { fuse_reply_none(req); return; }
  o->ino = ino;
  o->off = (double)nlookup;
  dispatch(o);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  session_t *s = fuse_req_userdata(req);
  if (!s->implemented[OP_FORGET]) { fuse_reply_none(req); return; }
  op_t *o = op_new(req, OP_FORGET_MULTI);
  if (!o) { fuse_reply_none(req); return; }
  o->forgets = malloc(sizeof(*forgets) * (count ? count : 1));
  if (!o->forgets) { fuse_reply_none(req); free(o); return; }
  memcpy(o->forgets, forgets, sizeof(*forgets) * count);
  o->nforgets = count;
  dispatch(o);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW_OR_ENOMEM(OP_GETATTR);
  o->ino = ino;
  fi_copy(o, fi);
  dispatch(o);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  if ((to_set & FUSE_SET_ATTR_SIZE) && (double)attr->st_size > MAX_SAFE) { fuse_reply_err(req, EFBIG); return; }
  NEW_OR_ENOMEM(OP_SETATTR);
  o->ino = ino;
  o->attr = *attr;
  o->to_set = to_set;
  fi_copy(o, fi);
  dispatch(o);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  NEW_OR_ENOMEM(OP_READLINK);
  o->ino = ino;
  dispatch(o);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  NEW_OR_ENOMEM(OP_MKNOD);
  o->ino = parent;
  o->name = dupn(name);
  o->mode_i = mode;
  o->off = (double)rdev;
  dispatch(o);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  NEW_OR_ENOMEM(OP_MKDIR);
  o->ino = parent;
  o->name = dupn(name);
  o->mode_i = mode;
  dispatch(o);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW_OR_ENOMEM(OP_UNLINK);
  o->ino = parent;
  o->name = dupn(name);
  dispatch(o);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW_OR_ENOMEM(OP_RMDIR);
  o->ino = parent;
  o->name = dupn(name);
  dispatch(o);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  NEW_OR_ENOMEM(OP_SYMLINK);
  o->ino = parent;
  o->name = dupn(name);
  o->name2 = dupn(link);
  dispatch(o);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  NEW_OR_ENOMEM(OP_RENAME);
  o->ino = parent;
  o->name = dupn(name);
  o->ino2 = newparent;
  o->name2 = dupn(newname);
  o->flags = (int)flags;
  dispatch(o);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  NEW_OR_ENOMEM(OP_LINK);
  o->ino = ino;
  o->ino2 = newparent;
  o->name = dupn(newname);
  dispatch(o);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW_OR_ENOMEM(OP_OPEN);
  o->ino = ino;
  o->flags = fi->flags;
  dispatch(o);
}

static size_t rx_slot(uint64_t fh, uint64_t unit) {
  uint64_t h = fh * 0x9E3779B97F4A7C15ull ^ unit * 0xC2B2AE3D27D4EB4Full;
  return (size_t)((h ^ (h >> 29)) % RX_SLOTS);
}

/* Answers [off, off+size) of handle `fh` from its extents, when they hold all of it. */
static int rx_serve(session_t *s, fuse_req_t req, uint64_t fh, size_t size, off_t off) {
  if (size == 0 || off < 0 || !s->rx_bv) return 0;
  uint64_t pos = (uint64_t)off, end = pos + size;
  struct fuse_bufvec *bv = s->rx_bv;
  size_t n = 0;
  pthread_mutex_lock(&s->rx_lock);
  while (pos < end && n < RX_MAX_PARTS) {
    size_t i = rx_slot(fh, pos >> RX_UNIT_SHIFT);
    if (s->rx[i].len == 0 || s->rx[i].fh != fh || pos < s->rx[i].off || pos >= s->rx[i].off + s->rx[i].len) break;
    uint64_t stop = s->rx[i].off + s->rx[i].len;
    uint64_t take = (stop < end ? stop : end) - pos;
    struct fuse_buf *b = &bv->buf[n++];
    memset(b, 0, sizeof(*b));
    b->size = (size_t)take;
    b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
    b->fd = s->rx[i].fd;
    b->pos = (off_t)(s->rx[i].fd_off + (pos - s->rx[i].off));
    pos += take;
  }
  if (pos < end) {
    pthread_mutex_unlock(&s->rx_lock);
    return 0;
  }
  if (size <= RX_COPY_MAX && s->rx_copy) {
    size_t got = 0;
    for (size_t k = 0; k < n; k++) {
      ssize_t r = pread(bv->buf[k].fd, s->rx_copy + got, bv->buf[k].size, bv->buf[k].pos);
      if (r != (ssize_t)bv->buf[k].size) {
        pthread_mutex_unlock(&s->rx_lock);
        return 0;
      }
      got += (size_t)r;
    }
    pthread_mutex_unlock(&s->rx_lock);
    fuse_reply_buf(req, s->rx_copy, got);
  } else {
    bv->count = n;
    bv->idx = 0;
    bv->off = 0;
    fuse_reply_data(req, bv, 0);
    pthread_mutex_unlock(&s->rx_lock);
  }
  atomic_fetch_add(&s->rx_hits, 1);
  return 1;
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  if ((double)off > MAX_SAFE) { fuse_reply_buf(req, NULL, 0); return; }
  if (rx_serve((session_t *)fuse_req_userdata(req), req, fi->fh, size, off)) return;
  NEW_OR_ENOMEM(OP_READ);
  o->ino = ino;
  o->size = size;
  o->off = (double)off;
  fi_copy(o, fi);
  dispatch(o);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  if ((double)off + (double)size > MAX_SAFE) { fuse_reply_err(req, EFBIG); return; }
  NEW_OR_ENOMEM(OP_WRITE);
  o->ino = ino;
  o->size = size;
  o->off = (double)off;
  fi_copy(o, fi);
  /* The loop reuses its receive buffer once we return: keep our own copy. */
  o->data = malloc(size ? size : 1);
  if (!o->data) { fuse_reply_err(req, ENOMEM); free(o); return; }
  memcpy(o->data, buf, size);
  dispatch(o);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW_OR_ENOMEM(OP_FLUSH);
  o->ino = ino;
  fi_copy(o, fi);
  o->off = (double)fi->lock_owner;
  dispatch(o);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW_OR_ENOMEM(OP_RELEASE);
  o->ino = ino;
  fi_copy(o, fi);
  /* The last close of a file that took a flock lock: release must drop that lock (FUSE_RELEASE_FLOCK_UNLOCK). */
  o->mode_i = fi->flock_release;
  o->off2 = (double)fi->lock_owner;
  dispatch(o);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  NEW_OR_ENOMEM(OP_FSYNC);
  o->ino = ino;
  o->mode_i = datasync;
  fi_copy(o, fi);
  dispatch(o);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW_OR_ENOMEM(OP_OPENDIR);
  o->ino = ino;
  o->flags = fi->flags;
  dispatch(o);
}

static void ll_readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi, int code) {
  NEW_OR_ENOMEM(code);
  o->ino = ino;
  o->size = size;
  o->off = (double)off;
  fi_copy(o, fi);
  dispatch(o);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_readdir_common(req, ino, size, off, fi, OP_READDIR);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_readdir_common(req, ino, size, off, fi, OP_READDIRPLUS);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW_OR_ENOMEM(OP_RELEASEDIR);
  o->ino = ino;
  fi_copy(o, fi);
  dispatch(o);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  NEW_OR_ENOMEM(OP_FSYNCDIR);
  o->ino = ino;
  o->mode_i = datasync;
  fi_copy(o, fi);
  dispatch(o);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  NEW_OR_ENOMEM(OP_STATFS);
  o->ino = ino;
  dispatch(o);
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  NEW_OR_ENOMEM(OP_SETXATTR);
  o->ino = ino;
  o->name = dupn(name);
  o->data = malloc(size ? size : 1);
  if (!o->data) { fuse_reply_err(req, ENOMEM); op_free(o); return; }
  memcpy(o->data, value, size);
  o->size = size;
  o->flags = flags;
  dispatch(o);
}

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int xattr_absent(session_t *s, uint64_t ino, const char *name) {
  pthread_mutex_lock(&s->nocap_lock);
  size_t i = (size_t)(ino % NOCAP_SLOTS);
  int64_t now = monotonic_ms();
  int absent = s->nocap[i].ino == ino &&
               ((s->nocap[i].cap_until_ms > now && strcmp(name, CAPABILITY_XATTR) == 0) ||
                (s->nocap[i].all_until_ms > now && s->nocap_lease_until_ms > now));
  pthread_mutex_unlock(&s->nocap_lock);
  return absent;
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  session_t *s = (session_t *)fuse_req_userdata(req);
  if (xattr_absent(s, ino, name)) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  NEW_OR_ENOMEM(OP_GETXATTR);
  o->ino = ino;
  o->name = dupn(name);
  o->size = size;
  dispatch(o);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  NEW_OR_ENOMEM(OP_LISTXATTR);
  o->ino = ino;
  o->size = size;
  dispatch(o);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  NEW_OR_ENOMEM(OP_REMOVEXATTR);
  o->ino = ino;
  o->name = dupn(name);
  dispatch(o);
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  NEW_OR_ENOMEM(OP_ACCESS);
  o->ino = ino;
  o->mode_i = mask;
  dispatch(o);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  NEW_OR_ENOMEM(OP_CREATE);
  o->ino = parent;
  o->name = dupn(name);
  o->mode_i = mode;
  o->flags = fi->flags;
  dispatch(o);
}

static void ll_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock) {
  NEW_OR_ENOMEM(OP_GETLK);
  o->ino = ino;
  fi_copy(o, fi);
  o->off2 = (double)fi->lock_owner;
  o->lock = *lock;
  dispatch(o);
}

static void ll_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock, int sleep) {
  NEW_OR_ENOMEM(OP_SETLK);
  o->ino = ino;
  fi_copy(o, fi);
  o->off2 = (double)fi->lock_owner;
  o->lock = *lock;
  o->sleep = sleep;
  dispatch(o);
}

static void ll_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op) {
  NEW_OR_ENOMEM(OP_FLOCK);
  o->ino = ino;
  fi_copy(o, fi);
  o->off2 = (double)fi->lock_owner;
  o->mode_i = op;
  dispatch(o);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
  if ((double)offset + (double)length > MAX_SAFE) { fuse_reply_err(req, EFBIG); return; }
  NEW_OR_ENOMEM(OP_FALLOCATE);
  o->ino = ino;
  o->mode_i = mode;
  o->off = (double)offset;
  o->len = (double)length;
  fi_copy(o, fi);
  dispatch(o);
}

static void ll_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in, fuse_ino_t ino_out,
                               off_t off_out, struct fuse_file_info *fi_out, size_t len, int flags) {
  NEW_OR_ENOMEM(OP_COPY_FILE_RANGE);
  o->ino = ino_in;
  o->off = (double)off_in;
  o->fh = fi_in->fh;
  o->ino2 = ino_out;
  o->off2 = (double)off_out;
  o->fh2 = fi_out->fh;
  o->len = (double)len;
  o->flags = flags;
  dispatch(o);
}

static void ll_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi) {
  NEW_OR_ENOMEM(OP_LSEEK);
  o->ino = ino;
  o->off = (double)off;
  o->mode_i = whence;
  fi_copy(o, fi);
  dispatch(o);
}

/* ---- JS side: turning an op_t into a call of the dispatcher ----------------- */

static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static napi_value str(napi_env env, const char *s) {
  napi_value r;
  if (!s) {
    napi_get_null(env, &r);
    return r;
  }
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &r);
  return r;
}

static void free_data(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static napi_value stat_array(napi_env env, const struct stat *st) {
  napi_value ab, arr;
  double *d;
  napi_create_arraybuffer(env, 15 * sizeof(double), (void **)&d, &ab);
  d[0] = (double)st->st_ino;
  d[1] = st->st_mode;
  d[2] = (double)st->st_nlink;
  d[3] = st->st_uid;
  d[4] = st->st_gid;
  d[5] = (double)st->st_rdev;
  d[6] = (double)st->st_size;
  d[7] = (double)st->st_blocks;
  d[8] = (double)st->st_blksize;
  d[9] = (double)st->st_atim.tv_sec;
  d[10] = (double)st->st_atim.tv_nsec;
  d[11] = (double)st->st_mtim.tv_sec;
  d[12] = (double)st->st_mtim.tv_nsec;
  d[13] = (double)st->st_ctim.tv_sec;
  d[14] = (double)st->st_ctim.tv_nsec;
  napi_create_typedarray(env, napi_float64_array, 15, ab, 0, &arr);
  return arr;
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void)context;
  op_t *o = data;
  if (!env) { /* finalizing: nothing can answer any more */
    if (o->op == OP_FORGET || o->op == OP_FORGET_MULTI) fuse_reply_none(o->req);
    else fuse_reply_err(o->req, EIO);
    req_done(o->s);
    op_free(o);
    return;
  }
  napi_value argv[12];
  size_t argc = 0;
  napi_value req;
  napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)o->req, &req);
  argv[argc++] = num(env, o->op);
  argv[argc++] = req;
  argv[argc++] = num(env, o->uid);
  argv[argc++] = num(env, o->gid);
  argv[argc++] = num(env, o->pid);
  argv[argc++] = num(env, (double)o->ino);
  switch (o->op) {
    case OP_LOOKUP:
    case OP_UNLINK:
    case OP_RMDIR:
    case OP_REMOVEXATTR:
      argv[argc++] = str(env, o->name);
      break;
    case OP_FORGET:
      argv[argc++] = num(env, o->off);
      break;
    case OP_FORGET_MULTI: {
      napi_value arr;
      napi_create_array_with_length(env, o->nforgets * 2, &arr);
      for (size_t i = 0; i < o->nforgets; i++) {
        napi_set_element(env, arr, (uint32_t)(2 * i), num(env, (double)o->forgets[i].ino));
        napi_set_element(env, arr, (uint32_t)(2 * i + 1), num(env, (double)o->forgets[i].nlookup));
      }
      argv[argc++] = arr;
      break;
    }
    case OP_GETATTR:
    case OP_RELEASEDIR:
      argv[argc++] = o->has_fh ? num(env, (double)o->fh) : str(env, NULL);
      argv[argc++] = num(env, o->flags);
      break;
    case OP_RELEASE:
      argv[argc++] = o->has_fh ? num(env, (double)o->fh) : str(env, NULL);
      argv[argc++] = num(env, o->flags);
      argv[argc++] = num(env, o->mode_i); /* flock_release */
      argv[argc++] = num(env, o->off2);   /* lock_owner */
      break;
    case OP_SETATTR:
      argv[argc++] = stat_array(env, &o->attr);
      argv[argc++] = num(env, o->to_set);
      argv[argc++] = o->has_fh ? num(env, (double)o->fh) : str(env, NULL);
      break;
    case OP_READLINK:
    case OP_STATFS:
      break;
    case OP_MKNOD:
      argv[argc++] = str(env, o->name);
      argv[argc++] = num(env, o->mode_i);
      argv[argc++] = num(env, o->off);
      argv[argc++] = num(env, o->umask);
      break;
    case OP_MKDIR:
      argv[argc++] = str(env, o->name);
      argv[argc++] = num(env, o->mode_i);
      argv[argc++] = num(env, o->umask);
      break;
    case OP_SYMLINK:
      argv[argc++] = str(env, o->name);
      argv[argc++] = str(env, o->name2);
      break;
    case OP_RENAME:
      argv[argc++] = str(env, o->name);
      argv[argc++] = num(env, (double)o->ino2);
      argv[argc++] = str(env, o->name2);
      argv[argc++] = num(env, o->flags);
      break;
    case OP_LINK:
      argv[argc++] = num(env, (double)o->ino2);
      argv[argc++] = str(env, o->name);
      break;
    case OP_OPEN:
    case OP_OPENDIR:
      argv[argc++] = num(env, o->flags);
      break;
    case OP_READ:
    case OP_READDIR:
    case OP_READDIRPLUS:
      argv[argc++] = num(env, (double)o->fh);
      argv[argc++] = num(env, (double)o->size);
      argv[argc++] = num(env, o->off);
      break;
    case OP_WRITE: {
      napi_value buf;
      /* Hand our copy of the write data to JS without another copy; freed by GC. */
      if (napi_create_external_buffer(env, o->size, o->data, free_data, NULL, &buf) == napi_ok) {
        o->data = NULL;
      } else {
        napi_create_buffer_copy(env, o->size, o->data, NULL, &buf);
      }
      argv[argc++] = num(env, (double)o->fh);
      argv[argc++] = buf;
      argv[argc++] = num(env, o->off);
      argv[argc++] = num(env, o->flags);
      break;
    }
    case OP_FLUSH:
      argv[argc++] = num(env, (double)o->fh);
      argv[argc++] = num(env, o->off);
      break;
    case OP_FSYNC:
    case OP_FSYNCDIR:
      argv[argc++] = num(env, (double)o->fh);
      argv[argc++] = num(env, o->mode_i);
      break;
    case OP_SETXATTR: {
      napi_value buf;
      napi_create_buffer_copy(env, o->size, o->data, NULL, &buf);
      argv[argc++] = str(env, o->name);
      argv[argc++] = buf;
      argv[argc++] = num(env, o->flags);
      break;
    }
    case OP_GETXATTR:
      argv[argc++] = str(env, o->name);
      argv[argc++] = num(env, (double)o->size);
      break;
    case OP_LISTXATTR:
      argv[argc++] = num(env, (double)o->size);
      break;
    case OP_ACCESS:
      argv[argc++] = num(env, o->mode_i);
      break;
    case OP_CREATE:
      argv[argc++] = str(env, o->name);
      argv[argc++] = num(env, o->mode_i);
      argv[argc++] = num(env, o->flags);
      argv[argc++] = num(env, o->umask);
      break;
    case OP_GETLK:
    case OP_SETLK: {
      napi_value lk;
      napi_create_object(env, &lk);
      napi_set_named_property(env, lk, "type", num(env, o->lock.l_type));
      napi_set_named_property(env, lk, "start", num(env, (double)o->lock.l_start));
      napi_set_named_property(env, lk, "len", num(env, (double)o->lock.l_len));
      napi_set_named_property(env, lk, "pid", num(env, o->lock.l_pid));
      argv[argc++] = num(env, (double)o->fh);
      argv[argc++] = num(env, o->off2);
      argv[argc++] = lk;
      argv[argc++] = num(env, o->sleep);
      break;
    }
    case OP_FLOCK:
      argv[argc++] = num(env, (double)o->fh);
      argv[argc++] = num(env, o->off2);
      argv[argc++] = num(env, o->mode_i);
      break;
    case OP_FALLOCATE:
      argv[argc++] = num(env, (double)o->fh);
      argv[argc++] = num(env, o->mode_i);
      argv[argc++] = num(env, o->off);
      argv[argc++] = num(env, o->len);
      break;
    case OP_COPY_FILE_RANGE:
      argv[argc++] = num(env, (double)o->fh);
      argv[argc++] = num(env, o->off);
      argv[argc++] = num(env, (double)o->ino2);
      argv[argc++] = num(env, (double)o->fh2);
      argv[argc++] = num(env, o->off2);
      argv[argc++] = num(env, o->len);
      break;
    case OP_LSEEK:
      argv[argc++] = num(env, (double)o->fh);
      argv[argc++] = num(env, o->off);
      argv[argc++] = num(env, o->mode_i);
      break;
    default:
      break;
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  napi_value result;
  napi_status st = napi_call_function(env, undefined, js_cb, argc, argv, &result);
  if (st != napi_ok) {
    /* The dispatcher threw synchronously: it has not replied. Clear the exception and answer EIO. */
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
    }
    if (o->op == OP_FORGET || o->op == OP_FORGET_MULTI) fuse_reply_none(o->req);
    else fuse_reply_err(o->req, EIO);
    req_done(o->s);
  }
  op_free(o);
}

/* ---- replies (JS thread) ----------------------------------------------------- */

static session_t *g_sessions_dummy;

static int get_req(napi_env env, napi_value v, fuse_req_t *req) {
  uint64_t p;
  bool lossless;
  if (napi_get_value_bigint_uint64(env, v, &p, &lossless) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "request handle must be a BigInt");
    return 0;
  }
  *req = (fuse_req_t)(uintptr_t)p;
  return 1;
}

static double get_num(napi_env env, napi_value v) {
  double d = 0;
  napi_get_value_double(env, v, &d);
  return d;
}

static int get_stat(napi_env env, napi_value v, struct stat *st) {
  napi_typedarray_type type;
  size_t len;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, &len, &data, &ab, &off) != napi_ok || type != napi_float64_array || len < 15) {
    napi_throw_type_error(env, NULL, "attributes must be a Float64Array(15)");
    return 0;
  }
  double *d = data;
  memset(st, 0, sizeof(*st));
  st->st_ino = (ino_t)d[0];
  st->st_mode = (mode_t)d[1];
  st->st_nlink = (nlink_t)d[2];
  st->st_uid = (uid_t)d[3];
  st->st_gid = (gid_t)d[4];
  st->st_rdev = (dev_t)d[5];
  st->st_size = (off_t)d[6];
  st->st_blocks = (blkcnt_t)d[7];
  st->st_blksize = (blksize_t)d[8];
  st->st_atim.tv_sec = (time_t)d[9];
  st->st_atim.tv_nsec = (long)d[10];
  st->st_mtim.tv_sec = (time_t)d[11];
  st->st_mtim.tv_nsec = (long)d[12];
  st->st_ctim.tv_sec = (time_t)d[13];
  st->st_ctim.tv_nsec = (long)d[14];
  return 1;
}

#define ARGS(n)                                                  \
  size_t argc = n;                                               \
  napi_value argv[n];                                            \
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)); \
  fuse_req_t req;                                                \
  if (!get_req(env, argv[0], &req)) return NULL;                 \
  session_t *s = (session_t *)fuse_req_userdata(req);

/* The arguments of a call on a mounted session: argv[0] is the session's handle. */
#define SESSION_ARGS(n)                                          \
  size_t argc = n;                                               \
  napi_value argv[n];                                            \
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL)); \
  session_handle_t *handle_;                                     \
  NAPI_CALL(env, napi_get_value_external(env, argv[0], (void **)&handle_)); \
  session_t *s = handle_->s;                                     \
  if (!s) return NULL

/* replyErr(req, errno): 0 for success of ops without data. */
static napi_value reply_err(napi_env env, napi_callback_info info) {
  ARGS(2);
  fuse_reply_err(req, (int)get_num(env, argv[1]));
  req_done(s);
  return NULL;
}

static napi_value reply_none(napi_env env, napi_callback_info info) {
  ARGS(1);
  fuse_reply_none(req);
  req_done(s);
  return NULL;
}

static int fill_entry(napi_env env, napi_value *argv, struct fuse_entry_param *e) {
  memset(e, 0, sizeof(*e));
  e->ino = (fuse_ino_t)get_num(env, argv[0]);
  e->generation = (uint64_t)get_num(env, argv[1]);
  if (!get_stat(env, argv[2], &e->attr)) return 0;
  e->attr_timeout = get_num(env, argv[3]);
  e->entry_timeout = get_num(env, argv[4]);
  return 1;
}

/* replyEntry(req, ino, generation, attr, attrTimeout, entryTimeout) */
static napi_value reply_entry(napi_env env, napi_callback_info info) {
  ARGS(6);
  struct fuse_entry_param e;
  if (!fill_entry(env, argv + 1, &e)) return NULL;
  fuse_reply_entry(req, &e);
  req_done(s);
  return NULL;
}

static void fill_open(napi_env env, napi_value fh, napi_value flags, struct fuse_file_info *fi) {
  memset(fi, 0, sizeof(*fi));
  fi->fh = (uint64_t)get_num(env, fh);
  int f = (int)get_num(env, flags);
  fi->direct_io = (f & 1) != 0;
  fi->keep_cache = (f & 2) != 0;
  fi->nonseekable = (f & 4) != 0;
  fi->cache_readdir = (f & 8) != 0;
}

/* replyCreate(req, ino, generation, attr, attrTimeout, entryTimeout, fh, openFlags) */
static napi_value reply_create(napi_env env, napi_callback_info info) {
  ARGS(8);
  struct fuse_entry_param e;
  if (!fill_entry(env, argv + 1, &e)) return NULL;
  struct fuse_file_info fi;
  fill_open(env, argv[6], argv[7], &fi);
  fuse_reply_create(req, &e, &fi);
  req_done(s);
  return NULL;
}

/* replyAttr(req, attr, timeout) */
static napi_value reply_attr(napi_env env, napi_callback_info info) {
  ARGS(3);
  struct stat st;
  if (!get_stat(env, argv[1], &st)) return NULL;
  fuse_reply_attr(req, &st, get_num(env, argv[2]));
  req_done(s);
  return NULL;
}

/* replyReadlink(req, target) */
static napi_value reply_readlink(napi_env env, napi_callback_info info) {
  ARGS(2);
  size_t len = 0;
  napi_get_value_string_utf8(env, argv[1], NULL, 0, &len);
  char *buf = malloc(len + 1);
  if (!buf) { fuse_reply_err(req, ENOMEM); req_done(s); return NULL; }
  napi_get_value_string_utf8(env, argv[1], buf, len + 1, &len);
  fuse_reply_readlink(req, buf);
  free(buf);
  req_done(s);
  return NULL;
}

/* replyOpen(req, fh, openFlags) */
static napi_value reply_open(napi_env env, napi_callback_info info) {
  ARGS(3);
  struct fuse_file_info fi;
  fill_open(env, argv[1], argv[2], &fi);
  fuse_reply_open(req, &fi);
  req_done(s);
  return NULL;
}

/* replyWrite(req, count) */
static napi_value reply_write(napi_env env, napi_callback_info info) {
  ARGS(2);
  fuse_reply_write(req, (size_t)get_num(env, argv[1]));
  req_done(s);
  return NULL;
}

/* replyBuf(req, buffer, length): the bytes are copied into the kernel by the reply itself. */
static napi_value reply_buf(napi_env env, napi_callback_info info) {
  ARGS(3);
  void *data = NULL;
  size_t len = 0;
  bool isbuf = false;
  napi_is_buffer(env, argv[1], &isbuf);
  if (isbuf) napi_get_buffer_info(env, argv[1], &data, &len);
  size_t n = (size_t)get_num(env, argv[2]);
  if (n > len) n = len;
  fuse_reply_buf(req, data, n);
  req_done(s);
  return NULL;
}

/*
 * replyData(req, parts, size): the reply to a read, made of memory buffers and
 * ranges of open files ([fd, pos, len]), up to `size` bytes. A file range is
 * spliced into the kernel when it allows (FUSE_CAP_SPLICE_WRITE): the bytes go
 * from the page cache to the reader without a copy through this process. When
 * splicing is not possible libfuse reads the ranges into memory itself. Either
 * way the request is answered; a range that is not there (a closed descriptor, a
 * file shorter than the range) answers an error.
 */
static napi_value reply_data(napi_env env, napi_callback_info info) {
  ARGS(3);
  uint32_t n = 0;
  if (napi_get_array_length(env, argv[1], &n) != napi_ok) {
    napi_throw_type_error(env, NULL, "parts must be an array");
    return NULL;
  }
  size_t limit = (size_t)get_num(env, argv[2]);
  struct fuse_bufvec *bv = calloc(1, sizeof(struct fuse_bufvec) + (n > 1 ? n - 1 : 0) * sizeof(struct fuse_buf));
  if (!bv) {
    fuse_reply_err(req, ENOMEM);
    req_done(s);
    return NULL;
  }
  size_t total = 0;
  for (uint32_t i = 0; i < n && total < limit; i++) {
    napi_value el;
    if (napi_get_element(env, argv[1], i, &el) != napi_ok) {
      /* Never a reply cut short: the kernel would take it for the end of the file. */
      free(bv);
      fuse_reply_err(req, EIO);
      req_done(s);
      return NULL;
    }
    struct fuse_buf *b = &bv->buf[bv->count];
    memset(b, 0, sizeof(*b)); /* the slot of a skipped empty part is reused */
    bool isbuf = false;
    napi_is_buffer(env, el, &isbuf);
    if (isbuf) {
      void *d = NULL;
      size_t l = 0;
      napi_get_buffer_info(env, el, &d, &l);
      b->mem = d;
      b->size = l;
    } else {
      napi_value v;
      double fd = -1, pos = 0, len = 0;
      if (napi_get_element(env, el, 0, &v) == napi_ok) fd = get_num(env, v);
      if (napi_get_element(env, el, 1, &v) == napi_ok) pos = get_num(env, v);
      if (napi_get_element(env, el, 2, &v) == napi_ok) len = get_num(env, v);
      if (fd < 0 || pos < 0 || len < 0) {
        free(bv);
        napi_throw_type_error(env, NULL, "a file range must be [fd, pos, len]");
        return NULL;
      }
      if (len == 0) continue;
      b->fd = (int)fd;
      b->pos = (off_t)pos;
      b->size = (size_t)len;
      b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
      /* libfuse sends what it could read of a range and no error: a reply cut short
       * would tell the kernel the file ends there. A range past its file's end answers
       * EIO instead (a read error within it remains a short reply: callers splice only
       * files in memory). */
      struct stat st;
      int bad = fstat(b->fd, &st) != 0 ? errno : (!S_ISREG(st.st_mode) || st.st_size < b->pos + (off_t)b->size) ? EIO : 0;
      if (bad) {
        free(bv);
        fuse_reply_err(req, bad);
        req_done(s);
        return NULL;
      }
    }
    if (b->size > limit - total) b->size = limit - total;
    total += b->size;
    if (b->size) bv->count++;
  }
  if (bv->count == 0) fuse_reply_buf(req, NULL, 0);
  else fuse_reply_data(req, bv, 0);
  free(bv);
  req_done(s);
  return NULL;
}

/* replyStatfs(req, Float64Array[bsize, frsize, blocks, bfree, bavail, files, ffree, favail, fsid, flag, namemax]) */
static napi_value reply_statfs(napi_env env, napi_callback_info info) {
  ARGS(2);
  napi_typedarray_type type;
  size_t len;
  void *data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, argv[1], &type, &len, &data, &ab, &off) != napi_ok || type != napi_float64_array || len < 11) {
    napi_throw_type_error(env, NULL, "statfs must be a Float64Array(11)");
    return NULL;
  }
  double *d = data;
  struct statvfs sv;
  memset(&sv, 0, sizeof(sv));
  sv.f_bsize = (unsigned long)d[0];
  sv.f_frsize = (unsigned long)d[1];
  sv.f_blocks = (fsblkcnt_t)d[2];
  sv.f_bfree = (fsblkcnt_t)d[3];
  sv.f_bavail = (fsblkcnt_t)d[4];
  sv.f_files = (fsfilcnt_t)d[5];
  sv.f_ffree = (fsfilcnt_t)d[6];
  sv.f_favail = (fsfilcnt_t)d[7];
  sv.f_fsid = (unsigned long)d[8];
  sv.f_flag = (unsigned long)d[9];
  sv.f_namemax = (unsigned long)d[10];
  fuse_reply_statfs(req, &sv);
  req_done(s);
  return NULL;
}

/* replyXattrSize(req, size): the answer to a size probe (size 0 in the request). */
static napi_value reply_xattr(napi_env env, napi_callback_info info) {
  ARGS(2);
  fuse_reply_xattr(req, (size_t)get_num(env, argv[1]));
  req_done(s);
  return NULL;
}

/* replyLock(req, type, start, len, pid) */
static napi_value reply_lock(napi_env env, napi_callback_info info) {
  ARGS(5);
  struct flock lk;
  memset(&lk, 0, sizeof(lk));
  lk.l_type = (short)get_num(env, argv[1]);
  lk.l_whence = SEEK_SET;
  lk.l_start = (off_t)get_num(env, argv[2]);
  lk.l_len = (off_t)get_num(env, argv[3]);
  lk.l_pid = (pid_t)get_num(env, argv[4]);
  fuse_reply_lock(req, &lk);
  req_done(s);
  return NULL;
}

/* replyLseek(req, off) */
static napi_value reply_lseek(napi_env env, napi_callback_info info) {
  ARGS(2);
  fuse_reply_lseek(req, (off_t)get_num(env, argv[1]));
  req_done(s);
  return NULL;
}

/*
 * replyDir(req, maxSize, plus, names[], inos[], modes[] or attrs[], offs[], entryTimeouts/attrTimeouts)
 * Packs as many entries as fit into maxSize; returns how many were packed.
 * For readdir: modes[i] is the st_mode; for readdirplus: attrs[i] is a Float64Array(15) and
 * the lookup count of each packed entry except "." and ".." grows by one (the caller counts it).
 */
static napi_value reply_dir(napi_env env, napi_callback_info info) {
  ARGS(8);
  size_t max = (size_t)get_num(env, argv[1]);
  bool plus = false;
  napi_get_value_bool(env, argv[2], &plus);
  uint32_t n = 0;
  napi_get_array_length(env, argv[3], &n);
  double timeout = get_num(env, argv[7]);
  char *buf = malloc(max ? max : 1);
  if (!buf) { fuse_reply_err(req, ENOMEM); req_done(s); return NULL; }
  size_t used = 0;
  uint32_t packed = 0;
  char name[1024];
  for (uint32_t i = 0; i < n; i++) {
    napi_value vname, vino, vattr, voff;
    napi_get_element(env, argv[3], i, &vname);
    napi_get_element(env, argv[4], i, &vino);
    napi_get_element(env, argv[5], i, &vattr);
    napi_get_element(env, argv[6], i, &voff);
    size_t nl = 0;
    napi_get_value_string_utf8(env, vname, name, sizeof(name), &nl);
    off_t nextoff = (off_t)get_num(env, voff);
    size_t need;
    if (plus) {
      struct fuse_entry_param e;
      memset(&e, 0, sizeof(e));
      if (!get_stat(env, vattr, &e.attr)) { free(buf); return NULL; }
      e.ino = (fuse_ino_t)get_num(env, vino);
      e.attr_timeout = timeout;
      e.entry_timeout = timeout;
      need = fuse_add_direntry_plus(req, buf + used, max - used, name, &e, nextoff);
    } else {
      struct stat st;
      memset(&st, 0, sizeof(st));
      st.st_ino = (ino_t)get_num(env, vino);
      st.st_mode = (mode_t)get_num(env, vattr);
      need = fuse_add_direntry(req, buf + used, max - used, name, &st, nextoff);
    }
    if (need > max - used) break;
    used += need;
    packed++;
  }
  fuse_reply_buf(req, buf, used);
  free(buf);
  req_done(s);
  napi_value r;
  napi_create_uint32(env, packed, &r);
  return r;
}

/* getGroups(req): the caller's supplementary groups (needs /proc). */
static napi_value get_groups(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  fuse_req_t req;
  if (!get_req(env, argv[0], &req)) return NULL;
  gid_t list[256];
  int n = fuse_req_getgroups(req, 256, list);
  napi_value arr;
  napi_create_array(env, &arr);
  for (int i = 0; i < n && i < 256; i++) napi_set_element(env, arr, (uint32_t)i, num(env, list[i]));
  return arr;
}

/* ---- mount / unmount -------------------------------------------------------------- */

static void *loop_main(void *arg) {
  session_t *s = arg;
  s->loop_result = fuse_session_loop(s->se);
  return NULL;
}

static void maybe_destroy(session_t *s) {
  /* Called when unmounted and no request is outstanding: nothing can touch the session now. */
  int expected = 1;
  if (!atomic_compare_exchange_strong(&s->destroy_when_idle, &expected, 2)) return;
  fuse_session_destroy(s->se);
  s->se = NULL;
  session_unref(s);
}

/* The JS handle was collected: its hold on the session (if the unmount did not let it go) goes with it. */
static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  session_handle_t *h = data;
  if (h->s) session_unref(h->s);
  free(h);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
}

/*
 * mount(mountpoint, args[], dispatcher, implemented: Uint8Array, conn: {maxWrite, maxReadahead, maxRead, writebackCache, spliceWrite, locks, flock})
 * returns an external handle.
 */
/*
 * Unmounts and stops the loop thread of a session marked unmounted; it is destroyed now, or by
 * the last reply to a request still outstanding.
 */
static void session_stop(session_t *s) {
  fuse_session_exit(s->se);
  /* Unmounting makes the loop's read() fail with ENODEV, so the thread ends. */
  fuse_session_unmount(s->se);
  if (s->thread_started) {
    pthread_kill(s->thread, SIGUSR2); /* nudge a read() that did not notice (harmless otherwise) */
    pthread_join(s->thread, NULL);
  }
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
  atomic_store(&s->destroy_when_idle, 1);
  if (atomic_load(&s->outstanding) == 0) maybe_destroy(s);
}

/* Our copy of the mount's arguments: libfuse parses its own copy (and frees that), never ours. */
static void free_argv(char **argv, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) free(argv[i]);
  free(argv);
}

static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char mnt[4096];
  size_t len;
  NAPI_CALL(env, napi_get_value_string_utf8(env, argv[0], mnt, sizeof(mnt), &len));

  uint32_t nargs = 0;
  NAPI_CALL(env, napi_get_array_length(env, argv[1], &nargs));
  /* Read before anything is allocated: a failing NAPI_CALL returns at once. */
  napi_typedarray_type type;
  size_t ilen;
  void *idata;
  napi_value iab;
  size_t ioff;
  NAPI_CALL(env, napi_get_typedarray_info(env, argv[3], &type, &ilen, &idata, &iab, &ioff));
  char **fargv = calloc(nargs + 2, sizeof(char *));
  fargv[0] = strdup("strata");
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value v;
    napi_get_element(env, argv[1], i, &v);
    size_t l = 0;
    napi_get_value_string_utf8(env, v, NULL, 0, &l);
    fargv[i + 1] = malloc(l + 1);
    napi_get_value_string_utf8(env, v, fargv[i + 1], l + 1, &l);
  }
  struct fuse_args args = FUSE_ARGS_INIT((int)nargs + 1, fargv);

  /* Mapped (zeroed) on its own, about 2 MB: unmapped when freed, so a late use of it faults at once. */
  session_t *s = mmap(NULL, sizeof(session_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (s == MAP_FAILED) s = NULL;
  session_handle_t *handle = calloc(1, sizeof(session_handle_t));
  if (!s || !handle) {
    if (s) munmap(s, sizeof(session_t));
    free(handle);
    fuse_opt_free_args(&args);
    free_argv(fargv, nargs + 1);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  atomic_fetch_add(&g_sessions_alive, 1);
  atomic_init(&s->refs, 2);
  pthread_mutex_init(&s->nocap_lock, NULL);
  pthread_mutex_init(&s->rx_lock, NULL);
  s->rx_bv = calloc(1, sizeof(struct fuse_bufvec) + (RX_MAX_PARTS - 1) * sizeof(struct fuse_buf));
  s->rx_copy = malloc(RX_COPY_MAX);
  for (size_t i = 0; i < ilen && i < OP_COUNT; i++) s->implemented[i] = ((uint8_t *)idata)[i];

  napi_value v;
  if (napi_get_named_property(env, argv[4], "maxWrite", &v) == napi_ok) s->max_write = (unsigned)get_num(env, v);
  if (napi_get_named_property(env, argv[4], "maxReadahead", &v) == napi_ok) s->max_readahead = (unsigned)get_num(env, v);
  if (napi_get_named_property(env, argv[4], "maxRead", &v) == napi_ok) s->max_read = (unsigned)get_num(env, v);
  bool b = false;
  if (napi_get_named_property(env, argv[4], "writebackCache", &v) == napi_ok && napi_get_value_bool(env, v, &b) == napi_ok) s->writeback_cache = b;
  b = false;
  if (napi_get_named_property(env, argv[4], "spliceWrite", &v) == napi_ok && napi_get_value_bool(env, v, &b) == napi_ok) s->splice_write = b;
  b = false;
  if (napi_get_named_property(env, argv[4], "locks", &v) == napi_ok && napi_get_value_bool(env, v, &b) == napi_ok) s->want_locks = b;
  b = false;
  if (napi_get_named_property(env, argv[4], "flock", &v) == napi_ok && napi_get_value_bool(env, v, &b) == napi_ok) s->want_flock = b;

  struct fuse_lowlevel_ops ops;
  memset(&ops, 0, sizeof(ops));
  ops.init = ll_init;
  ops.lookup = ll_lookup;
  ops.forget = ll_forget;
  ops.forget_multi = ll_forget_multi;
  ops.getattr = ll_getattr;
#define IMPL(code, field, fn) if (s->implemented[code]) ops.field = fn
  IMPL(OP_SETATTR, setattr, ll_setattr);
  IMPL(OP_READLINK, readlink, ll_readlink);
  IMPL(OP_MKNOD, mknod, ll_mknod);
  IMPL(OP_MKDIR, mkdir, ll_mkdir);
  IMPL(OP_UNLINK, unlink, ll_unlink);
  IMPL(OP_RMDIR, rmdir, ll_rmdir);
  IMPL(OP_SYMLINK, symlink, ll_symlink);
  IMPL(OP_RENAME, rename, ll_rename);
  IMPL(OP_LINK, link, ll_link);
  IMPL(OP_OPEN, open, ll_open);
  IMPL(OP_READ, read, ll_read);
  IMPL(OP_WRITE, write, ll_write);
  IMPL(OP_FLUSH, flush, ll_flush);
  IMPL(OP_RELEASE, release, ll_release);
  IMPL(OP_FSYNC, fsync, ll_fsync);
  IMPL(OP_OPENDIR, opendir, ll_opendir);
  IMPL(OP_READDIR, readdir, ll_readdir);
  IMPL(OP_READDIRPLUS, readdirplus, ll_readdirplus);
  IMPL(OP_RELEASEDIR, releasedir, ll_releasedir);
  IMPL(OP_FSYNCDIR, fsyncdir, ll_fsyncdir);
  IMPL(OP_STATFS, statfs, ll_statfs);
  IMPL(OP_SETXATTR, setxattr, ll_setxattr);
  IMPL(OP_GETXATTR, getxattr, ll_getxattr);
  IMPL(OP_LISTXATTR, listxattr, ll_listxattr);
  IMPL(OP_REMOVEXATTR, removexattr, ll_removexattr);
  IMPL(OP_ACCESS, access, ll_access);
  IMPL(OP_CREATE, create, ll_create);
  IMPL(OP_GETLK, getlk, ll_getlk);
  IMPL(OP_SETLK, setlk, ll_setlk);
  IMPL(OP_FLOCK, flock, ll_flock);
  IMPL(OP_FALLOCATE, fallocate, ll_fallocate);
  IMPL(OP_COPY_FILE_RANGE, copy_file_range, ll_copy_file_range);
  IMPL(OP_LSEEK, lseek, ll_lseek);
#undef IMPL

  napi_value name;
  napi_create_string_utf8(env, "strata-fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, tsfn_finalize, s, call_js, &s->tsfn) != napi_ok) {
    fuse_opt_free_args(&args);
    free_argv(fargv, nargs + 1);
    session_free(s);
    free(handle);
    napi_throw_error(env, NULL, "cannot create the FUSE dispatcher");
    return NULL;
  }

  s->se = fuse_session_new(&args, &ops, sizeof(ops), s);
  fuse_opt_free_args(&args);
  free_argv(fargv, nargs + 1);
  if (!s->se) {
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    session_free(s);
    free(handle);
    napi_throw_error(env, "EINVAL", "fuse_session_new failed (bad mount options?)");
    return NULL;
  }
  if (fuse_session_mount(s->se, mnt) != 0) {
    fuse_session_destroy(s->se);
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    session_free(s);
    free(handle);
    napi_throw_error(env, "EIO", "fuse_session_mount failed");
    return NULL;
  }
  if (pthread_create(&s->thread, NULL, loop_main, s) != 0) {
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    session_free(s);
    free(handle);
    napi_throw_error(env, NULL, "cannot start the FUSE thread");
    return NULL;
  }
  s->thread_started = 1;
  /* The thread-safe function keeps the event loop alive while mounted; unmount releases it. */
  handle->s = s;
  napi_value ext;
  if (napi_create_external(env, handle, handle_finalize, NULL, &ext) != napi_ok) {
    /* Mounted, but JS cannot hold it: unmount, and let the session go as an unmount would. */
    free(handle);
    atomic_store(&s->unmounted, 1);
    session_stop(s);
    session_unref(s);
    napi_throw_error(env, NULL, "cannot create the mount's handle");
    return NULL;
  }
  return ext;
}

/* unmount(handle): unmounts, stops the loop thread; the session is freed once no request is outstanding. */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  SESSION_ARGS(1);
  int expected = 0;
  if (!atomic_compare_exchange_strong(&s->unmounted, &expected, 1)) return NULL;
  session_stop(s);
  /* JS lets go here: the session is freed now, or by the last reply to a request still in flight. */
  handle_->s = NULL;
  session_unref(s);
  return NULL;
}

/* sessionsAlive(): sessions not freed yet, mounted or waiting for their last reply. */
static napi_value js_sessions_alive(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_int64(env, atomic_load(&g_sessions_alive), &v);
  return v;
}

/*
 * Cache invalidations run on a thread of their own, never on the JS thread: the kernel locks the
 * inode's pages to drop them, and a page is locked while a READ of it waits for this daemon, whose
 * answer needs the JS thread. Called from the JS thread, an invalidation of a file with a read in
 * flight deadlocked the mount (found by test/e2e/fault-partition.test.ts: a read stalled on a
 * stopped worker, then an open of the same file from another process).
 * The job counts as an outstanding request, so the session outlives it.
 */
/*
 * A ticket JS holds for one invalidation, so an open can wait until the kernel has really
 * dropped the old attributes before it answers. Shared by the job thread and the JS external:
 * whichever lets go last frees it.
 */
typedef struct inval_ticket {
  atomic_int done;
  atomic_int refs;
} inval_ticket_t;

static void ticket_release(inval_ticket_t *t) {
  if (t && atomic_fetch_sub(&t->refs, 1) == 1) free(t);
}

static void ticket_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ticket_release((inval_ticket_t *)data);
}

typedef struct inval_job {
  session_t *s;
  inval_ticket_t *ticket; /* NULL: nobody waits */
  int entry; /* 1: inval_entry(parent, name), 0: inval_inode(ino, off, len) */
  fuse_ino_t ino;
  off_t off;
  off_t len;
  size_t namelen;
  char name[1024];
} inval_job_t;

static void *inval_thread(void *arg) {
  inval_job_t *j = (inval_job_t *)arg;
  session_t *s = j->s;
  if (!atomic_load(&s->unmounted) && s->se) {
    if (j->entry) fuse_lowlevel_notify_inval_entry(s->se, j->ino, j->name, j->namelen);
    else fuse_lowlevel_notify_inval_inode(s->se, j->ino, j->off, j->len);
  }
  if (j->ticket) {
    atomic_store(&j->ticket->done, 1);
    ticket_release(j->ticket);
  }
  free(j);
  atomic_fetch_sub(&s->invalidations_running, 1);
  req_done_after(s, g_test_inval_delay_ms);
  /* Last: once req_done counted this job out, an unmount on the JS thread may let the session go at once. */
  session_unref(s);
  return NULL;
}

/* Starts `j` on a detached thread; 0 when started, else a negative errno (and `j` is freed). */
static int inval_start(inval_job_t *j) {
  session_t *s = j->s;
  if (atomic_load(&s->unmounted) || atomic_load(&s->invalidations_stopped) || !s->se) {
    ticket_release(j->ticket);
    free(j);
    return -ENOTCONN;
  }
  atomic_fetch_add(&s->outstanding, 1);
  atomic_fetch_add(&s->invalidations_running, 1);
  /* The job's own hold on the session: it still reads it after its req_done (see inval_thread). */
  atomic_fetch_add(&s->refs, 1);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t t;
  int r = pthread_create(&t, &attr, inval_thread, j);
  pthread_attr_destroy(&attr);
  if (r != 0) {
    ticket_release(j->ticket);
    free(j);
    atomic_fetch_sub(&s->invalidations_running, 1);
    req_done(s);
    session_unref(s);
    return -r;
  }
  return 0;
}

/*
 * stopInvalidations(handle): refuses new invalidations and returns how many are still running.
 * An unmount calls it until none is, while the mount still answers requests: a running data
 * invalidation may wait for the page lock of a READ in flight, and its write to the device
 * keeps the device file open, so closing our descriptor then neither aborts the connection
 * nor lets that READ be answered (our replies then have no descriptor): the reader would
 * stay in D state, and this process could not exit.
 */
static napi_value js_stop_invalidations(napi_env env, napi_callback_info info) {
  SESSION_ARGS(1);
  atomic_store(&s->invalidations_stopped, 1);
  napi_value v;
  napi_create_int64(env, atomic_load(&s->invalidations_running), &v);
  return v;
}

/* requestsInFlight(handle): requests of the kernel not answered yet (JS holds them). */
static napi_value js_requests_in_flight(napi_env env, napi_callback_info info) {
  SESSION_ARGS(1);
  napi_value v;
  napi_create_int64(env, atomic_load(&s->outstanding) - atomic_load(&s->invalidations_running), &v);
  return v;
}

/*
 * invalidateInode(handle, ino, off, len): drop the kernel's cached attributes (and pages) of an
 * inode, soon (see above). Returns a ticket for invalidationDone(), or a negative errno.
 */
static napi_value js_inval_inode(napi_env env, napi_callback_info info) {
  SESSION_ARGS(4);
  int r = -ENOMEM;
  inval_job_t *j = calloc(1, sizeof(inval_job_t));
  inval_ticket_t *t = calloc(1, sizeof(inval_ticket_t));
  napi_value ticket = NULL;
  if (j && t) {
    atomic_init(&t->done, 0);
    atomic_init(&t->refs, 2); /* the job's and the JS external's */
    if (napi_create_external(env, t, ticket_finalize, NULL, &ticket) != napi_ok) {
      free(t);
      free(j);
      NAPI_CALL(env, napi_throw_error(env, NULL, "cannot create an invalidation ticket"));
      return NULL;
    }
    j->s = s;
    j->ticket = t;
    j->ino = (fuse_ino_t)get_num(env, argv[1]);
    j->off = (off_t)get_num(env, argv[2]);
    j->len = (off_t)get_num(env, argv[3]);
    r = inval_start(j);
    if (r == 0) return ticket;
  } else {
    free(j);
    free(t);
  }
  napi_value v;
  napi_create_int32(env, r, &v);
  return v;
}

/* invalidationDone(ticket): true once the kernel has processed that invalidation. */
static napi_value js_inval_done(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  inval_ticket_t *t;
  NAPI_CALL(env, napi_get_value_external(env, argv[0], (void **)&t));
  napi_value v;
  napi_get_boolean(env, atomic_load(&t->done) != 0, &v);
  return v;
}

/* invalidateEntry(handle, parent, name): drop the kernel's cached name -> inode mapping, soon (see above). */
static napi_value js_inval_entry(napi_env env, napi_callback_info info) {
  SESSION_ARGS(3);
  int r = -ENOMEM;
  inval_job_t *j = calloc(1, sizeof(inval_job_t));
  if (j) {
    j->s = s;
    j->entry = 1;
    j->ino = (fuse_ino_t)get_num(env, argv[1]);
    NAPI_CALL(env, napi_get_value_string_utf8(env, argv[2], j->name, sizeof(j->name), &j->namelen));
    r = inval_start(j);
  }
  napi_value v;
  napi_create_int32(env, r, &v);
  return v;
}

/*
 * xattrsAbsent(handle, ino, capMs, allMs): for the next `capMs` milliseconds the libfuse
 * thread answers getxattr("security.capability") on `ino` with ENODATA itself, and for the
 * next `allMs` getxattr of any name (while the lease runs); both 0 forgets (a setxattr or
 * removexattr of it, or a change reported by someone else).
 */
static napi_value js_xattrs_absent(napi_env env, napi_callback_info info) {
  SESSION_ARGS(4);
  uint64_t ino = (uint64_t)get_num(env, argv[1]);
  double cap_ms = get_num(env, argv[2]), all_ms = get_num(env, argv[3]);
  size_t i = (size_t)(ino % NOCAP_SLOTS);
  int64_t now = monotonic_ms();
  pthread_mutex_lock(&s->nocap_lock);
  if (cap_ms > 0 || all_ms > 0) {
    s->nocap[i].ino = ino;
    s->nocap[i].cap_until_ms = cap_ms > 0 ? now + (int64_t)cap_ms : 0;
    s->nocap[i].all_until_ms = all_ms > 0 ? now + (int64_t)all_ms : 0;
  } else if (s->nocap[i].ino == ino) {
    s->nocap[i].cap_until_ms = 0;
    s->nocap[i].all_until_ms = 0;
  }
  pthread_mutex_unlock(&s->nocap_lock);
  return NULL;
}

/* xattrsAbsentLease(handle, ms): what is known of inodes without any attribute holds for the next `ms` (0: not now). */
static napi_value js_xattrs_absent_lease(napi_env env, napi_callback_info info) {
  SESSION_ARGS(2);
  double ms = get_num(env, argv[1]);
  pthread_mutex_lock(&s->nocap_lock);
  s->nocap_lease_until_ms = ms > 0 ? monotonic_ms() + (int64_t)ms : 0;
  pthread_mutex_unlock(&s->nocap_lock);
  return NULL;
}

/* xattrsAbsentClear(handle): forgets every inode (a lost or reset change feed). */
static napi_value js_xattrs_absent_clear(napi_env env, napi_callback_info info) {
  SESSION_ARGS(1);
  pthread_mutex_lock(&s->nocap_lock);
  memset(s->nocap, 0, sizeof(s->nocap));
  pthread_mutex_unlock(&s->nocap_lock);
  return NULL;
}

/*
 * serveReads(handle, fh, ino, off, len, fd, fdOff): reads of handle `fh` within
 * [off, off+len) are answered from `fd` at fdOff.. by the libfuse thread until dropped.
 * The caller keeps `fd` open until it drops the extent (dropReads).
 */
static napi_value js_serve_reads(napi_env env, napi_callback_info info) {
  SESSION_ARGS(7);
  double fh = get_num(env, argv[1]), ino = get_num(env, argv[2]), off = get_num(env, argv[3]);
  double len = get_num(env, argv[4]), fd = get_num(env, argv[5]), fd_off = get_num(env, argv[6]);
  napi_value ok;
  if (fh < 0 || ino < 0 || off < 0 || len <= 0 || len > 0xffffffffu || fd < 0 || fd_off < 0 || off + len > MAX_SAFE) {
    napi_get_boolean(env, false, &ok);
    return ok;
  }
  uint64_t start = (uint64_t)off, stop = start + (uint64_t)len;
  pthread_mutex_lock(&s->rx_lock);
  for (uint64_t unit = start >> RX_UNIT_SHIFT; unit <= (stop - 1) >> RX_UNIT_SHIFT; unit++) {
    size_t i = rx_slot((uint64_t)fh, unit);
    s->rx[i].fh = (uint64_t)fh;
    s->rx[i].ino = (uint64_t)ino;
    s->rx[i].off = start;
    s->rx[i].len = (uint32_t)len;
    s->rx[i].fd = (int)fd;
    s->rx[i].fd_off = (uint64_t)fd_off;
  }
  pthread_mutex_unlock(&s->rx_lock);
  napi_get_boolean(env, true, &ok);
  return ok;
}

/*
 * dropReads(handle, fh, ino[, extents]): forgets the extents of handle `fh` (fh >= 0), or of every
 * handle of inode `ino`. `extents` (a Float64Array of offset, length pairs: every extent served for
 * `fh`) makes it clear just their slots instead of sweeping the whole table on each close.
 */
static napi_value js_drop_reads(napi_env env, napi_callback_info info) {
  SESSION_ARGS(4);
  double fh = get_num(env, argv[1]), ino = get_num(env, argv[2]);
  bool listed = false;
  napi_typedarray_type type;
  size_t count = 0;
  void *data = NULL;
  if (fh >= 0 && napi_is_typedarray(env, argv[3], &listed) == napi_ok && listed) {
    NAPI_CALL(env, napi_get_typedarray_info(env, argv[3], &type, &count, &data, NULL, NULL));
    listed = type == napi_float64_array;
  }
  pthread_mutex_lock(&s->rx_lock);
  if (listed) {
    const double *ext = data;
    for (size_t k = 0; k + 1 < count; k += 2) {
      if (ext[k] < 0 || ext[k + 1] <= 0 || ext[k] + ext[k + 1] > MAX_SAFE) continue;
      uint64_t start = (uint64_t)ext[k], stop = start + (uint64_t)ext[k + 1];
      for (uint64_t unit = start >> RX_UNIT_SHIFT; unit <= (stop - 1) >> RX_UNIT_SHIFT; unit++) {
        size_t i = rx_slot((uint64_t)fh, unit);
        if (s->rx[i].len != 0 && s->rx[i].fh == (uint64_t)fh) s->rx[i].len = 0;
      }
    }
  } else {
    for (size_t i = 0; i < RX_SLOTS; i++) {
      if (s->rx[i].len == 0) continue;
      if (fh >= 0 ? s->rx[i].fh == (uint64_t)fh : s->rx[i].ino == (uint64_t)ino) s->rx[i].len = 0;
    }
  }
  pthread_mutex_unlock(&s->rx_lock);
  return NULL;
}

/* readsServed(handle): how many reads the libfuse thread answered from extents. */
static napi_value js_reads_served(napi_env env, napi_callback_info info) {
  SESSION_ARGS(1);
  napi_value v;
  napi_create_double(env, (double)atomic_load(&s->rx_hits), &v);
  return v;
}

static void ignore_signal(int sig) { (void)sig; }

static napi_value init_module(napi_env env, napi_value exports) {
  (void)g_sessions_dummy;
  const char *delay = getenv("STRATA_FUSE_TEST_INVAL_DELAY_MS");
  g_test_inval_delay_ms = delay ? atoi(delay) : 0;
  /* SIGUSR2 is only used to interrupt our loop thread's read(); it must not kill the process. */
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = ignore_signal;
  sigaction(SIGUSR2, &sa, NULL);
  napi_property_descriptor props[] = {
    {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
    {"unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL},
    {"stopInvalidations", NULL, js_stop_invalidations, NULL, NULL, NULL, napi_default, NULL},
    {"requestsInFlight", NULL, js_requests_in_flight, NULL, NULL, NULL, napi_default, NULL},
    {"replyErr", NULL, reply_err, NULL, NULL, NULL, napi_default, NULL},
    {"replyNone", NULL, reply_none, NULL, NULL, NULL, napi_default, NULL},
    {"replyEntry", NULL, reply_entry, NULL, NULL, NULL, napi_default, NULL},
    {"replyCreate", NULL, reply_create, NULL, NULL, NULL, napi_default, NULL},
    {"replyAttr", NULL, reply_attr, NULL, NULL, NULL, napi_default, NULL},
    {"replyReadlink", NULL, reply_readlink, NULL, NULL, NULL, napi_default, NULL},
    {"replyOpen", NULL, reply_open, NULL, NULL, NULL, napi_default, NULL},
    {"replyWrite", NULL, reply_write, NULL, NULL, NULL, napi_default, NULL},
    {"replyBuf", NULL, reply_buf, NULL, NULL, NULL, napi_default, NULL},
    {"replyData", NULL, reply_data, NULL, NULL, NULL, napi_default, NULL},
    {"replyStatfs", NULL, reply_statfs, NULL, NULL, NULL, napi_default, NULL},
    {"replyXattr", NULL, reply_xattr, NULL, NULL, NULL, napi_default, NULL},
    {"replyLock", NULL, reply_lock, NULL, NULL, NULL, napi_default, NULL},
    {"replyLseek", NULL, reply_lseek, NULL, NULL, NULL, napi_default, NULL},
    {"replyDir", NULL, reply_dir, NULL, NULL, NULL, napi_default, NULL},
    {"getGroups", NULL, get_groups, NULL, NULL, NULL, napi_default, NULL},
    {"invalidateInode", NULL, js_inval_inode, NULL, NULL, NULL, napi_default, NULL},
    {"invalidateEntry", NULL, js_inval_entry, NULL, NULL, NULL, napi_default, NULL},
    {"invalidationDone", NULL, js_inval_done, NULL, NULL, NULL, napi_default, NULL},
    {"xattrsAbsent", NULL, js_xattrs_absent, NULL, NULL, NULL, napi_default, NULL},
    {"xattrsAbsentLease", NULL, js_xattrs_absent_lease, NULL, NULL, NULL, napi_default, NULL},
    {"xattrsAbsentClear", NULL, js_xattrs_absent_clear, NULL, NULL, NULL, napi_default, NULL},
    {"serveReads", NULL, js_serve_reads, NULL, NULL, NULL, napi_default, NULL},
    {"dropReads", NULL, js_drop_reads, NULL, NULL, NULL, napi_default, NULL},
    {"readsServed", NULL, js_reads_served, NULL, NULL, NULL, napi_default, NULL},
    {"sessionsAlive", NULL, js_sessions_alive, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
