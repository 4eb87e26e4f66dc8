// Tests of the reference kernels (ir/ref_*.c): hand-computed cases for every op, called
// through the op table on bare IrNode structs, so they depend on nothing but the table and
// the kernels (no graph building, no shape inference).
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/test_attrs.h"
#include "tests/check_run.h"

// ---------------------------------------------------------------------------------------
// Building nodes by hand.

#define MAX_NODES 16
#define MAX_IN 4
static IrNode nodes[MAX_NODES];
static IrNode *node_inputs[MAX_NODES][MAX_IN];
static int n_nodes;

static void reset_nodes(void) {
  memset(nodes, 0, sizeof nodes);
  n_nodes = 0;
}


// A node with its attributes at their schema defaults (as the parser leaves them) and
// n_in input nodes given after it.
static IrNode *node(IrOpKind op, DType dt, IrShape s, int n_in, ...) {
  ck_assert_int_lt(n_nodes, MAX_NODES);
  ck_assert_int_le(n_in, MAX_IN);
  int id = n_nodes++;
  IrNode *n = &nodes[id];
  n->id = id;
  n->op = op;
  n->name = "t";
  n->where = "test";
  n->dtype = dt;
  n->shape = s;
  n->n_in = n_in;
  n->in = node_inputs[id];
  va_list ap;
  va_start(ap, n_in);
  for (int k = 0; k < n_in; k++) n->in[k] = va_arg(ap, IrNode *);
  va_end(ap);
  for (int i = 0; i < ir_op_n_attrs(op); i++) {
    const IrAttrSpec *spec = &ir_ops[op].attrs[i];
    if (spec->kind == IR_ATTR_FLOAT) n->attr[i].f = spec->def;
    else n->attr[i].i = (int64_t)spec->def;
  }
  return n;
}

// A tensor fed from outside (an input node).
static IrNode *tensor(DType dt, IrShape s) { return node(IR_OP_INPUT, dt, s, 0); }


// ---------------------------------------------------------------------------------------
// Running kernels and comparing results.

#define IN(...) ((const double *const[]){__VA_ARGS__})
static const IrEvalMode inference = {.training = false, .seed = 0};

// Runs n's kernel through the op table; the run must succeed.
static void run(const IrNode *n, double *out, const double *const *in) {
  Diag d = {0};
  bool ok = ir_ops[n->op].ref(n, out, in, &inference, &d);
  ck_assert_msg(ok && !d.set, "%s failed: %s", ir_ops[n->op].name, d.msg);
}

// Runs n's kernel expecting a data error with exactly this message.
static void run_fails(const IrNode *n, double *out, const double *const *in, const char *msg) {
  Diag d = {0};
  bool ok = ir_ops[n->op].ref(n, out, in, &inference, &d);
  ck_assert_msg(!ok, "%s should have failed", ir_ops[n->op].name);
  ck_assert_str_eq(d.msg, msg);
}

static void expect_eq(const double *got, const double *want, int count) {
  for (int i = 0; i < count; i++)
    ck_assert_msg(got[i] == want[i], "element %d: got %.17g, want %.17g", i, got[i], want[i]);
}

static void expect_near(const double *got, const double *want, int count, double tol) {
  for (int i = 0; i < count; i++)
    ck_assert_msg(fabs(got[i] - want[i]) <= tol, "element %d: got %.17g, want %.17g (tol %g)",
                  i, got[i], want[i], tol);
}

// ---------------------------------------------------------------------------------------
// Sources and cast.

START_TEST(test_source_leaves_output_to_the_caller) {
  IrNode *x = tensor(DT_F32, shp(1, 2));
  double out[2] = {7, 8};
  run(x, out, NULL);
  expect_eq(out, (double[]){7, 8}, 2);
}
END_TEST

START_TEST(test_full_fills_value_truncated_for_integers) {
  IrNode *f = node(IR_OP_FULL, DT_F32, shp(2, 2, 2), 0);
  set_ints(f, "shape", 2, 2, 2);
  set_float(f, "value", 2.5);
  double out[4];
  run(f, out, NULL);
  expect_eq(out, (double[]){2.5, 2.5, 2.5, 2.5}, 4);

  IrNode *g = node(IR_OP_FULL, DT_I64, shp(1, 3), 0);
  set_float(g, "value", -2.7);
  set_int(g, "dtype", DT_I64);
  run(g, out, NULL);
  expect_eq(out, (double[]){-2, -2, -2}, 3);
}
END_TEST

START_TEST(test_iota_counts_along_axis) {
  double out[6];
  IrNode *a1 = node(IR_OP_IOTA, DT_I64, shp(2, 2, 3), 0);
  set_int(a1, "axis", 1);
  run(a1, out, NULL);
  expect_eq(out, (double[]){0, 1, 2, 0, 1, 2}, 6);

  IrNode *a0 = node(IR_OP_IOTA, DT_I64, shp(2, 2, 3), 0);
  set_int(a0, "axis", -2);
  run(a0, out, NULL);
  expect_eq(out, (double[]){0, 0, 0, 1, 1, 1}, 6);
}
END_TEST

START_TEST(test_cast_truncates_to_int_and_rounds_to_f32) {
  IrNode *x = tensor(DT_F64, shp(1, 5));
  IrNode *to_int = node(IR_OP_CAST, DT_I32, shp(1, 5), 1, x);
  set_int(to_int, "dtype", DT_I32);
  double out[5];
  run(to_int, out, IN((double[]){1.9, -1.9, 2.0, -0.5, 3.0}));
  expect_eq(out, (double[]){1, -1, 2, 0, 3}, 5);

  IrNode *to_f32 = node(IR_OP_CAST, DT_F32, shp(1, 2), 1, x);
  set_int(to_f32, "dtype", DT_F32);
  run(to_f32, out, IN((double[]){0.1, 7}));
  expect_eq(out, (double[]){0.100000001490116119384765625, 7}, 2);
  ck_assert(out[0] != 0.1);

  IrNode *to_f64 = node(IR_OP_CAST, DT_F64, shp(1, 1), 1, x);
  set_int(to_f64, "dtype", DT_F64);
  run(to_f64, out, IN((double[]){0.1}));
  expect_eq(out, (double[]){0.1}, 1);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Elementwise.

START_TEST(test_add_broadcasts_numpy_style) {
  // [2,1,3] + [4,1] -> [2,4,3]: a[i,0,k] = 3i + k, b[j,0] = 10j.
  IrNode *a = tensor(DT_F32, shp(3, 2, 1, 3)), *b = tensor(DT_F32, shp(2, 4, 1));
  IrNode *c = node(IR_OP_ADD, DT_F32, shp(3, 2, 4, 3), 2, a, b);
  double out[24];
  run(c, out, IN((double[]){0, 1, 2, 3, 4, 5}, (double[]){0, 10, 20, 30}));
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++)
      for (int k = 0; k < 3; k++)
        ck_assert_double_eq(out[(i * 4 + j) * 3 + k], 3 * i + k + 10 * j);
  ck_assert_double_eq(out[5], 12);   // [0,1,2]
  ck_assert_double_eq(out[23], 35);  // [1,3,2]
}
END_TEST

START_TEST(test_binary_ops_with_a_scalar_operand) {
  IrNode *m = tensor(DT_F32, shp(2, 2, 2)), *s = tensor(DT_F32, shp(0));
  const double *const *in = IN((double[]){1, 2, 3, 4}, (double[]){2});
  double out[4];
  run(node(IR_OP_SUB, DT_F32, shp(2, 2, 2), 2, m, s), out, in);
  expect_eq(out, (double[]){-1, 0, 1, 2}, 4);
  run(node(IR_OP_MUL, DT_F32, shp(2, 2, 2), 2, m, s), out, in);
  expect_eq(out, (double[]){2, 4, 6, 8}, 4);
  run(node(IR_OP_DIV, DT_F32, shp(2, 2, 2), 2, m, s), out, in);
  expect_eq(out, (double[]){0.5, 1, 1.5, 2}, 4);
  // The scalar first: 2 - m.
  run(node(IR_OP_SUB, DT_F32, shp(2, 2, 2), 2, s, m), out, IN((double[]){2}, in[0]));
  expect_eq(out, (double[]){1, 0, -1, -2}, 4);
}
END_TEST

START_TEST(test_maximum_minimum_and_integer_add) {
  IrNode *a = tensor(DT_F32, shp(1, 4)), *b = tensor(DT_F32, shp(1, 4));
  const double *const *in = IN((double[]){1, 5, -2, NAN}, (double[]){3, 0, -2, 1});
  double out[4];
  run(node(IR_OP_MAXIMUM, DT_F32, shp(1, 4), 2, a, b), out, in);
  expect_eq(out, (double[]){3, 5, -2}, 3);
  ck_assert(isnan(out[3]));
  run(node(IR_OP_MINIMUM, DT_F32, shp(1, 4), 2, a, b), out, in);
  expect_eq(out, (double[]){1, 0, -2}, 3);
  ck_assert(isnan(out[3]));
  run(node(IR_OP_MAXIMUM, DT_F32, shp(1, 4), 2, b, a), out, IN(in[1], in[0]));
  ck_assert(isnan(out[3]));

  IrNode *i = tensor(DT_I64, shp(1, 2)), *j = tensor(DT_I64, shp(1, 1));
  run(node(IR_OP_ADD, DT_I64, shp(1, 2), 2, i, j), out, IN((double[]){2, 3}, (double[]){-5}));
  expect_eq(out, (double[]){-3, -2}, 2);
}
END_TEST

// gelu_grad(dy, x) = dy (Phi(x) + x phi(x)): Phi(1) = 0.8413447460685429,
// phi(1) = 0.24197072451914337, Phi(-2) = 0.022750131948179195, phi(-2) = 0.05399096651318806.
START_TEST(test_gelu_grad_known_values) {
  IrNode *dy = tensor(DT_F32, shp(1, 3)), *x = tensor(DT_F32, shp(1, 3));
  double out[3];
  run(node(IR_OP_GELU_GRAD, DT_F32, shp(1, 3), 2, dy, x), out,
      IN((double[]){2, 1, -3}, (double[]){1, 0, -2}));
  double want[3] = {2 * (0.8413447460685429 + 0.24197072451914337), 0.5,
                    -3 * (0.022750131948179195 - 2 * 0.05399096651318806)};
  for (int j = 0; j < 3; j++)
    ck_assert_msg(fabs(out[j] - want[j]) <= 1e-15, "[%d] %.17g, want %.17g", j, out[j], want[j]);
}
END_TEST

START_TEST(test_unary_known_values) {
  static const struct {
    IrOpKind op;
    double x, want;
  } cases[] = {
      {IR_OP_NEG, 2, -2},
      {IR_OP_EXP, 1, 2.718281828459045},
      {IR_OP_LOG, 2.718281828459045, 1},
      {IR_OP_SQRT, 4, 2},
      {IR_OP_RSQRT, 4, 0.5},
      {IR_OP_TANH, 0.5, 0.46211715726000974},
      {IR_OP_ERF, 0.5, 0.5204998778130465},
      {IR_OP_ERF, 1, 0.8427007929497149},
      {IR_OP_ERF, -2, -0.9953222650189527},
      {IR_OP_GELU, 1, 0.8413447460685429},
      {IR_OP_GELU, -1, -0.15865525393145707},
      {IR_OP_GELU, 0, 0},
      {IR_OP_RELU, -3, 0},
      {IR_OP_RELU, 2.5, 2.5},
      {IR_OP_SIGMOID, 0, 0.5},
      {IR_OP_SIGMOID, 2, 0.8807970779778823},
      {IR_OP_SIGMOID, -800, 0},
      {IR_OP_STEP, -1, 0},
      {IR_OP_STEP, 0, 0},
      {IR_OP_STEP, 0.25, 1},
      {IR_OP_SILU, 0, 0},
      {IR_OP_SILU, 2, 1.7615941559557646},     // 2 / (1 + e^-2)
      {IR_OP_SILU, -1, -0.2689414213699951},   // -1 / (1 + e)
      {IR_OP_SILU, -800, 0},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    reset_nodes();
    IrNode *x = tensor(DT_F32, shp(1, 1));
    double out;
    run(node(cases[c].op, DT_F32, shp(1, 1), 1, x), &out, IN(&cases[c].x));
    ck_assert_msg(fabs(out - cases[c].want) <= 1e-15, "%s(%g) = %.17g, want %.17g",
                  ir_ops[cases[c].op].name, cases[c].x, out, cases[c].want);
  }
}
END_TEST

START_TEST(test_affine_scales_and_shifts) {
  IrNode *x = tensor(DT_F32, shp(1, 3));
  IrNode *f = node(IR_OP_AFFINE, DT_F32, shp(1, 3), 1, x);
  set_float(f, "scale", 2);
  set_float(f, "shift", 1);
  double out[3];
  run(f, out, IN((double[]){1, 2, -3}));
  expect_eq(out, (double[]){3, 5, -5}, 3);
  // Defaults: scale 1, shift 0.
  run(node(IR_OP_AFFINE, DT_F32, shp(1, 3), 1, x), out, IN((double[]){1, 2, -3}));
  expect_eq(out, (double[]){1, 2, -3}, 3);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Matmul.

static const double A[] = {1, 2, 3, 4, 5, 6};     // [2,3]
static const double At[] = {1, 4, 2, 5, 3, 6};    // A stored transposed, [3,2]
static const double B[] = {7, 8, 9, 10, 11, 12};  // [3,2]
static const double Bt[] = {7, 9, 11, 8, 10, 12}; // B stored transposed, [2,3]
static const double AB[] = {58, 64, 139, 154};    // A @ B, [2,2]

START_TEST(test_matmul_2x3_by_3x2_with_every_transpose) {
  for (int ta = 0; ta <= 1; ta++) {
    for (int tb = 0; tb <= 1; tb++) {
      reset_nodes();
      IrNode *a = tensor(DT_F32, ta ? shp(2, 3, 2) : shp(2, 2, 3));
      IrNode *b = tensor(DT_F32, tb ? shp(2, 2, 3) : shp(2, 3, 2));
      IrNode *c = node(IR_OP_MATMUL, DT_F32, shp(2, 2, 2), 2, a, b);
      set_int(c, "transpose_a", ta);
      set_int(c, "transpose_b", tb);
      double out[4];
      run(c, out, IN(ta ? At : A, tb ? Bt : B));
      expect_eq(out, AB, 4);
    }
  }
}
END_TEST

START_TEST(test_matmul_broadcasts_batch_dims) {
  // a [2,1,2,2]: a[i] = (i+1) I; b [3,2,2]: b[j] = [[j,1],[2,j]]; out [2,3,2,2] = (i+1) b[j].
  IrNode *a = tensor(DT_F32, shp(4, 2, 1, 2, 2)), *b = tensor(DT_F32, shp(3, 3, 2, 2));
  IrNode *c = node(IR_OP_MATMUL, DT_F32, shp(4, 2, 3, 2, 2), 2, a, b);
  double bv[12] = {0, 1, 2, 0, 1, 1, 2, 1, 2, 1, 2, 2}, out[24];
  run(c, out, IN((double[]){1, 0, 0, 1, 2, 0, 0, 2}, bv));
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int e = 0; e < 4; e++)
        ck_assert_double_eq(out[(i * 3 + j) * 4 + e], (i + 1) * bv[j * 4 + e]);
}
END_TEST

START_TEST(test_matmul_rank2_by_batched_transposed) {
  // A [2,3] @ (stored [2,2,3], transpose_b) = [A @ B, A @ 2B].
  IrNode *a = tensor(DT_F32, shp(2, 2, 3)), *b = tensor(DT_F32, shp(3, 2, 2, 3));
  IrNode *c = node(IR_OP_MATMUL, DT_F32, shp(3, 2, 2, 2), 2, a, b);
  set_int(c, "transpose_b", 1);
  double out[8];
  run(c, out, IN(A, (double[]){7, 9, 11, 8, 10, 12, 14, 18, 22, 16, 20, 24}));
  expect_eq(out, (double[]){58, 64, 139, 154, 116, 128, 278, 308}, 8);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Layout.

START_TEST(test_reshape_copies) {
  IrNode *x = tensor(DT_F32, shp(2, 2, 3));
  double out[6];
  run(node(IR_OP_RESHAPE, DT_F32, shp(2, 3, 2), 1, x), out, IN(A));
  expect_eq(out, A, 6);
}
END_TEST

START_TEST(test_permute_2x3x4) {
  // in[a,b,c] = 12a + 4b + c; perm (2,0,1): out [4,2,3], out[c,a,b] = in[a,b,c].
  double in[24], out[24];
  for (int i = 0; i < 24; i++) in[i] = i;
  IrNode *x = tensor(DT_F32, shp(3, 2, 3, 4));
  IrNode *p = node(IR_OP_PERMUTE, DT_F32, shp(3, 4, 2, 3), 1, x);
  set_ints(p, "perm", 3, 2, 0, 1);
  run(p, out, IN(in));
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 3; b++)
      for (int c = 0; c < 4; c++) ck_assert_double_eq(out[c * 6 + a * 3 + b], 12 * a + 4 * b + c);
  expect_eq(out, (double[]){0, 4, 8, 12, 16, 20, 1, 5}, 8);

  IrNode *t = node(IR_OP_PERMUTE, DT_F32, shp(2, 3, 2), 1, tensor(DT_F32, shp(2, 2, 3)));
  set_ints(t, "perm", 2, 1, 0);
  run(t, out, IN(A));
  expect_eq(out, At, 6);
}
END_TEST

START_TEST(test_concat_along_axis_1) {
  IrNode *a = tensor(DT_F32, shp(2, 2, 1)), *b = tensor(DT_F32, shp(2, 2, 2));
  IrNode *c = tensor(DT_F32, shp(2, 2, 1));
  IrNode *two = node(IR_OP_CONCAT, DT_F32, shp(2, 2, 3), 2, a, b);
  set_int(two, "axis", 1);
  const double *const *in = IN((double[]){1, 2}, (double[]){3, 4, 5, 6}, (double[]){7, 8});
  double out[8];
  run(two, out, in);
  expect_eq(out, (double[]){1, 3, 4, 2, 5, 6}, 6);

  IrNode *three = node(IR_OP_CONCAT, DT_F32, shp(2, 2, 4), 3, a, b, c);
  set_int(three, "axis", -1);
  run(three, out, in);
  expect_eq(out, (double[]){1, 3, 4, 7, 2, 5, 6, 8}, 8);

  IrNode *rows = node(IR_OP_CONCAT, DT_F32, shp(2, 3, 2), 2, tensor(DT_F32, shp(2, 1, 2)), b);
  set_int(rows, "axis", 0);
  run(rows, out, IN((double[]){1, 2}, (double[]){3, 4, 5, 6}));
  expect_eq(out, (double[]){1, 2, 3, 4, 5, 6}, 6);
}
END_TEST

START_TEST(test_slice_takes_start_to_end) {
  double in[10], out[6];
  for (int i = 0; i < 10; i++) in[i] = i;
  IrNode *x = tensor(DT_F32, shp(2, 2, 5));
  IrNode *cols = node(IR_OP_SLICE, DT_F32, shp(2, 2, 3), 1, x);
  set_int(cols, "axis", 1);
  set_int(cols, "start", 1);
  set_int(cols, "end", 4);
  run(cols, out, IN(in));
  expect_eq(out, (double[]){1, 2, 3, 6, 7, 8}, 6);

  IrNode *row = node(IR_OP_SLICE, DT_F32, shp(2, 1, 5), 1, x);
  set_int(row, "axis", -2);
  set_int(row, "start", 1);
  set_int(row, "end", 2);
  run(row, out, IN(in));
  expect_eq(out, (double[]){5, 6, 7, 8, 9}, 5);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Gather.

START_TEST(test_gather_embedding_lookup) {
  // table [5,2]: t[v,h] = 10v + h; ids [2,3] -> out [2,3,2].
  IrNode *t = tensor(DT_F32, shp(2, 5, 2)), *ids = tensor(DT_I64, shp(2, 2, 3));
  IrNode *g = node(IR_OP_GATHER, DT_F32, shp(3, 2, 3, 2), 2, t, ids);
  double out[12];
  run(g, out, IN((double[]){0, 1, 10, 11, 20, 21, 30, 31, 40, 41}, (double[]){4, 0, 2, 1, 1, 3}));
  expect_eq(out, (double[]){40, 41, 0, 1, 20, 21, 10, 11, 10, 11, 30, 31}, 12);
}
END_TEST

START_TEST(test_gather_along_axis_1) {
  // data [2,3], ids [2] on axis 1 (and -1) -> out [2,2].
  IrNode *x = tensor(DT_F32, shp(2, 2, 3)), *ids = tensor(DT_I64, shp(1, 2));
  const double *const *in = IN((double[]){0, 1, 2, 10, 11, 12}, (double[]){2, 0});
  double out[4];
  IrNode *g = node(IR_OP_GATHER, DT_F32, shp(2, 2, 2), 2, x, ids);
  set_int(g, "axis", 1);
  run(g, out, in);
  expect_eq(out, (double[]){2, 0, 12, 10}, 4);
  set_int(g, "axis", -1);
  run(g, out, in);
  expect_eq(out, (double[]){2, 0, 12, 10}, 4);
}
END_TEST

START_TEST(test_gather_with_batch_dims) {
  // data [2,3,2]: d[b,v,h] = 100b + 10v + h; ids [2,2]; axis 1, batch_dims 1:
  // out [2,2,2], out[b,j,h] = d[b, ids[b,j], h].
  double data[12];
  for (int b = 0; b < 2; b++)
    for (int v = 0; v < 3; v++)
      for (int h = 0; h < 2; h++) data[(b * 3 + v) * 2 + h] = 100 * b + 10 * v + h;
  IrNode *x = tensor(DT_F32, shp(3, 2, 3, 2)), *ids = tensor(DT_I64, shp(2, 2, 2));
  IrNode *g = node(IR_OP_GATHER, DT_F32, shp(3, 2, 2, 2), 2, x, ids);
  set_int(g, "axis", 1);
  set_int(g, "batch_dims", 1);
  double out[8];
  run(g, out, IN(data, (double[]){2, 0, 1, 1}));
  expect_eq(out, (double[]){20, 21, 0, 1, 110, 111, 110, 111}, 8);

  // Batch dims before a later axis: data [2,2,3] on axis 2 with ids [2,1], batch_dims 1:
  // out [2,2,1], out[b,x,q] = d[b,x,ids[b,q]], d[b,x,v] = 100b + 10x + v.
  IrNode *y = tensor(DT_F32, shp(3, 2, 2, 3)), *ids2 = tensor(DT_I64, shp(2, 2, 1));
  IrNode *g2 = node(IR_OP_GATHER, DT_F32, shp(3, 2, 2, 1), 2, y, ids2);
  set_int(g2, "axis", 2);
  set_int(g2, "batch_dims", 1);
  double d2[12];
  for (int i = 0; i < 12; i++) d2[i] = 100 * (i / 6) + 10 * (i / 3 % 2) + i % 3;
  run(g2, out, IN(d2, (double[]){2, 0}));
  expect_eq(out, (double[]){2, 12, 100, 110}, 4);
}
END_TEST

START_TEST(test_gather_rejects_index_out_of_range) {
  IrNode *t = tensor(DT_F32, shp(2, 4, 2)), *ids = tensor(DT_I64, shp(1, 3));
  IrNode *g = node(IR_OP_GATHER, DT_F32, shp(2, 3, 2), 2, t, ids);
  double table[8] = {0}, out[6];
  run_fails(g, out, IN(table, (double[]){1, 4, 0}),
            "gather: index 4 out of range [0, 4) at element 1");
  run_fails(g, out, IN(table, (double[]){-1, 0, 0}),
            "gather: index -1 out of range [0, 4) at element 0");
}
END_TEST

// ---------------------------------------------------------------------------------------
// Reductions. in [2,3,4]: in[a,b,c] = 12a + 4b + c.

static double iota24[24];
static void fill_iota24(void) {
  for (int i = 0; i < 24; i++) iota24[i] = i;
}

START_TEST(test_reduce_sum_over_one_axis_with_and_without_keepdims) {
  fill_iota24();
  IrNode *x = tensor(DT_F32, shp(3, 2, 3, 4));
  double want[8], out[8];  // sum over b: 36a + 12 + 3c
  for (int a = 0; a < 2; a++)
    for (int c = 0; c < 4; c++) want[a * 4 + c] = 36 * a + 12 + 3 * c;
  IrNode *r = node(IR_OP_REDUCE_SUM, DT_F32, shp(2, 2, 4), 1, x);
  set_ints(r, "axes", 1, 1);
  run(r, out, IN(iota24));
  expect_eq(out, want, 8);

  IrNode *k = node(IR_OP_REDUCE_SUM, DT_F32, shp(3, 2, 1, 4), 1, x);
  set_ints(k, "axes", 1, -2);
  set_int(k, "keepdims", 1);
  run(k, out, IN(iota24));
  expect_eq(out, want, 8);
}
END_TEST

START_TEST(test_reduce_over_several_and_all_axes) {
  fill_iota24();
  IrNode *x = tensor(DT_F32, shp(3, 2, 3, 4));
  double out[8];
  IrNode *two = node(IR_OP_REDUCE_SUM, DT_F32, shp(1, 3), 1, x);
  set_ints(two, "axes", 2, 0, -1);  // 32b + 60
  run(two, out, IN(iota24));
  expect_eq(out, (double[]){60, 92, 124}, 3);

  run(node(IR_OP_REDUCE_SUM, DT_F32, shp(0), 1, x), out, IN(iota24));
  expect_eq(out, (double[]){276}, 1);
  IrNode *kept = node(IR_OP_REDUCE_MEAN, DT_F32, shp(3, 1, 1, 1), 1, x);
  set_int(kept, "keepdims", 1);
  run(kept, out, IN(iota24));
  expect_eq(out, (double[]){11.5}, 1);
  run(node(IR_OP_REDUCE_MAX, DT_F32, shp(0), 1, x), out, IN(iota24));
  expect_eq(out, (double[]){23}, 1);
}
END_TEST

START_TEST(test_reduce_mean_and_max_over_one_axis) {
  fill_iota24();
  IrNode *x = tensor(DT_F32, shp(3, 2, 3, 4));
  double out[8];
  IrNode *mean = node(IR_OP_REDUCE_MEAN, DT_F32, shp(2, 2, 4), 1, x);
  set_ints(mean, "axes", 1, 1);  // 12a + 4 + c
  run(mean, out, IN(iota24));
  expect_eq(out, (double[]){4, 5, 6, 7, 16, 17, 18, 19}, 8);
  IrNode *max = node(IR_OP_REDUCE_MAX, DT_F32, shp(2, 2, 3), 1, x);
  set_ints(max, "axes", 1, 2);  // 12a + 4b + 3
  run(max, out, IN(iota24));
  expect_eq(out, (double[]){3, 7, 11, 15, 19, 23}, 6);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Softmax and layernorm.

START_TEST(test_softmax_known_values_and_stable) {
  IrNode *x = tensor(DT_F32, shp(2, 2, 3));
  double out[6];
  run(node(IR_OP_SOFTMAX, DT_F32, shp(2, 2, 3), 1, x), out,
      IN((double[]){1, 2, 3, 1000, 1000, 1000}));
  expect_near(out, (double[]){0.09003057317038046, 0.24472847105479764, 0.6652409557748218,
                              1.0 / 3, 1.0 / 3, 1.0 / 3},
              6, 1e-15);
  for (int r = 0; r < 2; r++)
    ck_assert_double_eq_tol(out[3 * r] + out[3 * r + 1] + out[3 * r + 2], 1.0, 1e-15);

  // Along axis 0: columns {1,3} and {0,0}.
  IrNode *cols = node(IR_OP_SOFTMAX, DT_F32, shp(2, 2, 2), 1, tensor(DT_F32, shp(2, 2, 2)));
  set_int(cols, "axis", 0);
  run(cols, out, IN((double[]){1, 0, 3, 0}));
  expect_near(out, (double[]){0.11920292202211755, 0.5, 0.8807970779778823, 0.5}, 4, 1e-15);
}
END_TEST

START_TEST(test_log_softmax_known_values_and_stable) {
  IrNode *x = tensor(DT_F32, shp(2, 2, 3));
  double out[6];
  run(node(IR_OP_LOG_SOFTMAX, DT_F32, shp(2, 2, 3), 1, x), out,
      IN((double[]){1, 2, 3, 1000, 0, 1000}));
  expect_near(out, (double[]){-2.4076059644443806, -1.4076059644443804, -0.4076059644443804,
                              -log(2), -1000 - log(2), -log(2)},
              6, 1e-13);
}
END_TEST

START_TEST(test_layernorm_normalises_last_axis) {
  // Row {1,2,3,4}: mean 2.5, biased var 1.25; default eps 1e-12.
  IrNode *x = tensor(DT_F32, shp(2, 1, 4)), *w = tensor(DT_F32, shp(1, 4));
  IrNode *b = tensor(DT_F32, shp(1, 4));
  double out[8];
  run(node(IR_OP_LAYERNORM, DT_F32, shp(2, 1, 4), 3, x, w, b), out,
      IN((double[]){1, 2, 3, 4}, (double[]){1, 1, 1, 1}, (double[]){0, 0, 0, 0}));
  expect_near(out, (double[]){-1.3416407864998738, -0.4472135954999579, 0.4472135954999579,
                              1.3416407864998738},
              4, 1e-10);
}
END_TEST

START_TEST(test_layernorm_applies_weight_bias_and_eps) {
  // Rows {1,2,3,4} and {5,5,5,5} (var 0: eps keeps it finite, the output is the bias).
  IrNode *x = tensor(DT_F32, shp(2, 2, 4)), *w = tensor(DT_F32, shp(1, 4));
  IrNode *b = tensor(DT_F32, shp(1, 4));
  IrNode *ln = node(IR_OP_LAYERNORM, DT_F32, shp(2, 2, 4), 3, x, w, b);
  set_float(ln, "eps", 1e-5);
  double out[8], s = sqrt(1.25 + 1e-5);
  run(ln, out, IN((double[]){1, 2, 3, 4, 5, 5, 5, 5}, (double[]){2, 2, 1, 1},
                  (double[]){1, 1, 0, -1}));
  expect_near(out, (double[]){2 * -1.5 / s + 1, 2 * -0.5 / s + 1, 0.5 / s, 1.5 / s - 1, 1, 1,
                              0, -1},
              8, 1e-15);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Losses.

START_TEST(test_cross_entropy_skips_ignored_labels) {
  // Rows {1,2,3} label 0 -> 2.4076059644443806; the NaN row ignored; {0,0,0} label 2 -> log 3.
  IrNode *lg = tensor(DT_F32, shp(2, 3, 3)), *lb = tensor(DT_I64, shp(1, 3));
  IrNode *ce = node(IR_OP_CROSS_ENTROPY, DT_F32, shp(0), 2, lg, lb);
  double out;
  run(ce, &out, IN((double[]){1, 2, 3, NAN, NAN, NAN, 0, 0, 0}, (double[]){0, -100, 2}));
  ck_assert_double_eq_tol(out, 1.7531091265562453, 1e-15);

  // Positions over several dims: logits [2,1,2], labels [2,1].
  IrNode *ce3 = node(IR_OP_CROSS_ENTROPY, DT_F32, shp(0), 2, tensor(DT_F32, shp(3, 2, 1, 2)),
                     tensor(DT_I64, shp(2, 2, 1)));
  run(ce3, &out, IN((double[]){0, 0, 5, 5}, (double[]){1, 0}));
  ck_assert_double_eq_tol(out, log(2), 1e-15);
}
END_TEST

// A denominator input replaces the labelled count (the trainer's global count): the same
// sum over 2 labelled rows, divided by 8; refused unless positive; all ignored is still 0.
START_TEST(test_cross_entropy_divides_by_a_given_denominator) {
  IrNode *lg = tensor(DT_F32, shp(2, 3, 3)), *lb = tensor(DT_I64, shp(1, 3)), *den = tensor(DT_F32, shp(0));
  IrNode *ce = node(IR_OP_CROSS_ENTROPY, DT_F32, shp(0), 3, lg, lb, den);
  double logits[9] = {1, 2, 3, NAN, NAN, NAN, 0, 0, 0}, out;
  run(ce, &out, IN(logits, (double[]){0, -100, 2}, (double[]){8}));
  ck_assert_double_eq_tol(out, 1.7531091265562453 * 2 / 8, 1e-15);
  run(ce, &out, IN(logits, (double[]){-100, -100, -100}, (double[]){8}));
  ck_assert_double_eq(out, 0);
  run_fails(ce, &out, IN(logits, (double[]){0, -100, 2}, (double[]){0}),
            "cross_entropy: the denominator is 0; it must be positive");
}
END_TEST

START_TEST(test_cross_entropy_all_ignored_is_zero) {
  IrNode *lg = tensor(DT_F32, shp(2, 3, 3)), *lb = tensor(DT_I64, shp(1, 3));
  IrNode *ce = node(IR_OP_CROSS_ENTROPY, DT_F32, shp(0), 2, lg, lb);
  double logits[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, out = -1;
  run(ce, &out, IN(logits, (double[]){-100, -100, -100}));
  ck_assert_double_eq(out, 0);
  set_int(ce, "ignore_index", 1);
  out = -1;
  run(ce, &out, IN(logits, (double[]){1, 1, 1}));
  ck_assert_double_eq(out, 0);
}
END_TEST

START_TEST(test_cross_entropy_rejects_label_out_of_range) {
  IrNode *lg = tensor(DT_F32, shp(2, 3, 3)), *lb = tensor(DT_I64, shp(1, 3));
  IrNode *ce = node(IR_OP_CROSS_ENTROPY, DT_F32, shp(0), 2, lg, lb);
  double logits[9] = {0}, out;
  run_fails(ce, &out, IN(logits, (double[]){0, 3, 2}),
            "cross_entropy: label 3 out of range [0, 3) at element 1");
}
END_TEST

START_TEST(test_kl_div_batchmean_with_zero_target_refuses_negative_and_nan) {
  // sum = 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75) + 0 + 1 log(1/0.5), over batch 2.
  IrNode *lp = tensor(DT_F32, shp(2, 2, 2)), *t = tensor(DT_F32, shp(2, 2, 2));
  IrNode *kl = node(IR_OP_KL_DIV, DT_F32, shp(0), 2, lp, t);
  double out;
  run(kl, &out, IN((double[]){log(0.25), log(0.75), -INFINITY, log(0.5)},
                   (double[]){0.5, 0.5, 0, 1}));
  ck_assert_double_eq_tol(out, 0.41849410839291784, 1e-15);
  run_fails(kl, &out, IN((double[]){0, 0, 0, 0}, (double[]){0.5, 0.5, -0.5, 0.5}),
            "kl_div: target element 2 is -0.5; a target must be a probability, >= 0");
  run_fails(kl, &out, IN((double[]){0, 0, 0, 0}, (double[]){0.5, NAN, 0.5, 0.5}),  // not 0
            "kl_div: target element 1 is nan; a target must be a probability, >= 0");
}
END_TEST

// ---------------------------------------------------------------------------------------
// Dropout and its stream.

#define DROP_N 100000
static double ones[DROP_N], mask_a[DROP_N], mask_b[DROP_N];

static void run_dropout(const char *name, double p, bool training, uint64_t seed,
                        double *out) {
  reset_nodes();
  IrNode *x = tensor(DT_F32, shp(2, 100, 1000));
  IrNode *dr = node(IR_OP_DROPOUT, DT_F32, shp(2, 100, 1000), 1, x);
  dr->name = name;
  set_float(dr, "p", p);
  for (int i = 0; i < DROP_N; i++) ones[i] = 1;
  IrEvalMode mode = {.training = training, .seed = seed};
  Diag d = {0};
  ck_assert(ir_ops[IR_OP_DROPOUT].ref(dr, out, IN(ones), &mode, &d));
}

static int count_differences(const double *a, const double *b) {
  int k = 0;
  for (int i = 0; i < DROP_N; i++) k += a[i] != b[i];
  return k;
}

START_TEST(test_dropout_is_identity_unless_training) {
  run_dropout("drop", 0.5, false, 42, mask_a);
  ck_assert_int_eq(count_differences(mask_a, ones), 0);
  run_dropout("drop", 0, true, 42, mask_a);
  ck_assert_int_eq(count_differences(mask_a, ones), 0);
}
END_TEST

START_TEST(test_dropout_zeros_p_and_scales_the_rest) {
  double p = 0.3;
  run_dropout("drop", p, true, 42, mask_a);
  int zeros = 0;
  for (int i = 0; i < DROP_N; i++) {
    if (mask_a[i] == 0) zeros++;
    else ck_assert_double_eq(mask_a[i], 1.0 * (1.0 / (1.0 - p)));
  }
  ck_assert_double_eq_tol((double)zeros / DROP_N, p, 0.01);
}
END_TEST

START_TEST(test_dropout_mask_depends_on_seed_and_name_only) {
  run_dropout("drop", 0.5, true, 42, mask_a);
  run_dropout("drop", 0.5, true, 42, mask_b);
  ck_assert_int_eq(count_differences(mask_a, mask_b), 0);
  run_dropout("drop", 0.5, true, 43, mask_b);
  ck_assert_int_gt(count_differences(mask_a, mask_b), DROP_N / 4);
  run_dropout("drop2", 0.5, true, 42, mask_b);
  ck_assert_int_gt(count_differences(mask_a, mask_b), DROP_N / 4);
}
END_TEST

// dropout_grad(dy, y) keeps what dropout node y kept, by y's name: with dy = 1 it is y's mask.
START_TEST(test_dropout_grad_reuses_the_forward_mask) {
  static double grad[DROP_N];
  run_dropout("drop", 0.3, true, 42, mask_a);  // leaves nodes[1] the dropout node
  IrNode *dr = &nodes[1];
  IrNode *dy = tensor(DT_F32, shp(2, 100, 1000));
  IrNode *dg = node(IR_OP_DROPOUT_GRAD, DT_F32, shp(2, 100, 1000), 2, dy, dr);
  IrEvalMode mode = {.training = true, .seed = 42};
  Diag d = {0};
  ck_assert(ir_ops[IR_OP_DROPOUT_GRAD].ref(dg, grad, IN(ones, mask_a), &mode, &d));
  ck_assert_int_eq(count_differences(grad, mask_a), 0);
}
END_TEST

START_TEST(test_rng_uniform_is_pure_and_in_unit_interval) {
  uint64_t key = ir_rng_key(7, "x");
  ck_assert_uint_eq(key, ir_rng_key(7, "x"));
  ck_assert_uint_ne(key, ir_rng_key(8, "x"));
  ck_assert_uint_ne(key, ir_rng_key(7, "y"));
  double sum = 0;
  for (uint64_t i = 0; i < 10000; i++) {
    double u = ir_rng_uniform(key, i);
    ck_assert(u >= 0 && u < 1);
    ck_assert_double_eq(u, ir_rng_uniform(key, i));
    sum += u;
  }
  ck_assert_double_eq_tol(sum / 10000, 0.5, 0.01);
}
END_TEST

// ---------------------------------------------------------------------------------------

static Suite *ref_ops_suite(void) {
  Suite *s = suite_create("ref_ops");
  TCase *tc = tcase_create("kernels");
  tcase_add_checked_fixture(tc, reset_nodes, NULL);
  tcase_add_test(tc, test_source_leaves_output_to_the_caller);
  tcase_add_test(tc, test_full_fills_value_truncated_for_integers);
  tcase_add_test(tc, test_iota_counts_along_axis);
  tcase_add_test(tc, test_cast_truncates_to_int_and_rounds_to_f32);
  tcase_add_test(tc, test_add_broadcasts_numpy_style);
  tcase_add_test(tc, test_binary_ops_with_a_scalar_operand);
  tcase_add_test(tc, test_maximum_minimum_and_integer_add);
  tcase_add_test(tc, test_unary_known_values);
  tcase_add_test(tc, test_gelu_grad_known_values);
  tcase_add_test(tc, test_affine_scales_and_shifts);
  tcase_add_test(tc, test_matmul_2x3_by_3x2_with_every_transpose);
  tcase_add_test(tc, test_matmul_broadcasts_batch_dims);
  tcase_add_test(tc, test_matmul_rank2_by_batched_transposed);
  tcase_add_test(tc, test_reshape_copies);
  tcase_add_test(tc, test_permute_2x3x4);
  tcase_add_test(tc, test_concat_along_axis_1);
  tcase_add_test(tc, test_slice_takes_start_to_end);
  tcase_add_test(tc, test_gather_embedding_lookup);
  tcase_add_test(tc, test_gather_along_axis_1);
  tcase_add_test(tc, test_gather_with_batch_dims);
  tcase_add_test(tc, test_gather_rejects_index_out_of_range);
  tcase_add_test(tc, test_reduce_sum_over_one_axis_with_and_without_keepdims);
  tcase_add_test(tc, test_reduce_over_several_and_all_axes);
  tcase_add_test(tc, test_reduce_mean_and_max_over_one_axis);
  tcase_add_test(tc, test_softmax_known_values_and_stable);
  tcase_add_test(tc, test_log_softmax_known_values_and_stable);
  tcase_add_test(tc, test_layernorm_normalises_last_axis);
  tcase_add_test(tc, test_layernorm_applies_weight_bias_and_eps);
  tcase_add_test(tc, test_cross_entropy_skips_ignored_labels);
  tcase_add_test(tc, test_cross_entropy_all_ignored_is_zero);
  tcase_add_test(tc, test_cross_entropy_divides_by_a_given_denominator);
  tcase_add_test(tc, test_cross_entropy_rejects_label_out_of_range);
  tcase_add_test(tc, test_kl_div_batchmean_with_zero_target_refuses_negative_and_nan);
  tcase_add_test(tc, test_dropout_is_identity_unless_training);
  tcase_add_test(tc, test_dropout_zeros_p_and_scales_the_rest);
  tcase_add_test(tc, test_dropout_mask_depends_on_seed_and_name_only);
  tcase_add_test(tc, test_dropout_grad_reuses_the_forward_mask);
  tcase_add_test(tc, test_rng_uniform_is_pure_and_in_unit_interval);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return check_run(ref_ops_suite()); }
