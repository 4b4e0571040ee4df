{
  "targets": [
    {
      "target_name": "strata_fuse",
      "sources": ["src/fuse/native/strata_fuse.c"],
      "cflags": ["-O2", "-Wall", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)"]
    }
  ]
}
