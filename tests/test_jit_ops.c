// Tests of the JIT (codegen/): every IR op compiled to native code and held to the reference
// evaluator (ir_eval, in double) on random inputs, for vector widths W = 16 and W = 8 and
// for 1 and 2 threads. Sizes include 1, sizes that are not multiples of W and 100000
// elements. Also: two runs with one thread count give bitwise identical results, a bad
// gather index or label is reported through the status word with the node's name, and
// every computed op has a lowering. Compiled for training, dropout and dropout_grad draw
// the reference's masks for the seed set in the plan at run time.
//
// Tolerances (b: the reference rounded to f32, a: the JIT's value, ulp(b): the gap from
// |b| to the next float up, max|b|: over the node's whole tensor):
//   exact ops (data movement, integers, neg, relu, maximum/minimum, full, iota, cast,
//   dropout in inference)              a == b bit for bit (NaN == NaN)
//   correctly rounded arithmetic (add, sub, mul, div, sqrt, rsqrt, affine)
//                                      |a - b| <= 4 ulp(b)
//   vector maths (exp, log, tanh, erf, gelu, sigmoid)
//                                      |a - b| <= 4 ulp(b) + 1e-7 max|b|
//   reductions, softmax, layernorm, matmul, losses
//                                      |a - b| <= 1e-5 max|b|
// With KILN_TEST_ERRORS=1 in the environment each comparison prints its largest error, in
// the unit of its tolerance (ulps, or a fraction of max|b|) and in ulps of b.
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/compile.h"
#include "codegen/lower.h"
#include "ir/ir.h"
#include "runtime/plan.h"
#include "tests/test_attrs.h"
#include "tests/test_tuning.h"
#include "tests/check_run.h"

// ---------------------------------------------------------------------------------------
// Building graphs. Each test gets a fresh graph `g` and diagnostics `d`.

static IrGraph g;
static Diag d;

// How an input is filled: uniform in [lo, hi) (integers: whole values), then `edit`.
typedef void (*FillEdit)(double *v, int64_t n);
typedef struct Fill {
  const IrNode *node;
  double lo, hi;
  FillEdit edit;
} Fill;
#define MAX_FILLS 64
static Fill fills[MAX_FILLS];
static int n_fills;

static void setup(void) {
  ir_graph_init(&g, "test.json");
  memset(&d, 0, sizeof d);
  n_fills = 0;
}

static void teardown(void) { ir_graph_free(&g); }


static IrNode *input(const char *name, DType dt, IrShape s, double lo, double hi) {
  IrNode *n = ir_graph_add(&g, IR_OP_INPUT, name, NULL);
  n->dtype = dt;
  n->shape = s;
  ck_assert_int_lt(n_fills, MAX_FILLS);
  fills[n_fills++] = (Fill){n, lo, hi, NULL};
  return n;
}

static void edit_input(const IrNode *n, FillEdit edit) {
  for (int i = 0; i < n_fills; i++)
    if (fills[i].node == n) fills[i].edit = edit;
}

// op(IR_OP_ADD, "y", 2, a, b): a node with n_in inputs, attributes at their defaults.
static IrNode *op(IrOpKind kind, const char *name, int n_in, ...) {
  IrNode *n = ir_graph_add(&g, kind, name, NULL);
  n->n_in = n_in;
  n->in = arena_alloc(&g.arena, (size_t)(n_in + 1) * sizeof *n->in);
  va_list ap;
  va_start(ap, n_in);
  for (int k = 0; k < n_in; k++) n->in[k] = va_arg(ap, IrNode *);
  va_end(ap);
  return n;
}

// A unary node named "<op>_<input>".
static IrNode *unary(IrOpKind kind, IrNode *x) {
  char name[128];
  snprintf(name, sizeof name, "%s_%s", ir_ops[kind].name, x->name);
  return op(kind, name, 1, x);
}

static IrNode *binary(IrOpKind kind, IrNode *a, IrNode *b) {
  char name[128];
  snprintf(name, sizeof name, "%s_%s_%s", ir_ops[kind].name, a->name, b->name);
  return op(kind, name, 2, a, b);
}


static void set_shape_attr(IrNode *n, const char *name, IrShape s) {
  IrAttr *a = attr_slot(n, name);
  a->n = s.rank;
  for (int k = 0; k < s.rank; k++) a->ints[k] = s.dim[k];
}

static const int sizes[] = {1, 3, 17, 33, 65, 257, 1000, 100000};
#define N_SIZES ((int)(sizeof sizes / sizeof sizes[0]))

// ---------------------------------------------------------------------------------------
// Inputs: splitmix64, seeded per graph so every run sees the same data.

static uint64_t rng_state;

static double uniform(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1p-53;
}

static const Fill *fill_of(const IrNode *n) {
  for (int i = 0; i < n_fills; i++)
    if (fills[i].node == n) return &fills[i];
  ck_abort_msg("input \"%s\" has no fill", n->name);
  return NULL;
}

// Values of the input in double, each exactly representable in the input's dtype.
static double *fill_input(const IrNode *n) {
  const Fill *f = fill_of(n);
  int64_t count = ir_numel(&n->shape);
  double *v = malloc((size_t)(count ? count : 1) * sizeof *v);
  for (int64_t j = 0; j < count; j++) {
    double x = f->lo + uniform() * (f->hi - f->lo);
    if (n->dtype == DT_F32) v[j] = (double)(float)x;
    else v[j] = fmin(floor(x), f->hi - 1);
  }
  if (f->edit) f->edit(v, count);
  return v;
}

// ---------------------------------------------------------------------------------------
// Comparing a node's JIT values with the reference.

typedef enum { TOL_EXACT, TOL_ROUNDED, TOL_MATH, TOL_REL } Tol;

static Tol tol_of(const IrNode *n) {
  if (n->dtype != DT_F32) return TOL_EXACT;
  switch (n->op) {
  case IR_OP_ADD: case IR_OP_SUB: case IR_OP_MUL: case IR_OP_DIV: case IR_OP_SQRT:
  case IR_OP_RSQRT: case IR_OP_AFFINE:
    return TOL_ROUNDED;
  case IR_OP_EXP: case IR_OP_LOG: case IR_OP_TANH: case IR_OP_ERF: case IR_OP_GELU:
  case IR_OP_SIGMOID: case IR_OP_SILU:
    return TOL_MATH;
  case IR_OP_GELU_GRAD:  // Phi(x) + x phi(x) cancels for x < 0 (the GEMM epilogue's formula)
  case IR_OP_MATMUL: case IR_OP_REDUCE_SUM: case IR_OP_REDUCE_MEAN: case IR_OP_REDUCE_MAX:
  case IR_OP_SOFTMAX: case IR_OP_LOG_SOFTMAX: case IR_OP_LAYERNORM: case IR_OP_CROSS_ENTROPY:
  case IR_OP_KL_DIV: case IR_OP_SCATTER_ADD: case IR_OP_ATTENTION:
    return TOL_REL;
  default:
    return TOL_EXACT;
  }
}

static const char *tol_name[] = {"exact", "4ulp", "4ulp+1e-7max", "1e-5max"};

static double ulp_of(double b) {
  float f = fabsf((float)b);
  if (isinf(f)) return INFINITY;
  return (double)(nextafterf(f, INFINITY) - f);
}

// Every element of node n: JIT values `got` (native dtype) against the reference `want`.
static void compare_node(const IrNode *n, const void *got, const double *want, const char *run) {
  int64_t count = ir_numel(&n->shape);
  Tol tol = tol_of(n);
  double max_b = 0;
  for (int64_t j = 0; j < count; j++)
    if (isfinite(want[j])) max_b = fmax(max_b, fabs((double)(float)want[j]));
  double worst = 0;  // in the unit of the tolerance: ulps, or a fraction of max|b|
  double worst_ulps = 0;  // |a - b| / ulp(b), whatever the tolerance (reported only)
  for (int64_t j = 0; j < count; j++) {
    double a = dt_load(n->dtype, got, (size_t)j);
    double b = n->dtype == DT_F32 ? (double)(float)want[j] : want[j];
    bool ok;
    double err = fabs(a - b);
    if (isnan(a) || isnan(b) || isinf(a) || isinf(b)) {
      ok = (isnan(a) && isnan(b)) || a == b;
      err = ok ? 0 : INFINITY;
    } else if (tol == TOL_EXACT) {
      ok = a == b;
    } else if (tol == TOL_ROUNDED) {
      err /= ulp_of(b);
      ok = err <= 4;
    } else if (tol == TOL_MATH) {
      ok = err <= 4 * ulp_of(b) + 1e-7 * max_b;
      err /= ulp_of(b) + 2.5e-8 * max_b;  // <= 4 when ok
    } else {
      err /= fmax(max_b, FLT_MIN);
      ok = err <= 1e-5;
    }
    if (err > worst) worst = err;
    if (n->dtype == DT_F32 && isfinite(a) && isfinite(b) && fabs(a - b) / ulp_of(b) > worst_ulps)
      worst_ulps = fabs(a - b) / ulp_of(b);
    if (!ok)  // (not ck_assert_msg: Check marks a point on every passing assert)
      ck_abort_msg("%s: node \"%s\" (%s %s) element %lld: jit %.9g, reference %.9g (%s)", run,
                  n->name, ir_ops[n->op].name, dt_name(n->dtype), (long long)j, a, b,
                  tol_name[tol]);
  }
  if (getenv("KILN_TEST_ERRORS"))
    fprintf(stderr, "maxerr %-14s %-4s %-12s %-24s %9lld elements, %s: %.3g (%.3g ulp)\n",
            ir_ops[n->op].name, dt_name(n->dtype), tol_name[tol], n->name, (long long)count,
            run, worst, worst_ulps);
}

// ---------------------------------------------------------------------------------------
// Running a graph: reference once, then the JIT for each width and thread count.

static void finish_ok(void) {
  bool ok = ir_graph_finish(&g, &d) && ir_verify(&g, &d);
  ck_assert_msg(ok && !d.set, "graph rejected: %s", d.msg);
}

// Values for every input (the same for a given seed).
static void fill_inputs(IrValues *vals, uint64_t seed) {
  rng_state = seed;
  ir_values_init(vals, &g);
  for (int i = 0; i < g.n_nodes; i++)
    if (g.nodes[i]->op == IR_OP_INPUT) vals->v[i] = fill_input(g.nodes[i]);
}

// Fills the inputs and evaluates the reference (in inference: dropout is the identity).
static void reference(IrValues *vals, uint64_t seed) {
  fill_inputs(vals, seed);
  IrEvalMode mode = {.training = false};
  bool ok = ir_eval(&g, vals, NULL, &mode, &d);
  ck_assert_msg(ok, "reference failed: %s", d.msg);
}

static void compile_ok(CgProgram *p, int W) {
  CgOptions opt = {.vector_floats = W, .tuning = test_tuning()};
  bool ok = cg_compile(&g, NULL, &opt, p, &d);
  ck_assert_msg(ok, "W=%d: compile failed: %s", W, d.msg);
}

// Copies the reference's inputs into the program's buffers in their native dtype.
static void bind_inputs(CgProgram *p, const IrValues *vals) {
  for (int i = 0; i < g.n_nodes; i++) {
    const IrNode *n = g.nodes[i];
    if (n->op != IR_OP_INPUT || !p->value[i]) continue;
    for (int64_t j = 0; j < ir_numel(&n->shape); j++) dt_store(n->dtype, p->value[i], (size_t)j, vals->v[i][j]);
  }
  rt_plan_prepare(&p->plan, 1);
}

// A copy of every computed buffer of the program.
static void **snapshot(const CgProgram *p) {
  void **snap = calloc((size_t)g.n_nodes, sizeof *snap);
  for (int i = 0; i < g.n_nodes; i++) {
    if (!p->value[i]) continue;
    snap[i] = malloc(p->bytes[i] + 1);
    memcpy(snap[i], p->value[i], p->bytes[i]);
  }
  return snap;
}

// Every buffer must equal the snapshot bit for bit (ops other than matmul when
// `skip_matmul`); frees the snapshot.
static void expect_same(const CgProgram *p, void **snap, bool skip_matmul, const char *what) {
  for (int i = 0; i < g.n_nodes; i++) {
    if (!snap[i]) continue;
    if (!(skip_matmul && g.nodes[i]->op == IR_OP_MATMUL) &&
        memcmp(snap[i], p->value[i], p->bytes[i]) != 0)
      ck_abort_msg("%s: \"%s\" (%s) differs", what, g.nodes[i]->name, ir_ops[g.nodes[i]->op].name);
    free(snap[i]);
  }
  free(snap);
}

// Runs once with `threads`; no data error may be reported.
static void run_ok(CgProgram *p, int threads, const char *run) {
  rt_plan_run(&p->plan, threads);
  bool ok = cg_program_status(p, &d);
  ck_assert_msg(ok, "%s: %s", run, d.msg);
}

// The whole check: finish the graph, reference, then for W in {16, 8} and threads in
// {1, 2}: compile, run twice (bitwise equal), compare every computed node. Every op but
// matmul also gives the same bits with 1 and 2 threads (each output is computed by one
// work item in a fixed order).
static void check_graph(uint64_t seed) {
  finish_ok();
  IrValues ref;
  reference(&ref, seed);
  static const int widths[] = {16, 8};
  for (int wi = 0; wi < 2; wi++) {
    CgProgram p;
    compile_ok(&p, widths[wi]);
    bind_inputs(&p, &ref);
    void **one_thread = NULL;
    for (int threads = 1; threads <= 2; threads++) {
      char run[64];
      snprintf(run, sizeof run, "W=%d threads=%d", widths[wi], threads);
      run_ok(&p, threads, run);
      void **first = snapshot(&p);
      run_ok(&p, threads, run);
      expect_same(&p, first, false, run);
      for (int i = 0; i < g.n_nodes; i++)
        if (g.nodes[i]->op != IR_OP_INPUT && p.value[i])
          compare_node(g.nodes[i], p.value[i], ref.v[i], run);
      if (threads == 1) one_thread = snapshot(&p);
    }
    expect_same(&p, one_thread, true, "1 thread vs 2 threads");
    cg_program_free(&p);
  }
  ir_values_free(&ref);
}

// ---------------------------------------------------------------------------------------
// The table.

START_TEST(test_every_computed_op_has_a_lowering) {
  for (int op_ = 0; op_ < IR_OP_COUNT; op_++) {
    if (op_ == IR_OP_INPUT || op_ == IR_OP_PARAM) {
      ck_assert_msg(!cg_lowerings[op_], "%s is bound, not computed", ir_ops[op_].name);
      continue;
    }
    ck_assert_msg(cg_lowerings[op_] != NULL, "%s has no lowering", ir_ops[op_].name);
  }
}
END_TEST

// ---------------------------------------------------------------------------------------
// Elementwise ops (the lead's lower_ew.c), one graph per size.

START_TEST(test_unary_float_ops_match_reference) {
  int n = sizes[_i];
  IrNode *x = input("x", DT_F32, shp(1, n), -3, 3);
  IrNode *pos = input("pos", DT_F32, shp(1, n), 0.01, 10);
  IrOpKind any[] = {IR_OP_NEG, IR_OP_EXP, IR_OP_TANH, IR_OP_ERF, IR_OP_GELU, IR_OP_RELU,
                    IR_OP_SIGMOID, IR_OP_STEP, IR_OP_SILU, IR_OP_DROPOUT};
  for (size_t k = 0; k < sizeof any / sizeof any[0]; k++) {
    IrNode *y = unary(any[k], x);
    if (any[k] == IR_OP_DROPOUT) {
      set_float(y, "p", 0.1);
      binary(IR_OP_DROPOUT_GRAD, pos, y);  // inference: pos as it is
    }
  }
  IrNode *aff = unary(IR_OP_AFFINE, x);
  set_float(aff, "scale", 0.5);
  set_float(aff, "shift", 0.25);
  unary(IR_OP_LOG, pos);
  unary(IR_OP_SQRT, pos);
  unary(IR_OP_RSQRT, pos);
  unary(IR_OP_LOG, x);  // log of negatives: NaN in both
  check_graph(100 + (uint64_t)_i);
}
END_TEST

START_TEST(test_binary_float_ops_match_reference) {
  int n = sizes[_i];
  IrNode *a = input("a", DT_F32, shp(2, 2, n), -3, 3);
  IrNode *b = input("b", DT_F32, shp(2, 2, n), 0.5, 3);
  IrNode *row = input("row", DT_F32, shp(1, n), -3, 3);
  IrNode *col = input("col", DT_F32, shp(2, 2, 1), 0.5, 3);
  IrNode *s = input("s", DT_F32, shp(0), -3, 3);
  IrOpKind ops[] = {IR_OP_ADD, IR_OP_SUB, IR_OP_MUL, IR_OP_DIV, IR_OP_MAXIMUM, IR_OP_MINIMUM,
                    IR_OP_GELU_GRAD};
  for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
    binary(ops[k], a, b);
    binary(ops[k], a, row);  // [2,n] with [n]
    binary(ops[k], row, col);  // [n] with [2,1] -> [2,n]
    binary(ops[k], s, a);    // scalar with [2,n]
  }
  check_graph(200 + (uint64_t)_i);
}
END_TEST

START_TEST(test_broadcasting_in_every_position) {
  IrNode *a = input("a", DT_F32, shp(3, 4, 1, 5), -3, 3);
  IrNode *b = input("b", DT_F32, shp(2, 3, 5), -3, 3);
  IrNode *c = input("c", DT_F32, shp(3, 2, 3, 1), -3, 3);
  IrNode *e = input("e", DT_F32, shp(3, 1, 1, 7), -3, 3);
  IrNode *f = input("f", DT_F32, shp(1, 1), -3, 3);
  binary(IR_OP_ADD, a, b);  // [4,3,5]
  binary(IR_OP_MUL, c, e);  // [2,3,7]
  binary(IR_OP_SUB, e, c);
  binary(IR_OP_MAXIMUM, f, b);
  binary(IR_OP_DIV, b, f);
  check_graph(250);
}
END_TEST

START_TEST(test_integer_elementwise_ops_are_exact) {
  int n = sizes[_i];
  DType dts[] = {DT_I32, DT_I64};
  for (int t = 0; t < 2; t++) {
    char na[16], nb[16], nr[16];
    snprintf(na, sizeof na, "a%d", t);
    snprintf(nb, sizeof nb, "b%d", t);
    snprintf(nr, sizeof nr, "r%d", t);
    IrNode *a = input(na, dts[t], shp(2, 2, n), -1000, 1000);
    IrNode *b = input(nb, dts[t], shp(2, 2, n), -1000, 1000);
    IrNode *row = input(nr, dts[t], shp(1, n), -1000, 1000);
    IrOpKind ops[] = {IR_OP_ADD, IR_OP_SUB, IR_OP_MUL, IR_OP_MAXIMUM, IR_OP_MINIMUM};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
      binary(ops[k], a, b);
      binary(ops[k], row, a);
    }
    unary(IR_OP_NEG, a);
    IrNode *aff = unary(IR_OP_AFFINE, a);
    set_float(aff, "scale", 3);
    set_float(aff, "shift", -2);
  }
  check_graph(300 + (uint64_t)_i);
}
END_TEST

START_TEST(test_casts_between_every_dtype) {
  int n = sizes[_i];
  IrNode *x = input("x", DT_F32, shp(1, n), -1000, 1000);
  IrNode *i32 = input("i32", DT_I32, shp(1, n), -100000, 100000);
  IrNode *i64 = input("i64", DT_I64, shp(1, n), -100000, 100000);
  IrNode *from[] = {x, i32, i64};
  DType to[] = {DT_F32, DT_I32, DT_I64};
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++) {
      char name[64];
      snprintf(name, sizeof name, "cast_%s_%s", from[a]->name, dt_name(to[b]));
      IrNode *c = op(IR_OP_CAST, name, 1, from[a]);
      set_int(c, "dtype", to[b]);
    }
  check_graph(400 + (uint64_t)_i);
}
END_TEST

START_TEST(test_full_and_iota_in_every_dtype) {
  IrShape shapes[] = {shp(0), shp(1, 1), shp(1, 17), shp(2, 3, 33), shp(3, 4, 5, 65), shp(2, 100, 1000)};
  DType dts[] = {DT_F32, DT_I32, DT_I64};
  int k = 0;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int t = 0; t < 3; t++) {
      char name[64];
      snprintf(name, sizeof name, "full%d", k);
      IrNode *f = op(IR_OP_FULL, name, 0);
      set_shape_attr(f, "shape", shapes[s]);
      set_float(f, "value", t == 0 ? -2.5 : 7);
      set_int(f, "dtype", dts[t]);
      for (int axis = 0; axis < shapes[s].rank; axis++) {
        snprintf(name, sizeof name, "iota%d_%d", k, axis);
        IrNode *io = op(IR_OP_IOTA, name, 0);
        set_shape_attr(io, "shape", shapes[s]);
        set_int(io, "axis", axis);
        set_int(io, "dtype", dts[t]);
      }
      k++;
    }
  check_graph(450);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Matmul (the lead's codegen/lower_matmul.c on codegen/cg_gemm.c). Build with
// -DKILN_TEST_NO_MATMUL to leave it out while that lowering is missing.
#ifndef KILN_TEST_NO_MATMUL
START_TEST(test_matmul_matches_reference) {
  static const int mkn[][3] = {{1, 1, 1}, {3, 17, 5}, {33, 65, 17}, {65, 257, 33}, {17, 1000, 3}};
  int M = mkn[_i][0], K = mkn[_i][1], N = mkn[_i][2];
  IrNode *a = input("a", DT_F32, shp(2, M, K), -1, 1);
  IrNode *at = input("at", DT_F32, shp(2, K, M), -1, 1);
  IrNode *b = input("b", DT_F32, shp(2, K, N), -1, 1);
  IrNode *bt = input("bt", DT_F32, shp(2, N, K), -1, 1);
  IrNode *ba = input("ba", DT_F32, shp(4, 2, 1, M, K), -1, 1);
  IrNode *bb = input("bb", DT_F32, shp(3, 3, K, N), -1, 1);
  op(IR_OP_MATMUL, "ab", 2, a, b);
  set_int(op(IR_OP_MATMUL, "atb", 2, at, b), "transpose_a", 1);
  set_int(op(IR_OP_MATMUL, "abt", 2, a, bt), "transpose_b", 1);
  IrNode *tt = op(IR_OP_MATMUL, "atbt", 2, at, bt);
  set_int(tt, "transpose_a", 1);
  set_int(tt, "transpose_b", 1);
  op(IR_OP_MATMUL, "batched", 2, ba, bb);  // [2,1] x [3] -> [2,3]
  op(IR_OP_MATMUL, "shared_b", 2, ba, b);  // [2,1,M,K] x [K,N]
  check_graph(500 + (uint64_t)_i);
}
END_TEST

// The kernels are compiled in parts on several threads (codegen/objects.c): on 1, on 3 and
// whole (the dump path: one module optimised at once) they compute the same bits.
START_TEST(test_compiled_in_parts_or_whole_the_same_bits) {
  IrNode *a = input("a", DT_F32, shp(2, 33, 65), -1, 1);
  IrNode *b = input("b", DT_F32, shp(2, 65, 17), -1, 1);
  IrNode *ab = op(IR_OP_MATMUL, "ab", 2, a, b);
  IrNode *gl = op(IR_OP_GELU, "gelu", 1, ab);
  op(IR_OP_SOFTMAX, "softmax", 1, gl);
  op(IR_OP_REDUCE_SUM, "sum", 1, op(IR_OP_EXP, "exp", 1, a));
  finish_ok();
  IrValues in;
  fill_inputs(&in, 61);
  char dir[] = "/tmp/kiln_test_partsXXXXXX";
  ck_assert(mkdtemp(dir));
  void **first = NULL;
  for (int k = 0; k < 3; k++) {
    CgOptions opt = {.vector_floats = 16, .tuning = test_tuning()};
    opt.tuning.threads = k == 1 ? 3 : 1;
    if (k == 2) opt.dump_dir = dir;
    CgProgram p;
    ck_assert_msg(cg_compile(&g, NULL, &opt, &p, &d), "compile failed: %s", d.msg);
    ck_assert_int_ge(p.n_kernels, 4);
    bind_inputs(&p, &in);
    run_ok(&p, 1, "parts");
    if (first) expect_same(&p, first, false, k == 1 ? "3 threads" : "whole");
    first = snapshot(&p);
    cg_program_free(&p);
  }
  for (int i = 0; i < g.n_nodes; i++) free(first[i]);
  free(first);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
  ir_values_free(&in);
}
END_TEST
#endif

// ---------------------------------------------------------------------------------------
// Data movement (lower_data.c), in every dtype.

static const DType all_dtypes[] = {DT_F32, DT_I32, DT_I64};

static IrNode *typed_input(const char *base, DType dt, IrShape s) {
  char name[64];
  snprintf(name, sizeof name, "%s_%s", base, dt_name(dt));
  return input(name, dt, s, -1000, 1000);
}

START_TEST(test_reshape_copies_in_every_dtype) {
  int n = sizes[_i];
  for (int t = 0; t < 3; t++) {
    IrNode *x = typed_input("x", all_dtypes[t], shp(2, 3, n));
    IrNode *r = unary(IR_OP_RESHAPE, x);
    set_ints(r, "shape", 3, n, 1, 3);
    IrNode *big = typed_input("big", all_dtypes[t], shp(1, 5 * n));
    IrNode *r2 = unary(IR_OP_RESHAPE, big);
    set_ints(r2, "shape", 2, 5, -1);
  }
  check_graph(600 + (uint64_t)_i);
}
END_TEST

START_TEST(test_permute_contiguous_and_strided) {
  static const int perms[][4] = {{0, 1, 2, 3}, {0, 1, 3, 2}, {0, 2, 1, 3}, {3, 2, 1, 0},
                                 {1, 0, 2, 3}, {2, 3, 0, 1}, {1, 2, 3, 0}};
  for (int t = 0; t < 3; t++) {
    IrNode *x = typed_input("x", all_dtypes[t], shp(4, 2, 3, 17, 5));
    IrNode *ones = typed_input("ones", all_dtypes[t], shp(4, 1, 17, 1, 3));
    for (int p = 0; p < 7; p++) {
      char name[64];
      snprintf(name, sizeof name, "perm%d_%s", p, dt_name(all_dtypes[t]));
      IrNode *y = op(IR_OP_PERMUTE, name, 1, x);
      set_ints(y, "perm", 4, perms[p][0], perms[p][1], perms[p][2], perms[p][3]);
      snprintf(name, sizeof name, "perm1s%d_%s", p, dt_name(all_dtypes[t]));
      y = op(IR_OP_PERMUTE, name, 1, ones);
      set_ints(y, "perm", 4, perms[p][0], perms[p][1], perms[p][2], perms[p][3]);
    }
  }
  IrNode *tall = input("tall", DT_F32, shp(2, 1000, 100), -1, 1);  // 100000 elements
  set_ints(unary(IR_OP_PERMUTE, tall), "perm", 2, 1, 0);
  IrNode *odd = input("odd", DT_F32, shp(2, 257, 65), -1, 1);
  set_ints(unary(IR_OP_PERMUTE, odd), "perm", 2, 1, 0);
  IrNode *one = input("one", DT_I64, shp(1, 1), -1, 1);
  set_ints(unary(IR_OP_PERMUTE, one), "perm", 1, 0);
  IrNode *scalar = input("scalar", DT_I32, shp(0), -1000, 1000);
  set_ints(unary(IR_OP_PERMUTE, scalar), "perm", 0);
  check_graph(700);
}
END_TEST

START_TEST(test_concat_along_every_axis) {
  for (int t = 0; t < 3; t++) {
    DType dt = all_dtypes[t];
    IrNode *a = typed_input("a", dt, shp(3, 2, 3, 17));
    IrNode *b = typed_input("b", dt, shp(3, 2, 3, 17));
    IrNode *c = typed_input("c", dt, shp(3, 5, 3, 17));
    IrNode *e = typed_input("e", dt, shp(3, 2, 3, 1));
    IrNode *h = typed_input("h", dt, shp(3, 2, 1, 17));
    char name[64];
    snprintf(name, sizeof name, "cat0_%s", dt_name(dt));
    set_int(op(IR_OP_CONCAT, name, 3, a, b, c), "axis", 0);
    snprintf(name, sizeof name, "cat1_%s", dt_name(dt));
    set_int(op(IR_OP_CONCAT, name, 2, a, h), "axis", 1);
    snprintf(name, sizeof name, "cat2_%s", dt_name(dt));
    set_int(op(IR_OP_CONCAT, name, 3, e, a, e), "axis", -1);
    snprintf(name, sizeof name, "cat_one_%s", dt_name(dt));
    set_int(op(IR_OP_CONCAT, name, 1, a), "axis", 2);
  }
  IrNode *big = input("big", DT_F32, shp(1, 100000), -1, 1);
  IrNode *small = input("small", DT_F32, shp(1, 17), -1, 1);
  set_int(op(IR_OP_CONCAT, "cat_big", 3, small, big, small), "axis", 0);
  IrNode *rows = input("rows", DT_F32, shp(2, 1000, 65), -1, 1);
  IrNode *rows2 = input("rows2", DT_F32, shp(2, 1000, 33), -1, 1);
  set_int(op(IR_OP_CONCAT, "cat_rows", 2, rows, rows2), "axis", 1);
  check_graph(800);
}
END_TEST

START_TEST(test_slice_along_every_axis) {
  for (int t = 0; t < 3; t++) {
    DType dt = all_dtypes[t];
    IrNode *x = typed_input("x", dt, shp(3, 5, 17, 33));
    static const int cuts[][3] = {{0, 1, 4}, {1, 0, 17}, {1, 3, 16}, {2, 32, 33}, {2, 0, 1}, {-1, 5, 30}};
    for (int k = 0; k < 6; k++) {
      char name[64];
      snprintf(name, sizeof name, "slice%d_%s", k, dt_name(dt));
      IrNode *s = op(IR_OP_SLICE, name, 1, x);
      set_int(s, "axis", cuts[k][0]);
      set_int(s, "start", cuts[k][1]);
      set_int(s, "end", cuts[k][2]);
    }
  }
  IrNode *big = input("big", DT_F32, shp(1, 100000), -1, 1);
  IrNode *s = unary(IR_OP_SLICE, big);
  set_int(s, "axis", 0);
  set_int(s, "start", 3);
  set_int(s, "end", 99999);
  IrNode *one = input("one", DT_F32, shp(1, 1), -1, 1);
  IrNode *s1 = unary(IR_OP_SLICE, one);
  set_int(s1, "end", 1);
  check_graph(900);
}
END_TEST

// gather(data, indices) with indices uniform over the gathered dim.
static IrNode *gather(const char *name, IrNode *data, DType it, IrShape is, int axis, int bd) {
  char iname[64];
  snprintf(iname, sizeof iname, "%s_idx", name);
  int a = axis < 0 ? axis + data->shape.rank : axis;
  IrNode *idx = input(iname, it, is, 0, (double)data->shape.dim[a]);
  IrNode *y = op(IR_OP_GATHER, name, 2, data, idx);
  set_int(y, "axis", axis);
  set_int(y, "batch_dims", bd);
  return y;
}

START_TEST(test_gather_with_axis_and_batch_dims) {
  for (int t = 0; t < 3; t++) {
    DType dt = all_dtypes[t];
    char name[64];
    IrNode *table = typed_input("table", dt, shp(2, 1000, 33));
    IrNode *cube = typed_input("cube", dt, shp(3, 3, 65, 5));
    IrNode *bat = typed_input("bat", dt, shp(3, 4, 10, 3));
    IrNode *four = typed_input("four", dt, shp(4, 2, 3, 10, 17));
#define G(tag, data, it, is, axis, bd)                                 \
  snprintf(name, sizeof name, "%s_%s_%s", tag, dt_name(dt), dt_name(it)); \
  gather(name, data, it, is, axis, bd)
    G("emb", table, DT_I64, shp(2, 2, 17), 0, 0);      // embedding lookup
    G("emb32", table, DT_I32, shp(1, 65), 0, 0);
    G("scalar", table, DT_I64, shp(0), 0, 0);          // one row
    G("mid", cube, DT_I32, shp(1, 7), 1, 0);           // axis 1: (3, 7, 5)
    G("last", cube, DT_I64, shp(2, 2, 3), -1, 0);      // axis 2: (3, 65, 2, 3)
    G("batch", bat, DT_I64, shp(2, 4, 6), 1, 1);       // (4, 6, 3)
    G("batch2", four, DT_I32, shp(3, 2, 3, 4), 2, 2);  // (2, 3, 4, 17)
    G("batch1", four, DT_I64, shp(2, 2, 5), 2, 1);     // (2, 3, 5, 17)
#undef G
  }
  IrNode *big = input("big", DT_F32, shp(2, 3, 100000), -1, 1);
  gather("wide", big, DT_I64, shp(1, 5), 0, 0);
  IrNode *col = input("col", DT_F32, shp(1, 100000), -1, 1);
  gather("picks", col, DT_I32, shp(1, 1000), 0, 0);
  check_graph(1000);
}
END_TEST

// scatter_add(updates, indices) of `size` rows along axis, indices uniform over them (so
// with many repeats when the indices outnumber the rows).
static IrNode *scatter(const char *name, IrShape us, DType it, IrShape is, int axis, int bd,
                       int64_t size) {
  char uname[64], iname[64];
  snprintf(uname, sizeof uname, "%s_upd", name);
  snprintf(iname, sizeof iname, "%s_idx", name);
  IrNode *u = input(uname, DT_F32, us, -1, 1);
  IrNode *idx = input(iname, it, is, 0, (double)size);
  IrNode *y = op(IR_OP_SCATTER_ADD, name, 2, u, idx);
  set_int(y, "axis", axis);
  set_int(y, "batch_dims", bd);
  set_int(y, "size", size);
  return y;
}

// Against the reference for W = 16 and 8 and 1 and 2 threads; check_graph also asserts the
// same bits with 1 and 2 threads (each output column block is one work item, rows summed
// in index order).
START_TEST(test_scatter_add_matches_reference_and_ignores_thread_count) {
  scatter("emb", shp(2, 40, 200), DT_I64, shp(1, 40), 0, 0, 30);       // repeats, column blocks
  scatter("emb32", shp(3, 2, 5, 17), DT_I32, shp(2, 2, 5), 0, 0, 7);
  scatter("mid", shp(3, 3, 7, 5), DT_I64, shp(1, 7), 1, 0, 4);          // -> (3, 4, 5)
  scatter("batch", shp(3, 4, 6, 3), DT_I64, shp(2, 4, 6), 1, 1, 10);    // -> (4, 10, 3)
  scatter("last", shp(3, 3, 2, 3), DT_I32, shp(2, 2, 3), -1, 0, 65);    // -> (3, 65)
  scatter("wide", shp(2, 3, 1000), DT_I64, shp(1, 3), 0, 0, 2);         // 1000 = 15.6 blocks
  check_graph(1100);
}
END_TEST

static void bad_last_id(double *v, int64_t n) { v[n - 1] = 1000; }

START_TEST(test_scatter_add_bad_index_reports_the_node) {
  IrNode *u = input("upd", DT_F32, shp(2, 17, 33), -1, 1);
  IrNode *ids = input("ids", DT_I64, shp(1, 17), 0, 1000);
  edit_input(ids, bad_last_id);
  IrNode *y = op(IR_OP_SCATTER_ADD, "table_grad", 2, u, ids);
  set_int(y, "size", 1000);
  finish_ok();
  IrValues in;
  fill_inputs(&in, 43);
  for (int threads = 1; threads <= 2; threads++) {
    CgProgram p;
    compile_ok(&p, 8);
    bind_inputs(&p, &in);
    rt_plan_run(&p.plan, threads);
    Diag e = {0};
    ck_assert(!cg_program_status(&p, &e));
    ck_assert_msg(strstr(e.msg, "\"table_grad\"") && strstr(e.msg, "scatter_add") &&
                      strstr(e.msg, "index 1000 out of range [0, 1000) at element 16"),
                  "message: %s", e.msg);
    cg_program_free(&p);
  }
  ir_values_free(&in);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Reductions, softmax, layernorm (lower_reduce.c).

static void reduce_all_kinds(IrNode *x, int n_axes, const int *axes, bool keep) {
  IrOpKind kinds[] = {IR_OP_REDUCE_SUM, IR_OP_REDUCE_MEAN, IR_OP_REDUCE_MAX};
  for (int k = 0; k < 3; k++) {
    if (kinds[k] == IR_OP_REDUCE_MEAN && x->dtype != DT_F32) continue;  // floats only
    char name[96];
    int len = snprintf(name, sizeof name, "%s_%s_%s", ir_ops[kinds[k]].name, x->name, keep ? "k" : "");
    for (int a = 0; a < n_axes; a++) len += snprintf(name + len, sizeof name - (size_t)len, "%d", axes[a]);
    IrNode *y = op(kinds[k], name, 1, x);
    IrAttr *ax = attr_slot(y, "axes");
    ax->n = n_axes;
    for (int a = 0; a < n_axes; a++) ax->ints[a] = axes[a];
    set_int(y, "keepdims", keep);
  }
}

START_TEST(test_reduce_last_axis_and_all) {
  int n = sizes[_i];
  for (int t = 0; t < 3; t++) {
    IrNode *x = typed_input("x", all_dtypes[t], shp(2, 3, n));
    IrNode *v = typed_input("v", all_dtypes[t], shp(1, n));
    reduce_all_kinds(x, 1, (int[]){-1}, false);
    reduce_all_kinds(x, 1, (int[]){1}, true);
    reduce_all_kinds(x, 0, NULL, false);
    reduce_all_kinds(v, 0, NULL, true);
  }
  check_graph(1100 + (uint64_t)_i);
}
END_TEST

START_TEST(test_reduce_any_axes) {
  for (int t = 0; t < 3; t++) {
    IrNode *x = typed_input("x", all_dtypes[t], shp(3, 4, 5, 33));
    IrNode *y = typed_input("y", all_dtypes[t], shp(4, 5, 1, 7, 3));
    static const int sets[][3] = {{0}, {1}, {0, 2}, {0, 1}, {1, 2}, {0, 1, 2}};
    static const int counts[] = {1, 1, 2, 2, 2, 3};
    for (int s = 0; s < 6; s++) {
      reduce_all_kinds(x, counts[s], sets[s], s % 2 == 0);
      reduce_all_kinds(y, counts[s], sets[s], s % 2 == 1);
    }
    reduce_all_kinds(y, 2, (int[]){1, 3}, false);  // a size-1 dim and the last
    reduce_all_kinds(y, 1, (int[]){2}, false);     // only a size-1 dim: a copy
  }
  IrNode *scalar = input("scalar", DT_F32, shp(0), -1, 1);  // rank 0: all of nothing
  reduce_all_kinds(scalar, 0, NULL, false);
  reduce_all_kinds(scalar, 0, NULL, true);
  IrNode *tall = input("tall", DT_F32, shp(2, 100000, 3), -1, 1);  // long strided sums
  reduce_all_kinds(tall, 1, (int[]){0}, false);
  IrNode *wide = input("wide", DT_F32, shp(3, 257, 3, 130), 0, 1);
  reduce_all_kinds(wide, 2, (int[]){0, 2}, false);
  reduce_all_kinds(wide, 2, (int[]){1, 2}, true);
  check_graph(1200);
}
END_TEST

// Integer sums are exact (accumulated in twice the width) however their partial sums run:
// alternating extremes along a row put same-signed values in each vector lane.
static void alternate_i32(double *v, int64_t n) {
  for (int64_t j = 0; j < n; j++) v[j] = j % 2 ? -INT32_MAX : INT32_MAX;
}
static void alternate_i64(double *v, int64_t n) {
  for (int64_t j = 0; j < n; j++) v[j] = j % 2 ? -0x1p62 : 0x1p62;
}

START_TEST(test_int_reduce_sum_is_exact_past_partial_overflow) {
  IrNode *a = input("a", DT_I32, shp(2, 5, 37), 0, 1), *b = input("b", DT_I64, shp(2, 5, 37), 0, 1);
  edit_input(a, alternate_i32);
  edit_input(b, alternate_i64);
  reduce_all_kinds(a, 1, (int[]){1}, false);  // rows
  reduce_all_kinds(a, 1, (int[]){0}, false);  // columns: MAX - MAX + ...
  reduce_all_kinds(b, 1, (int[]){1}, false);
  reduce_all_kinds(b, 1, (int[]){0}, true);
  check_graph(1250);
}
END_TEST

// The finished graph fails on the reference with a message containing `about` (inputs from
// seed); the JIT at width W with `threads` threads must report exactly that message.
static void expect_the_references_error(uint64_t seed, const char *about, int W, int threads) {
  IrValues ref;
  fill_inputs(&ref, seed);
  IrEvalMode mode = {.training = false};
  Diag want = {0};
  ck_assert(!ir_eval(&g, &ref, NULL, &mode, &want));
  ck_assert_msg(strstr(want.msg, about), "%s", want.msg);
  CgProgram p;
  compile_ok(&p, W);
  bind_inputs(&p, &ref);
  rt_plan_run(&p.plan, threads);
  Diag e = {0};
  ck_assert_msg(!cg_program_status(&p, &e), "W=%d: no error; the reference says %s", W, want.msg);
  ck_assert_str_eq(e.msg, want.msg);
  cg_program_free(&p);
  ir_values_free(&ref);
}

// A sum its dtype cannot hold: the JIT reports what the reference says (the same element,
// with one thread), for the row and the column kernel, i32 and i64.
START_TEST(test_int_reduce_sum_overflow_says_what_the_reference_says) {
  DType dt = _i < 2 ? DT_I32 : DT_I64;
  double lim = dt == DT_I32 ? 0x1p31 - 1 : 0x1p62;
  IrNode *x = input("x", dt, shp(3, 5, 3, 37), -lim, lim);
  IrNode *y = op(IR_OP_REDUCE_SUM, "total", 1, x);
  IrAttr *ax = attr_slot(y, "axes");
  ax->n = 1;
  ax->ints[0] = _i % 2 ? 0 : 2;  // the column kernel (last axis kept), the row kernel
  finish_ok();
  for (int W = 16; W >= 8; W /= 2) expect_the_references_error(1260 + (uint64_t)_i, "overflows", W, 1);
}
END_TEST

START_TEST(test_softmax_and_log_softmax_last_axis) {
  int n = sizes[_i];
  IrNode *x = input("x", DT_F32, shp(2, 3, n), -10, 10);
  unary(IR_OP_SOFTMAX, x);
  unary(IR_OP_LOG_SOFTMAX, x);
  check_graph(1300 + (uint64_t)_i);
}
END_TEST

START_TEST(test_softmax_and_log_softmax_other_axes) {
  IrNode *x = input("x", DT_F32, shp(3, 3, 257, 5), -10, 10);
  IrNode *y = input("y", DT_F32, shp(2, 65, 17), -10, 10);
  IrNode *z = input("z", DT_F32, shp(2, 1000, 100), -10, 10);
  IrNode *one = input("one", DT_F32, shp(2, 1, 33), -10, 10);
  IrNode *xs[] = {x, x, y, z, one};
  int axes[] = {1, 0, 0, 0, 0};
  for (int k = 0; k < 5; k++) {
    char name[64];
    snprintf(name, sizeof name, "softmax%d", k);
    set_int(op(IR_OP_SOFTMAX, name, 1, xs[k]), "axis", axes[k]);
    snprintf(name, sizeof name, "log_softmax%d", k);
    set_int(op(IR_OP_LOG_SOFTMAX, name, 1, xs[k]), "axis", axes[k]);
  }
  check_graph(1400);
}
END_TEST

START_TEST(test_layernorm_matches_reference) {
  int n = sizes[_i];
  int rows = n >= 1000 ? 100000 / n : 3;  // at most 100000 elements
  IrNode *x = input("x", DT_F32, shp(2, rows, n), -2, 4);
  IrNode *w = input("w", DT_F32, shp(1, n), 0.5, 1.5);
  IrNode *b = input("b", DT_F32, shp(1, n), -1, 1);
  op(IR_OP_LAYERNORM, "ln", 3, x, w, b);
  set_float(op(IR_OP_LAYERNORM, "ln_eps", 3, x, w, b), "eps", 1e-5);
  check_graph(1500 + (uint64_t)_i);
}
END_TEST

// Compiles the graph (W = 16) and checks that matmul mm's GEMM step reads as its A
// (args[0]) the scratch copy that the producer's step (not a pack step "_kt") writes last
// (cg_steps_add_words). Returns the number of A packing steps left in the program.
static int packs_with_copy_of(const IrNode *producer, const IrNode *mm) {
  CgProgram p;
  compile_ok(&p, 16);
  int pr_step = -1, mm_step = -1, packs = 0;
  for (int s = 0; s < p.steps.n; s++) {
    const CgStep *st = &p.steps.v[s];
    packs += strstr(st->fn, ".pack_a") != NULL;
    if (st->node == producer->id && !strstr(st->fn, "_kt")) pr_step = s;
    if (st->node == mm->id && strstr(st->fn, ".gemm")) mm_step = s;
  }
  ck_assert(pr_step >= 0 && mm_step >= 0);
  const CgStep *ps = &p.steps.v[pr_step];
  ck_assert_int_eq(ps->args[ps->n_args - 1].kind, CG_ARG_SCRATCH);
  ck_assert_int_eq(p.steps.v[mm_step].args[0].kind, CG_ARG_SCRATCH);
  ck_assert_int_eq(p.steps.v[mm_step].args[0].id, ps->args[ps->n_args - 1].id);
  cg_program_free(&p);
  return packs;
}

// A LayerNorm that a bf16 matmul reads as its A writes the matmul's bf16 copy of it row by
// row (codegen/lower_reduce.c): the matmul has no packing step of its own, reads that copy,
// and its result still matches the reference (which rounds A as the packing does); a matmul
// over a transposed A packs its own.
START_TEST(test_layernorm_writes_the_bf16_copy_a_matmul_reads) {
  IrNode *x = input("x", DT_F32, shp(3, 2, 7, 40), -2, 4);
  IrNode *w = input("w", DT_F32, shp(1, 40), 0.5, 1.5);
  IrNode *b = input("b", DT_F32, shp(1, 40), -1, 1);
  IrNode *wt = input("wt", DT_F32, shp(2, 24, 40), -1, 1);
  IrNode *ln = op(IR_OP_LAYERNORM, "ln", 3, x, w, b);
  IrNode *mm = op(IR_OP_MATMUL, "mm", 2, ln, wt);
  set_int(mm, "transpose_b", 1);
  set_int(mm, "bf16", 1);
  IrNode *y = input("y", DT_F32, shp(2, 40, 14), -1, 1);
  IrNode *ln2 = op(IR_OP_LAYERNORM, "ln2", 3, y, input("w2", DT_F32, shp(1, 14), 0.5, 1.5),
                   input("b2", DT_F32, shp(1, 14), -1, 1));
  IrNode *mt = op(IR_OP_MATMUL, "mt", 2, ln2, input("z", DT_F32, shp(2, 40, 6), -1, 1));
  set_int(mt, "transpose_a", 1);
  set_int(mt, "bf16", 1);
  check_graph(1700);
  ck_assert_int_eq(packs_with_copy_of(ln, mm), 1);  // mt's
}
END_TEST

// The same for an attention's output (codegen/lower_attention.c), written a query row of a
// head at a time: the matmul reading it has no packing step and takes the attention step's
// copy; its result matches the reference.
START_TEST(test_attention_writes_the_bf16_copy_a_matmul_reads) {
  IrNode *q = input("q", DT_F32, shp(3, 2, 9, 24), -2, 2);
  IrNode *k = input("k", DT_F32, shp(3, 2, 13, 24), -2, 2);
  IrNode *v = input("v", DT_F32, shp(3, 2, 13, 24), -2, 2);
  IrNode *at = op(IR_OP_ATTENTION, "at", 3, q, k, v);
  set_int(at, "heads", 3);
  set_float(at, "scale", 0.35);
  set_int(at, "bf16", 1);
  IrNode *mm = op(IR_OP_MATMUL, "mm", 2, at, input("wt", DT_F32, shp(2, 10, 24), -1, 1));
  set_int(mm, "transpose_b", 1);
  set_int(mm, "bf16", 1);
  check_graph(1701);
  ck_assert_int_eq(packs_with_copy_of(at, mm), 0);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Losses (lower_loss.c).

static void ignore_every_third(double *v, int64_t n) {
  for (int64_t j = 0; j < n; j += 3) v[j] = -100;
}

static void ignore_all(double *v, int64_t n) {
  for (int64_t j = 0; j < n; j++) v[j] = -100;
}

static void zero_every_fourth(double *v, int64_t n) {
  for (int64_t j = 1; j < n; j += 4) v[j] = 0;
}

START_TEST(test_cross_entropy_matches_reference) {
  static const int pc[][2] = {{1, 1}, {3, 17}, {8, 1000}, {100, 1000}, {65, 33}, {1, 100000}};
  int P = pc[_i][0], C = pc[_i][1];
  IrNode *logits = input("logits", DT_F32, shp(2, P, C), -10, 10);
  IrNode *l64 = input("l64", DT_I64, shp(1, P), 0, C);
  IrNode *l32 = input("l32", DT_I32, shp(1, P), 0, C);
  IrNode *lig = input("lig", DT_I64, shp(1, P), 0, C);
  IrNode *lnone = input("lnone", DT_I32, shp(1, P), 0, C);
  edit_input(lig, ignore_every_third);
  edit_input(lnone, ignore_all);
  op(IR_OP_CROSS_ENTROPY, "ce64", 2, logits, l64);
  op(IR_OP_CROSS_ENTROPY, "ce32", 2, logits, l32);
  op(IR_OP_CROSS_ENTROPY, "ce_ignore", 2, logits, lig);
  op(IR_OP_CROSS_ENTROPY, "ce_none", 2, logits, lnone);
  IrNode *l3 = input("l3", DT_F32, shp(3, 2, 5, C), -3, 3);  // logits [..., C]
  IrNode *lab3 = input("lab3", DT_I64, shp(2, 2, 5), 0, C);
  set_int(op(IR_OP_CROSS_ENTROPY, "ce3", 2, l3, lab3), "ignore_index", 0);
  IrNode *den = input("den", DT_F32, shp(0), 0.5, 7);  // a trainer's global count over its shares
  op(IR_OP_CROSS_ENTROPY, "ce_den", 3, logits, lig, den);
  op(IR_OP_CROSS_ENTROPY, "ce_den_none", 3, logits, lnone, den);
  check_graph(1600 + (uint64_t)_i);
}
END_TEST

START_TEST(test_kl_div_matches_reference) {
  int n = sizes[_i];
  IrNode *lp = input("lp", DT_F32, shp(2, 4, n), -5, 0);
  IrNode *t = input("t", DT_F32, shp(2, 4, n), 0, 1);
  edit_input(t, zero_every_fourth);
  op(IR_OP_KL_DIV, "kl", 2, lp, t);
  IrNode *lp1 = input("lp1", DT_F32, shp(1, n), -5, 0);
  IrNode *t1 = input("t1", DT_F32, shp(1, n), 0, 1);
  op(IR_OP_KL_DIV, "kl1", 2, lp1, t1);
  check_graph(1700 + (uint64_t)_i);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Data errors: reported through the status word, naming the node; nothing read outside.

static void negative_target(double *v, int64_t n) { v[n / 2] = -0.25; v[n - 1] = -1; }
static void nan_target(double *v, int64_t n) { v[n / 3] = NAN; v[n - 1] = -1; }

// A kl_div target below 0 or NaN: the JIT says what the reference says (the first such
// element), for either of two nodes of one signature.
START_TEST(test_kl_div_bad_target_says_what_the_reference_says) {
  IrNode *lp = input("lp", DT_F32, shp(2, 4, 37), -5, 0), *t = input("t", DT_F32, shp(2, 4, 37), 0, 1);
  IrNode *lp2 = input("lp2", DT_F32, shp(2, 4, 37), -5, 0), *t2 = input("t2", DT_F32, shp(2, 4, 37), 0, 1);
  edit_input(_i ? t2 : t, _i ? nan_target : negative_target);
  op(IR_OP_KL_DIV, "kl", 2, lp, t);
  op(IR_OP_KL_DIV, "kl2", 2, lp2, t2);
  finish_ok();
  expect_the_references_error(1750 + (uint64_t)_i, _i ? "\"kl2\": kl_div: target element 49 is nan"
                                                        : "\"kl\": kl_div: target element 74 is -0.25",
                              8, 2);
}
END_TEST

static void bad_row_three(double *v, int64_t n) {
  v[3] = 1000;   // one past the table
  v[n - 1] = -1;
}

START_TEST(test_gather_bad_index_reports_the_node) {
  IrNode *table = input("table", DT_F32, shp(2, 1000, 33), -1, 1);
  IrNode *ids = input("ids", DT_I64, shp(1, 17), 0, 1000);
  edit_input(ids, bad_row_three);
  op(IR_OP_GATHER, "embeddings", 2, table, ids);
  finish_ok();
  IrValues in;
  fill_inputs(&in, 42);
  IrNode *y = ir_graph_find(&g, "embeddings");
  for (int threads = 1; threads <= 2; threads++) {
    CgProgram p;
    compile_ok(&p, 16);
    bind_inputs(&p, &in);
    rt_plan_run(&p.plan, threads);
    Diag e = {0};
    ck_assert(!cg_program_status(&p, &e));
    ck_assert_msg(strstr(e.msg, "\"embeddings\"") && strstr(e.msg, "gather") &&
                      strstr(e.msg, "out of range"),
                  "message: %s", e.msg);
    // The first error wins: with one thread that is row 3.
    if (threads == 1) ck_assert_msg(strstr(e.msg, "index 1000") && strstr(e.msg, "element 3"), "%s", e.msg);
    const float *out = p.value[y->id];  // (17, 33): bad rows are zeros, good rows copied
    const double *tab = in.v[table->id], *idx = in.v[ids->id];
    for (int row = 0; row < 17; row++)
      for (int c = 0; c < 33; c++) {
        double want = row == 3 || row == 16 ? 0.0 : tab[(int64_t)idx[row] * 33 + c];
        if (out[row * 33 + c] != (float)want) ck_abort_msg("row %d col %d", row, c);
      }
    cg_program_free(&p);
  }
  ir_values_free(&in);
}
END_TEST

static void bad_last(double *v, int64_t n) { v[n - 1] = 1000; }

// Two gathers of one signature: the error must name the one whose index is bad, not the
// other (kernels that report their node are not shared between nodes).
START_TEST(test_gather_bad_index_names_the_right_node_of_two_alike) {
  IrNode *table = input("table", DT_F32, shp(2, 1000, 33), -1, 1);
  IrNode *good = input("good", DT_I64, shp(1, 17), 0, 1000);
  IrNode *bad = input("bad", DT_I64, shp(1, 17), 0, 1000);
  edit_input(bad, bad_last);
  op(IR_OP_GATHER, "word_embeddings", 2, table, good);
  op(IR_OP_GATHER, "visual_embeddings", 2, table, bad);
  finish_ok();
  IrValues in;
  fill_inputs(&in, 44);
  CgProgram p;
  compile_ok(&p, 16);
  bind_inputs(&p, &in);
  rt_plan_run(&p.plan, 1);
  Diag e = {0};
  ck_assert(!cg_program_status(&p, &e));
  ck_assert_msg(strstr(e.msg, "\"visual_embeddings\"") && strstr(e.msg, "index 1000 out of range [0, 1000) at element 16"),
                "message: %s", e.msg);
  cg_program_free(&p);
  ir_values_free(&in);
}
END_TEST

static void bad_label(double *v, int64_t n) { v[n / 2] = 17; }

START_TEST(test_cross_entropy_bad_label_reports_the_node) {
  IrNode *logits = input("logits", DT_F32, shp(2, 9, 17), -1, 1);
  IrNode *labels = input("labels", DT_I32, shp(1, 9), 0, 17);
  edit_input(labels, bad_label);
  if (_i) op(IR_OP_CROSS_ENTROPY, "mlm_loss", 3, logits, labels, input("den", DT_F32, shp(0), 1, 2));
  else op(IR_OP_CROSS_ENTROPY, "mlm_loss", 2, logits, labels);
  finish_ok();
  IrValues in;
  fill_inputs(&in, 43);
  CgProgram p;
  compile_ok(&p, 8);
  bind_inputs(&p, &in);
  rt_plan_run(&p.plan, 2);
  Diag e = {0};
  ck_assert(!cg_program_status(&p, &e));
  ck_assert_msg(strstr(e.msg, "\"mlm_loss\"") && strstr(e.msg, "label 17 out of range [0, 17) at element 4"),
                "message: %s", e.msg);
  cg_program_free(&p);
  ir_values_free(&in);
}
END_TEST

// ---------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------
// Training: dropout's masks come from the plan's seed, set before each run.

// Every element: dropped (0) exactly where the reference drops, kept values within 4 ulp.
// Returns how many elements were dropped.
static int64_t compare_dropout(const IrNode *n, const float *got, const double *want, const char *run) {
  int64_t dropped = 0;
  for (int64_t j = 0; j < ir_numel(&n->shape); j++) {
    double a = got[j], b = (double)(float)want[j];
    if ((a == 0) != (b == 0) || fabs(a - b) > 4 * ulp_of(b))
      ck_abort_msg("%s: node \"%s\" (%s) element %lld: jit %.9g, reference %.9g", run, n->name,
                   ir_ops[n->op].name, (long long)j, a, b);
    dropped += b == 0;
  }
  return dropped;
}

START_TEST(test_dropout_in_training_draws_the_reference_masks_for_the_run_time_seed) {
  int64_t cols = sizes[_i] == 100000 ? 1000 : sizes[_i];  // (3, cols): rows and a tail
  IrNode *x = input("x", DT_F32, shp(2, 3, (int)cols), 0.5, 2);  // no zeros: a 0 is a drop
  IrNode *dy = input("dy", DT_F32, shp(2, 3, (int)cols), 0.5, 2);
  IrNode *a = op(IR_OP_DROPOUT, "encoder.drop", 1, x);
  set_float(a, "p", 0.1);
  IrNode *b = op(IR_OP_DROPOUT, "head.drop", 1, x);  // same input, another name: another mask
  set_float(b, "p", 0.5);
  IrNode *most = op(IR_OP_DROPOUT, "most", 1, x);
  set_float(most, "p", 0.9);
  IrNode *none = op(IR_OP_DROPOUT, "none", 1, x);
  set_float(none, "p", 0.0);
  op(IR_OP_DROPOUT_GRAD, "encoder.drop.grad", 2, dy, a);
  op(IR_OP_DROPOUT_GRAD, "head.drop.grad", 2, dy, b);
  finish_ok();
  ck_assert_int_eq(g.n_nodes, 8);
  static const uint64_t seeds[] = {7, 123456789, 7};  // back to 7: nothing is left over
  static const int widths[] = {16, 8};
  for (int wi = 0; wi < 2; wi++) {
    CgProgram p;
    CgOptions opt = {.vector_floats = widths[wi], .training = true, .tuning = test_tuning()};
    ck_assert_msg(cg_compile(&g, NULL, &opt, &p, &d), "compile failed: %s", d.msg);
    for (int si = 0; si < 3; si++) {
      IrValues ref;
      fill_inputs(&ref, 42);
      IrEvalMode mode = {.training = true, .seed = seeds[si]};
      ck_assert_msg(ir_eval(&g, &ref, NULL, &mode, &d), "reference failed: %s", d.msg);
      bind_inputs(&p, &ref);
      *p.seed = seeds[si];
      for (int threads = 1; threads <= 2; threads++) {
        char run[96];
        snprintf(run, sizeof run, "W=%d threads=%d seed=%llu", widths[wi], threads,
                 (unsigned long long)seeds[si]);
        run_ok(&p, threads, run);
        int64_t dropped[8] = {0};  // per node
        for (int i = 0; i < g.n_nodes; i++)
          if (g.nodes[i]->op != IR_OP_INPUT)
            dropped[i] = compare_dropout(g.nodes[i], p.value[i], ref.v[i], run);
        int64_t total = 3 * cols;
        ck_assert_int_eq(dropped[none->id], 0);
        if (total >= 1000) {  // the masks are neither empty nor everything
          ck_assert(dropped[a->id] > 0 && dropped[a->id] < total / 4);
          ck_assert(dropped[b->id] > total / 4 && dropped[b->id] < 3 * total / 4);
          ck_assert(dropped[most->id] > 3 * total / 4 && dropped[most->id] < total);
        }
      }
      ir_values_free(&ref);
    }
    cg_program_free(&p);
  }
}
END_TEST

// Dropouts alike but for their names (a layer's and the next one's) share one kernel each
// way: the mask's stream is data of the step. Each still draws its own reference mask.
START_TEST(test_dropouts_alike_share_a_kernel_and_keep_their_masks) {
  IrNode *x = input("x", DT_F32, shp(2, 4, 300), 0.5, 2);
  IrNode *dy = input("dy", DT_F32, shp(2, 4, 300), 0.5, 2);
  IrNode *a = op(IR_OP_DROPOUT, "layer.0.drop", 1, x);
  IrNode *b = op(IR_OP_DROPOUT, "layer.1.drop", 1, x);
  set_float(a, "p", 0.3);
  set_float(b, "p", 0.3);
  IrNode *ga = op(IR_OP_DROPOUT_GRAD, "layer.0.drop.grad", 2, dy, a);
  IrNode *gb = op(IR_OP_DROPOUT_GRAD, "layer.1.drop.grad", 2, dy, b);
  finish_ok();
  CgProgram p;
  CgOptions opt = {.vector_floats = 16, .training = true, .tuning = test_tuning()};
  ck_assert_msg(cg_compile(&g, NULL, &opt, &p, &d), "compile failed: %s", d.msg);
  ck_assert_int_eq(p.plan.n_steps, 4);
  ck_assert_int_eq(p.n_kernels, 2);  // dropout, dropout_grad
  ck_assert_str_eq(p.steps.v[0].fn, p.steps.v[1].fn);
  IrValues ref;
  fill_inputs(&ref, 42);
  IrEvalMode mode = {.training = true, .seed = 99};
  ck_assert_msg(ir_eval(&g, &ref, NULL, &mode, &d), "reference failed: %s", d.msg);
  bind_inputs(&p, &ref);
  *p.seed = 99;
  run_ok(&p, 2, "shared");
  const IrNode *nodes[] = {a, b, ga, gb};
  for (int k = 0; k < 4; k++) compare_dropout(nodes[k], p.value[nodes[k]->id], ref.v[nodes[k]->id], "shared");
  int64_t differ = 0;  // the two masks are not one
  for (int64_t j = 0; j < 2400; j++) differ += (((float *)p.value[a->id])[j] == 0) != (((float *)p.value[b->id])[j] == 0);
  ck_assert_int_gt(differ, 100);
  ir_values_free(&ref);
  cg_program_free(&p);
}
END_TEST

START_TEST(test_dropout_masks_change_with_the_seed) {
  IrNode *x = input("x", DT_F32, shp(1, 1000), 0.5, 2);
  IrNode *y = op(IR_OP_DROPOUT, "drop", 1, x);
  set_float(y, "p", 0.5);
  finish_ok();
  CgProgram p;
  CgOptions opt = {.training = true, .tuning = test_tuning()};
  ck_assert_msg(cg_compile(&g, NULL, &opt, &p, &d), "compile failed: %s", d.msg);
  IrValues ref;
  fill_inputs(&ref, 1);
  bind_inputs(&p, &ref);
  float first[1000];
  *p.seed = 1;
  run_ok(&p, 1, "seed 1");
  memcpy(first, p.value[y->id], sizeof first);
  *p.seed = 2;
  run_ok(&p, 1, "seed 2");
  int differ = 0;
  for (int j = 0; j < 1000; j++) differ += (first[j] == 0) != (((float *)p.value[y->id])[j] == 0);
  ck_assert_msg(differ > 100, "seeds 1 and 2 give nearly the same mask (%d of 1000 differ)", differ);
  ir_values_free(&ref);
  cg_program_free(&p);
}
END_TEST

static Suite *jit_suite(void) {
  Suite *s = suite_create("jit_ops");
  TCase *tc = tcase_create("ops");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, test_every_computed_op_has_a_lowering);
  tcase_add_loop_test(tc, test_unary_float_ops_match_reference, 0, N_SIZES);
  tcase_add_loop_test(tc, test_binary_float_ops_match_reference, 0, N_SIZES);
  tcase_add_test(tc, test_broadcasting_in_every_position);
  tcase_add_loop_test(tc, test_integer_elementwise_ops_are_exact, 0, N_SIZES);
  tcase_add_loop_test(tc, test_casts_between_every_dtype, 0, N_SIZES);
  tcase_add_test(tc, test_full_and_iota_in_every_dtype);
#ifndef KILN_TEST_NO_MATMUL
  tcase_add_loop_test(tc, test_matmul_matches_reference, 0, 5);
  tcase_add_test(tc, test_compiled_in_parts_or_whole_the_same_bits);
#endif
  tcase_add_loop_test(tc, test_reshape_copies_in_every_dtype, 0, N_SIZES);
  tcase_add_test(tc, test_permute_contiguous_and_strided);
  tcase_add_test(tc, test_concat_along_every_axis);
  tcase_add_test(tc, test_slice_along_every_axis);
  tcase_add_test(tc, test_gather_with_axis_and_batch_dims);
  tcase_add_test(tc, test_scatter_add_matches_reference_and_ignores_thread_count);
  tcase_add_test(tc, test_scatter_add_bad_index_reports_the_node);
  tcase_add_loop_test(tc, test_reduce_last_axis_and_all, 0, N_SIZES);
  tcase_add_test(tc, test_reduce_any_axes);
  tcase_add_test(tc, test_int_reduce_sum_is_exact_past_partial_overflow);
  tcase_add_loop_test(tc, test_int_reduce_sum_overflow_says_what_the_reference_says, 0, 4);
  tcase_add_loop_test(tc, test_softmax_and_log_softmax_last_axis, 0, N_SIZES);
  tcase_add_test(tc, test_softmax_and_log_softmax_other_axes);
  tcase_add_loop_test(tc, test_layernorm_matches_reference, 0, N_SIZES);
  tcase_add_test(tc, test_layernorm_writes_the_bf16_copy_a_matmul_reads);
  tcase_add_test(tc, test_attention_writes_the_bf16_copy_a_matmul_reads);
  tcase_add_loop_test(tc, test_cross_entropy_matches_reference, 0, 6);
  tcase_add_loop_test(tc, test_kl_div_matches_reference, 0, N_SIZES);
  tcase_add_loop_test(tc, test_kl_div_bad_target_says_what_the_reference_says, 0, 2);
  tcase_add_test(tc, test_gather_bad_index_reports_the_node);
  tcase_add_test(tc, test_gather_bad_index_names_the_right_node_of_two_alike);
  tcase_add_loop_test(tc, test_cross_entropy_bad_label_reports_the_node, 0, 2);  // 1: with a denominator
  tcase_add_loop_test(tc, test_dropout_in_training_draws_the_reference_masks_for_the_run_time_seed, 0, N_SIZES);
  tcase_add_test(tc, test_dropouts_alike_share_a_kernel_and_keep_their_masks);
  tcase_add_test(tc, test_dropout_masks_change_with_the_seed);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return check_run(jit_suite()); }
