// GEMM micro-benchmark: the VisualBERT GEMM shapes lowered by cg_lower_gemm, run the way
// the runtime runs plans (OpenMP threads, each step's [0, work) split into one contiguous
// chunk per thread, a barrier between steps), against the machine's measured FMA peak (a
// JIT-compiled loop of independent <W x float> FMA chains, timed on every thread at once).
// Prints GFLOP/s (median of the runs after warm-up) for 1 and 2 threads and the % of peak,
// and of the least CPU time of the busiest thread ("cpu" columns: stable under load; for
// 2 threads run with OMP_WAIT_POLICY=passive so that waiting at the barrier is not work).
//   gemm_bench [runs [shape-filter [max-threads]]]   KILN_GEMM_* environment variables
//                                                    override the plan (RtTuning, read
//                                                    here; see cg_gemm.c);
//                                                    KILN_BENCH_DUMP=DIR writes the IR
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/lower.h"

typedef void (*KernelFn)(void **bufs, int64_t begin, int64_t end);

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

static KernelFn lookup(CgJit *j, const char *name) {
  void *addr = cg_jit_lookup(j, name);
  if (!addr) {
    fprintf(stderr, "gemm_bench: no symbol %s\n", name);
    exit(1);
  }
  KernelFn fn;
  memcpy(&fn, &addr, sizeof fn);
  return fn;
}

static float *alloc_floats(size_t n) {
  float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
  if (!p) exit(1);
  // Uniform in [-0.5, 0.5), a different stream for each buffer (splitmix64). Until
  // 2026-11-27 this was (i * 2654435761) % 1000, which repeats every 1000 elements: rows of
  // A and W repeated and much of C was +-15..64, where the GELU epilogue's exp underflows
  // into subnormals at a microcode assist each (linear+GELU 109 GFLOP/s, ~145 with FTZ).
  static uint64_t stream;
  uint64_t seed = ++stream * 0x9e3779b97f4a7c15u;
  for (size_t i = 0; i < n; i++) {
    uint64_t z = seed + (uint64_t)i * 0x9e3779b97f4a7c15u;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    p[i] = (float)((z ^ (z >> 31)) >> 40) * 0x1p-24f - 0.5f;
  }
  return p;
}

// The target: the host, or KILN_BENCH_CPU (e.g. haswell, to time AVX2 code with its 16
// registers on an AVX-512 host) at KILN_BENCH_W lanes (default 8).
static CgOptions target(void) {
  CgOptions o = {0};
  rt_tuning_read(&o.tuning, getenv);  // KILN_GEMM_* (the plan), KILN_CPU, as kiln reads them
  o.dump_dir = getenv("KILN_BENCH_DUMP");  // the optimised IR, as kiln's --dump-llvm
  const char *cpu = getenv("KILN_BENCH_CPU");
  if (cpu && *cpu) {
    o.cpu = cpu, o.features = "";
    o.vector_floats = getenv("KILN_BENCH_W") ? atoi(getenv("KILN_BENCH_W")) : 8;
  }
  return o;
}

// ---------------------------------------------------------------------------------------
// FMA peak: `chains` accumulators, each acc = fma(acc, x, y) per iteration; bufs[0] holds
// x, y and receives the accumulators. Work items are iterations.

enum { PEAK_CHAINS = 24 };  // 12 below 32 registers (W < 16)
static int chains;

static KernelFn peak_kernel(CgJit **jit, int *W) {
  Cg cg;
  Diag d = {0};
  CgOptions o = target();
  if (!cg_init(&cg, "peak", &o, &d)) {
    fprintf(stderr, "%s\n", d.msg);
    exit(1);
  }
  *W = cg.W;
  chains = cg.W >= 16 ? PEAK_CHAINS : PEAK_CHAINS / 2;
  cg_kernel_begin(&cg, "peak");
  LLVMValueRef p = cg_buf(&cg, 0);
  LLVMValueRef x = cg_load(&cg, cg.f32, p, cg.W),
               y = cg_load(&cg, cg.f32, cg_gep(&cg, cg.f32, p, cg_i64(&cg, cg.W)), cg.W);
  LLVMValueRef init[PEAK_CHAINS], acc[PEAK_CHAINS], phi[PEAK_CHAINS];
  for (int c = 0; c < chains; c++)
    init[c] =
        cg_load(&cg, cg.f32, cg_gep(&cg, cg.f32, p, cg_i64(&cg, (int64_t)(2 + c) * cg.W)), cg.W);
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg.b), body = cg_block(&cg, "body"),
                    done = cg_block(&cg, "done");
  LLVMBuildBr(cg.b, body);
  LLVMPositionBuilderAtEnd(cg.b, body);
  LLVMValueRef iv = LLVMBuildPhi(cg.b, cg.i64, "i");
  LLVMAddIncoming(iv, &cg.begin, &pre, 1);
  for (int c = 0; c < chains; c++) {
    phi[c] = LLVMBuildPhi(cg.b, cg.vf, "acc");
    LLVMAddIncoming(phi[c], &init[c], &pre, 1);
  }
  for (int c = 0; c < chains; c++) acc[c] = cg_fma(&cg, phi[c], x, y);
  LLVMValueRef next = LLVMBuildAdd(cg.b, iv, cg_i64(&cg, 1), "");
  LLVMAddIncoming(iv, &next, &body, 1);
  for (int c = 0; c < chains; c++) LLVMAddIncoming(phi[c], &acc[c], &body, 1);
  LLVMBuildCondBr(cg.b, LLVMBuildICmp(cg.b, LLVMIntSLT, next, cg.end, ""), body, done);
  LLVMPositionBuilderAtEnd(cg.b, done);
  for (int c = 0; c < chains; c++)
    cg_store(&cg, acc[c], cg_gep(&cg, cg.f32, p, cg_i64(&cg, (int64_t)(2 + c) * cg.W)));
  cg_kernel_end(&cg);
  if (!cg_jit(&cg, jit, &d)) {
    fprintf(stderr, "%s\n", d.msg);
    exit(1);
  }
  return lookup(*jit, "peak");
}

// GFLOP/s of one thread while `threads` threads run the FMA loop at once (the slowest).
static double measure_peak(KernelFn peak, int W, int threads) {
  const int64_t iters = 20 * 1000 * 1000;
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double slowest = 0;
#pragma omp parallel num_threads(threads) reduction(max : slowest)
    {
      float *buf = alloc_floats((size_t)(2 + PEAK_CHAINS) * (size_t)W);
      buf[0] = 1.0f, buf[W] = 0.0f;
      void *bufs[1] = {buf};
#pragma omp barrier
      double t0 = now();
      peak(bufs, 0, iters);
      slowest = now() - t0;
      free(buf);
    }
    double gflops = 2.0 * W * chains * (double)iters / slowest * 1e-9;
    if (gflops > best) best = gflops;
  }
  return best;
}

// ---------------------------------------------------------------------------------------
// A lowered GEMM and its buffers (node ids 0..4: A, B, C, bias, residual).

typedef struct Bench {
  const char *label;
  CgGemm g;
  float b_scale;  // B's and the bias's values times this (0: 1)
  double flops;
  CgSteps steps;
  CgJit *jit;
  float *node[5];
  void **scratch;
  // KILN_BENCH_COLD=1: the packed weights are copied to enough buffers (together > L3) that
  // each timed run reads a copy not touched since, as each layer's weights are in a model.
  float **cold;
  int n_cold, cur_cold, cold_id;
  size_t cold_bytes;
} Bench;

static void *arg_ptr(Bench *b, CgArg a) {
  if (a.kind == CG_ARG_NODE) return b->node[a.id];
  if (b->n_cold && a.id == b->cold_id) return b->cold[b->cur_cold];
  if (!b->scratch[a.id]) b->scratch[a.id] = alloc_floats(a.bytes / sizeof(float) + 1);
  return b->scratch[a.id];
}

static size_t span(const CgGemm *g, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                   const int64_t *bs) {
  int64_t last = (rows - 1) * rs + (cols - 1) * cs;
  for (int d = 0; d < g->nbatch; d++) last += (g->bdim[d] - 1) * bs[d];
  return (size_t)last + 1;
}

static double compile_ms;

static void bench_build(Bench *b) {
  const CgGemm *g = &b->g;
  Cg cg;
  Diag d = {0};
  double t0 = now();
  CgOptions o = target();
  if (!cg_init(&cg, "bench", &o, &d) ||
      !cg_lower_gemm(&cg, g, "g", cg_arg_node(0), cg_arg_node(1), cg_arg_node(2), cg_arg_node(3),
                     cg_arg_node(4), 0, &b->steps, &d) ||
      !cg_jit(&cg, &b->jit, &d)) {
    fprintf(stderr, "%s\n", d.msg);
    exit(1);
  }
  for (int i = 0; i < b->steps.n; i++) lookup(b->jit, b->steps.v[i].fn);  // compiles
  compile_ms = (now() - t0) * 1e3;
  b->node[0] = alloc_floats(span(g, g->M, g->K, g->a_rs, g->a_cs, g->a_bstride));
  size_t nb = span(g, g->K, g->N, g->b_rs, g->b_cs, g->b_bstride);
  b->node[1] = alloc_floats(nb);
  for (size_t i = 0; b->b_scale && i < nb; i++) b->node[1][i] *= b->b_scale;
  b->node[2] = alloc_floats(span(g, g->M, g->N, g->c_rs, 1, g->c_bstride));
  b->node[3] = alloc_floats((size_t)g->N);
  for (int64_t i = 0; b->b_scale && i < g->N; i++) b->node[3][i] *= b->b_scale;
  b->node[4] = alloc_floats(span(g, g->M, g->N, g->c_rs, 1, g->c_bstride));
  b->scratch = calloc((size_t)b->steps.n_scratch + 1, sizeof *b->scratch);
  b->flops = 2.0 * (double)g->M * (double)g->N * (double)g->K;
  for (int d2 = 0; d2 < g->nbatch; d2++) b->flops *= (double)g->bdim[d2];
}

static void bench_free(Bench *b) {
  for (int i = 0; i < 5; i++) free(b->node[i]);
  for (int i = 0; i < b->n_cold; i++) free(b->cold[i]);
  free(b->cold);
  for (int i = 0; i < b->steps.n_scratch; i++) free(b->scratch[i]);
  free(b->scratch);
  free(b->steps.v);
  cg_jit_free(b->jit);
}

static double thread_cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

// Runs the plan's steps (`once` ones only when `once`) on `threads` threads; *max_cpu (if
// not NULL): the most CPU time any thread spent (with OMP_WAIT_POLICY=passive, its share of
// the work: what the run would take on cores of its own).
static void bench_run_cpu(Bench *b, int threads, bool once, double *max_cpu) {
  KernelFn fn[16];
  void *bufs[16][CG_MAX_ARGS];
  int n = 0;
  int64_t work[16];
  for (int i = 0; i < b->steps.n; i++) {
    const CgStep *s = &b->steps.v[i];
    if (s->once != once) continue;
    fn[n] = lookup(b->jit, s->fn);
    work[n] = s->work;
    for (int a = 0; a < s->n_args; a++) bufs[n][a] = arg_ptr(b, s->args[a]);
    n++;
  }
  double most = 0;
#pragma omp parallel num_threads(threads) reduction(max : most)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    double c0 = thread_cpu();
    for (int i = 0; i < n; i++) {
      fn[i](bufs[i], work[i] * t / nt, work[i] * (t + 1) / nt);
#pragma omp barrier
    }
    most = thread_cpu() - c0;
  }
  if (max_cpu) *max_cpu = most;
}

static void bench_run(Bench *b, int threads, bool once) { bench_run_cpu(b, threads, once, NULL); }

// GFLOP/s of the median wall time; *cpu_gflops: of the least (over runs) CPU time of the
// busiest thread, which other processes on a shared machine disturb less (with 2 threads,
// run with OMP_WAIT_POLICY=passive, or the barrier's spinning counts as work).
static double bench_gflops(Bench *b, int threads, int runs, double *cpu_gflops) {
  double *t = malloc((size_t)runs * sizeof *t), least_cpu = INFINITY;
  for (int r = 0; r < 3; r++) bench_run(b, threads, false);  // warm-up
  for (int r = 0; r < runs; r++) {
    if (b->n_cold) b->cur_cold = (b->cur_cold + 1) % b->n_cold;
    double t0 = now(), cpu;
    bench_run_cpu(b, threads, false, &cpu);
    t[r] = now() - t0;
    least_cpu = fmin(least_cpu, cpu);
  }
  if (cpu_gflops) *cpu_gflops = b->flops / least_cpu * 1e-9;
  double m = median(t, runs);
  free(t);
  return b->flops / m * 1e-9;
}

// ---------------------------------------------------------------------------------------

// x (M, K) · W^T with W (N, K) a parameter, plus bias: a linear layer.
static CgGemm linear(int64_t M, int64_t N, int64_t K) {
  return (CgGemm){.M = M,
                  .N = N,
                  .K = K,
                  .a_rs = K,
                  .a_cs = 1,
                  .b_rs = 1,
                  .b_cs = K,
                  .c_rs = N,
                  .scale = 1.0f,
                  .has_bias = true,
                  .b_constant = true};
}

// The intermediate layer of a transformer block: GELU(x W^T + bias) in the epilogue.
static CgGemm linear_gelu(int64_t M, int64_t N, int64_t K) {
  CgGemm g = linear(M, N, K);
  g.act = CG_ACT_GELU;
  return g;
}

// The inference linear layers with --precision bf16: A and the weights rounded to bf16
// words (the pack steps), f32 sums.
static CgGemm bf16_linear(int64_t M, int64_t N, int64_t K, CgAct act) {
  CgGemm g = linear(M, N, K);
  g.act = act;
  g.bf16 = true;
  return g;
}

// Attention of `images` × 12 heads over T tokens, heads interleaved in rows of 12·64 = 768
// (Q, K, V, out: (images, T, 768)): scores (images, 12, T, T) = Q·K^T / 8 and out = P·V.
static CgGemm attention_qk(int64_t images, int64_t T) {
  CgGemm g = {.M = T, .N = T, .K = 64, .nbatch = 2, .bdim = {images, 12}, .scale = 0.125f};
  g.a_rs = 768, g.a_cs = 1, g.a_bstride[0] = T * 768, g.a_bstride[1] = 64;
  g.b_rs = 1, g.b_cs = 768, g.b_bstride[0] = T * 768, g.b_bstride[1] = 64;
  g.c_rs = T, g.c_bstride[0] = 12 * T * T, g.c_bstride[1] = T * T;
  return g;
}

static CgGemm attention_pv(int64_t images, int64_t T) {
  CgGemm g = {.M = T, .N = 64, .K = T, .nbatch = 2, .bdim = {images, 12}, .scale = 1.0f};
  g.a_rs = T, g.a_cs = 1, g.a_bstride[0] = 12 * T * T, g.a_bstride[1] = T * T;
  g.b_rs = 768, g.b_cs = 1, g.b_bstride[0] = T * 768, g.b_bstride[1] = 64;
  g.c_rs = 768, g.c_bstride[0] = T * 768, g.c_bstride[1] = 64;
  return g;
}

// The bf16 training step's backward GEMMs of a linear layer (x W^T, W [n, k]) at M rows,
// everything packed each run as a training step does (the weights too: the trainer re-runs
// the packing after each update): dX = dY.W (M x k x n) and dW = dY^T.X (n x k x M).
static CgGemm bf16_dx(int64_t M, int64_t n, int64_t k) {
  return (CgGemm){.M = M, .N = k, .K = n, .a_rs = n, .a_cs = 1, .b_rs = k, .b_cs = 1, .c_rs = k,
                  .scale = 1.0f, .bf16 = true};
}
static CgGemm bf16_dw(int64_t M, int64_t n, int64_t k) {
  return (CgGemm){.M = n, .N = k, .K = M, .a_rs = 1, .a_cs = n, .b_rs = k, .b_cs = 1, .c_rs = k,
                  .scale = 1.0f, .bf16 = true};
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 25;
  if (runs < 1) runs = 1;
  CgJit *pj;
  int W;
  KernelFn peak = peak_kernel(&pj, &W);
  int max_threads = argc > 3 ? atoi(argv[3]) : 2;
  double peak1 = measure_peak(peak, W, 1), peak2 = max_threads > 1 ? measure_peak(peak, W, 2) : 1;
  cg_jit_free(pj);
  printf("FMA peak (W = %d, %d chains): %.1f GFLOP/s on 1 thread", W, chains, peak1);
  if (max_threads > 1) printf(", %.1f per thread with 2 (%.1f total)", peak2, 2 * peak2);
  printf("\n\n");
  Bench benches[] = {
      {.label = "linear 120x768x768", .g = linear(120, 768, 768)},
      {.label = "linear 120x3072x768", .g = linear(120, 3072, 768)},
      {.label = "linear 120x768x3072", .g = linear(120, 768, 3072)},
      {.label = "linear 120x2304x768", .g = linear(120, 2304, 768)},  // Q, K, V as one
      {.label = "linear+gelu 120x3072x768", .g = linear_gelu(120, 3072, 768)},
      // C before the GELU with std ~0.6, as in VisualBERT-base with its initial weights
      // (wide: std ~2.3, where each vector has lanes past the GELU's central form)
      {.label = "linear+gelu narrow", .g = linear_gelu(120, 3072, 768), .b_scale = 0.24f},
      {.label = "linear 960x768x768", .g = linear(960, 768, 768)},
      {.label = "linear 960x3072x768", .g = linear(960, 3072, 768)},
      {.label = "linear 960x768x3072", .g = linear(960, 768, 3072)},
      // training (the pre-training step at batch 8, text 32: 1056 rows) and smaller batches
      {.label = "linear 256x768x768", .g = linear(256, 768, 768)},
      {.label = "linear 1056x768x768", .g = linear(1056, 768, 768)},
      {.label = "linear 1056x3072x768", .g = linear(1056, 3072, 768)},
      {.label = "linear 1056x768x3072", .g = linear(1056, 768, 3072)},
      {.label = "QK^T 12x120x120x64", .g = attention_qk(1, 120)},
      {.label = "PV 12x120x64x120", .g = attention_pv(1, 120)},
      {.label = "QK^T 96x120x120x64", .g = attention_qk(8, 120)},
      {.label = "PV 96x120x64x120", .g = attention_pv(8, 120)},
      {.label = "bf16 120x768x768", .g = bf16_linear(120, 768, 768, CG_ACT_NONE)},
      {.label = "bf16 120x3072x768", .g = bf16_linear(120, 3072, 768, CG_ACT_NONE)},
      {.label = "bf16+gelu 120x3072x768", .g = bf16_linear(120, 3072, 768, CG_ACT_GELU)},
      {.label = "bf16 120x768x3072", .g = bf16_linear(120, 768, 3072, CG_ACT_NONE)},
      {.label = "bf16 960x3072x768", .g = bf16_linear(960, 3072, 768, CG_ACT_NONE)},
      {.label = "bf16 960x768x3072", .g = bf16_linear(960, 768, 3072, CG_ACT_NONE)},
      {.label = "bf16 dX 960x768x3072", .g = bf16_dx(960, 3072, 768)},
      {.label = "bf16 dW 3072x768x960", .g = bf16_dw(960, 3072, 768)},
  };
  printf("%-22s %9s %8s %6s %8s %8s %6s %8s %10s\n", "shape (MxNxK)", "compile", "1 thr", "%peak",
         "1 cpu", "2 thr", "%peak", "2 cpu", "work");
  for (size_t i = 0; i < sizeof benches / sizeof *benches; i++) {
    Bench *b = &benches[i];
    if (argc > 2 && !strstr(b->label, argv[2])) continue;
    bench_build(b);
    bench_run(b, 1, true);  // pack the weights
    if (getenv("KILN_BENCH_COLD") && atoi(getenv("KILN_BENCH_COLD")))
      for (int s = 0; s < b->steps.n; s++) {
        const CgStep *st = &b->steps.v[s];
        if (!st->once) continue;
        b->cold_id = st->args[1].id;
        b->cold_bytes = st->args[1].bytes;
        b->n_cold = (int)((768u << 20) / b->cold_bytes) + 1;  // 768 MiB: past any L3
        b->cold = malloc((size_t)b->n_cold * sizeof *b->cold);
        for (int c = 0; c < b->n_cold; c++) {
          b->cold[c] = aligned_alloc(64, (b->cold_bytes + 63) / 64 * 64);
          memcpy(b->cold[c], b->scratch[b->cold_id], b->cold_bytes);
        }
      }
    double c1, c2 = 0, g1 = bench_gflops(b, 1, runs, &c1),
                       g2 = max_threads > 1 ? bench_gflops(b, 2, runs, &c2) : 0;
    int64_t work = b->steps.v[b->steps.n - 1].work;
    printf("%-22s %7.0fms %8.1f %5.0f%% %8.1f", b->label, compile_ms, g1, 100 * g1 / peak1, c1);
    if (max_threads > 1)
      printf(" %8.1f %5.0f%% %8.1f", g2, 100 * g2 / (2 * peak2), c2);
    else
      printf(" %8s %6s %8s", "-", "-", "-");
    printf(" %10lld\n", (long long)work);
    fflush(stdout);
    bench_free(b);
  }
  return 0;
}
