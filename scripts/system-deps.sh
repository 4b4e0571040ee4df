#!/usr/bin/env bash
# The Debian packages Strata needs, in one place: `start` for `npm start` (FUSE 3 and what
# builds the binding), `test` for `npm test` and CI (also the tools the tests drive).
# `--check` lists what is missing and exits 1 if anything is; without it, installs that
# with apt-get (root only). Used by scripts/ensure-built.js and .ci/run.
set -euo pipefail
mode=${1:-start}
check=${2:-}
export DEBIAN_FRONTEND=noninteractive

need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
[ -e /usr/include/fuse3/fuse_lowlevel.h ] || need+=(libfuse3-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3)
postgres=0
if [ "$mode" = test ]; then
  command -v setfattr >/dev/null 2>&1 || need+=(attr)
  # The real-clients test drives pandas (Debian's, under /usr/bin/python3) and rsync against the mount.
  /usr/bin/python3 -c 'import pandas' >/dev/null 2>&1 || need+=(python3-pandas)
  command -v rsync >/dev/null 2>&1 || need+=(rsync)
  # Headless browser for the dashboard test (driven by puppeteer-core; it never downloads one).
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  # PostgreSQL's server binaries for the PgMetastore tests, which run their own clusters in temp dirs.
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || postgres=1
fi

if [ "$check" = --check ]; then
  ((postgres)) && need+=(postgresql)
  ((${#need[@]})) || exit 0
  echo "${need[*]}"
  exit 1
fi
if ((${#need[@]})); then
  echo "strata: installing ${need[*]} (apt-get)"
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ((postgres)); then
  # No default cluster: the install leaves nothing listening on 5432.
  echo "strata: installing postgresql (apt-get; no default cluster)"
  apt-get update -qq
  apt-get install -y -qq postgresql-common >/dev/null
  conf=/etc/postgresql-common/createcluster.conf
  sed -i -E '/^[#[:space:]]*create_main_cluster[[:space:]]*=/d' "$conf"
  echo 'create_main_cluster = false' >>"$conf"
  apt-get install -y -qq postgresql >/dev/null
fi
