#!/bin/sh
# run.sh - build the safetensors libFuzzer target with clang and run it for N seconds.
#
#   tests/fuzz/run.sh [SECONDS]      (default 30; run from anywhere)
#
# Seeds: the corrupted and valid samples written by tests/c/test_safetensors.c --write-corpus.
# Work files go to ${FUZZ_WORK:-/tmp/confit-fuzz}; crashes (if any) are saved there as crash-*.
# Exits non-zero when libFuzzer reports a finding.
set -eu
secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${FUZZ_WORK:-/tmp/confit-fuzz}
mkdir -p "$work/corpus" "$work/seeds"
cc=${CC_FUZZ:-clang}
flags="-std=c11 -g -O1 -fno-omit-frame-pointer -I$root/core"
$cc $flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  "$root/tests/fuzz/fuzz_safetensors.c" "$root/core/io/safetensors.c" "$root/core/error.c" \
  -lcjson -lm -o "$work/fuzz_safetensors"
$cc $flags "$root/tests/c/test_safetensors.c" "$root/core/io/safetensors.c" "$root/core/error.c" \
  -lcjson -lm -o "$work/make_seeds"
"$work/make_seeds" --write-corpus "$work/seeds"
cd "$work"
exec ./fuzz_safetensors -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 "$work/corpus" "$work/seeds"
