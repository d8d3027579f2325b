/* skinny.cu - the GEMMs of a decode step: at most 16 rows of activations against a bf16 weight
 * matrix, on tensor cores, memory-bound on the weights (cuda.h: cf_cuda_skinny_run).
 *
 *   plain:  Y (A, ldy) f32 = X (A, in; ldx) @ W (out, in)^T + beta * Y
 *   SwiGLU: W is [gate (F rows); up (F rows)], out = 2F; act (A, F) bf16 = silu(X Wg^T) * (X Wu^T)
 *           (the gate/up GEMM and the SwiGLU in one kernel; no f32 gate/up buffer)
 *   folded RMSNorm: X may instead be f32 rows normalised on load, x * rsqrt(ss/in + eps) * g,
 *           from per-row partial sums of squares ss that the kernel writing x left (a plain job
 *           leaves them for its output with ss_out: the block finishing a column group sums the
 *           squares of its columns per row in a fixed order). In decode the residual stream is
 *           written by the o_proj and down GEMMs, so every RMSNorm kernel of the step goes away.
 *
 * Layout of the work. The 16 rows of X are the A operand of mma.m16n8k16 (rows >= A re-read row
 * A - 1 and are never written); each tile of 8 W rows is a B operand. A block owns NT tiles (NT*8
 * output columns; SwiGLU: NT/2 gate tiles and the matching up tiles, NT*4 columns) and one of
 * ksb parts of K; its SK_WARPS warps split that part in chunks of 32 and add their C fragments in
 * shared memory in a fixed order. With ksb > 1 every block stores its partial tile in a
 * workspace and takes a ticket (an atomic counter per column group); the last block of a group
 * adds the ksb partials in part order, applies the epilogue and resets the counter. Results are
 * deterministic either way (fixed summation orders; the ticket only picks who adds).
 *
 * Loads. Per chunk a thread reads 16 bytes of its W row (row tile + lane/4, k = chunk + 8 (lane%4)
 * .. +7: the 4 threads of a row read 64 contiguous bytes) and 16 bytes of X rows lane/4 and
 * lane/4 + 8 at the same k. K is permuted inside the chunk so that these registers are the mma
 * fragments as loaded: mma 0 takes elements 8i+0..3 of thread i as the fragment's k = 2i, 2i+1,
 * 2i+8, 2i+9, mma 1 takes 8i+4..7. A and B use the same permutation, so the sum over k is
 * unchanged. U = 8 / NT chunks of loads (4 KB of W per warp) are issued before their mmas. W is
 * read with evict-first loads (streamed once per step), X through L2 (__ldcg: every block
 * re-reads it, and under a dependent launch its writer may still be running). A normalised f32 source loads 2 x 32 bytes per row and 32 of the norm
 * weight per chunk and rounds x * inv * g to the same bf16 pairs (so it runs with NT = 4).
 *
 * The wide layout (opts->wide; k_skinny_wide in skinny_kernel.cuh) puts the warps of a block on
 * different columns instead and stages the block's slice of X in shared memory once, so X is
 * read from L2 once per SK_WARPS*NT*8 columns rather than once per NT*8 (for a normalised f32
 * source, as many bytes as the block's weights in the layout above); it needs K in parts of at
 * most SKW_MAXCH chunks and more ticketed partials.
 *
 * Written without a GPU: its device code runs on the CPU against naive products in
 * tests/c/test_skinny_emu.cpp; tests/gpu/test_skinny.c passes on an H200 (2026-11-26), and so does
 * the generation test with it (CONFIT_GEN_MMA=1, 2). It is opt-in: the decode step with it was
 * slower there than with cuBLAS (2.88 / 2.33 ms tuned, against 2.12; kernels/generate.cu). The
 * wide layout (written in the seventh session, without a GPU) measured 2.43 ms against 2.17 on
 * an H200, and bench/skinny_bench.c has each decode GEMM 4-60 % slower than cuBLAS there
 * (bench/README.md).
 */
#include "kernels/cuda_internal.cuh"

#include "kernels/skinny_kernel.cuh"

/* ---------------------------------------------------------------- host side */

static int sk_sms(void) {
  static int sms = 0;
  if (!sms) {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError(); /* not left for the next launch check; plan for an H100 */
      n = 132;
    }
    sms = n > 0 ? n : 132;
  }
  return sms;
}

static bool al16(const void *p) { return ((uintptr_t)p % 16) == 0; }

/* why job j does not qualify, or NULL */
static const char *sk_refuse(const cf_skinny_job *j) {
  if (j->A < 1 || j->A > SK_MAXROWS) return "rows out of 1..16";
  if (j->in < 32 || j->in % 32) return "in not a positive multiple of 32";
  if (j->out < 8 || j->out % (j->swiglu ? 16 : 8)) return j->swiglu ? "out not a multiple of 16" : "out not a multiple of 8";
  if (j->ldx % 8 || j->ldx < j->in) return "ldx not a multiple of 8 and >= in";
  if (!j->W || !al16(j->W)) return "W missing or not 16-byte aligned";
  if (j->xf) {
    if (!al16(j->xf) || !j->gnorm || !al16(j->gnorm)) return "xf or gnorm missing or not 16-byte aligned";
    if (!j->ss_in || j->ss_groups < 1) return "xf without ss_in";
  } else if (!j->X || !al16(j->X)) {
    return "X missing or not 16-byte aligned";
  }
  if (j->swiglu ? !j->act || j->ss_out : !j->Y) return j->swiglu ? "SwiGLU needs act and takes no ss_out" : "no Y";
  return NULL;
}

extern "C" bool cf_cuda_skinny_ok(const cf_skinny_job *j) { return sk_refuse(j) == NULL; }

extern "C" int cf_cuda_skinny_ws_init(cf_skinny_ws *ws, size_t nfloat, int ncnt) {
  memset(ws, 0, sizeof *ws);
  if (!(ws->part = (float *)cf_cuda_alloc(nfloat * sizeof(float)))) return -1;
  if (!(ws->cnt = (int *)cf_cuda_alloc((size_t)ncnt * sizeof(int)))) {
    cf_cuda_free(ws->part, nfloat * sizeof(float));
    ws->part = NULL;
    return -1;
  }
  ws->nfloat = nfloat;
  ws->ncnt = ncnt;
  return cu_check(cudaMemsetAsync(ws->cnt, 0, (size_t)ncnt * sizeof(int), cu_stream()), "skinny: workspace");
}

extern "C" void cf_cuda_skinny_ws_free(cf_skinny_ws *ws) {
  if (ws->part) cf_cuda_free(ws->part, ws->nfloat * sizeof(float));
  if (ws->cnt) cf_cuda_free(ws->cnt, (size_t)ws->ncnt * sizeof(int));
  memset(ws, 0, sizeof *ws);
}

/* the launch shape of job j (cf_cuda_skinny_plan), with the wide layout's shared memory */
static bool sk_plan_job(const cf_skinny_job *j, const cf_skinny_opts *o, const cf_skinny_ws *ws, int *nt, int *ksb,
                        int *grid, size_t *smem) {
  bool have = ws && ws->part && ws->cnt;
  *smem = 0;
  if (o && o->wide && skw_plan(j->in, j->out, j->swiglu, o->nt, o->ksb, sk_sms(), have ? ws->nfloat : 0,
                               have ? ws->ncnt : 0, nt, ksb, grid, smem))
    return true;
  sk_plan(j->in, j->out, j->swiglu, j->xf != NULL, o ? o->nt : 0, o ? o->ksb : 0, sk_sms(), have ? ws->nfloat : 0,
          have ? ws->ncnt : 0, nt, ksb, grid);
  return false;
}

extern "C" bool cf_cuda_skinny_plan(const cf_skinny_job *j, const cf_skinny_opts *o, const cf_skinny_ws *ws, int *nt,
                                    int *ksb, int *grid) {
  size_t smem;
  return sk_plan_job(j, o, ws, nt, ksb, grid, &smem);
}

template <int NT, int EPI, bool XN>
static void sk_launch(int minb, bool pdl, dim3 grid, cudaStream_t st, const sk_args &a) {
  if (minb >= 2) cu_launch(pdl, grid, SK_WARPS * 32, 0, st, k_skinny<NT, EPI, XN, 2>, a);
  else cu_launch(pdl, grid, SK_WARPS * 32, 0, st, k_skinny<NT, EPI, XN, 1>, a);
}

/* the wide layout for nt tiles per warp, bound to two blocks per multiprocessor (128 registers: the
 * bf16 forms take about 100 anyway, the normalised ones 127 to 131 unbound; no spills) */
template <bool XN>
static void skw_dispatch(bool swiglu, int nt, size_t smem, bool pdl, dim3 g, cudaStream_t st, const sk_args &a) {
  const int T = SK_WARPS * 32;
  if (swiglu && nt == 4) cu_launch(pdl, g, T, smem, st, k_skinny_wide<4, SK_SWIGLU, XN, 2>, a);
  else if (swiglu) cu_launch(pdl, g, T, smem, st, k_skinny_wide<2, SK_SWIGLU, XN, 2>, a);
  else if (nt == 4) cu_launch(pdl, g, T, smem, st, k_skinny_wide<4, SK_PLAIN, XN, 2>, a);
  else if (nt == 2) cu_launch(pdl, g, T, smem, st, k_skinny_wide<2, SK_PLAIN, XN, 2>, a);
  else cu_launch(pdl, g, T, smem, st, k_skinny_wide<1, SK_PLAIN, XN, 2>, a);
}

extern "C" int cf_cuda_skinny_run(const cf_skinny_job *j, const cf_skinny_opts *o, const cf_skinny_ws *ws,
                                  void *stream) {
  const char *why = sk_refuse(j);
  if (why)
    return CF_ERR("skinny gemm: %s (rows %d, in %d, out %d, ldx %d%s)", why, j->A, j->in, j->out, j->ldx,
                  j->swiglu ? ", SwiGLU" : "");
  int nt, ksb, grid;
  size_t smem;
  bool wide = sk_plan_job(j, o, ws, &nt, &ksb, &grid, &smem);
  sk_args a;
  memset(&a, 0, sizeof a);
  a.W = (const bf16 *)j->W;
  a.X = (const bf16 *)j->X;
  a.xf = j->xf;
  a.gnorm = j->gnorm;
  a.ss_in = j->ss_in;
  a.ss_groups = j->ss_groups;
  a.eps = j->eps;
  a.ldx = j->ldx;
  a.Y = j->Y;
  a.ldy = j->ldy;
  a.beta = j->beta;
  a.ss_out = j->ss_out;
  a.act = (bf16 *)j->act;
  a.A = j->A;
  a.in = j->in;
  a.out = j->out;
  a.ksb = ksb;
  a.part = ksb > 1 ? ws->part : NULL;
  a.cnt = ksb > 1 ? ws->cnt : NULL;
  int minb = o ? o->minb : 0;
  bool pdl = o && o->pdl;
  dim3 g((unsigned)grid, (unsigned)ksb);
  cudaStream_t st = stream ? (cudaStream_t)stream : cu_stream();
  if (wide && j->xf) {
    skw_dispatch<true>(j->swiglu, nt, smem, pdl, g, st, a);
  } else if (wide) {
    skw_dispatch<false>(j->swiglu, nt, smem, pdl, g, st, a);
  } else if (j->xf) { /* the plan makes nt 4 */
    if (j->swiglu) sk_launch<4, SK_SWIGLU, true>(minb, pdl, g, st, a);
    else sk_launch<4, SK_PLAIN, true>(minb, pdl, g, st, a);
  } else if (j->swiglu) {
    if (nt == 4) sk_launch<4, SK_SWIGLU, false>(minb, pdl, g, st, a);
    else sk_launch<2, SK_SWIGLU, false>(minb, pdl, g, st, a);
  } else if (nt == 4) sk_launch<4, SK_PLAIN, false>(minb, pdl, g, st, a);
  else if (nt == 2) sk_launch<2, SK_PLAIN, false>(minb, pdl, g, st, a);
  else sk_launch<1, SK_PLAIN, false>(minb, pdl, g, st, a);
  return cu_launched("skinny gemm");
}
