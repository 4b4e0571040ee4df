{
  "targets": [
    {
      "target_name": "strata_fuse",
      "sources": ["src/fuse/native/strata_fuse.c"],
      "cflags": ["-O2", "-Wall", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    },
    {
      "target_name": "strata_sparse",
      "sources": ["src/common/native/strata_sparse.c"],
      "cflags": ["-O2", "-Wall", "-Wno-unused-parameter", "-D_FILE_OFFSET_BITS=64"]
    }
  ]
}
