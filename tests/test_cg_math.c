// Tests of the vector math in codegen/cg_math.c: each function is JIT-compiled as a kernel
// over a float buffer (vectors of cg->W lanes, then a scalar tail) and held to libm in
// double rounded to f32 over dense sweeps, strided and random bit patterns and the special
// values, at the host's vector width and with the width forced to 8 and 4.
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cg.h"
#include "tests/test_tuning.h"
#include "tests/check_run.h"

// ---------------------------------------------------------------------------------------
// The functions, their references and the error bounds cg_math.c documents.

typedef LLVMValueRef (*CgMathFn)(Cg *cg, LLVMValueRef x);
typedef void (*Kernel)(void **bufs, int64_t begin, int64_t end);

static double ref_gelu(double x) {
  if (isinf(x)) return x > 0 ? x : -0.0;
  return 0.5 * x * erfc(-x * M_SQRT1_2);  // erfc: no cancellation for x << 0
}
static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

typedef struct MathCase {
  const char *name;
  CgMathFn emit;
  double (*ref)(double);
  int64_t max_ulp;  // documented in cg_math.c
  double lo, hi;    // the dense sweep, every 1/1024
} MathCase;

static const MathCase cases[] = {
    {"exp", cg_exp, exp, 1, -105, 90},
    {"log", cg_log, log, 1, 0, 100},
    {"erf", cg_erf, erf, 1, -6, 6},
    {"tanh", cg_tanh, tanh, 1, -12, 12},
    {"gelu", cg_gelu, ref_gelu, 1, -16, 8},
    {"sigmoid", cg_sigmoid, ref_sigmoid, 1, -110, 20},
};
static const int widths[] = {0, 8, 4};  // 0: the host's
enum { N_WIDTHS = sizeof widths / sizeof widths[0] };

// ---------------------------------------------------------------------------------------
// JIT: out[i] = f(in[i]) for i in [begin, end); bufs[0] = in (n), bufs[1] = out (n).

typedef struct MathKernel {
  CgJit *jit;
  Kernel run;
  int W;
} MathKernel;

static void emit_map(Cg *cg, const char *name, CgMathFn f) {
  cg_kernel_begin(cg, name);
  LLVMValueRef in = cg_buf(cg, 0), out = cg_buf(cg, 1);
  // for (i = begin; i < end - (W - 1); i += W): W lanes at once
  LLVMValueRef vec_end = LLVMBuildSub(cg->b, cg->end, cg_i64(cg, cg->W - 1), "vec_end");
  CgLoop v;
  cg_for_begin(cg, &v, cg->begin, vec_end, cg_i64(cg, cg->W), "v");
  LLVMValueRef x = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, in, v.iv), cg->W);
  cg_store(cg, f(cg, x), cg_gep(cg, cg->f32, out, v.iv));
  cg_for_end(cg, &v);
  // for (; i < end; i++): the scalar form
  CgLoop s;
  cg_for_begin(cg, &s, v.iv, cg->end, cg_i64(cg, 1), "s");
  x = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, in, s.iv), 1);
  cg_store(cg, f(cg, x), cg_gep(cg, cg->f32, out, s.iv));
  cg_for_end(cg, &s);
  cg_kernel_end(cg);
}

static MathKernel jit_math(const MathCase *mc, int width) {
  Cg cg;
  Diag d = {0};
  CgOptions opt = {.vector_floats = width, .tuning = test_tuning()};
  ck_assert_msg(cg_init(&cg, "test_cg_math", &opt, &d), "%s", d.msg);
  MathKernel mk = {.W = cg.W};
  emit_map(&cg, mc->name, mc->emit);
  ck_assert_msg(cg_jit(&cg, &mk.jit, &d), "%s", d.msg);
  void *fn = cg_jit_lookup(mk.jit, mc->name);
  ck_assert_ptr_nonnull(fn);
  memcpy(&mk.run, &fn, sizeof mk.run);
  return mk;
}

// Runs the kernel over [0, n) in calls of `chunk` items: chunk < W takes the scalar path only.
static void run_chunks(MathKernel *mk, const float *in, float *out, int64_t n, int64_t chunk) {
  void *bufs[2] = {(void *)in, out};
  for (int64_t i = 0; i < n; i += chunk) mk->run(bufs, i, i + chunk < n ? i + chunk : n);
}

// ---------------------------------------------------------------------------------------
// Distances in ulp: floats ordered as integers, so consecutive floats differ by 1, +0 and
// -0 coincide and FLT_MAX is 1 from inf. NaN matches only NaN.

static int64_t ordered(float f) {
  int32_t i;
  memcpy(&i, &f, sizeof i);
  return i >= 0 ? i : (int64_t)INT32_MIN - i;
}

static int64_t ulp_distance(float got, float want) {
  if (isnan(want) || isnan(got)) return isnan(want) && isnan(got) ? 0 : INT64_MAX;
  int64_t d = ordered(got) - ordered(want);
  return d < 0 ? -d : d;
}

static float from_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

static const float specials[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 0x1p-149f, -0x1p-149f, 0x1.fffffcp-127f,
    -0x1.fffffcp-127f, FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX, 1.0f, -1.0f, 0x1p-24f,
    -0x1p-24f, 0.625f, -0.625f, 0.875f, -0.875f, 1.25f, -1.25f, 3.5f, -3.5f, 4.0f, -4.0f,
    14.5f, -14.5f, 16.0f, -16.0f, 88.72283f, 88.72284f, 88.8f, 89.0f, -87.33654f, -103.9720f,
    -103.9721f, -104.0f, -104.5f, 0x1.6a09e6p-1f, 0x1.6a09e8p-1f, 1e-30f, -1e-30f, 1e30f,
    -1e30f,
};
enum { N_SPECIALS = sizeof specials / sizeof specials[0] };

// Dense 1/1024 steps over [lo, hi], every 4099th bit pattern, 2^19 random bit patterns and
// the specials.
static float *make_inputs(const MathCase *mc, int64_t *n) {
  int64_t n_dense = (int64_t)((mc->hi - mc->lo) * 1024) + 1;
  int64_t n_strided = ((int64_t)1 << 32) / 4099 + 1, n_random = (int64_t)1 << 19;
  int64_t total = n_dense + n_strided + n_random + N_SPECIALS;
  float *in = malloc((size_t)total * sizeof *in);
  int64_t k = 0;
  for (int64_t i = 0; i < n_dense; i++) in[k++] = (float)(mc->lo + (double)i / 1024);
  for (uint64_t b = 0; b < ((uint64_t)1 << 32); b += 4099) in[k++] = from_bits((uint32_t)b);
  uint32_t state = 0x9e3779b9u;  // xorshift32, fixed seed
  for (int64_t i = 0; i < n_random; i++) {
    state ^= state << 13, state ^= state >> 17, state ^= state << 5;
    in[k++] = from_bits(state);
  }
  for (int i = 0; i < N_SPECIALS; i++) in[k++] = specials[i];
  ck_assert_int_eq(k, total);
  *n = total;
  return in;
}

// The sweep: the vector form (whole buffer, with a scalar tail) and the scalar form (calls
// of W - 1 items) must agree bit for bit and stay within the bound of libm.
static void check_against_libm(const MathCase *mc, int width) {
  MathKernel mk = jit_math(mc, width);
  int64_t n;
  float *in = make_inputs(mc, &n);
  float *vec = malloc((size_t)n * sizeof *vec), *scal = malloc((size_t)n * sizeof *scal);
  run_chunks(&mk, in, vec, n, n);
  run_chunks(&mk, in, scal, n, mk.W > 1 ? mk.W - 1 : 1);
  int64_t worst = 0, worst_i = 0;
  for (int64_t i = 0; i < n; i++) {
    uint32_t bv, bs;
    memcpy(&bv, &vec[i], 4);
    memcpy(&bs, &scal[i], 4);
    if (bv != bs && !(isnan(vec[i]) && isnan(scal[i])))  // (ck_assert per item is slow)
      ck_abort_msg("%s W=%d x=%a: vector %a, scalar %a", mc->name, mk.W, in[i], vec[i], scal[i]);
    int64_t d = ulp_distance(vec[i], (float)mc->ref(in[i]));
    if (d > worst) worst = d, worst_i = i;
  }
  printf("cg_math %-7s W=%-2d max %lld ulp over %lld inputs (bound %lld)\n", mc->name, mk.W,
         (long long)worst, (long long)n, (long long)mc->max_ulp);
  fflush(stdout);
  ck_assert_msg(worst <= mc->max_ulp, "%s W=%d: %lld ulp at x=%a: got %a, libm %a", mc->name,
                mk.W, (long long)worst, in[worst_i], vec[worst_i], mc->ref(in[worst_i]));
  free(in);
  free(vec);
  free(scal);
  cg_jit_free(mk.jit);
}

START_TEST(test_exp_within_bound_of_libm) { check_against_libm(&cases[0], widths[_i]); }
END_TEST
START_TEST(test_log_within_bound_of_libm) { check_against_libm(&cases[1], widths[_i]); }
END_TEST
START_TEST(test_erf_within_bound_of_libm) { check_against_libm(&cases[2], widths[_i]); }
END_TEST
START_TEST(test_tanh_within_bound_of_libm) { check_against_libm(&cases[3], widths[_i]); }
END_TEST
START_TEST(test_gelu_within_bound_of_libm) { check_against_libm(&cases[4], widths[_i]); }
END_TEST
START_TEST(test_sigmoid_within_bound_of_libm) { check_against_libm(&cases[5], widths[_i]); }
END_TEST

// ---------------------------------------------------------------------------------------
// Special values, exactly.

static bool same(float a, float b) {
  return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

// Each pair {x, f(x)} must come out exactly, in the vector form at every width (the list
// repeated to fill whole vectors) and in the scalar form.
static void check_values(int c, const float (*pairs)[2], int n) {
  enum { REPEAT = 16 };
  int64_t total = (int64_t)n * REPEAT;
  float *x = malloc(sizeof(float) * (size_t)total), *y = malloc(sizeof(float) * (size_t)total);
  for (int64_t i = 0; i < total; i++) x[i] = pairs[i % n][0];
  for (int w = 0; w < N_WIDTHS; w++) {
    MathKernel mk = jit_math(&cases[c], widths[w]);
    for (int scalar = 0; scalar < 2; scalar++) {
      run_chunks(&mk, x, y, total, scalar ? 1 : total);
      for (int64_t i = 0; i < total; i++)
        ck_assert_msg(same(y[i], pairs[i % n][1]), "%s(%a) = %a, want %a (W=%d%s)",
                      cases[c].name, x[i], y[i], pairs[i % n][1], mk.W, scalar ? ", scalar" : "");
    }
    cg_jit_free(mk.jit);
  }
  free(x);
  free(y);
}

#define CHECK_VALUES(c, ...)                                     \
  do {                                                           \
    const float pairs[][2] = {__VA_ARGS__};                      \
    check_values(c, pairs, (int)(sizeof pairs / sizeof pairs[0])); \
  } while (0)

START_TEST(test_exp_overflows_underflows_and_passes_nan) {
  CHECK_VALUES(0, {0.0f, 1.0f}, {-0.0f, 1.0f}, {INFINITY, INFINITY}, {-INFINITY, 0.0f},
               {NAN, NAN}, {89.0f, INFINITY}, {88.8f, INFINITY}, {FLT_MAX, INFINITY},
               {-104.0f, 0.0f}, {-FLT_MAX, 0.0f}, {0x1p-30f, 1.0f},
               {-103.27893f, 0x1p-149f});  // gradual underflow down to the least subnormal
}
END_TEST

START_TEST(test_log_of_zero_negative_inf_and_subnormal) {
  CHECK_VALUES(1, {0.0f, -INFINITY}, {-0.0f, -INFINITY}, {-1.0f, NAN}, {-0x1p-149f, NAN},
               {-INFINITY, NAN}, {INFINITY, INFINITY}, {NAN, NAN}, {1.0f, 0.0f},
               {0x1p-149f, -0x1.9d1dap+6f}, {FLT_MAX, 0x1.62e43p+6f});
}
END_TEST

START_TEST(test_erf_is_odd_and_exactly_one_for_large_x) {
  CHECK_VALUES(2, {0.0f, 0.0f}, {-0.0f, -0.0f}, {INFINITY, 1.0f}, {-INFINITY, -1.0f},
               {NAN, NAN}, {4.0f, 1.0f}, {10.0f, 1.0f}, {-10.0f, -1.0f}, {FLT_MAX, 1.0f},
               {-FLT_MAX, -1.0f}, {0x1p-149f, 0x1p-149f});
}
END_TEST

START_TEST(test_tanh_saturates_and_returns_tiny_x) {
  CHECK_VALUES(3, {0.0f, 0.0f}, {-0.0f, -0.0f}, {INFINITY, 1.0f}, {-INFINITY, -1.0f},
               {NAN, NAN}, {10.0f, 1.0f}, {-20.0f, -1.0f}, {FLT_MAX, 1.0f}, {1e-30f, 1e-30f},
               {-0x1p-149f, -0x1p-149f}, {0x1p-13f, 0x1p-13f});
}
END_TEST

START_TEST(test_gelu_tails_are_zero_and_identity) {
  CHECK_VALUES(4, {0.0f, 0.0f}, {-0.0f, -0.0f}, {INFINITY, INFINITY}, {-INFINITY, -0.0f},
               {NAN, NAN}, {-15.0f, -0.0f}, {-FLT_MAX, -0.0f}, {6.0f, 6.0f},
               {FLT_MAX, FLT_MAX}, {100.0f, 100.0f});
}
END_TEST

START_TEST(test_sigmoid_limits) {
  CHECK_VALUES(5, {0.0f, 0.5f}, {-0.0f, 0.5f}, {INFINITY, 1.0f}, {-INFINITY, 0.0f},
               {NAN, NAN}, {20.0f, 1.0f}, {FLT_MAX, 1.0f}, {-104.0f, 0.0f},
               {-FLT_MAX, 0.0f}, {-103.27893f, 0x1p-149f});
}
END_TEST

// ---------------------------------------------------------------------------------------

static Suite *cg_math_suite(void) {
  Suite *s = suite_create("cg_math");
  TCase *sweep = tcase_create("sweep");
  tcase_set_timeout(sweep, 120);
  tcase_add_loop_test(sweep, test_exp_within_bound_of_libm, 0, N_WIDTHS);
  tcase_add_loop_test(sweep, test_log_within_bound_of_libm, 0, N_WIDTHS);
  tcase_add_loop_test(sweep, test_erf_within_bound_of_libm, 0, N_WIDTHS);
  tcase_add_loop_test(sweep, test_tanh_within_bound_of_libm, 0, N_WIDTHS);
  tcase_add_loop_test(sweep, test_gelu_within_bound_of_libm, 0, N_WIDTHS);
  tcase_add_loop_test(sweep, test_sigmoid_within_bound_of_libm, 0, N_WIDTHS);
  suite_add_tcase(s, sweep);
  TCase *special = tcase_create("special");
  tcase_add_test(special, test_exp_overflows_underflows_and_passes_nan);
  tcase_add_test(special, test_log_of_zero_negative_inf_and_subnormal);
  tcase_add_test(special, test_erf_is_odd_and_exactly_one_for_large_x);
  tcase_add_test(special, test_tanh_saturates_and_returns_tiny_x);
  tcase_add_test(special, test_gelu_tails_are_zero_and_identity);
  tcase_add_test(special, test_sigmoid_limits);
  suite_add_tcase(s, special);
  return s;
}

int main(void) { return check_run(cg_math_suite()); }
