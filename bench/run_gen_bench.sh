#!/bin/sh
# run_gen_bench.sh - compile bench/membw.c and run bench/gen_bench.lua with it, so the
# bandwidth bound and the generation speed come from the same run (JSON lines; not a test).
#
#   bench/run_gen_bench.sh [build-dir] [gen_bench.lua options...]     (default: build)
#
# Threads: whatever OMP_NUM_THREADS says (unset: all cores); gen lines record it.
set -eu
case "${1:-}" in -h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;; esac  # print the header above
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=$(cd "${1:-$root/build}" && pwd)
[ $# -gt 0 ] && shift
cc -O2 -fopenmp "$here/membw.c" -o "$build/membw"
cd "$root"
exec "$build/confit" bench/gen_bench.lua --membw "$build/membw" "$@"
