#!/bin/sh
# run_gen_bench.sh - compile bench/membw.c and run bench/gen_bench.lua with it, so the
# bandwidth bound and the generation speed come from the same run (JSON lines; not a test).
#
#   bench/run_gen_bench.sh [build-dir [gen_bench.lua options...]]     (default: build)
#
# The first argument, when given, is the build folder (the one holding confit); the rest go to
# gen_bench.lua (bench/run_gen_bench.sh build --quick). membw is compiled into that folder.
# Threads: whatever OMP_NUM_THREADS says (unset: all cores); every line records the count.
set -eu
usage="usage: bench/run_gen_bench.sh [build-dir [gen_bench.lua options...]]"
case "${1:-}" in
  -h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;  # print the header above
  -*) echo "run_gen_bench.sh: the first argument is the build folder, got '$1'" >&2; echo "$usage" >&2; exit 1 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
dir=${1:-$root/build}
if [ ! -d "$dir" ]; then
  echo "run_gen_bench.sh: build folder '$dir': no such directory" >&2; echo "$usage" >&2; exit 1
fi
build=$(cd -- "$dir" && pwd)
if [ ! -x "$build/confit" ]; then
  echo "run_gen_bench.sh: no confit executable in '$dir' (build the project first)" >&2; echo "$usage" >&2; exit 1
fi
[ $# -gt 0 ] && shift
cc -O2 -fopenmp "$here/membw.c" -o "$build/membw"
cd "$root"
exec "$build/confit" bench/gen_bench.lua --membw "$build/membw" "$@"
