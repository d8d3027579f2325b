#!/bin/sh
# run_core_bench.sh - build bench/core_bench.c against a built libconfit and run it, then the
# PyTorch counterpart of the blocks benchmark (bench/torch_blocks.py) in the same run so the two
# numbers come from the same machine state. Prints JSON lines; not a test.
#
#   bench/run_core_bench.sh [build-dir] [min-seconds]     (default: build, 2)
#
# Threads: 2 unless OMP_NUM_THREADS / OPENBLAS_NUM_THREADS are set (torch gets the same count).
set -eu
usage="usage: bench/run_core_bench.sh [build-dir [min-seconds]]"
case "${1:-}" in
  -h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;  # print the header above
  -*) echo "run_core_bench.sh: the first argument is the build folder, got '$1'" >&2; echo "$usage" >&2; exit 1 ;;
esac
[ $# -le 2 ] || { echo "run_core_bench.sh: too many arguments" >&2; echo "$usage" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
dir=${1:-$root/build}
if [ ! -d "$dir" ]; then
  echo "run_core_bench.sh: build folder '$dir': no such directory" >&2; echo "$usage" >&2; exit 1
fi
build=$(cd -- "$dir" && pwd)
if ! ls "$build"/libconfit.* > /dev/null 2>&1; then
  echo "run_core_bench.sh: no libconfit in '$dir' (build the project first)" >&2; echo "$usage" >&2; exit 1
fi
mins=${2:-2}
case "$mins" in
  ''|*[!0-9.]*|*.*.*|.) echo "run_core_bench.sh: min-seconds must be a number > 0, got '$mins'" >&2; echo "$usage" >&2; exit 1 ;;
esac
threads=${OMP_NUM_THREADS:-2}
export OMP_NUM_THREADS=$threads
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$threads}
blasinc=
for d in /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas; do
  [ -f "$d/cblas.h" ] && { blasinc="-I$d"; break; }
done
exe=$build/core_bench
cc -O2 -fopenmp -I "$root/core" $blasinc "$here/core_bench.c" -o "$exe" \
  -L"$build" -lconfit -lopenblas -lm -Wl,-rpath,"$build"
"$exe" all "$mins"
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  /usr/bin/python3 "$here/torch_blocks.py" --threads "$threads" --min-seconds "$mins"
else
  echo '{"bench":"blocks_fwd_bwd","impl":"torch","skipped":"python3-torch not installed"}'
fi
