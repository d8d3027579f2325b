#!/usr/bin/env bash
# one-shot device check of the CUDA op layer: unpack .debs, build confit_exe, run test_cuda_ops.lua
set -u
OUTDIR=${OUT:-/tmp/out}; mkdir -p "$OUTDIR"
R=/tmp/debroot; mkdir -p $R; for f in .debs/*.deb; do dpkg -x "$f" $R; done
ARCH=x86_64-linux-gnu; L=$R/usr/lib/$ARCH
export LD_LIBRARY_PATH="$L:$L/openblas-pthread"
export LUA_CPATH="$L/lua/5.4/?.so;;"
B=/tmp/bgpu
cmake -S . -B $B -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$R/usr" -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_C_FLAGS="-I$R/usr/include/$ARCH" -DCMAKE_CUDA_FLAGS="-I$R/usr/include/$ARCH" \
  -DLUA_INCLUDE_DIR="$R/usr/include/lua5.4" -DLUA_LIBRARY="$L/liblua5.4.so" \
  -DCBLAS_INCLUDE_DIR="$R/usr/include/$ARCH/openblas-pthread" -DBLAS_LIBRARY="$L/openblas-pthread/libopenblas.so" \
  -DCJSON_INCLUDE_DIR="$R/usr/include" -DCJSON_LIBRARY="$L/libcjson.so" \
  -DUTF8PROC_INCLUDE_DIR="$R/usr/include" -DUTF8PROC_LIBRARY="$L/libutf8proc.so" \
  -DEDIT_INCLUDE_DIR="$R/usr/include" -DEDIT_LIBRARY="$L/libedit.so" > "$OUTDIR/configure.log" 2>&1 || { tail -20 "$OUTDIR/configure.log"; exit 1; }
t0=$(date +%s)
cmake --build $B --target confit_exe -j16 > "$OUTDIR/build.log" 2>&1 || { grep -E "error" "$OUTDIR/build.log" | head -30; exit 1; }
echo "build $(( $(date +%s) - t0 ))s"
timeout 300 $B/confit tests/gpu/test_cuda_ops.lua > "$OUTDIR/test.log" 2>&1; rc=$?
echo "test rc=$rc"
grep -E "^FAIL" "$OUTDIR/test.log" | cut -c1-400 | head -60
grep -E "^(device|ops covered|timing|memory|SKIP)|passed, " "$OUTDIR/test.log"
tail -5 "$OUTDIR/test.log"
