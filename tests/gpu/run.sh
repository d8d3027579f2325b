#!/usr/bin/env bash
# tests/gpu/run.sh - THE one script for a lent GPU machine (see ../shared/docs/GPU.md).
#
# From the project root:   tests/gpu/run.sh [--sanitize] [--no-bench] [--no-tests] [--no-skinny] [--no-lt] [--variants "mma+pdl lt"]
#                                           [--profile]   (variants: lt mma tune wide pdl pdl0 rope rope0 gs2 gs3 merge qpair qpair0 tc0 tc tc2 as1..64 splitk2..8 sample0..32, +)
#                                           [--bench-budget SECONDS] [--bench-args "..."] [--deadline SECONDS]
#                                           [--knockout "none attention combine ..."]   (none first)
#
#  1. unpacks .debs/*.deb into a prefix ($DEBROOT, default /tmp/debroot): Lua, LPeg, cJSON,
#     utf8proc, libedit, OpenBLAS that the GPU machine lacks;
#  2. configures against that prefix (every find_path/find_library of CMakeLists.txt is given
#     explicitly, so nothing is taken from the system by accident) with CUDA arch 90, builds -j16
#     into $BUILD (default build-gpu, kept between runs on a warm machine);
#  3. stops there, successfully, when no GPU is usable (prints why);
#  4. runs the GPU tests (ctest -R gpu) with CONFIT_POISON=1: op outputs that cf_op does not
#     zero-fill (CF_FULLWRITE) start as NaN, so a kernel that misses an element fails a test;
#  5. runs bench/skinny_bench (each decode GEMM: skinny.cu's launch shapes against cuBLAS), then
#     bench/gpu_bench.lua within a time budget (--profile: plus a per-region breakdown of each
#     measurement from confit.profiler, the largest regions of each in the table); then, for each
#     decode variant of $VARIANTS (default "tc0 tc qpair0 sample0 rope0 lt": each default
#     switch turned off in turn, to confirm it still pays: the attention on the CUDA cores, or
#     only its scores on the tensor cores, ...; and the cublasLt plans, a tie when last
#     measured; --variants "...", --no-lt drops lt), the generation test and the 1.5B decode
#     benchmark again under it (5b below says what each is); rows "1.5B+MMA+PDL" etc.; with
#     --knockout, the 1.5B decode benchmark at batch 16 once per named stage with that stage left
#     out of the step (CONFIT_GEN_KNOCKOUT; "none" for the whole step): rows "knockout STAGE", the
#     step time and how much less than the whole step (that stage's cost inside the CUDA graph);
#     KNOCKOUT_ENV (e.g. "CONFIT_GEN_MMA=2 CONFIT_GEN_MMA_WIDE=1") splits another decode variant's
#     step so;
#  6. with --sanitize: compute-sanitizer over each GPU test file (time-limited; the tools
#     SANITIZE_TOOLS names, default memcheck, also racecheck / synccheck; the files SANITIZE_TESTS
#     names, default all; SANITIZE_LIMIT seconds each, default 240);
#  7. prints a table last: metric, value, baseline (PyTorch eager, H200, GPU.md), card.
# Every stage runs under `timeout` and a failure does not stop the later stages. Logs go to
# $OUT (the device tool returns what is written there), else to /tmp/confit-gpu-out.
# Environment: OUT, DEBROOT, BUILD, JOBS, BENCH_BUDGET, CTEST_REGEX (default "gpu"), SANITIZE_TESTS,
# SANITIZE_TOOLS, SANITIZE_LIMIT, VARIANTS, KNOCKOUT_ENV.
# Exit status: 0 when every stage that ran passed, 1 otherwise.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)

SANITIZE=0; BENCH=1; TESTS=1; SKINNY=1; KNOCKOUT=""; DEADLINE=${DEADLINE:-}; VARIANTS=${VARIANTS:-tc0 tc qpair0 sample0 rope0 lt}; BENCH_BUDGET=${BENCH_BUDGET:-300}; BENCH_ARGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) SANITIZE=1 ;;
    --no-bench) BENCH=0 ;;
    --no-tests) TESTS=0 ;;
    --no-skinny) SKINNY=0 ;;
    --no-lt) VARIANTS=$(echo " $VARIANTS " | sed 's/ lt / /; s/^ *//; s/ *$//') ;;
    --variants) VARIANTS=$2; shift ;;
    --knockout) KNOCKOUT=$2; shift ;;
    --profile) BENCH_ARGS="$BENCH_ARGS --profile" ;;
    --bench-budget) BENCH_BUDGET=$2; shift ;;
    --bench-args) BENCH_ARGS=$2; shift ;;
    --deadline) DEADLINE=$2; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

OUTDIR=${OUT:-/tmp/confit-gpu-out}
mkdir -p "$OUTDIR"
R=${DEBROOT:-/tmp/debroot}
BUILD=${BUILD:-$ROOT/build-gpu}
JOBS=${JOBS:-16}
SUMMARY=$OUTDIR/summary.tsv
: > "$SUMMARY"
T_START=$(date +%s)
STATUS=0

say() { echo "[run.sh $(( $(date +%s) - T_START ))s] $*" | tee -a "$OUTDIR/run.log"; }
row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$SUMMARY"; }  # metric, value, baseline
# stage NAME TIMEOUT CMD...: runs CMD with a time limit, output to $OUTDIR/NAME.log
stage() {
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  say "stage $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" > "$OUTDIR/$name.log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then say "stage $name ok (${dt}s)"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then say "stage $name TIMED OUT after ${dt}s"; tail -n 20 "$OUTDIR/$name.log"
  else say "stage $name FAILED rc=$rc (${dt}s)"; tail -n 40 "$OUTDIR/$name.log"; fi
  row "stage $name" "$([ $rc -eq 0 ] && echo ok || echo "rc=$rc") ${dt}s" "-"
  return $rc
}

say "root $ROOT, out $OUTDIR, prefix $R, build $BUILD"
{ uname -a; nvidia-smi 2>&1 | head -15; cmake --version | head -1; /usr/local/cuda/bin/nvcc --version | tail -2; } \
  > "$OUTDIR/machine.log" 2>&1

# 1. unpack ------------------------------------------------------------------------------------
mkdir -p "$R"
ls .debs/*.deb > /dev/null 2>&1 || say "no .debs/*.deb in $ROOT: the build needs them on the GPU machine"
stage unpack 120 bash -c 'n=0; for f in .debs/*.deb; do dpkg -x "$f" "$0" || exit 1; n=$((n+1)); done; echo "unpacked $n packages into $0"' "$R" || STATUS=1

ARCH=x86_64-linux-gnu
L=$R/usr/lib/$ARCH
export LD_LIBRARY_PATH="$L:$L/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LUA_CPATH="$L/lua/5.4/?.so;;"
export LUA_PATH="$R/usr/share/lua/5.4/?.lua;$R/usr/share/lua/5.4/?/init.lua;;"

# 2. configure + build -------------------------------------------------------------------------
stage configure 180 cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$R/usr" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_C_FLAGS="-I$R/usr/include/$ARCH" -DCMAKE_CUDA_FLAGS="-I$R/usr/include/$ARCH" \
  -DLUA_INCLUDE_DIR="$R/usr/include/lua5.4" -DLUA_LIBRARY="$L/liblua5.4.so" \
  -DCBLAS_INCLUDE_DIR="$R/usr/include/$ARCH/openblas-pthread" -DBLAS_LIBRARY="$L/openblas-pthread/libopenblas.so" \
  -DCJSON_INCLUDE_DIR="$R/usr/include" -DCJSON_LIBRARY="$L/libcjson.so" \
  -DUTF8PROC_INCLUDE_DIR="$R/usr/include" -DUTF8PROC_LIBRARY="$L/libutf8proc.so" \
  -DEDIT_INCLUDE_DIR="$R/usr/include" -DEDIT_LIBRARY="$L/libedit.so" \
  || STATUS=1
if ! stage build 480 cmake --build "$BUILD" -j"$JOBS"; then
  STATUS=1
  grep -E "error|Error" "$OUTDIR/build.log" | head -30
fi
CONFIT=$BUILD/confit

# 3. is there a GPU? ---------------------------------------------------------------------------
GPU=0; CARD="none"
if [ -x "$CONFIT" ]; then
  PROBE=$(timeout 60 "$CONFIT" -e 'local c = require "confit"
    if c.cuda and c.cuda.available() then print("GPU " .. c.cuda.device_name()) else print("NOGPU") end' 2>&1 | tail -1)
  case "$PROBE" in GPU*) GPU=1; CARD=${PROBE#GPU } ;; esac
  say "device probe: $PROBE"
else
  say "no confit executable: the build failed, nothing more to run"
fi
if [ $GPU -eq 0 ]; then
  say "no usable GPU: stopping after the build (status $STATUS)"
  printf '\n%-34s %-24s %-18s %s\n' metric value baseline card
  while IFS=$'\t' read -r m v b; do printf '%-34s %-24s %-18s %s\n' "$m" "$v" "$b" "$CARD"; done < "$SUMMARY"
  exit $STATUS
fi

# 4. GPU tests ---------------------------------------------------------------------------------
if [ $TESTS -eq 1 ]; then
  stage gpu_tests 300 env CONFIT_POISON=1 ctest --test-dir "$BUILD" -R "${CTEST_REGEX:-gpu}" --output-on-failure \
    --timeout 240 || STATUS=1
  PASSED=$(grep -Eo '[0-9]+% tests passed.*out of [0-9]+' "$OUTDIR/gpu_tests.log" | tail -1)
  row "gpu tests" "${PASSED:-no summary}" "-"
  grep -E "^\s*[0-9]+/[0-9]+ Test" "$OUTDIR/gpu_tests.log" | sed 's/^ *//' | while read -r line; do
    row "  $(echo "$line" | awk '{print $4}')" "$(echo "$line" | grep -Eo 'Passed|\*\*\*Failed|Not Run|\*\*\*Skipped|Timeout' | head -1) $(echo "$line" | grep -Eo '[0-9.]+ sec')" "-"
  done
fi

# 5. benchmarks --------------------------------------------------------------------------------
if [ $BENCH -eq 1 ]; then
  # 5a. the decode GEMMs alone: skinny.cu's launch shapes against cuBLAS (seconds; JSON lines);
  # the table keeps cuBLAS and the fastest correct skinny shape of each matrix
  if [ $SKINNY -eq 1 ] && [ -x "$BUILD/bench/skinny_bench" ]; then
    stage skinny 120 "$BUILD/bench/skinny_bench" --shape all || STATUS=1
    grep '^{' "$OUTDIR/skinny.log" > "$OUTDIR/skinny.jsonl" 2>/dev/null
    [ -s "$OUTDIR/skinny.jsonl" ] && "$CONFIT" bench/skinny_table.lua "$OUTDIR/skinny.jsonl" >> "$SUMMARY" 2>> "$OUTDIR/run.log"
  fi
  # shellcheck disable=SC2086
  stage bench $((BENCH_BUDGET + 120)) "$CONFIT" bench/gpu_bench.lua --budget "$BENCH_BUDGET" $BENCH_ARGS || STATUS=1
  grep '^{' "$OUTDIR/bench.log" > "$OUTDIR/bench.jsonl" 2>/dev/null
  cat "$OUTDIR/bench.jsonl"
  # flat JSON lines -> table rows (pure Lua patterns: no JSON module needed)
  cat > "$OUTDIR/table.lua" <<'EOF'
local function field(line, k)
  local s = line:match('"' .. k .. '":"(.-)"') ; if s then return s end
  return line:match('"' .. k .. '":([%-%d%.e+]+)')
end
local shown = {}
local base = {["decode 1.5B b16"] = "968 (target 10000)", ["decode 1.5B b64"] = "3774",
              ["decode 7B b16"] = "917", ["train 1.5B"] = "31700 (target 41000)",
              ["train 7B"] = "4630 (65 GB)"}
for line in io.lines(arg[1]) do
  local b = field(line, "bench")
  if b == "decode" then
    local key = "decode " .. field(line, "shape") .. " b" .. field(line, "batch")
    print(string.format("%s tok/s\t%.0f (%.2f ms/step)\t%s", key, tonumber(field(line, "decode_tok_s")),
      tonumber(field(line, "ms_step")), base[key] or "-"))
  elseif b == "train" then
    local key = "train " .. field(line, "shape") .. (line:find('"recompute":true', 1, true) and " recompute" or "")
    print(string.format("%s tok/s\t%.0f (%.1f TFLOP/s, %.1f GB, %s mallocs/step)\t%s", key, tonumber(field(line, "tok_s")),
      tonumber(field(line, "tflops")), tonumber(field(line, "peak_gb")), field(line, "driver_mallocs_per_step") or "?",
      base[key] or "-"))
  elseif b == "rlsc" then
    print(string.format("rlsc %s micro_batch %s tok/s\t%.0f (%.2f s/step, %.1f GB)\t-", field(line, "shape"),
      field(line, "micro_batch"), tonumber(field(line, "tok_s")), tonumber(field(line, "step_s")),
      tonumber(field(line, "peak_gb"))))
  elseif b == "profile" then
    local what = field(line, "what")
    shown[what] = (shown[what] or 0) + 1
    if shown[what] <= 8 then
      print(string.format("  %s %s/%s\t%.3f ms dev, %.3f ms host, %s calls (%.0f%%)\t-", what, field(line, "phase"),
        field(line, "name"), tonumber(field(line, "device_ms")), tonumber(field(line, "host_ms")),
        field(line, "calls"), 100 * tonumber(field(line, "share"))))
    end
  elseif b == "profile_total" then
    local step = field(line, "device_ms_step")
    print(string.format("  %s profiled total\t%.1f ms dev, %.1f ms host%s\t-", field(line, "what"),
      tonumber(field(line, "device_ms")), tonumber(field(line, "host_ms")),
      step and string.format(", %.3f ms/decode step", tonumber(step)) or ""))
  elseif b == "error" then
    print(string.format("bench error %s\t%s\t-", field(line, "stage") or "?", (field(line, "message") or "?"):sub(1, 60)))
  elseif b == "skipped" then
    print(string.format("bench skipped %s\tbudget\t-", field(line, "stage") or "?"))
  end
end
EOF
  if [ -s "$OUTDIR/bench.jsonl" ]; then
    "$CONFIT" "$OUTDIR/table.lua" "$OUTDIR/bench.jsonl" >> "$SUMMARY" 2>> "$OUTDIR/run.log"
  fi
  # 5b. decode variants (kernels/generate.cu says which is the default and why), each as the generation
  # test under it (values against the CPU forward) and then the 1.5B decode benchmark at batch 16
  # (512 new tokens), rows "1.5B+<VARIANT>". Variants, joined by + to combine:
  #   lt    timed cuBLAS / cublasLt GEMM plans (CONFIT_GEN_LT; plans printed to the log)
  #   mma   skinny.cu's tensor-core GEMMs, SwiGLU and RMSNorms folded in, the attention doing the
  #         RoPE (CONFIT_GEN_MMA=1)
  #   tune  the same, each GEMM kind's launch shape timed per batch first (CONFIT_GEN_MMA=2;
  #         choices in the log; the wide layout among the shapes)
  #   wide  with mma: skinny.cu's wide layout, X staged in shared memory (CONFIT_GEN_MMA_WIDE=1)
  #   pdl   programmatic dependent launches (CONFIT_GEN_PDL=1; the default on sm_90), pdl0 without
  #   rope  the attention doing the RoPE (CONFIT_GEN_FUSE_ROPE=1; the default, on f32 models too,
  #         so the test's exact f32 comparisons cover it); rope0 keeps k_rope_kv
  #   gs2, gs3  2 or 3 attention blocks per kv head (CONFIT_GEN_ATT_GS)
  #   merge the attention merges its splits itself, no k_attn_combine (CONFIT_GEN_ATT_MERGE=1)
  #   qpair the attention stages its queries in one pass, a RoPE pair per thread (k_attn_qp;
  #         CONFIT_GEN_ATT_QPAIR=1, the default); qpair0 the two passes of k_attn
  #   tc    the attention's scores on the tensor cores, P V not (k_attn_tc; CONFIT_GEN_ATT_TC=1);
  #         tc0 neither (k_attn_qp; =0); tc2 both (k_attn_tc2; =2, the default)
  #   asN   at most N attention splits per row (CONFIT_GEN_ATT_SPLITS=N, 1..64)
  #   splitkN  the qkv, o_proj and down GEMMs in N parts of K, added by the attention and the
  #         next RMSNorm (CONFIT_GEN_SPLITK=N, 2..8)
  #   sampleN  the sampler split over N blocks per row (CONFIT_GEN_SAMPLE_SPLIT=N; 1: N chosen,
  #         about two blocks per multiprocessor; untruncated sampling and greedy only); the
  #         generation test runs sample1 with 7 (chosen, its tiny vocabularies would get 1);
  #         the default is sample1; sample0 gives each row one block (k_sample)
  for V in $VARIANTS; do
    # --deadline: no variant starts after that many seconds, so the table still gets printed
    # inside the caller's time limit
    if [ -n "$DEADLINE" ] && [ $(( $(date +%s) - T_START )) -ge "$DEADLINE" ]; then
      say "deadline of ${DEADLINE}s reached: variant $V skipped"; row "decode 1.5B+$V" "skipped (--deadline)" "-"
      continue
    fi
    TEST_ENV=""; BENCH_ENV=""; TAG=$(echo "$V" | tr '[:lower:]' '[:upper:]'); OKV=1
    for part in $(echo "$V" | tr '+' ' '); do
      case "$part" in
        lt) TEST_ENV="$TEST_ENV CONFIT_GEN_LT=1"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_LT=2" ;;
        mma) TEST_ENV="$TEST_ENV CONFIT_GEN_MMA=1"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_MMA=1" ;;
        tune) TEST_ENV="$TEST_ENV CONFIT_GEN_MMA=2"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_MMA=2" ;;
        wide) TEST_ENV="$TEST_ENV CONFIT_GEN_MMA_WIDE=1"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_MMA_WIDE=1" ;;
        pdl) TEST_ENV="$TEST_ENV CONFIT_GEN_PDL=1"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_PDL=1" ;;
        pdl0) TEST_ENV="$TEST_ENV CONFIT_GEN_PDL=0"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_PDL=0" ;;
        rope) TEST_ENV="$TEST_ENV CONFIT_GEN_FUSE_ROPE=1"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_FUSE_ROPE=1" ;;
        rope0) TEST_ENV="$TEST_ENV CONFIT_GEN_FUSE_ROPE=0"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_FUSE_ROPE=0" ;;
        gs2|gs3) TEST_ENV="$TEST_ENV CONFIT_GEN_ATT_GS=${part#gs}"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_ATT_GS=${part#gs}" ;;
        merge) TEST_ENV="$TEST_ENV CONFIT_GEN_ATT_MERGE=1"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_ATT_MERGE=1" ;;
        qpair|qpair0) Q=1; [ "$part" = qpair0 ] && Q=0
          TEST_ENV="$TEST_ENV CONFIT_GEN_ATT_QPAIR=$Q"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_ATT_QPAIR=$Q" ;;
        tc|tc0|tc2) N=1; [ "$part" = tc2 ] && N=2; [ "$part" = tc0 ] && N=0
          TEST_ENV="$TEST_ENV CONFIT_GEN_ATT_TC=$N"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_ATT_TC=$N" ;;
        as[1-9]|as[1-6][0-9]) TEST_ENV="$TEST_ENV CONFIT_GEN_ATT_SPLITS=${part#as}"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_ATT_SPLITS=${part#as}" ;;
        sample0) TEST_ENV="$TEST_ENV CONFIT_GEN_SAMPLE_SPLIT=0"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_SAMPLE_SPLIT=0" ;;
        splitk[2-8]) TEST_ENV="$TEST_ENV CONFIT_GEN_SPLITK=${part#splitk}"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_SPLITK=${part#splitk}" ;;
        sample[1-9]|sample[1-3][0-9]) # the tests' vocabularies are tiny: chosen, N would be 1 there
          N=${part#sample}; [ "$N" = 1 ] && TN=7 || TN=$N
          TEST_ENV="$TEST_ENV CONFIT_GEN_SAMPLE_SPLIT=$TN"; BENCH_ENV="$BENCH_ENV CONFIT_GEN_SAMPLE_SPLIT=$N" ;;
        *) say "unknown decode variant $part in $V"; STATUS=1; OKV=0 ;;
      esac
    done
    [ $OKV -eq 1 ] || continue
    V=$(echo "$V" | tr '+' '_')
    # a variant whose generation test fails is still timed (its row says so): one case failing
    # must not cost the session every figure
    if ! stage "gen_${V}_test" 120 env CONFIT_POISON=1 $TEST_ENV "$CONFIT" tests/gpu/test_generate_cuda.lua; then
      STATUS=1; TAG="$TAG, generation test FAILED"
    fi
    stage "bench_$V" 120 env $BENCH_ENV "$CONFIT" bench/gpu_bench.lua --only decode --shape 1.5B --quick --new 512 --budget 60 \
      || STATUS=1
    grep '^{' "$OUTDIR/bench_$V.log" | sed "s/\"bench\":\"decode\",\"shape\":\"1.5B\"/\"bench\":\"decode\",\"shape\":\"1.5B+$TAG\"/" \
      > "$OUTDIR/bench_$V.jsonl" 2>/dev/null
    [ -s "$OUTDIR/bench_$V.jsonl" ] && "$CONFIT" "$OUTDIR/table.lua" "$OUTDIR/bench_$V.jsonl" >> "$SUMMARY" 2>> "$OUTDIR/run.log"
  done
fi

# 5c. where a decode step's time goes: each stage left out in turn (kernels/generate.cu, KEEP)
if [ $BENCH -eq 1 ] && [ -n "$KNOCKOUT" ]; then
  FULL=""
  for S in $KNOCKOUT; do
    if stage "knockout_$S" 90 env CONFIT_GEN_KNOCKOUT="$S" ${KNOCKOUT_ENV:-} "$CONFIT" bench/gpu_bench.lua --only decode --shape 1.5B \
        --quick --new 512 --budget 60; then
      MS=$(grep -o '"ms_step":[0-9.e+-]*' "$OUTDIR/knockout_$S.log" | head -1 | cut -d: -f2)
      [ "$S" = none ] && FULL=$MS
      if [ -n "$MS" ] && [ -n "$FULL" ] && [ "$S" != none ]; then
        row "knockout $S" "$(awk -v a="$MS" -v f="$FULL" 'BEGIN { printf "%.3f ms/step (%.3f less)", a, f - a }')" "-"
      else
        row "knockout $S" "${MS:-?} ms/step" "-"
      fi
    else
      STATUS=1
    fi
  done
fi

# 6. compute-sanitizer (after the benchmarks: a slow sanitizer cannot cost their figures): each
# tool of SANITIZE_TOOLS (default memcheck; racecheck and synccheck look at shared memory and
# barriers) over each GPU test file
if [ $SANITIZE -eq 1 ]; then
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ -x "$CS" ]; then
    for tool in ${SANITIZE_TOOLS:-memcheck}; do
      for f in ${SANITIZE_TESTS:-tests/gpu/test_*.lua tests/gpu/test_*.c}; do
        [ -e "$f" ] || continue
        n=$(basename "$f"); n=${n%.*}
        # a C test runs as its executable, a Lua test under confit
        case "$f" in *.c) CMD=("$BUILD/tests/$n") ;; *) CMD=("$CONFIT" "$f") ;; esac
        # --report-api-errors no: test_cuda_ops asks for too much memory on purpose (the OOM
        # path); the tools are here for bad accesses, not for API calls that fail as intended
        EXTRA=(); [ "$tool" = memcheck ] && EXTRA=(--leak-check no)
        if stage "${tool}_$n" "${SANITIZE_LIMIT:-240}" "$CS" --tool "$tool" "${EXTRA[@]}" --report-api-errors no \
            --error-exitcode 99 "${CMD[@]}"; then
          row "$tool $n" "clean" "-"
        else
          row "$tool $n" "$(grep -Eo 'ERROR SUMMARY: [0-9]+ errors?' "$OUTDIR/${tool}_$n.log" | tail -1)" "-"
          STATUS=1
        fi
      done
    done
  else
    say "compute-sanitizer not found: sanitizer runs skipped"
  fi
fi

# 7. the table ---------------------------------------------------------------------------------
say "done in $(( $(date +%s) - T_START ))s, status $STATUS; logs in $OUTDIR"
{
  printf '\n%-34s %-40s %-22s %s\n' metric value baseline card
  while IFS=$'\t' read -r m v b; do printf '%-34s %-40s %-22s %s\n' "$m" "$v" "$b" "$CARD"; done < "$SUMMARY"
} | tee "$OUTDIR/table.txt"
exit $STATUS
