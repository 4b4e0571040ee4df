/*
 * Where a file holds data: lseek(2) SEEK_DATA / SEEK_HOLE, which Node does not
 * offer. Without it, finding the data of a sparse file means reading every byte,
 * holes included: a 1 TiB file made with truncate(1) took 40 minutes to store.
 * Kept apart from the FUSE binding so a worker loads it without libfuse.
 */

#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

/*
 * dataAfter(fd, offset, end): [start, stop), the first run of data at or after
 * `offset`, with stop at most `end`; null when only holes are left before `end`;
 * a negative errno when the file system cannot tell (then treat it all as data).
 */
static napi_value data_after(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_value result;
  int32_t fd;
  int64_t off, end;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &off) != napi_ok ||
      napi_get_value_int64(env, argv[2], &end) != napi_ok || off < 0 || end < off) {
    napi_throw_type_error(env, NULL, "dataAfter(fd, offset, end): integers, 0 <= offset <= end");
    return NULL;
  }
  off_t start = lseek(fd, (off_t)off, SEEK_DATA);
  if (start < 0) {
    if (errno == ENXIO) {
      napi_get_null(env, &result);
      return result;
    }
    napi_create_int32(env, -errno, &result);
    return result;
  }
  if ((int64_t)start >= end) {
    napi_get_null(env, &result);
    return result;
  }
  off_t stop = lseek(fd, start, SEEK_HOLE);
  if (stop < 0) {
    napi_create_int32(env, -errno, &result);
    return result;
  }
  if ((int64_t)stop > end) stop = (off_t)end;
  napi_value a, b;
  napi_create_array_with_length(env, 2, &result);
  napi_create_int64(env, (int64_t)start, &a);
  napi_create_int64(env, (int64_t)stop, &b);
  napi_set_element(env, result, 0, a);
  napi_set_element(env, result, 1, b);
  return result;
}

static napi_value init_module(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "dataAfter", NAPI_AUTO_LENGTH, data_after, NULL, &fn);
  napi_set_named_property(env, exports, "dataAfter", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
