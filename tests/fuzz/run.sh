#!/bin/sh
# run.sh - build the libFuzzer targets with clang (ASan + UBSan) and run them, N seconds in all.
#
#   tests/fuzz/run.sh [SECONDS [TARGET...]]   (default 30 s, split evenly over the targets run;
#                                              default targets: all three; run from anywhere)
#
# Targets and their seeds:
#   safetensors     the safetensors reader and writer (fuzz_safetensors.c); the corrupted and valid
#                   samples written by tests/c/test_safetensors.c --write-corpus
#   tokenizer       BPE encode/decode on raw bytes (fuzz_tokenizer.c); tests/fuzz/corpus_tokenizer
#   tokenizer_json  the tokenizer.json loader (fuzz_tokenizer_json.c); the toy tokenizer.json, the
#                   variants fuzz_tokenizer builds, tests/fuzz/corpus_tokenizer_json
# The tokenizer target also uses ../shared/data/tokenizer/qwen/tokenizer.json when it is there.
# Work files go to ${FUZZ_WORK:-/tmp/confit-fuzz} (corpus_TARGET/ grows from run to run); a
# finding is saved there as TARGET-crash-* (or -leak-, -timeout-, -oom-). Every target runs even
# when an earlier one fails; exits non-zero when libFuzzer reported a finding in any of them.
set -eu
secs=${1:-30}
[ $# -gt 0 ] && shift
targets=${*:-safetensors tokenizer tokenizer_json}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${FUZZ_WORK:-/tmp/confit-fuzz}
cc=${CC_FUZZ:-clang}
flags="-std=c11 -g -O1 -fno-omit-frame-pointer -I$root/core"
fuzz="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
bpe="$root/core/text/bpe.c $root/core/text/pretok.c $root/core/error.c"
set -- $targets
share=$((secs / $#))
[ "$share" -ge 1 ] || share=1 # libFuzzer reads -max_total_time=0 as "no limit"
first=$((secs - share * ($# - 1)))
[ "$first" -ge 1 ] || first=1

mkdir -p "$work"
for t in $targets; do
  mkdir -p "$work/corpus_$t" "$work/seeds_$t"
  case $t in
  safetensors)
    $cc $flags $fuzz "$root/tests/fuzz/fuzz_safetensors.c" "$root/core/io/safetensors.c" \
      "$root/core/error.c" -lcjson -lm -o "$work/fuzz_safetensors"
    $cc $flags "$root/tests/c/test_safetensors.c" "$root/core/io/safetensors.c" "$root/core/error.c" \
      -lcjson -lm -o "$work/make_seeds"
    "$work/make_seeds" --write-corpus "$work/seeds_$t"
    ;;
  tokenizer | tokenizer_json)
    [ -n "${built_tok:-}" ] || $cc $flags $fuzz "-DCONFIT_ROOT=\"$root\"" "$root/tests/fuzz/fuzz_tokenizer.c" \
      $bpe -lcjson -lutf8proc -lm -o "$work/fuzz_tokenizer"
    built_tok=1
    if [ "$t" = tokenizer ]; then
      cp "$root"/tests/fuzz/corpus_tokenizer/* "$work/seeds_$t/"
    else
      $cc $flags $fuzz "$root/tests/fuzz/fuzz_tokenizer_json.c" $bpe -lcjson -lutf8proc -lm \
        -o "$work/fuzz_tokenizer_json"
      cp "$root/examples/toy/model/tokenizer.json" "$work/seeds_$t/toy.json"
      cp "$root"/tests/fuzz/corpus_tokenizer_json/* "$work/seeds_$t/"
      # the built-in variants: fuzz_tokenizer writes them while loading (runs no input)
      mkdir -p "$work/empty"
      CONFIT_FUZZ_WRITE_JSON="$work/seeds_$t" "$work/fuzz_tokenizer" -runs=0 "$work/empty" \
        >"$work/write_json.log" 2>&1 || { cat "$work/write_json.log"; exit 1; }
    fi
    ;;
  *)
    echo "run.sh: unknown target $t (safetensors, tokenizer, tokenizer_json)" >&2
    exit 2
    ;;
  esac
done

cd "$work"
status=0
s=$first
for t in $targets; do
  case $t in
  safetensors) max_len=4096 ;;
  tokenizer) max_len=8192 ;;
  tokenizer_json) max_len=16384 ;;
  esac
  echo "== fuzz_$t: $s s"
  ./"fuzz_$t" -max_total_time="$s" -max_len=$max_len -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/$t-" "$work/corpus_$t" "$work/seeds_$t" || status=1
  s=$share
done
exit $status
