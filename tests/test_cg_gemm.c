// Tests of codegen/cg_gemm.c: GEMMs lowered with cg_lower_gemm, JIT-compiled and run by a
// small in-test runner (scratch per id, `once` steps first, each step's [0, work) split into
// 1, 2 or 3 contiguous chunks as threads would), held to a naive double-precision reference
// with error <= 1e-5 of max |C|, and bitwise identical across the chunkings.
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/lower.h"
#include "runtime/dtype.h"
#include "tests/test_tuning.h"
#include "tests/check_run.h"

// ---------------------------------------------------------------------------------------
// A case: one GEMM with its operands, filled with values in [-1, 1).

enum { ARG_A, ARG_B, ARG_C, ARG_BIAS, ARG_RES, N_ARGS };

typedef struct Case {
  CgGemm g;
  float *buf[N_ARGS];
  size_t len[N_ARGS];  // floats
  double *ref;         // the reference C, same layout
  char name[64];
} Case;

static uint32_t rng = 12345;
static float rnd(void) {
  rng = rng * 1664525u + 1013904223u;
  return (float)((rng >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

// Floats spanned by an operand of rows × cols at (rs, cs) with the given batch strides.
static size_t span(const CgGemm *g, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                   const int64_t *bs) {
  int64_t last = (rows - 1) * rs + (cols - 1) * cs;
  for (int d = 0; d < g->nbatch; d++) last += (g->bdim[d] - 1) * bs[d];
  return rows > 0 && cols > 0 ? (size_t)last + 1 : 1;
}

static int64_t batch_count(const CgGemm *g) {
  int64_t n = 1;
  for (int d = 0; d < g->nbatch; d++) n *= g->bdim[d];
  return n;
}

static int64_t offset(const CgGemm *g, int64_t bi, const int64_t *bs) {
  int64_t off = 0;
  for (int d = g->nbatch - 1; d >= 0; d--) {
    off += (bi % g->bdim[d]) * bs[d];
    bi /= g->bdim[d];
  }
  return off;
}

static double gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

// int8 (codegen/cg_gemm_int8.c): row i of A / column j of B quantised (runtime/dtype.h),
// the products summed exactly, then ((float)sum · scale_a) · scale_b as the JIT does.
static float int8_quant(const float *x, int64_t n, int64_t s, int8_t *q) {
  float m = 0.0f;
  for (int64_t k = 0; k < n; k++) m = fmaxf(m, fabsf(x[k * s]));
  for (int64_t k = 0; k < n; k++) q[k] = (int8_t)dt_int8_quant(x[k * s], dt_int8_inv(m));
  return dt_int8_scale(m);
}

static double int8_product(const CgGemm *g, const float *A, const float *B, int64_t i, int64_t j) {
  int8_t qa[4096], qb[4096];
  ck_assert_int_le(g->K, 4096);
  float sa = int8_quant(A + i * g->a_rs, g->K, g->a_cs, qa);
  float sb = int8_quant(B + j * g->b_cs, g->K, g->b_rs, qb);
  int64_t sum = 0;
  for (int64_t k = 0; k < g->K; k++) sum += qa[k] * qb[k];
  return (float)sum * sa * sb;
}

// The reference: C[b](i, j) = epilogue(sum_k A[b](i, k) B[b](k, j)) in double (with bf16,
// of A and B rounded to bf16; with int8, int8_product).
static void reference(Case *t) {
  const CgGemm *g = &t->g;
  for (int64_t bi = 0; bi < batch_count(g); bi++) {
    const float *A = t->buf[ARG_A] + offset(g, bi, g->a_bstride);
    const float *B = t->buf[ARG_B] + offset(g, bi, g->b_bstride);
    int64_t co = offset(g, bi, g->c_bstride);
    for (int64_t i = 0; i < g->M; i++)
      for (int64_t j = 0; j < g->N; j++) {
        double s = 0;
        for (int64_t k = 0; k < g->K && !g->int8; k++) {
          float x = A[i * g->a_rs + k * g->a_cs], y = B[k * g->b_rs + j * g->b_cs];
          if (g->bf16) x = dt_round_bf16(x), y = dt_round_bf16(y);  // f32 sums: same bound
          s += (double)x * y;
        }
        if (g->int8) s = int8_product(g, A, B, i, j);
        s *= g->scale;
        if (g->has_bias) s += t->buf[ARG_BIAS][j];
        if (g->act == CG_ACT_GELU) s = gelu(s);
        if (g->has_residual) s += t->buf[ARG_RES][co + i * g->c_rs + j];
        t->ref[co + i * g->c_rs + j] = s;
      }
  }
}

static float *alloc_floats(size_t n) {
  float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
  ck_assert_ptr_nonnull(p);
  return p;
}

static void case_init(Case *t, const CgGemm *g, const char *name) {
  memset(t, 0, sizeof *t);
  t->g = *g;
  snprintf(t->name, sizeof t->name, "%s", name);
  t->len[ARG_A] = span(g, g->M, g->K, g->a_rs, g->a_cs, g->a_bstride);
  t->len[ARG_B] = span(g, g->K, g->N, g->b_rs, g->b_cs, g->b_bstride);
  t->len[ARG_C] = t->len[ARG_RES] = span(g, g->M, g->N, g->c_rs, 1, g->c_bstride);
  t->len[ARG_BIAS] = (size_t)g->N;
  for (int x = 0; x < N_ARGS; x++) {
    t->buf[x] = alloc_floats(t->len[x]);
    for (size_t i = 0; i < t->len[x]; i++) t->buf[x][i] = rnd();
  }
  t->ref = calloc(t->len[ARG_C], sizeof *t->ref);
  reference(t);
}

static void case_free(Case *t) {
  for (int x = 0; x < N_ARGS; x++) free(t->buf[x]);
  free(t->ref);
}

// A plain row-major GEMM: A (M, K), B (K, N), C (M, N).
static CgGemm plain(int64_t M, int64_t N, int64_t K) {
  return (CgGemm){
      .M = M, .N = N, .K = K, .a_rs = K, .a_cs = 1, .b_rs = N, .b_cs = 1, .c_rs = N, .scale = 1.0f};
}

// ---------------------------------------------------------------------------------------
// The runner. Node id 5·case + ARG_* names a case's buffers; scratch ids get their own.

typedef void (*KernelFn)(void **bufs, int64_t begin, int64_t end);

typedef struct Run {
  int W;
  int n;
  Case *cases;
  CgSteps steps;
  CgJit *jit;
  void **scratch;
} Run;

static void *arg_ptr(Run *s, CgArg a) {
  if (a.kind == CG_ARG_NODE) return s->cases[a.id / N_ARGS].buf[a.id % N_ARGS];
  ck_assert_int_eq(a.kind, CG_ARG_SCRATCH);
  ck_assert_int_lt(a.id, s->steps.n_scratch);
  if (!s->scratch[a.id]) {  // NaN-filled: reading what was never written shows
    s->scratch[a.id] = alloc_floats(a.bytes / sizeof(float) + 1);
    memset(s->scratch[a.id], 0xff, (a.bytes + 63) / 64 * 64);
  }
  return s->scratch[a.id];
}

static void run_step(Run *s, const CgStep *st, int chunks) {
  void *addr = cg_jit_lookup(s->jit, st->fn);
  ck_assert_msg(addr != NULL, "no symbol %s", st->fn);
  KernelFn fn;
  memcpy(&fn, &addr, sizeof fn);  // ISO C has no object-to-function pointer cast
  void *bufs[CG_MAX_ARGS];
  for (int i = 0; i < st->n_args; i++) bufs[i] = arg_ptr(s, st->args[i]);
  for (int c = 0; c < chunks; c++) fn(bufs, st->work * c / chunks, st->work * (c + 1) / chunks);
}

// The tuning every case compiles with: the environment's (test_tuning), as main() read it.
static RtTuning g_tuning;

// Compiles the cases into one module (GEMM i named "g<i>", steps with node i).
static void run_build(Run *s, Case *cases, int n, int W) {
  memset(s, 0, sizeof *s);
  s->W = W, s->n = n, s->cases = cases;
  Cg cg;
  Diag d = {0};
  CgOptions opt = {.vector_floats = W, .tuning = g_tuning};
  ck_assert_msg(cg_init(&cg, "test_gemm", &opt, &d), "%s", d.msg);
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "g%d", i);
    int base = i * N_ARGS;
    ck_assert_msg(
        cg_lower_gemm(&cg, &cases[i].g, name, cg_arg_node(base + ARG_A), cg_arg_node(base + ARG_B),
                      cg_arg_node(base + ARG_C), cg_arg_node(base + ARG_BIAS),
                      cg_arg_node(base + ARG_RES), i, &s->steps, &d),
        "%s", d.msg);
  }
  ck_assert_msg(cg_jit(&cg, &s->jit, &d), "%s", d.msg);
  s->scratch = calloc((size_t)s->steps.n_scratch + 1, sizeof *s->scratch);
  for (int i = 0; i < s->steps.n; i++)  // weights bound: the `once` steps run first
    if (s->steps.v[i].once) run_step(s, &s->steps.v[i], 1);
}

static void run_free(Run *s) {
  for (int i = 0; i < s->steps.n_scratch; i++) free(s->scratch[i]);
  free(s->scratch);
  cg_steps_free(&s->steps);
  cg_jit_free(s->jit);
}

// Runs case i with each chunking; C must match the reference and be identical bit for bit.
static void run_check(Run *s, int i) {
  Case *t = &s->cases[i];
  size_t n = t->len[ARG_C];
  float *first = alloc_floats(n);
  for (int chunks = 1; chunks <= 3; chunks++) {
    memset(t->buf[ARG_C], 0xff, n * sizeof(float));  // NaN: every element must be written
    for (int k = 0; k < s->steps.n; k++)
      if (s->steps.v[k].node == i && !s->steps.v[k].once) run_step(s, &s->steps.v[k], chunks);
    if (chunks == 1) {
      memcpy(first, t->buf[ARG_C], n * sizeof(float));
    } else {
      ck_assert_msg(memcmp(first, t->buf[ARG_C], n * sizeof(float)) == 0,
                    "W=%d %s: result differs with %d chunks", s->W, t->name, chunks);
    }
  }
  // Compare the elements of C; the gaps of a strided C must still hold the NaN pattern.
  const CgGemm *g = &t->g;
  bool *in_c = calloc(n, sizeof *in_c);
  double maxc = 1e-30, maxerr = 0;
  int64_t worst = -1;
  for (int64_t bi = 0; bi < batch_count(g); bi++)
    for (int64_t i2 = 0; i2 < g->M; i2++)
      for (int64_t j = 0; j < g->N; j++) {
        int64_t at = offset(g, bi, g->c_bstride) + i2 * g->c_rs + j;
        double e = fabs((double)first[at] - t->ref[at]);
        if (fabs(t->ref[at]) > maxc) maxc = fabs(t->ref[at]);
        if (!(e <= maxerr)) maxerr = e, worst = at;
        in_c[at] = true;
      }
  ck_assert_msg(maxerr <= 1e-5 * maxc, "W=%d %s: error %g (max |C| %g) at element %lld: %g vs %g",
                s->W, t->name, maxerr, maxc, (long long)worst, worst >= 0 ? first[worst] : 0.0,
                worst >= 0 ? t->ref[worst] : 0.0);
  for (size_t at = 0; at < n; at++) {
    uint32_t bits;
    memcpy(&bits, &first[at], sizeof bits);
    ck_assert_msg(in_c[at] || bits == 0xffffffffu, "W=%d %s: wrote element %zu, outside C", s->W,
                  t->name, at);
  }
  free(in_c);
  free(first);
}

// Builds, runs and checks a list of GEMMs at vector width W.
static void check_gemms(const CgGemm *gs, const char *const *names, int n, int W) {
  Case *cases = calloc((size_t)n, sizeof *cases);
  for (int i = 0; i < n; i++) case_init(&cases[i], &gs[i], names[i]);
  Run s;
  run_build(&s, cases, n, W);
  for (int i = 0; i < n; i++) run_check(&s, i);
  run_free(&s);
  for (int i = 0; i < n; i++) case_free(&cases[i]);
  free(cases);
}

static void check_one(CgGemm g, const char *name, int W) {
  const char *names[1] = {name};
  check_gemms(&g, names, 1, W);
}

// ---------------------------------------------------------------------------------------
// Every combination of M, N, K in {1, 3, 17, 64, 65, 257}: one module per M, at W = 16 with
// B an activation (packed inside the compute items) and at W = 8 with B a parameter (packed
// by a `once` step). Transposed B (W^T, packed by in-register transposes) for every N, K,
// both ways.

static const int64_t sizes[6] = {1, 3, 17, 64, 65, 257};

static void check_grid(int W, int64_t M, bool bt, bool constant) {
  CgGemm gs[36];
  char buf[36][64];
  const char *names[36];
  int n = 0;
  for (int ni = 0; ni < 6; ni++)
    for (int ki = 0; ki < 6; ki++, n++) {
      int64_t N = sizes[ni], K = sizes[ki];
      gs[n] = plain(M, N, K);
      gs[n].b_constant = constant;
      if (bt) gs[n].b_rs = 1, gs[n].b_cs = K;  // W (N, K)
      snprintf(buf[n], sizeof buf[n], "%lldx%lldx%lld%s", (long long)M, (long long)N, (long long)K,
               bt ? " B^T" : "");
      names[n] = buf[n];
    }
  check_gemms(gs, names, n, W);
}

START_TEST(test_gemm_every_size_matches_reference_w16) { check_grid(16, sizes[_i], false, false); }
END_TEST

START_TEST(test_gemm_every_size_matches_reference_w8) { check_grid(8, sizes[_i], false, true); }
END_TEST

START_TEST(test_gemm_transposed_weights_every_n_k) { check_grid(_i ? 8 : 16, 17, true, _i == 0); }
END_TEST

// ---------------------------------------------------------------------------------------
// Strides, batches and epilogues, each at W = 16 and W = 8 (_i = 0, 1).

static int loop_width(int i) { return i ? 8 : 16; }

START_TEST(test_gemm_transposed_a) {
  CgGemm gs[3] = {plain(17, 65, 64), plain(64, 3, 257), plain(65, 64, 17)};
  for (int i = 0; i < 3; i++) gs[i].a_rs = 1, gs[i].a_cs = gs[i].M;  // A stored (K, M)
  const char *names[3] = {"A^T 17x65x64", "A^T 64x3x257", "A^T 65x64x17"};
  check_gemms(gs, names, 3, loop_width(_i));
}
END_TEST

START_TEST(test_gemm_transposed_a_and_b) {
  CgGemm g = plain(33, 50, 70);
  g.a_rs = 1, g.a_cs = g.M, g.b_rs = 1, g.b_cs = g.K;
  check_one(g, "A^T B^T 33x50x70", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_strided_operands) {
  // Rows of A, B and C padded (row strides larger than the row), as slices of wider tensors;
  // the masked stores of the last vector must leave C's gaps alone (N = 47: 15 or 7 lanes).
  CgGemm gs[2] = {plain(19, 37, 41), plain(10, 47, 9)};
  gs[0].a_rs = 50, gs[0].b_rs = 40, gs[0].c_rs = 45;
  gs[1].a_rs = 12, gs[1].b_rs = 48, gs[1].c_rs = 48;
  const char *names[2] = {"strided 19x37x41", "strided 10x47x9"};
  check_gemms(gs, names, 2, loop_width(_i));
}
END_TEST

START_TEST(test_gemm_batched_with_broadcast_b) {
  CgGemm g = plain(20, 35, 18);
  g.nbatch = 1, g.bdim[0] = 5;
  g.a_bstride[0] = g.M * g.K, g.b_bstride[0] = 0, g.c_bstride[0] = g.M * g.N;
  g.b_constant = true;
  check_one(g, "batch 5 B broadcast", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_two_batch_dims) {
  // [2, 3] batches: A broadcast over the second dim, B over the first, C dense.
  CgGemm g = plain(9, 21, 13);
  g.nbatch = 2, g.bdim[0] = 2, g.bdim[1] = 3;
  g.a_bstride[0] = g.M * g.K, g.a_bstride[1] = 0;
  g.b_bstride[0] = 0, g.b_bstride[1] = g.K * g.N;
  g.c_bstride[0] = 3 * g.M * g.N, g.c_bstride[1] = g.M * g.N;
  check_one(g, "batch 2x3", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_attention_shapes) {
  // Q·K^T and P·V per head, heads interleaved in rows of 4·16 (Q, K, V: (T, H·D)).
  enum { H = 4, T = 37, D = 16 };
  CgGemm qk = {.M = T, .N = T, .K = D, .nbatch = 1, .bdim = {H}, .scale = 0.25f};
  qk.a_rs = H * D, qk.a_cs = 1, qk.a_bstride[0] = D;  // Q(t, h·D + d)
  qk.b_rs = 1, qk.b_cs = H * D, qk.b_bstride[0] = D;  // B(d, s) = K(s, h·D + d)
  qk.c_rs = T, qk.c_bstride[0] = T * T;               // scores (H, T, T)
  CgGemm pv = {.M = T, .N = D, .K = T, .nbatch = 1, .bdim = {H}, .scale = 1.0f};
  pv.a_rs = T, pv.a_cs = 1, pv.a_bstride[0] = T * T;  // P (H, T, T)
  pv.b_rs = H * D, pv.b_cs = 1, pv.b_bstride[0] = D;  // V(s, h·D + d)
  pv.c_rs = H * D, pv.c_bstride[0] = D;               // out (T, H·D)
  CgGemm gs[2] = {qk, pv};
  const char *names[2] = {"Q K^T", "P V"};
  check_gemms(gs, names, 2, loop_width(_i));
}
END_TEST

START_TEST(test_gemm_epilogue_scale) {
  CgGemm g = plain(23, 70, 33);
  g.scale = 0.125f;
  check_one(g, "scale", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_epilogue_bias) {
  CgGemm g = plain(23, 70, 33);
  g.has_bias = true;
  check_one(g, "bias", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_epilogue_residual) {
  CgGemm g = plain(23, 70, 33);
  g.has_residual = true;
  check_one(g, "residual", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_epilogue_all_with_long_k) {
  // K spans several K blocks (the last one shorter): partial sums go through C and the
  // epilogue applies once, after the last block.
  CgGemm g = plain(29, 53, 1537);
  g.b_rs = 1, g.b_cs = g.K;
  g.scale = 0.5f, g.has_bias = true, g.has_residual = true;
  check_one(g, "scale+bias+residual K=1537", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_epilogue_gelu) {
  CgGemm g = plain(23, 70, 33);
  g.has_bias = true, g.act = CG_ACT_GELU, g.has_residual = true;
  CgGemm g2 = plain(17, 50, 700);
  g2.b_rs = 1, g2.b_cs = g2.K, g2.act = CG_ACT_GELU, g2.scale = 0.25f;
  // Narrow inputs (std ~0.5): most vectors take the epilogue's branch to GELU's central
  // form, some (a lane past 1.25) the full one, in the same tile.
  CgGemm g3 = plain(23, 70, 33);
  g3.scale = 0.25f, g3.act = CG_ACT_GELU;
  // Few rows, wide tiles: the epilogue's loop over full vectors, a partial last one, and a
  // tile of one vector (no loop).
  CgGemm g4 = plain(1, 200, 40), g5 = plain(3, 16, 40);
  g4.has_bias = true, g4.act = CG_ACT_GELU, g4.has_residual = true;
  g5.has_bias = true, g5.act = CG_ACT_GELU;
  CgGemm gs[5] = {g, g2, g3, g4, g5};
  const char *names[5] = {"bias+gelu+residual", "scale+gelu K=700", "narrow gelu",
                          "1 row, 200 columns: bias+gelu+residual", "3 rows, 16 columns: bias+gelu"};
  check_gemms(gs, names, 5, loop_width(_i));
}
END_TEST

// ---------------------------------------------------------------------------------------
// The GELU and gelu' epilogues (a loop over the tile's rows, reloading the stored tile)
// give the bits of the GEMM without them followed by the element-wise kernels of the
// unfused ops (lower_ew.c: cg_gelu, and dy · cg_gelu_grad(x)) and C's float arithmetic for
// scale, bias and residual: M, N and K tails, several K blocks, narrow and wide inputs.

typedef void (*EwFn)(void **bufs, int64_t begin, int64_t end);

// f(x) on W-float vectors, one a work item: bufs = {x, f(x)}; cg_gelu, else cg_gelu_grad.
static void ew_build(Cg *cg, const char *name, bool grad) {
  cg_kernel_begin(cg, name);
  LLVMValueRef x = cg_buf(cg, 0), y = cg_buf(cg, 1);
  CgLoop l;
  cg_for_begin(cg, &l, cg->begin, cg->end, cg_i64(cg, 1), "v");
  LLVMValueRef at = LLVMBuildMul(cg->b, l.iv, cg_i64(cg, cg->W), "");
  LLVMValueRef v = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, x, at), cg->W);
  cg_store(cg, grad ? cg_gelu_grad(cg, v) : cg_gelu(cg, v), cg_gep(cg, cg->f32, y, at));
  cg_for_end(cg, &l);
  cg_kernel_end(cg);
}

// Applies the element-wise kernel `name` of j to the n floats at x, into y.
static void ew_run(CgJit *j, const char *name, const float *x, float *y, size_t n, int W) {
  size_t nv = (n + (size_t)W - 1) / (size_t)W;
  float *in = alloc_floats(nv * (size_t)W), *out = alloc_floats(nv * (size_t)W);
  memset(in, 0, nv * (size_t)W * sizeof *in);
  memcpy(in, x, n * sizeof *x);
  void *addr = cg_jit_lookup(j, name);
  ck_assert_ptr_nonnull(addr);
  EwFn fn;
  memcpy(&fn, &addr, sizeof fn);
  void *bufs[2] = {in, out};
  fn(bufs, 0, (int64_t)nv);
  memcpy(y, out, n * sizeof *y);
  free(in);
  free(out);
}

// g (with act GELU) against the same GEMM without its epilogue (int8
// keeps its dequantisation), then scale, bias, the element-wise kernel and the residual.
static void check_gelu_unfused(CgGemm g, float range, const char *what, int W) {
  CgGemm raw = g;
  raw.scale = 1.0f, raw.has_bias = false, raw.act = CG_ACT_NONE, raw.has_residual = false;
  Case c[2];
  case_init(&c[0], &g, what);
  case_init(&c[1], &raw, what);
  for (int x = 0; x < N_ARGS; x++) {
    for (size_t i = 0; i < c[0].len[x]; i++) c[0].buf[x][i] *= range;
    memcpy(c[1].buf[x], c[0].buf[x], c[0].len[x] * sizeof(float));
  }
  Run s;
  run_build(&s, c, 2, W);
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < s.steps.n; k++)
      if (s.steps.v[k].node == i && !s.steps.v[k].once) run_step(&s, &s.steps.v[k], 2);
  run_free(&s);
  Cg cg;
  Diag d = {0};
  CgOptions opt = {.vector_floats = W, .tuning = g_tuning};
  ck_assert_msg(cg_init(&cg, "test_gelu_ew", &opt, &d), "%s", d.msg);
  ew_build(&cg, "gelu", false);
  CgJit *j;
  ck_assert_msg(cg_jit(&cg, &j, &d), "%s", d.msg);
  size_t n = c[0].len[ARG_C];
  float *t = alloc_floats(n), *f = alloc_floats(n);
  for (size_t i = 0; i < n; i++) {
    t[i] = c[1].buf[ARG_C][i] * g.scale;
    if (g.has_bias) t[i] += c[0].buf[ARG_BIAS][i % (size_t)g.c_rs];  // c_rs == N here
  }
  ew_run(j, "gelu", t, f, n, W);
  int central = 0;  // elements of GELU's central form (|x| < 1.25): both branches are taken
  for (size_t i = 0; i < n; i++) {
    central += fabsf(t[i]) < 1.25f;
    float want = g.has_residual ? f[i] + c[0].buf[ARG_RES][i] : f[i];
    uint32_t a, b;
    memcpy(&a, &c[0].buf[ARG_C][i], sizeof a);
    memcpy(&b, &want, sizeof b);
    ck_assert_msg(a == b, "W=%d %s: element %zu is %a fused, %a unfused", W, what, i,
                  c[0].buf[ARG_C][i], want);
  }
  ck_assert_msg(central > 0 && (size_t)central < n, "W=%d %s: %d of %zu central", W, what,
                central, n);
  cg_jit_free(j);
  free(t);
  free(f);
  case_free(&c[0]);
  case_free(&c[1]);
}

START_TEST(test_gemm_gelu_epilogues_give_the_bits_of_the_unfused_ops) {
  int W = loop_width(_i);
  CgGemm g = plain(23, 70, 33);  // M, N tails (8x3 / 6x2 tiles), K not a multiple of 4
  g.has_bias = true, g.act = CG_ACT_GELU, g.has_residual = true;
  check_gelu_unfused(g, 1.0f, "bias+gelu+residual 23x70x33", W);
  g.b_constant = true;  // weights packed once, and wide inputs: GELU's far form too
  check_gelu_unfused(g, 3.0f, "bias+gelu+residual 23x70x33 wide", W);
  CgGemm g2 = plain(3, 100, 700);  // few rows (a wide tile), several K blocks
  g2.b_rs = 1, g2.b_cs = g2.K, g2.act = CG_ACT_GELU, g2.scale = 0.25f, g2.has_bias = true;
  check_gelu_unfused(g2, 1.0f, "scale+bias+gelu 3x100x700 B^T", W);
  CgGemm g3 = plain(37, 20, 65);  // N of one partial vector (W 16: 14-row tiles)
  g3.has_bias = true, g3.act = CG_ACT_GELU;
  check_gelu_unfused(g3, 1.0f, "bias+gelu 37x20x65", W);
  CgGemm g4 = plain(29, 50, 130);  // int8: the row loop reads each row's scale of A
  g4.b_rs = 1, g4.b_cs = g4.K, g4.b_constant = true, g4.int8 = true;
  g4.has_bias = true, g4.act = CG_ACT_GELU;
  check_gelu_unfused(g4, 1.0f, "int8 bias+gelu 29x50x130", W);
}
END_TEST

START_TEST(test_gemm_visualbert_linear) {
  // A VisualBERT linear layer: x (120, 768) · W^T, W (3072, 768), bias.
  CgGemm g = plain(120, 3072, 768);
  g.b_rs = 1, g.b_cs = g.K, g.b_constant = true, g.has_bias = true;
  check_one(g, "120x3072x768 linear", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_prefetching_weights_match_reference) {
  // Weights with many short K blocks (RtTuning.gemm_kc, KILN_GEMM_KC) and odd sizes: each
  // microkernel call prefetches its share of the next K block's slice, or after the last
  // block the next item's panels (past the packed buffer for the last item); results must
  // not change.
  g_tuning.gemm_kc = 96;
  CgGemm gs[3] = {plain(45, 130, 500), plain(120, 768, 3072), plain(7, 33, 200)};
  for (int i = 0; i < 3; i++) gs[i].b_rs = 1, gs[i].b_cs = gs[i].K, gs[i].b_constant = true;
  gs[1].has_bias = true;
  const char *names[3] = {"prefetch 45x130x500", "prefetch 120x768x3072", "prefetch 7x33x200"};
  check_gemms(gs, names, 3, loop_width(_i));
  g_tuning.gemm_kc = 0;
}
END_TEST

START_TEST(test_gemm_prefetching_a_matches_reference) {
  // A whose K block does not fit in L2 (here a 2000-float L2, RtTuning.gemm_l2_floats): each
  // microkernel call also prefetches the next M block's A sliver, past A's last row for the
  // last full block (M tails of 3 and 5 rows, a K tail, A rows wider than K); results must
  // not change.
  g_tuning.gemm_l2_floats = 2000;
  g_tuning.gemm_kc = 200;
  CgGemm gs[3] = {plain(67, 130, 500), plain(61, 48, 300), plain(40, 20, 64)};
  for (int i = 0; i < 3; i++) gs[i].b_rs = 1, gs[i].b_cs = gs[i].K, gs[i].b_constant = true;
  gs[0].has_bias = true, gs[0].has_residual = true;
  gs[1].a_rs = 333;  // rows of A 333 floats apart
  const char *names[3] = {"A prefetch 67x130x500", "A prefetch 61x48x300 a_rs 333",
                          "A prefetch 40x20x64"};
  check_gemms(gs, names, 3, loop_width(_i));
  g_tuning.gemm_l2_floats = 0, g_tuning.gemm_kc = 0;
}
END_TEST

// JIT-compiles cg's module (disposing cg) and finds every step's kernel; frees st's steps.
static void jit_finds_every_step(Cg *cg, CgSteps *st) {
  Diag d = {0};
  CgJit *j;
  ck_assert_msg(cg_jit(cg, &j, &d), "%s", d.msg);
  for (int i = 0; i < st->n; i++) ck_assert_ptr_nonnull(cg_jit_lookup(j, st->v[i].fn));
  cg_jit_free(j);
  cg_steps_free(st);
}

// A module to lower GEMMs into (no options) and an empty list of steps.
static void lowering_begin(Cg *cg, CgSteps *st, const char *module) {
  Diag d = {0};
  ck_assert_msg(cg_init(cg, module, NULL, &d), "%s", d.msg);
  *st = (CgSteps){0};
}

START_TEST(test_gemm_steps_name_buffers_and_once) {
  // A parameter B is packed by a `once` step before the compute step; an activation B is
  // packed inside the compute step's work items, which then name B too.
  Cg cg;
  Diag d = {0};
  CgSteps st;
  lowering_begin(&cg, &st, "steps");
  CgGemm g = plain(8, 8, 8);
  g.b_constant = true, g.has_bias = true;
  ck_assert(cg_lower_gemm(&cg, &g, "w", cg_arg_node(1), cg_arg_node(2), cg_arg_node(3),
                          cg_arg_node(4), cg_arg_node(5), 7, &st, &d));
  g.b_constant = false, g.has_bias = false;
  ck_assert(cg_lower_gemm(&cg, &g, "x", cg_arg_node(1), cg_arg_node(2), cg_arg_node(3),
                          cg_arg_node(4), cg_arg_node(5), 8, &st, &d));
  ck_assert_int_eq(st.n, 3);
  ck_assert(st.v[0].once && !st.v[1].once && !st.v[2].once);
  ck_assert_int_eq(st.v[0].node, 7);
  ck_assert_int_eq(st.v[2].node, 8);
  ck_assert_int_eq(st.v[0].n_args, 2);  // B, packed B
  ck_assert_int_eq(st.v[0].args[0].id, 2);
  ck_assert_int_eq(st.v[0].args[1].kind, CG_ARG_SCRATCH);
  ck_assert_int_eq(st.v[1].n_args, 4);  // A, packed B, C, bias
  ck_assert_int_eq(st.v[1].args[1].id, st.v[0].args[1].id);
  ck_assert_int_eq(st.v[1].args[3].id, 4);
  ck_assert_int_eq(st.v[2].n_args, 4);  // A, packed B, C, B
  ck_assert_int_eq(st.v[2].args[3].id, 2);
  ck_assert_int_ne(st.v[1].args[1].id, st.v[2].args[1].id);  // each GEMM its own panels
  g.M = 0;  // an empty C: no steps
  ck_assert(cg_lower_gemm(&cg, &g, "e", cg_arg_node(1), cg_arg_node(2), cg_arg_node(3),
                          cg_arg_node(4), cg_arg_node(5), 9, &st, &d));
  ck_assert_int_eq(st.n, 3);
  jit_finds_every_step(&cg, &st);
}
END_TEST

START_TEST(test_gemm_kernels_compile_no_microkernel_they_never_call) {
  // Compile time is per microkernel: K = 2048 runs as 4 equal blocks of 512 (no K-tail
  // microkernel), M = 3 < mr as one block of 3 rows (no full-tile microkernel it never
  // calls: choose_tile), while K = 1537 (no equal split within two more blocks) keeps its tail. The
  // GEMMs still match the reference.
  Cg cg;
  Diag d = {0};
  CgOptions opt = {.vector_floats = 16};
  ck_assert(cg_init(&cg, "microkernels", &opt, &d));
  CgSteps st = {0};
  struct { int64_t M, N, K; const char *name; bool k_tail, m_tail; } cases[] = {
      {100, 64, 2048, "k2048", false, true}, {3, 64, 2048, "m3", false, false},
      {24, 64, 1537, "k1537", true, false}};
  for (int c = 0; c < 3; c++) {
    CgGemm g = plain(cases[c].M, cases[c].N, cases[c].K);
    g.b_constant = true;
    ck_assert(cg_lower_gemm(&cg, &g, cases[c].name, cg_arg_node(1), cg_arg_node(2), cg_arg_node(3),
                            cg_arg_node(4), cg_arg_node(5), c, &st, &d));
    char fn[96];
    snprintf(fn, sizeof fn, "%s.mk", cases[c].name);
    ck_assert_msg(LLVMGetNamedFunction(cg.mod, fn) != NULL, "%s: no full microkernel", cases[c].name);
    snprintf(fn, sizeof fn, "%s.mk.k", cases[c].name);
    ck_assert_msg((LLVMGetNamedFunction(cg.mod, fn) != NULL) == cases[c].k_tail, "%s: K tail", cases[c].name);
    snprintf(fn, sizeof fn, "%s.mk.m", cases[c].name);
    ck_assert_msg((LLVMGetNamedFunction(cg.mod, fn) != NULL) == cases[c].m_tail, "%s: M tail", cases[c].name);
  }
  cg_dispose(&cg);
  cg_steps_free(&st);
  for (int c = 0; c < 3; c++) {
    CgGemm g = plain(cases[c].M, cases[c].N, cases[c].K);
    g.b_constant = true, g.has_bias = true;
    check_one(g, cases[c].name, 16);
  }
}
END_TEST

START_TEST(test_gemm_pack_kernels_are_shared_by_the_b_they_read) {
  // The pack step is named by B's layout, not by the GEMM: GEMMs that differ in M or the
  // epilogue (a pruned layer's at batch 8 or more, the pooler's) share one pack kernel;
  // another N or a transposed B gets its own (as does M < mr: choose_tile's wider panels).
  // Compute and pack kernels are optimised quickly (CG_QUICK_ATTR).
  Cg cg;
  Diag d = {0};
  ck_assert(cg_init(&cg, "packs", NULL, &d));
  CgSteps st = {0};
  CgGemm g[4] = {plain(120, 96, 64), plain(16, 96, 64), plain(120, 80, 64), plain(120, 96, 64)};
  g[1].has_bias = true, g[1].act = CG_ACT_GELU;
  g[3].b_rs = 1, g[3].b_cs = 64;  // B^T
  const char *names[4] = {"full", "pruned", "narrow", "transposed"};
  for (int i = 0; i < 4; i++) {
    g[i].b_constant = true;
    ck_assert(cg_lower_gemm(&cg, &g[i], names[i], cg_arg_node(1), cg_arg_node(2), cg_arg_node(3),
                            cg_arg_node(4), cg_arg_node(5), i, &st, &d));
  }
  ck_assert_int_eq(st.n, 8);  // a pack step and a compute step each
  ck_assert_str_eq(st.v[0].fn, st.v[2].fn);
  ck_assert_str_ne(st.v[0].fn, st.v[4].fn);
  ck_assert_str_ne(st.v[0].fn, st.v[6].fn);
  ck_assert_int_ne(st.v[0].args[1].id, st.v[2].args[1].id);  // each its own panels still
  for (int i = 0; i < st.n; i++) {
    LLVMValueRef f = LLVMGetNamedFunction(cg.mod, st.v[i].fn);
    ck_assert_ptr_nonnull(f);
    ck_assert_msg(LLVMGetStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, CG_QUICK_ATTR,
                                                (unsigned)strlen(CG_QUICK_ATTR)) != NULL,
                  "%s is not marked quick", st.v[i].fn);
  }
  jit_finds_every_step(&cg, &st);
}
END_TEST

START_TEST(test_bf16_gemms_of_one_a_share_its_packed_copy) {
  // Q, K and V of a layer: one GEMM kernel over the same A (node 1) with their own weights
  // pack A into bf16 words once; the same kernel over another A (node 10) packs its own.
  Cg cg;
  Diag d = {0};
  CgSteps st;
  lowering_begin(&cg, &st, "pack_a");
  CgGemm g = plain(24, 40, 64);
  g.b_constant = true, g.bf16 = true;
  int a_of[4] = {1, 1, 1, 10}, first_gemm = -1;
  for (int i = 0; i < 4; i++)
    ck_assert(cg_lower_gemm(&cg, &g, "qkv", cg_arg_node(a_of[i]), cg_arg_node(20 + i), cg_arg_node(30 + i),
                            cg_arg_node(4), cg_arg_node(5), i, &st, &d));
  int packs = 0;
  CgArg copy = {0};
  for (int i = 0; i < st.n; i++) {
    const CgStep *s = &st.v[i];
    size_t len = strlen(s->fn);
    if (len > 7 && !strcmp(s->fn + len - 7, ".pack_a")) packs++;
    if (len > 5 && !strcmp(s->fn + len - 5, ".gemm")) {
      ck_assert_int_eq(s->args[0].kind, CG_ARG_SCRATCH);
      if (first_gemm < 0) first_gemm = i, copy = s->args[0];
      else if (s->node < 3) ck_assert_int_eq(s->args[0].id, copy.id);  // K, V: Q's copy
      else ck_assert_int_ne(s->args[0].id, copy.id);                    // another A
    }
  }
  ck_assert_int_eq(packs, 2);
  jit_finds_every_step(&cg, &st);
}
END_TEST

START_TEST(test_gemm_tuning_without_fused_packing_packs_activations_in_a_step) {
  // RtTuning.gemm_no_fuse (KILN_GEMM_FUSE=0) reaches the plan through CgOptions: an
  // activation B then gets a pack step of its own, as weights do (not `once`).
  for (int no_fuse = 0; no_fuse <= 1; no_fuse++) {
    Cg cg;
    Diag d = {0};
    CgOptions opt = {.tuning = {.gemm_no_fuse = no_fuse}};
    ck_assert(cg_init(&cg, "no_fuse", &opt, &d));
    CgSteps st = {0};
    CgGemm g = plain(8, 8, 8);
    ck_assert(cg_lower_gemm(&cg, &g, "x", cg_arg_node(1), cg_arg_node(2), cg_arg_node(3),
                            cg_arg_node(4), cg_arg_node(5), 8, &st, &d));
    ck_assert_int_eq(st.n, no_fuse ? 2 : 1);
    ck_assert(!st.v[0].once);
    cg_dispose(&cg);
    cg_steps_free(&st);
  }
}
END_TEST

START_TEST(test_gemm_empty_k_gives_epilogue_of_zero) {
  CgGemm g = plain(5, 20, 0);
  g.has_bias = true, g.has_residual = true;
  check_one(g, "K=0", loop_width(_i));
}
END_TEST

// ---------------------------------------------------------------------------------------
// bf16 (codegen/cg_gemm_bf16.c): operands rounded to bf16, f32 sums, held to the reference
// of the rounded operands at the f32 bound. At W = 16 on a CPU with AVX512_BF16 the
// microkernel is vdpbf16ps; at W = 8 (AVX2) the FMA fallback.

static CgGemm bf16_case(CgGemm g, bool constant) {
  g.bf16 = true;
  g.b_constant = constant;
  return g;
}

// The shapes a reduced-precision GEMM is checked on; mark makes a case bf16 or int8.
static void check_reduced(CgGemm (*mark)(CgGemm, bool), const char *what, int W) {
  CgGemm gs[8] = {mark(plain(17, 65, 64), true),  mark(plain(1, 3, 17), false),
                  mark(plain(65, 47, 33), true),  mark(plain(3, 257, 1), true),
                  mark(plain(17, 33, 9), false),  mark(plain(40, 96, 257), true),
                  mark(plain(0, 5, 4), true),     mark(plain(6, 20, 0), true)};
  gs[2].b_rs = 1, gs[2].b_cs = gs[2].K;  // W^T, with bias, GELU and residual
  gs[2].has_bias = gs[2].has_residual = true, gs[2].act = CG_ACT_GELU;
  gs[4].a_rs = 1, gs[4].a_cs = gs[4].M;  // A^T: packed an element or a pair at a time
  gs[5].b_rs = 1, gs[5].b_cs = gs[5].K, gs[5].has_bias = true, gs[5].scale = 0.125f;
  const char *shapes[8] = {"17x65x64", "1x3x17 B activation", "W^T epilogue", "K=1",
                           "A^T",      "40x96x257",           "M=0",          "K=0"};
  char buf[8][64];
  const char *names[8];
  for (int i = 0; i < 8; i++) {
    snprintf(buf[i], sizeof buf[i], "%s %s", what, shapes[i]);
    names[i] = buf[i];
  }
  check_gemms(gs, names, 8, W);
}

// g over two batch dims (2, 3), B shared along the first.
static CgGemm batched(CgGemm g) {
  g.nbatch = 2, g.bdim[0] = 2, g.bdim[1] = 3;
  g.a_bstride[0] = 3 * g.M * g.K, g.a_bstride[1] = g.M * g.K;
  g.b_bstride[0] = 0, g.b_bstride[1] = g.K * g.N;
  g.c_bstride[0] = 3 * g.M * g.N, g.c_bstride[1] = g.M * g.N;
  return g;
}

START_TEST(test_gemm_bf16_matches_rounded_reference) { check_reduced(bf16_case, "bf16", loop_width(_i)); }
END_TEST

START_TEST(test_gemm_bf16_batched_with_broadcast_b) {
  check_one(batched(bf16_case(plain(9, 21, 13), false)), "bf16 batched", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_bf16_prefetching_a_matches_reference) {
  // The words of a bf16 A whose K block does not fit in L2 (a 2000-float L2 here) are
  // prefetched a sliver ahead as f32 A is (M tails, a K tail, bias and residual).
  g_tuning.gemm_l2_floats = 2000;
  g_tuning.gemm_kc = 100;
  CgGemm gs[2] = {bf16_case(plain(67, 130, 500), true), bf16_case(plain(41, 48, 301), true)};
  for (int i = 0; i < 2; i++) gs[i].b_rs = 1, gs[i].b_cs = gs[i].K;
  gs[0].has_bias = true, gs[0].has_residual = true;
  const char *names[2] = {"bf16 A prefetch 67x130x500", "bf16 A prefetch 41x48x301"};
  check_gemms(gs, names, 2, loop_width(_i));
  g_tuning.gemm_l2_floats = 0, g_tuning.gemm_kc = 0;
}
END_TEST

// words_out: C also as rows of N / 2 words of two bf16 (each C element rounded as the
// reference rounds an operand), written tile by tile after the last K block; a later bf16
// GEMM over C as its A takes the copy instead of a pack step of its own.
static void check_words_out(CgGemm g, const char *name, int W) {
  g.words_out = true;
  Case c;
  case_init(&c, &g, name);
  Run s;
  run_build(&s, &c, 1, W);
  run_check(&s, 0);
  const CgStep *compute = &s.steps.v[s.steps.n - 1];
  const CgArg *copy = cg_steps_words_of(&s.steps, ARG_C);
  ck_assert_ptr_nonnull(copy);
  ck_assert_int_eq(compute->args[compute->n_args - 1].id, copy->id);
  const uint32_t *words = arg_ptr(&s, *copy);
  const float *cv = c.buf[ARG_C];
  for (int64_t i = 0; i < g.M; i++)
    for (int64_t k2 = 0; k2 < g.N / 2; k2++) {
      float lo = dt_round_bf16(cv[i * g.c_rs + 2 * k2]), hi = dt_round_bf16(cv[i * g.c_rs + 2 * k2 + 1]);
      uint32_t blo, bhi;
      memcpy(&blo, &lo, 4), memcpy(&bhi, &hi, 4);
      ck_assert_msg(words[i * (g.N / 2) + k2] == (blo >> 16 | (bhi & 0xffff0000u)),
                    "W=%d %s: word (%lld, %lld) %08x, want %08x", W, name, (long long)i, (long long)k2,
                    words[i * (g.N / 2) + k2], blo >> 16 | (bhi & 0xffff0000u));
    }
  // A bf16 GEMM over that C as its A: no pack step, the copy as its A.
  Cg cg;
  Diag d = {0};
  ck_assert(cg_init(&cg, "words", NULL, &d));
  CgGemm next = bf16_case(plain(g.M, 24, g.N), true);
  int before = s.steps.n;
  ck_assert(cg_lower_gemm(&cg, &next, "next", cg_arg_node(ARG_C), cg_arg_node(20), cg_arg_node(21), cg_arg_node(22),
                          cg_arg_node(23), 1, &s.steps, &d));
  for (int i = before; i < s.steps.n; i++) {
    ck_assert_msg(!strstr(s.steps.v[i].fn, ".pack_a"), "%s: %s", name, s.steps.v[i].fn);
    if (strstr(s.steps.v[i].fn, ".gemm")) ck_assert_int_eq(s.steps.v[i].args[0].id, copy->id);
  }
  cg_dispose(&cg);
  run_free(&s);
  case_free(&c);
}

START_TEST(test_gemm_words_out_are_the_rounded_result) {
  // f32 and bf16 GEMMs; M and N tails (37 rows, 100 columns: a 4-column last panel), two K
  // blocks (the words after the last only), a GELU epilogue (its own row loop).
  g_tuning.gemm_kc = 128;
  CgGemm a = plain(37, 100, 300), b = bf16_case(plain(37, 100, 300), true), c = plain(16, 96, 40);
  a.has_bias = true;
  c.b_constant = true, c.has_bias = true, c.act = CG_ACT_GELU;
  check_words_out(a, "words f32 37x100x300", loop_width(_i));
  check_words_out(b, "words bf16 37x100x300", loop_width(_i));
  check_words_out(c, "words GELU 16x96x40", loop_width(_i));
  g_tuning.gemm_kc = 0;
}
END_TEST

START_TEST(test_gemm_bf16_visualbert_shapes) {
  // VisualBERT-base's GEMMs: x W^T with K = 768 (one K block of 384 words), 3072 (two) and
  // the visual projection's 2048, bias and GELU; weights packed once.
  CgGemm gs[3] = {bf16_case(plain(120, 3072, 768), true), bf16_case(plain(120, 768, 3072), true),
                  bf16_case(plain(100, 768, 2048), true)};
  for (int i = 0; i < 3; i++) gs[i].b_rs = 1, gs[i].b_cs = gs[i].K, gs[i].has_bias = true;
  gs[0].act = CG_ACT_GELU;
  const char *names[3] = {"bf16 120x3072x768", "bf16 120x768x3072", "bf16 100x768x2048"};
  check_gemms(gs, names, 3, loop_width(_i));
}
END_TEST

// C of case 0 built at width W with the given CPU features (NULL: the host's).
static void run_features(Case *c, int W, const char *features, float *out) {
  const char *saved = g_tuning.features;
  g_tuning.features = features;
  Run s;
  run_build(&s, c, 1, W);
  run_check(&s, 0);
  memcpy(out, c->buf[ARG_C], c->len[ARG_C] * sizeof(float));
  run_free(&s);
  g_tuning.features = saved;
}

// g (W^T, bias, GELU) built at width W with the host's features and with `off` appended
// (features switched off: the fallback) gives the same C bit for bit.
static void check_fallback_bits(CgGemm g, int W, const char *off, const char *what) {
  char *host = LLVMGetHostCPUFeatures();
  char features[8192];
  snprintf(features, sizeof features, "%s,%s", host, off);
  g.b_rs = 1, g.b_cs = g.K, g.has_bias = true, g.act = CG_ACT_GELU;
  Case c;
  case_init(&c, &g, what);
  float *native = alloc_floats(c.len[ARG_C]), *fallback = alloc_floats(c.len[ARG_C]);
  run_features(&c, W, NULL, native);
  run_features(&c, W, features, fallback);
  ck_assert_msg(memcmp(native, fallback, c.len[ARG_C] * sizeof(float)) == 0,
                "W=%d %s: the native instruction and the fallback differ", W, what);
  free(native);
  free(fallback);
  case_free(&c);
  LLVMDisposeMessage(host);
}

// Transposed operands are packed from column loads and in-register transposes: A^T
// (a_rs == 1: the weight gradient's dY^T and X^T, W rows a work item) and B = W^T (b_rs ==
// 1: the forward's weights, 2W floats of a column to W words). Each must give the words,
// and so the C, of the same values stored row-major, bit for bit: tails of M, N, K2 (W
// words a block), odd K (its last word without a high half), batches.
static void check_transposed_bits(CgGemm t, bool b, int W, const char *what) {
  t = bf16_case(t, false);
  CgGemm p = t;
  if (b) t.b_rs = 1, t.b_cs = t.K;
  else t.a_rs = 1, t.a_cs = t.M;
  Case ct, cp;
  case_init(&ct, &t, what);
  case_init(&cp, &p, what);
  memcpy(cp.buf[ARG_A], ct.buf[ARG_A], ct.len[ARG_A] * sizeof(float));
  memcpy(cp.buf[ARG_B], ct.buf[ARG_B], ct.len[ARG_B] * sizeof(float));
  for (int64_t bi = 0; bi < batch_count(&t); bi++)
    for (int64_t i = 0; i < (b ? t.K : t.M); i++)
      for (int64_t k = 0; k < (b ? t.N : t.K); k++) {
        int x = b ? ARG_B : ARG_A;
        const int64_t *bs = b ? t.b_bstride : t.a_bstride;
        int64_t rs = b ? p.b_rs : p.a_rs, trs = b ? t.b_rs : t.a_rs, tcs = b ? t.b_cs : t.a_cs;
        cp.buf[x][offset(&t, bi, bs) + i * rs + k] = ct.buf[x][offset(&t, bi, bs) + i * trs + k * tcs];
      }
  reference(&cp);  // of the values copied in
  float *ot = alloc_floats(ct.len[ARG_C]), *op = alloc_floats(cp.len[ARG_C]);
  run_features(&ct, W, NULL, ot);
  run_features(&cp, W, NULL, op);
  ck_assert_msg(memcmp(ot, op, ct.len[ARG_C] * sizeof(float)) == 0,
                "W=%d %s %s: transposed and row-major differ", W, b ? "B" : "A", what);
  free(ot);
  free(op);
  case_free(&ct);
  case_free(&cp);
}

START_TEST(test_gemm_bf16_transposed_operands_give_the_bits_of_row_major) {
  int W = loop_width(_i);
  for (int b = 0; b < 2; b++) {
    check_transposed_bits(plain(37, 20, 67), b, W, "37x20x67");             // tails, odd K
    check_transposed_bits(plain(2 * W, 4 * W, 4 * W), b, W, "no tails");    // whole blocks
    check_transposed_bits(plain(W + 3, 9, 4 * W - 1), b, W, "odd K, K2 = 2W");
    check_transposed_bits(plain(3, 5, 1), b, W, "K=1");
    check_transposed_bits(batched(plain(9, 21, 13)), b, W, "batched");
  }
}
END_TEST

START_TEST(test_gemm_bf16_fallback_gives_the_same_bits_as_vdpbf16ps) {
  // Without AVX512_BF16 the FMA fallback adds the same exact products in the same order.
  check_fallback_bits(bf16_case(plain(37, 100, 300), true), 16, "-avx512bf16", "bf16");
}
END_TEST

// The vector width and the native instructions follow cg_feature_on: the last "+x" or "-x"
// of a feature decides, and "+avx512fp16" is not "+avx512f".
static int width_of(const char *features) {
  CgOptions opt = {.features = features, .tuning = g_tuning};
  Cg cg;
  Diag d = {0};
  ck_assert_msg(cg_init(&cg, "width", &opt, &d), "%s", d.msg);
  int W = cg.W;
  cg_dispose(&cg);
  return W;
}

START_TEST(test_features_decide_the_vector_width_by_their_last_word) {
  ck_assert_int_eq(width_of("+avx2,+fma,+avx512f"), 16);
  ck_assert_int_eq(width_of("+avx2,+fma,+avx512f,-avx512f"), 8);
  ck_assert_int_eq(width_of("+avx2,+fma,+avx512fp16"), 8);
  ck_assert_int_eq(width_of("+sse2,-avx2"), 4);
  ck_assert(cg_feature_on("+avx512f,+avx512bf16", "avx512bf16"));
  ck_assert(!cg_feature_on("+avx512f,+avx512bf16,-avx512bf16", "avx512bf16"));
  ck_assert(!cg_feature_on("+avx512fp16", "avx512f"));
  ck_assert(!cg_feature_on("avx512f", "avx512f"));
}
END_TEST

// ---------------------------------------------------------------------------------------
// int8 (codegen/cg_gemm_int8.c): held to the quantised reference at the f32 bound (the sums
// are exact; only the epilogue rounds). At W = 16 with AVX512_VNNI vpdpbusd, at W = 8 its
// 256-bit form (AVX512_VNNI + VL on this CPU); the fallback is checked bitwise below.

static CgGemm int8_case(CgGemm g, bool constant) {
  g.int8 = true;
  g.b_constant = constant;
  return g;
}

START_TEST(test_gemm_int8_matches_quantised_reference) {
  check_reduced(int8_case, "int8", loop_width(_i));
  CgGemm g = int8_case(plain(5, 40, 3101), true);  // 776 words of K: two K blocks, i32
  g.has_bias = true;                               // partial sums kept in C
  check_one(g, "int8 K=3101", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_int8_batched_with_broadcast_b) {
  check_one(batched(int8_case(plain(9, 21, 13), false)), "int8 batched", loop_width(_i));
}
END_TEST

START_TEST(test_gemm_int8_fallback_gives_the_same_bits_as_vpdpbusd) {
  // Without AVX512_VNNI and AVX_VNNI the fallback's i32 multiply-adds give the same exact
  // sums, at W = 16 and W = 8.
  check_fallback_bits(int8_case(plain(37, 100, 300), true), loop_width(_i),
                      "-avx512vnni,-avxvnni", "int8");
}
END_TEST

static Suite *gemm_suite(void) {
  Suite *s = suite_create("cg_gemm");
  TCase *tc = tcase_create("gemm");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_gemm_steps_name_buffers_and_once);
  tcase_add_test(tc, test_gemm_tuning_without_fused_packing_packs_activations_in_a_step);
  tcase_add_test(tc, test_gemm_kernels_compile_no_microkernel_they_never_call);
  tcase_add_test(tc, test_gemm_pack_kernels_are_shared_by_the_b_they_read);
  tcase_add_test(tc, test_bf16_gemms_of_one_a_share_its_packed_copy);
  tcase_add_loop_test(tc, test_gemm_every_size_matches_reference_w16, 0, 6);
  tcase_add_loop_test(tc, test_gemm_every_size_matches_reference_w8, 0, 6);
  tcase_add_loop_test(tc, test_gemm_transposed_weights_every_n_k, 0, 2);
  tcase_add_loop_test(tc, test_gemm_transposed_a, 0, 2);
  tcase_add_loop_test(tc, test_gemm_transposed_a_and_b, 0, 2);
  tcase_add_loop_test(tc, test_gemm_strided_operands, 0, 2);
  tcase_add_loop_test(tc, test_gemm_batched_with_broadcast_b, 0, 2);
  tcase_add_loop_test(tc, test_gemm_two_batch_dims, 0, 2);
  tcase_add_loop_test(tc, test_gemm_attention_shapes, 0, 2);
  tcase_add_loop_test(tc, test_gemm_epilogue_scale, 0, 2);
  tcase_add_loop_test(tc, test_gemm_epilogue_bias, 0, 2);
  tcase_add_loop_test(tc, test_gemm_epilogue_residual, 0, 2);
  tcase_add_loop_test(tc, test_gemm_epilogue_all_with_long_k, 0, 2);
  tcase_add_loop_test(tc, test_gemm_epilogue_gelu, 0, 2);
  tcase_add_loop_test(tc, test_gemm_gelu_epilogues_give_the_bits_of_the_unfused_ops, 0, 2);
  tcase_add_loop_test(tc, test_gemm_visualbert_linear, 0, 2);
  tcase_add_loop_test(tc, test_gemm_prefetching_weights_match_reference, 0, 2);
  tcase_add_loop_test(tc, test_gemm_prefetching_a_matches_reference, 0, 2);
  tcase_add_loop_test(tc, test_gemm_bf16_prefetching_a_matches_reference, 0, 2);
  tcase_add_loop_test(tc, test_gemm_words_out_are_the_rounded_result, 0, 2);
  tcase_add_loop_test(tc, test_gemm_empty_k_gives_epilogue_of_zero, 0, 2);
  tcase_add_loop_test(tc, test_gemm_bf16_matches_rounded_reference, 0, 2);
  tcase_add_loop_test(tc, test_gemm_bf16_batched_with_broadcast_b, 0, 2);
  tcase_add_loop_test(tc, test_gemm_bf16_visualbert_shapes, 0, 2);
  tcase_add_loop_test(tc, test_gemm_bf16_transposed_operands_give_the_bits_of_row_major, 0, 2);
  tcase_add_test(tc, test_gemm_bf16_fallback_gives_the_same_bits_as_vdpbf16ps);
  tcase_add_test(tc, test_features_decide_the_vector_width_by_their_last_word);
  tcase_add_loop_test(tc, test_gemm_int8_matches_quantised_reference, 0, 2);
  tcase_add_loop_test(tc, test_gemm_int8_batched_with_broadcast_b, 0, 2);
  tcase_add_loop_test(tc, test_gemm_int8_fallback_gives_the_same_bits_as_vpdpbusd, 0, 2);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  g_tuning = test_tuning();
  return check_run(gemm_suite());
}
