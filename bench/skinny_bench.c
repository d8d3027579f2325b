/* skinny_bench.c - the decode GEMMs of one step, kernels/skinny.cu against cuBLAS (JSON lines).
 *
 *   skinny_bench [--rows N] [--shape 1.5B|7B|all] [--reps N]
 *
 * For each weight matrix of a decode step (qkv, o_proj, gate/up, down, LM head) of the Qwen2.5
 * 1.5B and 7B shapes, at N rows (default 16): the time of cublasGemmEx (bf16 in, f32 out and
 * compute, CUBLAS_GEMM_DEFAULT: what generate.cu calls) and of the skinny kernel (cf_cuda_skinny_plan, cf_cuda_skinny_run) in each
 * launch shape (tiles per block 1/2/4, K split chosen or 1, register bound 1/2, and a few as
 * programmatic dependent launches: back to back, each overlaps the previous) and in the wide
 * layout (impl "skinny_wide": tiles per warp, X staged in shared memory); gate/up also in
 * its fused SwiGLU form, and the GEMMs that read a norm's output also with the norm folded in
 * (f32 activations normalised on load; "+norm"): their vs_cublas compares with the plain
 * GEMM's cuBLAS time (without the SwiGLU or RMSNorm kernel they save).
 * Each figure is the mean over reps launches captured in one CUDA graph (as decode replays them),
 * cycling through enough copies of the weight that none is still in L2 from its last use; GB/s
 * counts the weight bytes only. Every skinny result is compared with cuBLAS's (max |diff| over
 * max |ref|; rel_err in the line). Random data; the card's name in every line.
 */
#include "kernels/cuda.h"
#include "error.h"
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(x)                                                                                 \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      printf("{\"bench\":\"error\",\"where\":\"%s:%d\",\"message\":\"%s\"}\n", __FILE__, __LINE__, \
             cudaGetErrorString(e_));                                                         \
      exit(1);                                                                                \
    }                                                                                         \
  } while (0)

/* normed: the activations as f32 RMS-normalised on load (the folded norm of decode), with a
 * norm weight of 1 and sums of squares that make the scale exactly 1, so the result is the
 * plain product's; cuBLAS has no such form (its time is the plain GEMM's) */
typedef struct { const char *model, *name; int in, out; int swiglu; float beta; int normed; } gemm_shape;

static const gemm_shape shapes[] = {
  {"1.5B", "qkv", 1536, 1536 + 2 * 256, 0, 0.f, 0},          {"1.5B", "qkv+norm", 1536, 1536 + 2 * 256, 0, 0.f, 1},
  {"1.5B", "o_proj", 1536, 1536, 0, 1.f, 0},                 {"1.5B", "gate_up", 1536, 2 * 8960, 0, 0.f, 0},
  {"1.5B", "gate_up+swiglu", 1536, 2 * 8960, 1, 0.f, 0},     {"1.5B", "gate_up+swiglu+norm", 1536, 2 * 8960, 1, 0.f, 1},
  {"1.5B", "down", 8960, 1536, 0, 1.f, 0},                   {"1.5B", "lm_head", 1536, 151936, 0, 0.f, 0},
  {"1.5B", "lm_head+norm", 1536, 151936, 0, 0.f, 1},
  {"7B", "qkv", 3584, 3584 + 2 * 512, 0, 0.f, 0},            {"7B", "qkv+norm", 3584, 3584 + 2 * 512, 0, 0.f, 1},
  {"7B", "o_proj", 3584, 3584, 0, 1.f, 0},                   {"7B", "gate_up", 3584, 2 * 18944, 0, 0.f, 0},
  {"7B", "gate_up+swiglu", 3584, 2 * 18944, 1, 0.f, 0},      {"7B", "gate_up+swiglu+norm", 3584, 2 * 18944, 1, 0.f, 1},
  {"7B", "down", 18944, 3584, 0, 1.f, 0},                    {"7B", "lm_head", 3584, 152064, 0, 0.f, 0},
  {"7B", "lm_head+norm", 3584, 152064, 0, 0.f, 1},
};

static char card[256];
static cudaStream_t st;
static cublasHandle_t blas;

/* one launch of variant v (-1: cuBLAS) on copy c */
typedef struct {
  const gemm_shape *s;
  int rows, ncopy;
  uint16_t **W, *X, *act;
  float *Y, *xf, *gn, *ss; /* normed: X as f32, a norm weight of ones, sums of squares = in */
  cf_skinny_ws *ws;
} ctx;

static int launch(const ctx *c, int copy, const cf_skinny_opts *o) {
  const gemm_shape *s = c->s;
  if (!o) {
    float alpha = 1.f, beta = s->beta;
    return cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, s->out, c->rows, s->in, &alpha, c->W[copy], CUDA_R_16BF,
                        s->in, c->X, CUDA_R_16BF, s->in, &beta, c->Y, CUDA_R_32F, s->out, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS ? 0 : -1;
  }
  cf_skinny_job j;
  memset(&j, 0, sizeof j);
  j.W = c->W[copy];
  if (s->normed) {
    j.xf = c->xf; j.gnorm = c->gn; j.ss_in = c->ss; j.ss_groups = 1; j.eps = 0.f;
  } else {
    j.X = c->X;
  }
  j.ldx = s->in;
  j.A = c->rows; j.in = s->in; j.out = s->out; j.swiglu = s->swiglu != 0;
  if (s->swiglu) j.act = c->act;
  else { j.Y = c->Y; j.ldy = s->out; j.beta = s->beta; }
  return cf_cuda_skinny_run(&j, o, c->ws, st);
}

/* mean microseconds per launch over reps launches in one graph (-1 on failure) */
static double time_graph(const ctx *c, const cf_skinny_opts *o, int reps) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  int bad = 0;
  for (int i = 0; i < reps; i++) bad |= launch(c, i % c->ncopy, o);
  CK(cudaStreamEndCapture(st, &g));
  if (bad) { cudaGraphDestroy(g); return -1; }
  CK(cudaGraphInstantiate(&ge, g, 0));
  CK(cudaGraphLaunch(ge, st)); /* warm-up */
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  CK(cudaEventRecord(e0, st));
  CK(cudaGraphLaunch(ge, st));
  CK(cudaEventRecord(e1, st));
  CK(cudaEventSynchronize(e1));
  float ms = 0;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  return 1000.0 * ms / reps;
}

/* bf16 as raw 16-bit words: round to nearest even, and back */
static uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void fill(uint16_t *d, size_t n, float scale, unsigned seed) {
  uint16_t *h = (uint16_t *)malloc(n * sizeof *h);
  unsigned x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    x = x * 1664525u + 1013904223u;
    h[i] = to_bf16(scale * ((float)(x >> 8) / 8388608.0f - 1.0f));
  }
  CK(cudaMemcpy(d, h, n * sizeof *h, cudaMemcpyHostToDevice));
  free(h);
}

/* the output of one launch (Y, or act as floats) */
static void result(const ctx *c, float *out, size_t n) {
  CK(cudaStreamSynchronize(st));
  if (c->s->swiglu) {
    uint16_t *h = (uint16_t *)malloc(n * sizeof *h);
    CK(cudaMemcpy(h, c->act, n * sizeof *h, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) out[i] = from_bf16(h[i]);
    free(h);
  } else {
    CK(cudaMemcpy(out, c->Y, n * sizeof *out, cudaMemcpyDeviceToHost));
  }
}

int main(int argc, char **argv) {
  int rows = 16, reps = 200;
  const char *only = "all";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("skinny_bench: the decode GEMMs, kernels/skinny.cu against cuBLAS (JSON lines; bench/README.md)\n"
             "usage: skinny_bench [--rows 1..16] [--shape 1.5B|7B|all] [--reps N]\n");
      return 0;
    }
    if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--shape") && i + 1 < argc) only = argv[++i];
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else {
      fprintf(stderr, "usage: skinny_bench [--rows 1..16] [--shape 1.5B|7B|all] [--reps N]\n");
      return 2;
    }
  }
  if (rows < 1 || rows > 16 || reps < 1) {
    fprintf(stderr, "skinny_bench: --rows must be 1..16 and --reps positive\n");
    return 2;
  }
  if (!cf_cuda_available()) {
    printf("{\"bench\":\"skipped\",\"why\":\"no CUDA device\"}\n");
    return 0;
  }
  snprintf(card, sizeof card, "%s", cf_cuda_device_name());
  st = (cudaStream_t)cf_cuda_stream();
  if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(blas, st) != CUBLAS_STATUS_SUCCESS) {
    printf("{\"bench\":\"error\",\"message\":\"cuBLAS handle\"}\n");
    return 1;
  }
  void *bws;
  CK(cudaMalloc(&bws, (size_t)32 << 20));
  cublasSetWorkspace(blas, bws, (size_t)32 << 20);
  cf_skinny_ws ws;
  if (cf_cuda_skinny_ws_init(&ws, (size_t)1 << 21, 4096)) {
    printf("{\"bench\":\"error\",\"message\":\"skinny workspace\"}\n");
    return 1;
  }
  /* tiles per block (per warp when wide), K parts (0: chosen), register bound, programmatic
   * dependent launch, the wide layout */
  static const cf_skinny_opts variants[] = {
      {4, 0, 1, false, false}, {4, 0, 2, false, false}, {2, 0, 1, false, false}, {2, 0, 2, false, false},
      {1, 0, 1, false, false}, {1, 0, 2, false, false}, {4, 1, 1, false, false}, {2, 1, 1, false, false},
      {1, 1, 1, false, false}, {4, 0, 1, true, false},  {2, 0, 1, true, false},  {1, 0, 1, true, false},
      {4, 0, 1, false, true},  {2, 0, 1, false, true},  {1, 0, 1, false, true},  {2, 0, 1, true, true},
      {4, 0, 1, true, true}};
  for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
    const gemm_shape *s = &shapes[si];
    if (strcmp(only, "all") && strcmp(only, s->model)) continue;
    size_t wn = (size_t)s->out * s->in, wbytes = wn * 2;
    int ncopy = (int)(((size_t)512 << 20) / wbytes) + 1;
    if (ncopy > 64) ncopy = 64;
    ctx c;
    memset(&c, 0, sizeof c);
    c.s = s;
    c.rows = rows;
    c.ncopy = ncopy;
    c.ws = &ws;
    c.W = (uint16_t **)calloc((size_t)ncopy, sizeof *c.W);
    for (int i = 0; i < ncopy; i++) {
      CK(cudaMalloc((void **)&c.W[i], wbytes));
      if (i == 0) fill(c.W[0], wn, 0.05f, 1);
      else CK(cudaMemcpy(c.W[i], c.W[0], wbytes, cudaMemcpyDeviceToDevice));
    }
    CK(cudaMalloc((void **)&c.X, (size_t)16 * s->in * 2));
    fill(c.X, (size_t)16 * s->in, 1.0f, 2);
    CK(cudaMalloc((void **)&c.Y, (size_t)16 * s->out * 4));
    CK(cudaMemset(c.Y, 0, (size_t)16 * s->out * 4));
    CK(cudaMalloc((void **)&c.act, (size_t)16 * s->out / 2 * 2));
    if (s->normed) { /* X as f32 (exact: bf16 values), ones, and sums of squares that make the scale 1 */
      size_t nx = (size_t)16 * s->in;
      uint16_t *hx = (uint16_t *)malloc(nx * 2);
      float *hf = (float *)malloc(nx * 4);
      CK(cudaMemcpy(hx, c.X, nx * 2, cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < nx; i++) hf[i] = from_bf16(hx[i]);
      CK(cudaMalloc((void **)&c.xf, nx * 4));
      CK(cudaMemcpy(c.xf, hf, nx * 4, cudaMemcpyHostToDevice));
      for (int i = 0; i < s->in; i++) hf[i] = 1.f;
      CK(cudaMalloc((void **)&c.gn, (size_t)s->in * 4));
      CK(cudaMemcpy(c.gn, hf, (size_t)s->in * 4, cudaMemcpyHostToDevice));
      for (int i = 0; i < 16; i++) hf[i] = (float)s->in;
      CK(cudaMalloc((void **)&c.ss, 16 * 4));
      CK(cudaMemcpy(c.ss, hf, 16 * 4, cudaMemcpyHostToDevice));
      free(hx);
      free(hf);
    }
    size_t nres = s->swiglu ? (size_t)rows * (s->out / 2) : (size_t)rows * s->out;
    float *ref = (float *)malloc(nres * 4), *got = (float *)malloc(nres * 4);
    /* the reference: cuBLAS once (beta = 0 on a zeroed Y), then SwiGLU on the host if fused */
    {
      gemm_shape plain = *s;
      plain.beta = 0.f;
      plain.swiglu = 0;
      plain.normed = 0;
      ctx p = c;
      p.s = &plain;
      CK(cudaMemset(c.Y, 0, (size_t)16 * s->out * 4));
      if (launch(&p, 0, NULL)) { printf("{\"bench\":\"error\",\"message\":\"cuBLAS reference\"}\n"); return 1; }
      float *full = (float *)malloc((size_t)rows * s->out * 4);
      result(&p, full, (size_t)rows * s->out);
      if (s->swiglu) {
        int F = s->out / 2;
        for (int r = 0; r < rows; r++)
          for (int j = 0; j < F; j++) {
            float g = full[(size_t)r * s->out + j], u = full[(size_t)r * s->out + F + j];
            ref[(size_t)r * F + j] = g / (1.0f + expf(-g)) * u;
          }
      } else {
        memcpy(ref, full, nres * 4);
      }
      free(full);
    }
    /* the fused and normed rows compare with the plain GEMM's cuBLAS time of the same matrix */
    static double t_plain = -1;
    bool derived = s->swiglu || s->normed;
    double t_blas = derived ? t_plain : time_graph(&c, NULL, reps);
    if (!derived) t_plain = t_blas;
    if (!derived)
      printf("{\"bench\":\"skinny\",\"device\":\"%s\",\"model\":\"%s\",\"gemm\":\"%s\",\"rows\":%d,\"in\":%d,\"out\":%d,"
             "\"impl\":\"cublas\",\"us\":%.2f,\"GBps\":%.0f}\n", card, s->model, s->name, rows, s->in, s->out, t_blas,
             wbytes / (t_blas * 1e3));
    for (size_t v = 0; v < sizeof variants / sizeof *variants; v++) {
      const cf_skinny_opts *o = &variants[v];
      /* the narrow plan makes SwiGLU 2+ tiles and a normed source 4; the wide one only the former */
      if ((s->swiglu && o->nt < 2) || (s->normed && !o->wide && o->nt != 4)) continue;
      int nt, ksb, grid;
      bool wide;
      {
        cf_skinny_job pj;
        memset(&pj, 0, sizeof pj);
        pj.in = s->in; pj.out = s->out; pj.swiglu = s->swiglu != 0; pj.xf = s->normed ? c.xf : NULL;
        wide = cf_cuda_skinny_plan(&pj, o, &ws, &nt, &ksb, &grid);
      }
      if (o->wide && !wide) continue; /* its parts of K do not fit the workspace: the narrow plan runs */
      /* correctness first: one launch with beta = 0 semantics (Y zeroed; beta*0 adds nothing) */
      CK(cudaMemset(c.Y, 0, (size_t)16 * s->out * 4));
      double err = -1;
      if (launch(&c, 0, o) == 0) {
        result(&c, got, nres);
        double md = 0, mr = 0;
        for (size_t i = 0; i < nres; i++) {
          double d = fabs((double)got[i] - ref[i]);
          if (!(d <= md)) md = d; /* NaN propagates */
          if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
        }
        err = md / (mr > 0 ? mr : 1);
      } else {
        printf("{\"bench\":\"error\",\"gemm\":\"%s\",\"message\":\"%s\"}\n", s->name, cf_error_message());
        continue;
      }
      double t = time_graph(&c, o, reps);
      printf("{\"bench\":\"skinny\",\"device\":\"%s\",\"model\":\"%s\",\"gemm\":\"%s\",\"rows\":%d,\"in\":%d,\"out\":%d,"
             "\"impl\":\"%s\",\"nt\":%d,\"ksb\":%d,\"minb\":%d,\"pdl\":%d,\"grid\":%d,\"us\":%.2f,\"GBps\":%.0f,"
             "\"vs_cublas\":%.3f,\"rel_err\":%.2e}\n",
             card, s->model, s->name, rows, s->in, s->out, wide ? "skinny_wide" : "skinny", nt, ksb, o->minb, (int)o->pdl,
             grid, t, wbytes / (t * 1e3),
             t_blas > 0 ? t_blas / t : 0.0, err);
      fflush(stdout);
    }
    for (int i = 0; i < ncopy; i++) cudaFree(c.W[i]);
    free(c.W);
    cudaFree(c.X);
    cudaFree(c.Y);
    cudaFree(c.act);
    if (s->normed) { cudaFree(c.xf); cudaFree(c.gn); cudaFree(c.ss); }
    free(ref);
    free(got);
  }
  cf_cuda_skinny_ws_free(&ws);
  return 0;
}
