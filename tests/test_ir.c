// Tests of ir/: graphs built by hand with ir_graph_add, then finished (topological order,
// use counts, shape inference) and verified. Covers every shape rule on good and bad cases,
// cycles, the verifier, the printers, the counts, the reference evaluator and the op table.
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/test_attrs.h"
#include "tests/check_run.h"

// ---------------------------------------------------------------------------------------
// Building graphs by hand. Each test gets a fresh graph `g` (file "test.json") and `d`.

static IrGraph g;
static Diag d;

static void setup(void) {
  ir_graph_init(&g, "test.json");
  memset(&d, 0, sizeof d);
}

static void teardown(void) { ir_graph_free(&g); }


static IrNode *input(const char *name, DType dt, IrShape s) {
  IrNode *n = ir_graph_add(&g, IR_OP_INPUT, name, NULL);
  n->dtype = dt;
  n->shape = s;
  return n;
}

static IrNode *param(const char *name, IrShape s) {
  IrNode *n = ir_graph_add(&g, IR_OP_PARAM, name, NULL);
  n->shape = s;
  n->init = (IrInit){.kind = IR_INIT_NORMAL, .std = 0.02};
  return n;
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


// Finishes and verifies the graph; both must succeed.
static void finish_ok(void) {
  bool ok = ir_graph_finish(&g, &d) && ir_verify(&g, &d);
  ck_assert_msg(ok && !d.set, "graph rejected: %s", d.msg);
}

// Finishing (or verifying) must fail with a message containing `part`.
static void finish_fails(const char *part) {
  bool ok = ir_graph_finish(&g, &d) && ir_verify(&g, &d);
  ck_assert_msg(!ok, "graph accepted; expected an error containing \"%s\"", part);
  ck_assert_msg(d.set && strstr(d.msg, part), "message \"%s\" lacks \"%s\"", d.msg, part);
}

static void assert_shape(const IrNode *n, DType dt, IrShape want) {
  char a[160], b[160];
  ck_assert_msg(n->dtype == dt && ir_shape_eq(&n->shape, &want), "\"%s\" is %s%s, want %s%s",
                n->name, dt_name(n->dtype), ir_shape_str(&n->shape, a, sizeof a), dt_name(dt),
                ir_shape_str(&want, b, sizeof b));
}

// ---------------------------------------------------------------------------------------
// Shape helpers.

START_TEST(test_shape_str_numel_and_eq) {
  char buf[64];
  IrShape s = shp(3, 1, 120, 768), scalar = shp(0);
  ck_assert_str_eq(ir_shape_str(&s, buf, sizeof buf), "[1,120,768]");
  ck_assert_str_eq(ir_shape_str(&scalar, buf, sizeof buf), "[]");
  ck_assert_int_eq(ir_numel(&s), 120 * 768);
  ck_assert_int_eq(ir_numel(&scalar), 1);
  ck_assert(ir_shape_eq(&s, &(IrShape){.rank = 3, .dim = {1, 120, 768}}));
  ck_assert(!ir_shape_eq(&s, &(IrShape){.rank = 2, .dim = {1, 120}}));
  ck_assert(!ir_shape_eq(&s, &(IrShape){.rank = 3, .dim = {1, 121, 768}}));
}
END_TEST

START_TEST(test_broadcast_follows_numpy_rules) {
  IrShape out;
  ck_assert(ir_broadcast(&(IrShape){3, {2, 1, 4}}, &(IrShape){2, {3, 1}}, &out, &d));
  ck_assert(ir_shape_eq(&out, &(IrShape){3, {2, 3, 4}}));
  ck_assert(ir_broadcast(&(IrShape){0, {0}}, &(IrShape){2, {2, 3}}, &out, &d));
  ck_assert(ir_shape_eq(&out, &(IrShape){2, {2, 3}}));
  ck_assert(!ir_broadcast(&(IrShape){2, {2, 3}}, &(IrShape){1, {4}}, &out, &d));
  ck_assert_str_eq(d.msg, "shapes [2,3] and [4] do not broadcast (dim 1: 3 vs 4)");
}
END_TEST

// ---------------------------------------------------------------------------------------
// Shape rules that accept.

START_TEST(test_matmul_shapes_with_transposes) {
  IrNode *a = input("a", DT_F32, shp(2, 2, 3)), *b = input("b", DT_F32, shp(2, 3, 4));
  IrNode *at = input("at", DT_F32, shp(2, 3, 2)), *bt = input("bt", DT_F32, shp(2, 4, 3));
  IrNode *plain = op(IR_OP_MATMUL, "plain", 2, a, b);
  IrNode *ta = op(IR_OP_MATMUL, "ta", 2, at, b);
  set_int(ta, "transpose_a", 1);
  IrNode *tb = op(IR_OP_MATMUL, "tb", 2, a, bt);
  set_int(tb, "transpose_b", 1);
  IrNode *both = op(IR_OP_MATMUL, "both", 2, at, bt);
  set_int(both, "transpose_a", 1);
  set_int(both, "transpose_b", 1);
  finish_ok();
  assert_shape(plain, DT_F32, shp(2, 2, 4));
  assert_shape(ta, DT_F32, shp(2, 2, 4));
  assert_shape(tb, DT_F32, shp(2, 2, 4));
  assert_shape(both, DT_F32, shp(2, 2, 4));
}
END_TEST

START_TEST(test_matmul_broadcasts_batch_dims) {
  IrNode *a = input("a", DT_F32, shp(4, 5, 1, 2, 3)), *b = input("b", DT_F32, shp(3, 4, 3, 6));
  IrNode *w = input("w", DT_F32, shp(2, 3, 6));
  IrNode *y = op(IR_OP_MATMUL, "y", 2, a, b);
  IrNode *z = op(IR_OP_MATMUL, "z", 2, a, w);  // a plain matrix broadcasts over every batch
  finish_ok();
  assert_shape(y, DT_F32, shp(4, 5, 4, 2, 6));
  assert_shape(z, DT_F32, shp(4, 5, 1, 2, 6));
}
END_TEST

START_TEST(test_binary_ops_broadcast) {
  IrNode *a = input("a", DT_F32, shp(3, 2, 1, 4)), *b = input("b", DT_F32, shp(2, 3, 1));
  IrNode *s = input("s", DT_F32, shp(0));
  IrNode *i = input("i", DT_I64, shp(1, 4)), *j = input("j", DT_I64, shp(2, 3, 1));
  IrNode *add = op(IR_OP_ADD, "add", 2, a, b);
  IrNode *div = op(IR_OP_DIV, "div", 2, s, a);
  IrNode *maxi = op(IR_OP_MAXIMUM, "max", 2, i, j);
  finish_ok();
  assert_shape(add, DT_F32, shp(3, 2, 3, 4));
  assert_shape(div, DT_F32, shp(3, 2, 1, 4));
  assert_shape(maxi, DT_I64, shp(2, 3, 4));
}
END_TEST

START_TEST(test_unary_ops_keep_shape_and_dtype) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 3)), *ids = input("ids", DT_I64, shp(1, 5));
  IrNode *gelu = op(IR_OP_GELU, "gelu", 1, x);
  IrNode *neg = op(IR_OP_NEG, "neg", 1, ids);  // neg takes integers
  IrNode *aff = op(IR_OP_AFFINE, "aff", 1, ids);
  set_float(aff, "shift", -2);  // whole numbers keep an integer affine exact
  IrNode *drop = op(IR_OP_DROPOUT, "drop", 1, x);
  set_float(drop, "p", 0.1);
  finish_ok();
  assert_shape(gelu, DT_F32, shp(2, 2, 3));
  assert_shape(neg, DT_I64, shp(1, 5));
  assert_shape(aff, DT_I64, shp(1, 5));
  assert_shape(drop, DT_F32, shp(2, 2, 3));
}
END_TEST

START_TEST(test_reshape_infers_minus_one) {
  IrNode *x = input("x", DT_F32, shp(3, 2, 3, 4));
  IrNode *a = op(IR_OP_RESHAPE, "a", 1, x);
  set_ints(a, "shape", 2, -1, 4);
  IrNode *b = op(IR_OP_RESHAPE, "b", 1, x);
  set_ints(b, "shape", 3, 4, -1, 2);
  IrNode *c = op(IR_OP_RESHAPE, "c", 1, x);
  set_ints(c, "shape", 1, 24);
  finish_ok();
  assert_shape(a, DT_F32, shp(2, 6, 4));
  assert_shape(b, DT_F32, shp(3, 4, 3, 2));
  assert_shape(c, DT_F32, shp(1, 24));
}
END_TEST

START_TEST(test_permute_reorders_dims) {
  IrNode *x = input("x", DT_I32, shp(3, 2, 3, 4));
  IrNode *y = op(IR_OP_PERMUTE, "y", 1, x);
  set_ints(y, "perm", 3, 2, 0, 1);
  finish_ok();
  assert_shape(y, DT_I32, shp(3, 4, 2, 3));
}
END_TEST

START_TEST(test_concat_sums_the_axis) {
  IrNode *a = input("a", DT_F32, shp(3, 2, 1, 4)), *b = input("b", DT_F32, shp(3, 2, 3, 4));
  IrNode *c = input("c", DT_F32, shp(3, 2, 2, 4));
  IrNode *y = op(IR_OP_CONCAT, "y", 3, a, b, c);
  set_int(y, "axis", 1);
  IrNode *z = op(IR_OP_CONCAT, "z", 2, a, a);
  set_int(z, "axis", -1);
  finish_ok();
  assert_shape(y, DT_F32, shp(3, 2, 6, 4));
  assert_shape(z, DT_F32, shp(3, 2, 1, 8));
}
END_TEST

START_TEST(test_slice_keeps_start_to_end) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 5));
  IrNode *y = op(IR_OP_SLICE, "y", 1, x);
  set_int(y, "axis", 1);
  set_int(y, "start", 1);
  set_int(y, "end", 3);
  IrNode *z = op(IR_OP_SLICE, "z", 1, x);
  set_int(z, "axis", -2);
  set_int(z, "end", 1);  // start defaults to 0
  finish_ok();
  assert_shape(y, DT_F32, shp(2, 2, 2));
  assert_shape(z, DT_F32, shp(2, 1, 5));
}
END_TEST

START_TEST(test_gather_replaces_axis_by_index_dims) {
  IrNode *table = input("table", DT_F32, shp(2, 10, 4)), *ids = input("ids", DT_I64, shp(2, 2, 3));
  IrNode *cols = input("cols", DT_I32, shp(1, 5)), *m = input("m", DT_F32, shp(2, 3, 10));
  IrNode *emb = op(IR_OP_GATHER, "emb", 2, table, ids);
  IrNode *pick = op(IR_OP_GATHER, "pick", 2, m, cols);
  set_int(pick, "axis", 1);
  finish_ok();
  assert_shape(emb, DT_F32, shp(3, 2, 3, 4));
  assert_shape(pick, DT_F32, shp(2, 3, 5));
}
END_TEST

START_TEST(test_gather_with_batch_dims_takes_one_row_per_batch) {
  IrNode *seq = input("seq", DT_F32, shp(3, 2, 7, 4));
  IrNode *idx = input("idx", DT_I64, shp(1, 2)), *idx2 = input("idx2", DT_I64, shp(2, 2, 3));
  IrNode *one = op(IR_OP_GATHER, "one", 2, seq, idx);
  set_int(one, "axis", 1);
  set_int(one, "batch_dims", 1);
  IrNode *many = op(IR_OP_GATHER, "many", 2, seq, idx2);
  set_int(many, "axis", 1);
  set_int(many, "batch_dims", 1);
  finish_ok();
  assert_shape(one, DT_F32, shp(2, 2, 4));
  assert_shape(many, DT_F32, shp(3, 2, 3, 4));
}
END_TEST

START_TEST(test_reduce_with_and_without_keepdims) {
  IrNode *x = input("x", DT_F32, shp(3, 2, 3, 4));
  IrNode *mid = op(IR_OP_REDUCE_SUM, "mid", 1, x);
  set_ints(mid, "axes", 1, 1);
  IrNode *kept = op(IR_OP_REDUCE_MEAN, "kept", 1, x);
  set_ints(kept, "axes", 2, 1, -1);
  set_int(kept, "keepdims", 1);
  IrNode *all = op(IR_OP_REDUCE_MAX, "all", 1, x);  // no axes: every axis
  IrNode *all_kept = op(IR_OP_REDUCE_SUM, "all_kept", 1, x);
  set_int(all_kept, "keepdims", 1);
  finish_ok();
  assert_shape(mid, DT_F32, shp(2, 2, 4));
  assert_shape(kept, DT_F32, shp(3, 2, 1, 1));
  assert_shape(all, DT_F32, shp(0));
  assert_shape(all_kept, DT_F32, shp(3, 1, 1, 1));
}
END_TEST

START_TEST(test_softmax_accepts_any_axis_in_range) {
  IrNode *x = input("x", DT_F32, shp(2, 3, 4));
  IrNode *last = op(IR_OP_SOFTMAX, "last", 1, x);  // axis defaults to -1
  IrNode *first = op(IR_OP_LOG_SOFTMAX, "first", 1, x);
  set_int(first, "axis", 0);
  finish_ok();
  assert_shape(last, DT_F32, shp(2, 3, 4));
  assert_shape(first, DT_F32, shp(2, 3, 4));
}
END_TEST

START_TEST(test_softmax_rejects_axis_out_of_range) {
  IrNode *x = input("x", DT_F32, shp(2, 3, 4));
  IrNode *y = op(IR_OP_SOFTMAX, "y", 1, x);
  set_int(y, "axis", 2);
  finish_fails("test.json \"y\": softmax: axis 2 out of range for rank 2");
}
END_TEST

START_TEST(test_layernorm_keeps_input_shape) {
  IrNode *x = input("x", DT_F32, shp(3, 2, 3, 8));
  IrNode *w = param("w", shp(1, 8)), *b = param("b", shp(1, 8));
  IrNode *y = op(IR_OP_LAYERNORM, "y", 3, x, w, b);
  finish_ok();
  assert_shape(y, DT_F32, shp(3, 2, 3, 8));
}
END_TEST

START_TEST(test_losses_are_scalars) {
  IrNode *logits = input("logits", DT_F32, shp(3, 2, 5, 10));
  IrNode *labels = input("labels", DT_I64, shp(2, 2, 5));
  IrNode *lp = input("lp", DT_F32, shp(2, 2, 10)), *t = input("t", DT_F32, shp(2, 2, 10));
  IrNode *ce = op(IR_OP_CROSS_ENTROPY, "ce", 2, logits, labels);
  IrNode *kl = op(IR_OP_KL_DIV, "kl", 2, lp, t);
  finish_ok();
  assert_shape(ce, DT_F32, shp(0));
  assert_shape(kl, DT_F32, shp(0));
}
END_TEST

START_TEST(test_cast_changes_dtype_only) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 3));
  IrNode *y = op(IR_OP_CAST, "y", 1, x);
  set_int(y, "dtype", DT_I64);
  IrNode *z = op(IR_OP_CAST, "z", 1, y);
  set_int(z, "dtype", DT_F32);
  finish_ok();
  assert_shape(y, DT_I64, shp(2, 2, 3));
  assert_shape(z, DT_F32, shp(2, 2, 3));
}
END_TEST

START_TEST(test_full_and_iota_take_shape_and_dtype_from_attrs) {
  IrNode *f = op(IR_OP_FULL, "f", 0);
  set_ints(f, "shape", 2, 2, 3);
  set_float(f, "value", 1.5);
  IrNode *fi = op(IR_OP_FULL, "fi", 0);
  set_ints(fi, "shape", 1, 1);
  set_int(fi, "dtype", DT_I32);
  IrNode *pos = op(IR_OP_IOTA, "pos", 0);
  set_ints(pos, "shape", 1, 20);
  IrNode *cols = op(IR_OP_IOTA, "cols", 0);
  set_ints(cols, "shape", 2, 3, 4);
  set_int(cols, "axis", 1);
  set_int(cols, "dtype", DT_F32);
  finish_ok();
  assert_shape(f, DT_F32, shp(2, 2, 3));  // dtype defaults to f32
  assert_shape(fi, DT_I32, shp(1, 1));
  assert_shape(pos, DT_I64, shp(1, 20));  // iota defaults to i64
  assert_shape(cols, DT_F32, shp(2, 3, 4));
}
END_TEST

// ---------------------------------------------------------------------------------------
// Shape rules that reject, with what the message says.

START_TEST(test_matmul_rejects_inner_dim_mismatch) {
  IrNode *a = input("a", DT_F32, shp(2, 2, 3)), *b = input("b", DT_F32, shp(2, 4, 5));
  op(IR_OP_MATMUL, "y", 2, a, b);
  finish_fails("test.json \"y\": matmul: inner dims differ (3 vs 4) for [2,3] x [4,5]");
}
END_TEST

START_TEST(test_matmul_rejects_inner_dim_mismatch_after_transpose) {
  IrNode *a = input("a", DT_F32, shp(2, 2, 3)), *b = input("b", DT_F32, shp(2, 3, 5));
  IrNode *y = op(IR_OP_MATMUL, "y", 2, a, b);
  set_int(y, "transpose_b", 1);
  finish_fails("inner dims differ (3 vs 5) for [2,3] x [3,5] transpose_b");
}
END_TEST

START_TEST(test_matmul_rejects_batch_dims_that_do_not_broadcast) {
  IrNode *a = input("a", DT_F32, shp(3, 2, 2, 3)), *b = input("b", DT_F32, shp(3, 3, 3, 5));
  op(IR_OP_MATMUL, "y", 2, a, b);
  finish_fails("matmul: batch dims: shapes [2] and [3] do not broadcast");
}
END_TEST

START_TEST(test_matmul_rejects_vectors) {
  IrNode *a = input("a", DT_F32, shp(1, 3)), *b = input("b", DT_F32, shp(2, 3, 5));
  op(IR_OP_MATMUL, "y", 2, a, b);
  finish_fails("operands must have rank >= 2 (got [3] and [3,5])");
}
END_TEST

START_TEST(test_add_rejects_shapes_that_do_not_broadcast) {
  IrNode *a = input("a", DT_F32, shp(2, 2, 3)), *b = input("b", DT_F32, shp(2, 2, 4));
  op(IR_OP_ADD, "y", 2, a, b);
  finish_fails("\"y\": add: shapes [2,3] and [2,4] do not broadcast (dim 1: 3 vs 4)");
}
END_TEST

START_TEST(test_add_rejects_dtypes_that_differ) {
  IrNode *a = input("a", DT_F32, shp(1, 3)), *b = input("b", DT_I64, shp(1, 3));
  op(IR_OP_ADD, "y", 2, a, b);
  finish_fails("dtypes differ: \"a\" is f32, \"b\" is i64 (cast one of them)");
}
END_TEST

START_TEST(test_float_op_rejects_int_input) {
  IrNode *ids = input("ids", DT_I64, shp(1, 3));
  op(IR_OP_EXP, "y", 1, ids);
  finish_fails("\"y\": exp: input 0 \"ids\" is i64 but this op takes floats (cast it first)");
}
END_TEST

START_TEST(test_ops_reject_dtypes_the_ir_does_not_compute_in) {
  IrNode *x = input("x", DT_F16, shp(1, 3));
  op(IR_OP_NEG, "y", 1, x);
  finish_fails("input 0 \"x\" has dtype f16; the IR computes in f32, i32, i64");
}
END_TEST

START_TEST(test_affine_rejects_fractional_scale_on_ints) {
  IrNode *ids = input("ids", DT_I64, shp(1, 3));
  IrNode *y = op(IR_OP_AFFINE, "y", 1, ids);
  set_float(y, "scale", 0.5);
  finish_fails("scale 0.5 and shift 0 must be whole numbers for i64 input");
}
END_TEST

START_TEST(test_dropout_rejects_p_of_one) {
  IrNode *x = input("x", DT_F32, shp(1, 3));
  IrNode *y = op(IR_OP_DROPOUT, "y", 1, x);
  set_float(y, "p", 1.0);
  finish_fails("dropout: p is 1; it must be in [0, 1)");
}
END_TEST

START_TEST(test_reshape_rejects_fewer_elements) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 3));
  IrNode *y = op(IR_OP_RESHAPE, "y", 1, x);
  set_ints(y, "shape", 1, 5);
  finish_fails("reshape: cannot reshape [2,3] (6 elements) to [5] (5 elements)");
}
END_TEST

START_TEST(test_reshape_rejects_more_elements) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 3));
  IrNode *y = op(IR_OP_RESHAPE, "y", 1, x);
  set_ints(y, "shape", 2, 4, 2);
  finish_fails("reshape: cannot reshape [2,3] (6 elements) to [4,2]");
}
END_TEST

START_TEST(test_reshape_rejects_minus_one_that_does_not_divide) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 3));
  IrNode *y = op(IR_OP_RESHAPE, "y", 1, x);
  set_ints(y, "shape", 2, 4, -1);
  finish_fails("cannot infer dim 1: 6 elements do not divide by 4");
}
END_TEST

START_TEST(test_reshape_rejects_two_minus_ones) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 3));
  IrNode *y = op(IR_OP_RESHAPE, "y", 1, x);
  set_ints(y, "shape", 2, -1, -1);
  finish_fails("shape[1] is -1; dims must be positive (one may be -1)");
}
END_TEST

START_TEST(test_permute_rejects_repeated_axis) {
  IrNode *x = input("x", DT_F32, shp(3, 2, 3, 4));
  IrNode *y = op(IR_OP_PERMUTE, "y", 1, x);
  set_ints(y, "perm", 3, 0, 2, 0);
  finish_fails("permute: perm is not a permutation of 0..2");
}
END_TEST

START_TEST(test_permute_rejects_wrong_length) {
  IrNode *x = input("x", DT_F32, shp(3, 2, 3, 4));
  IrNode *y = op(IR_OP_PERMUTE, "y", 1, x);
  set_ints(y, "perm", 2, 1, 0);
  finish_fails("perm has 2 entries but the input [2,3,4] has rank 3");
}
END_TEST

START_TEST(test_concat_rejects_mismatch_outside_axis) {
  IrNode *a = input("a", DT_F32, shp(2, 2, 3)), *b = input("b", DT_F32, shp(2, 3, 4));
  IrNode *y = op(IR_OP_CONCAT, "y", 2, a, b);
  set_int(y, "axis", 1);
  finish_fails("concat: input 1 \"b\" [3,4] does not match [2,3] outside axis 1");
}
END_TEST

START_TEST(test_slice_rejects_range_outside_dim) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 5));
  IrNode *y = op(IR_OP_SLICE, "y", 1, x);
  set_int(y, "axis", 1);
  set_int(y, "start", 2);
  set_int(y, "end", 6);
  finish_fails("slice: range [2, 6) is empty or outside dim 1 of size 5");
}
END_TEST

START_TEST(test_slice_rejects_empty_range) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 5));
  IrNode *y = op(IR_OP_SLICE, "y", 1, x);
  set_int(y, "axis", 1);
  set_int(y, "start", 3);
  set_int(y, "end", 3);
  finish_fails("range [3, 3) is empty or outside dim 1 of size 5");
}
END_TEST

START_TEST(test_scatter_add_gives_data_shape_with_size_rows) {
  IrNode *upd = input("upd", DT_F32, shp(3, 2, 3, 4)), *ids = input("ids", DT_I64, shp(2, 2, 3));
  IrNode *emb = op(IR_OP_SCATTER_ADD, "emb", 2, upd, ids);  // gather's transpose: table [10, 4]
  set_int(emb, "size", 10);
  IrNode *seq = input("seq", DT_F32, shp(3, 2, 3, 4)), *idx = input("idx", DT_I32, shp(2, 2, 3));
  IrNode *bat = op(IR_OP_SCATTER_ADD, "bat", 2, seq, idx);  // one batch dim, axis 1
  set_int(bat, "axis", 1);
  set_int(bat, "batch_dims", 1);
  set_int(bat, "size", 7);
  finish_ok();
  assert_shape(emb, DT_F32, shp(2, 10, 4));
  assert_shape(bat, DT_F32, shp(3, 2, 7, 4));
}
END_TEST

START_TEST(test_scatter_add_rejects_updates_without_the_index_dims) {
  IrNode *upd = input("upd", DT_F32, shp(2, 5, 4)), *ids = input("ids", DT_I64, shp(1, 3));
  IrNode *y = op(IR_OP_SCATTER_ADD, "y", 2, upd, ids);
  set_int(y, "size", 10);
  finish_fails("scatter_add: updates [5,4] do not hold the index dims of [3] at axis 0");
}
END_TEST

START_TEST(test_scatter_add_rejects_a_size_below_one) {
  IrNode *upd = input("upd", DT_F32, shp(2, 3, 4)), *ids = input("ids", DT_I64, shp(1, 3));
  op(IR_OP_SCATTER_ADD, "y", 2, upd, ids);
  finish_fails("scatter_add: size 0 must be positive");
}
END_TEST

START_TEST(test_gather_rejects_float_indices) {
  IrNode *table = input("table", DT_F32, shp(2, 10, 4)), *ids = input("ids", DT_F32, shp(1, 3));
  op(IR_OP_GATHER, "y", 2, table, ids);
  finish_fails("gather: indices \"ids\" must be i32 or i64, not f32");
}
END_TEST

START_TEST(test_gather_rejects_batch_dim_mismatch) {
  IrNode *seq = input("seq", DT_F32, shp(3, 2, 7, 4)), *idx = input("idx", DT_I64, shp(1, 3));
  IrNode *y = op(IR_OP_GATHER, "y", 2, seq, idx);
  set_int(y, "axis", 1);
  set_int(y, "batch_dims", 1);
  finish_fails("batch dim 0 differs: data [2,7,4], indices [3]");
}
END_TEST

START_TEST(test_gather_rejects_batch_dims_past_axis) {
  IrNode *seq = input("seq", DT_F32, shp(3, 2, 7, 4)), *idx = input("idx", DT_I64, shp(1, 2));
  IrNode *y = op(IR_OP_GATHER, "y", 2, seq, idx);
  set_int(y, "batch_dims", 1);  // axis 0
  finish_fails("batch_dims 1 must be in [0, min(axis 0, indices rank 1)]");
}
END_TEST

START_TEST(test_gather_rejects_result_rank_above_max) {
  // data rank 8 gathered on its last axis by rank-2 indices: 7 + 2 = 9 dims.
  IrNode *data = input("data", DT_F32, shp(8, 1, 1, 1, 1, 1, 1, 1, 5));
  IrNode *idx = input("idx", DT_I64, shp(2, 2, 3));
  IrNode *y = op(IR_OP_GATHER, "y", 2, data, idx);
  set_int(y, "axis", 7);
  finish_fails("gather: result rank exceeds 8");
}
END_TEST

START_TEST(test_reduce_rejects_repeated_axis) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 3));
  IrNode *y = op(IR_OP_REDUCE_SUM, "y", 1, x);
  set_ints(y, "axes", 2, 1, -1);
  finish_fails("reduce_sum: axis 1 listed twice");
}
END_TEST

START_TEST(test_layernorm_rejects_weight_of_wrong_shape) {
  IrNode *x = input("x", DT_F32, shp(2, 3, 8));
  IrNode *w = param("w", shp(1, 4)), *b = param("b", shp(1, 8));
  op(IR_OP_LAYERNORM, "y", 3, x, w, b);
  finish_fails("layernorm: weight \"w\" is [4] but must be [8] (the last dim of [3,8])");
}
END_TEST

START_TEST(test_layernorm_rejects_bias_of_wrong_rank) {
  IrNode *x = input("x", DT_F32, shp(2, 3, 8));
  IrNode *w = param("w", shp(1, 8)), *b = param("b", shp(2, 1, 8));
  op(IR_OP_LAYERNORM, "y", 3, x, w, b);
  finish_fails("bias \"b\" is [1,8] but must be [8]");
}
END_TEST

START_TEST(test_cross_entropy_rejects_float_labels) {
  IrNode *logits = input("logits", DT_F32, shp(2, 5, 10));
  IrNode *labels = input("labels", DT_F32, shp(1, 5));
  op(IR_OP_CROSS_ENTROPY, "y", 2, logits, labels);
  finish_fails("labels \"labels\" must be i32 or i64, not f32");
}
END_TEST

START_TEST(test_cross_entropy_rejects_labels_not_matching_logits) {
  IrNode *logits = input("logits", DT_F32, shp(2, 5, 10));
  IrNode *labels = input("labels", DT_I64, shp(1, 4));
  op(IR_OP_CROSS_ENTROPY, "y", 2, logits, labels);
  finish_fails("logits [5,10] must be labels' shape [4] plus a class dim");
}
END_TEST

START_TEST(test_kl_div_rejects_shapes_that_differ) {
  IrNode *lp = input("lp", DT_F32, shp(2, 2, 10)), *t = input("t", DT_F32, shp(2, 2, 9));
  op(IR_OP_KL_DIV, "y", 2, lp, t);
  finish_fails("log_probs [2,10] and target [2,9] must have one shape");
}
END_TEST

START_TEST(test_full_rejects_non_positive_dims) {
  IrNode *f = op(IR_OP_FULL, "f", 0);
  set_ints(f, "shape", 2, 2, 0);
  finish_fails("full: shape[1] is 0; dims must be positive");
}
END_TEST

START_TEST(test_loss_must_be_a_scalar) {
  IrNode *x = input("x", DT_F32, shp(2, 2, 3));
  IrNode *y = op(IR_OP_EXP, "y", 1, x);
  g.losses = arena_alloc(&g.arena, sizeof *g.losses);
  g.losses[g.n_losses++] = (IrLoss){"loss", y};
  finish_fails("test.json: loss \"loss\" is \"y\" of f32[2,3]; a loss must be an f32 scalar");
}
END_TEST

// ---------------------------------------------------------------------------------------
// Finishing a graph: order, cycles, use counts; the verifier.

START_TEST(test_finish_orders_nodes_added_out_of_order) {
  // y = a + b is added before a and b exist; its inputs are wired afterwards.
  IrNode *y = op(IR_OP_ADD, "y", 2, NULL, NULL);
  IrNode *z = op(IR_OP_EXP, "z", 1, y);
  IrNode *a = input("a", DT_F32, shp(1, 3)), *b = input("b", DT_F32, shp(1, 3));
  y->in[0] = a;
  y->in[1] = b;
  finish_ok();
  ck_assert_int_lt(a->id, y->id);
  ck_assert_int_lt(b->id, y->id);
  ck_assert_int_lt(y->id, z->id);
  for (int i = 0; i < g.n_nodes; i++) ck_assert_int_eq(g.nodes[i]->id, i);
  assert_shape(z, DT_F32, shp(1, 3));
}
END_TEST

START_TEST(test_finish_reports_a_cycle_naming_its_nodes) {
  IrNode *x = input("x", DT_F32, shp(1, 3));
  IrNode *a = op(IR_OP_ADD, "a", 2, x, NULL);
  IrNode *b = op(IR_OP_EXP, "b", 1, a);
  a->in[1] = b;
  ck_assert(!ir_graph_finish(&g, &d));
  ck_assert_str_eq(d.msg, "test.json \"a\": the graph has a cycle: \"a\" -> \"b\" -> \"a\"");
}
END_TEST

START_TEST(test_finish_reports_a_node_that_uses_itself) {
  IrNode *a = op(IR_OP_NEG, "a", 1, NULL);
  a->in[0] = a;
  ck_assert(!ir_graph_finish(&g, &d));
  ck_assert_str_eq(d.msg, "test.json \"a\": the graph has a cycle: \"a\" -> \"a\"");
}
END_TEST

START_TEST(test_finish_counts_uses) {
  IrNode *x = input("x", DT_F32, shp(1, 3));
  IrNode *sq = op(IR_OP_MUL, "sq", 2, x, x);  // two uses of x in one node
  IrNode *e = op(IR_OP_EXP, "e", 1, x);
  IrNode *y = op(IR_OP_ADD, "y", 2, sq, e);
  finish_ok();
  ck_assert_int_eq(x->n_uses, 3);
  ck_assert_int_eq(sq->n_uses, 1);
  ck_assert_int_eq(e->n_uses, 1);
  ck_assert_int_eq(y->n_uses, 0);
}
END_TEST

START_TEST(test_find_returns_nodes_by_name) {
  IrNode *x = input("x", DT_F32, shp(1, 3));
  ck_assert_ptr_eq(ir_graph_find(&g, "x"), x);
  ck_assert_ptr_null(ir_graph_find(&g, "y"));
  char name[32];
  for (int i = 0; i < 1000; i++) {  // past the first growth of the name map
    snprintf(name, sizeof name, "t%d", i);
    input(name, DT_F32, shp(1, 1));
  }
  ck_assert_ptr_eq(ir_graph_find(&g, "x"), x);
  ck_assert_str_eq(ir_graph_find(&g, "t999")->name, "t999");
  ck_assert_int_eq(g.n_nodes, 1001);
}
END_TEST

START_TEST(test_verify_catches_a_tampered_shape) {
  IrNode *a = input("a", DT_F32, shp(2, 2, 3)), *b = input("b", DT_F32, shp(2, 3, 4));
  IrNode *y = op(IR_OP_MATMUL, "y", 2, a, b);
  finish_ok();
  y->shape.dim[1] = 5;
  ck_assert(!ir_verify(&g, &d));
  ck_assert_str_eq(d.msg, "test.json \"y\": matmul: recorded f32[2,5] but the inputs give f32[2,4]");
}
END_TEST

START_TEST(test_verify_catches_a_tampered_dtype) {
  IrNode *a = input("a", DT_F32, shp(1, 3));
  IrNode *y = op(IR_OP_NEG, "y", 1, a);
  finish_ok();
  y->dtype = DT_I64;
  ck_assert(!ir_verify(&g, &d));
  ck_assert_ptr_nonnull(strstr(d.msg, "recorded i64[3] but the inputs give f32[3]"));
}
END_TEST

START_TEST(test_verify_catches_inputs_out_of_order) {
  IrNode *a = input("a", DT_F32, shp(1, 3));
  IrNode *y = op(IR_OP_NEG, "y", 1, a);
  finish_ok();
  g.nodes[0] = y;  // swap: y now comes before its input
  g.nodes[1] = a;
  y->id = 0;
  a->id = 1;
  ck_assert(!ir_verify(&g, &d));
  ck_assert_str_eq(d.msg, "test.json \"y\": input 0 is not an earlier node of the graph");
}
END_TEST

START_TEST(test_verify_catches_wrong_arity) {
  IrNode *a = input("a", DT_F32, shp(1, 3));
  IrNode *y = op(IR_OP_ADD, "y", 2, a, a);
  finish_ok();
  y->n_in = 1;
  ck_assert(!ir_verify(&g, &d));
  ck_assert_str_eq(d.msg, "test.json \"y\": add takes 2 inputs, got 1");
}
END_TEST

START_TEST(test_verify_catches_copy_of_a_non_parameter) {
  IrNode *x = input("x", DT_F32, shp(1, 3));
  IrNode *w = param("w", shp(1, 3));
  w->init = (IrInit){.kind = IR_INIT_COPY, .copy_of = "x"};
  (void)x;
  finish_fails("\"w\": init copies \"x\", which is not a parameter");
}
END_TEST

START_TEST(test_verify_catches_copy_of_another_shape) {
  param("src", shp(1, 4));
  IrNode *w = param("w", shp(1, 3));
  w->init = (IrInit){.kind = IR_INIT_COPY, .copy_of = "src"};
  finish_fails("\"w\": init copies \"src\" of shape [4] into shape [3]");
}
END_TEST

START_TEST(test_verify_catches_copy_cycles) {
  IrNode *a = param("a", shp(1, 3)), *b = param("b", shp(1, 3));
  a->init = (IrInit){.kind = IR_INIT_COPY, .copy_of = "b"};
  b->init = (IrInit){.kind = IR_INIT_COPY, .copy_of = "a"};
  finish_fails("init copies form a cycle");
}
END_TEST

// ---------------------------------------------------------------------------------------
// Printers and counts. A small linear layer: y = x W + b, p = softmax(y).

static IrNode *lin_x, *lin_w, *lin_b, *lin_xw, *lin_y, *lin_p;

static void build_linear(void) {
  lin_x = input("x", DT_F32, shp(2, 2, 3));
  lin_w = param("W", shp(2, 3, 2));
  lin_b = param("b", shp(1, 2));
  lin_b->init = (IrInit){.kind = IR_INIT_ZEROS};
  lin_xw = op(IR_OP_MATMUL, "xw", 2, lin_x, lin_w);
  lin_y = op(IR_OP_ADD, "y", 2, lin_xw, lin_b);
  lin_p = op(IR_OP_SOFTMAX, "p", 1, lin_y);
  g.outputs = arena_alloc(&g.arena, sizeof *g.outputs);
  g.outputs[g.n_outputs++] = lin_p;
  finish_ok();
}

// Runs a printer into memory and returns the text (freed by the caller).
static char *print_to_string(void (*printer)(const IrGraph *, FILE *)) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ck_assert_ptr_nonnull(f);
  printer(&g, f);
  fclose(f);
  return buf;
}

static void assert_contains(const char *text, const char *part) {
  ck_assert_msg(strstr(text, part), "output lacks \"%s\":\n%s", part, text);
}

START_TEST(test_print_text_lists_one_node_a_line) {
  build_linear();
  char *t = print_to_string(ir_print_text);
  assert_contains(t, "# test.json: 6 nodes\n");
  assert_contains(t, "%0 x: f32[2,3] = input\n");
  assert_contains(t, "W: f32[3,2] = param init=normal(0.02)\n");
  assert_contains(t, "b: f32[2] = param init=zeros\n");
  char line[128];
  snprintf(line, sizeof line, "%%%d xw: f32[2,2] = matmul %%%d, %%%d transpose_a=false "
           "transpose_b=false bf16=false int8=false\n", lin_xw->id, lin_x->id, lin_w->id);
  assert_contains(t, line);
  snprintf(line, sizeof line, "%%%d p: f32[2,2] = softmax %%%d axis=-1\n", lin_p->id, lin_y->id);
  assert_contains(t, line);
  snprintf(line, sizeof line, "output p = %%%d\n", lin_p->id);
  assert_contains(t, line);
  free(t);
}
END_TEST

START_TEST(test_print_dot_draws_nodes_and_edges) {
  build_linear();
  input("say \"hi\"", DT_F32, shp(0));  // quotes in names are escaped
  finish_ok();
  char *t = print_to_string(ir_print_dot);
  assert_contains(t, "digraph kiln {\n");
  char line[160];
  snprintf(line, sizeof line, "  n%d [label=\"matmul\\nxw\\nf32[2,2]\"];\n", lin_xw->id);
  assert_contains(t, line);
  snprintf(line, sizeof line, "  n%d -> n%d;\n", lin_x->id, lin_xw->id);
  assert_contains(t, line);
  snprintf(line, sizeof line, "  n%d -> n%d;\n", lin_w->id, lin_xw->id);
  assert_contains(t, line);
  assert_contains(t, "param\\nW\\nf32[3,2]\", style=filled");
  assert_contains(t, "say \\\"hi\\\"");
  assert_contains(t, "out0 [shape=oval, label=\"output p\"];");
  ck_assert_str_eq(t + strlen(t) - 2, "}\n");
  free(t);
}
END_TEST

START_TEST(test_count_params_sums_parameter_elements) {
  build_linear();
  ck_assert_int_eq(ir_count_params(&g), 3 * 2 + 2);
}
END_TEST

START_TEST(test_count_flops_is_2mnk_per_matmul) {
  build_linear();
  // matmul 2·M·N·K = 2·2·2·3, add one per element (4), softmax five per element (20).
  ck_assert_double_eq(ir_count_flops(&g), 2 * 2 * 2 * 3 + 4 + 5 * 4);
}
END_TEST

START_TEST(test_count_flops_uses_k_of_transposed_operand) {
  IrNode *a = input("a", DT_F32, shp(3, 4, 5, 2)), *b = input("b", DT_F32, shp(2, 7, 5));
  IrNode *y = op(IR_OP_MATMUL, "y", 2, a, b);
  set_int(y, "transpose_a", 1);
  set_int(y, "transpose_b", 1);
  finish_ok();
  assert_shape(y, DT_F32, shp(3, 4, 2, 7));
  ck_assert_double_eq(ir_count_flops(&g), 2.0 * 4 * 2 * 7 * 5);
}
END_TEST

// ---------------------------------------------------------------------------------------
// The reference evaluator.

static const IrEvalMode inference = {.training = false, .seed = 0};

static double *values(IrValues *vals, const IrNode *n, int count, const double *v) {
  vals->v[n->id] = malloc((size_t)count * sizeof(double));
  memcpy(vals->v[n->id], v, (size_t)count * sizeof(double));
  return vals->v[n->id];
}

START_TEST(test_eval_linear_then_softmax) {
  build_linear();
  IrValues vals;
  ir_values_init(&vals, &g);
  values(&vals, lin_x, 6, (double[]){1, 2, 3, 4, 5, 6});
  values(&vals, lin_w, 6, (double[]){1, 0, 0, 2, 0, 0});
  values(&vals, lin_b, 2, (double[]){1, -1});
  ck_assert_msg(ir_eval(&g, &vals, NULL, &inference, &d), "%s", d.msg);
  // x W = [[1, 4], [4, 10]]; + b = [[2, 3], [5, 9]].
  const double want_y[] = {2, 3, 5, 9};
  for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(vals.v[lin_y->id][i], want_y[i], 1e-12);
  // softmax([2, 3]) = [1, e] / (1 + e); softmax([5, 9]) = [1, e^4] / (1 + e^4).
  const double e = exp(1.0), e4 = exp(4.0);
  const double want_p[] = {1 / (1 + e), e / (1 + e), 1 / (1 + e4), e4 / (1 + e4)};
  for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(vals.v[lin_p->id][i], want_p[i], 1e-12);
  ir_values_free(&vals);
}
END_TEST

START_TEST(test_eval_computes_only_what_want_needs) {
  IrNode *x = input("x", DT_F32, shp(1, 2)), *u = input("u", DT_F32, shp(1, 2));
  IrNode *y = op(IR_OP_NEG, "y", 1, x);
  IrNode *z = op(IR_OP_EXP, "z", 1, u);
  IrNode *side = op(IR_OP_RELU, "side", 1, x);
  finish_ok();
  IrValues vals;
  ir_values_init(&vals, &g);
  values(&vals, x, 2, (double[]){1.5, -2});
  bool *want = calloc((size_t)g.n_nodes, sizeof *want);
  want[y->id] = true;
  ck_assert_msg(ir_eval(&g, &vals, want, &inference, &d), "%s", d.msg);  // u is not needed
  ck_assert_double_eq(vals.v[y->id][0], -1.5);
  ck_assert_double_eq(vals.v[y->id][1], 2);
  ck_assert_ptr_null(vals.v[z->id]);
  ck_assert_ptr_null(vals.v[side->id]);
  free(want);
  ir_values_free(&vals);
}
END_TEST

START_TEST(test_eval_names_a_missing_input) {
  IrNode *x = input("x", DT_F32, shp(1, 2)), *u = input("u", DT_F32, shp(1, 2));
  IrNode *z = op(IR_OP_ADD, "z", 2, x, u);
  finish_ok();
  IrValues vals;
  ir_values_init(&vals, &g);
  values(&vals, x, 2, (double[]){1, 2});
  bool *want = calloc((size_t)g.n_nodes, sizeof *want);
  want[z->id] = true;
  ck_assert(!ir_eval(&g, &vals, want, &inference, &d));
  ck_assert_str_eq(d.msg, "input \"u\" has no value: it is needed but was not given");
  free(want);
  ir_values_free(&vals);
}
END_TEST

START_TEST(test_eval_names_a_missing_parameter) {
  build_linear();
  IrValues vals;
  ir_values_init(&vals, &g);
  values(&vals, lin_x, 6, (double[]){1, 2, 3, 4, 5, 6});
  values(&vals, lin_w, 6, (double[]){1, 0, 0, 2, 0, 0});
  ck_assert(!ir_eval(&g, &vals, NULL, &inference, &d));
  ck_assert_str_eq(d.msg, "parameter \"b\" has no value: it is needed but was not given");
  ir_values_free(&vals);
}
END_TEST

START_TEST(test_eval_prefixes_data_errors_with_the_node) {
  IrNode *table = input("table", DT_F32, shp(2, 3, 2)), *ids = input("ids", DT_I64, shp(1, 2));
  op(IR_OP_GATHER, "rows", 2, table, ids);
  finish_ok();
  IrValues vals;
  ir_values_init(&vals, &g);
  values(&vals, table, 6, (double[]){1, 2, 3, 4, 5, 6});
  values(&vals, ids, 2, (double[]){0, 7});
  ck_assert(!ir_eval(&g, &vals, NULL, &inference, &d));
  ck_assert_str_eq(d.msg, "test.json \"rows\": gather: index 7 out of range [0, 3) at element 1");
  ir_values_free(&vals);
}
END_TEST

// ---------------------------------------------------------------------------------------
// The op table.

START_TEST(test_op_table_is_complete_and_consistent) {
  for (int i = 0; i < IR_OP_COUNT; i++) {
    const IrOpInfo *o = &ir_ops[i];
    ck_assert_msg(o->name != NULL, "op %d has no name", i);
    ck_assert_msg(o->shape != NULL, "%s has no shape rule", o->name);
    ck_assert_msg(o->ref != NULL, "%s has no reference kernel", o->name);
    ck_assert_msg(o->doc != NULL && o->doc[0], "%s has no doc line", o->name);
    ck_assert_msg(o->attrs != NULL, "%s has no attribute list", o->name);
    ck_assert_msg(o->flops != NULL, "%s has no FLOPs rule", o->name);
    ck_assert_msg(o->pattern >= IR_PATTERN_ELEMENTWISE && o->pattern <= IR_PATTERN_OPAQUE,
                  "%s has no fusion pattern", o->name);
    if (o->flags & IR_FLAG_VIEW)
      ck_assert_msg(o->min_in == 1 && o->max_in == 1 && o->pattern == IR_PATTERN_INJECTIVE,
                    "%s: a view has one input whose elements it keeps", o->name);
    IrOpKind k;
    ck_assert_msg(ir_op_lookup(o->name, &k) && k == (IrOpKind)i, "%s does not round-trip",
                  o->name);
    int n = 0;
    while (o->attrs[n].name) n++;
    ck_assert_msg(n <= IR_MAX_ATTRS, "%s has %d attributes", o->name, n);
    ck_assert_int_eq(ir_op_n_attrs((IrOpKind)i), n);
    for (int a = 0; a < n; a++) ck_assert_int_eq(ir_attr_index((IrOpKind)i, o->attrs[a].name), a);
    ck_assert_msg(o->max_in < 0 || o->max_in >= o->min_in, "%s arity", o->name);
    bool source = o->flags & IR_FLAG_SOURCE;
    ck_assert_msg(source == (o->max_in == 0), "%s: SOURCE flag iff it takes no inputs", o->name);
    for (int j = 0; j < i; j++)
      ck_assert_msg(strcmp(ir_ops[j].name, o->name) != 0, "%s listed twice", o->name);
  }
}
END_TEST

START_TEST(test_op_lookup_rejects_unknown_names) {
  IrOpKind k;
  ck_assert(!ir_op_lookup("matmull", &k));
  ck_assert(!ir_op_lookup("", &k));
  ck_assert_int_eq(ir_attr_index(IR_OP_MATMUL, "transpose_c"), -1);
}
END_TEST

START_TEST(test_add_sets_attribute_defaults) {
  IrNode *x = input("x", DT_F32, shp(1, 3));
  IrNode *s = op(IR_OP_SOFTMAX, "s", 1, x);
  IrNode *ln = op(IR_OP_LAYERNORM, "ln", 3, x, x, x);
  IrNode *ce = op(IR_OP_CROSS_ENTROPY, "ce", 2, x, x);
  ck_assert_int_eq(ir_attr_int(s, "axis"), -1);
  ck_assert_double_eq(ir_attr_float(ln, "eps"), 1e-12);
  ck_assert_int_eq(ir_attr_int(ce, "ignore_index"), -100);
  ck_assert(!ir_attr(s, "axis")->set);
}
END_TEST

// ---------------------------------------------------------------------------------------

static Suite *ir_suite(void) {
  Suite *s = suite_create("ir");

  TCase *shape = tcase_create("shapes");
  tcase_add_checked_fixture(shape, setup, teardown);
  tcase_add_test(shape, test_shape_str_numel_and_eq);
  tcase_add_test(shape, test_broadcast_follows_numpy_rules);
  suite_add_tcase(s, shape);

  TCase *good = tcase_create("shape rules accept");
  tcase_add_checked_fixture(good, setup, teardown);
  tcase_add_test(good, test_matmul_shapes_with_transposes);
  tcase_add_test(good, test_matmul_broadcasts_batch_dims);
  tcase_add_test(good, test_binary_ops_broadcast);
  tcase_add_test(good, test_unary_ops_keep_shape_and_dtype);
  tcase_add_test(good, test_reshape_infers_minus_one);
  tcase_add_test(good, test_permute_reorders_dims);
  tcase_add_test(good, test_concat_sums_the_axis);
  tcase_add_test(good, test_slice_keeps_start_to_end);
  tcase_add_test(good, test_gather_replaces_axis_by_index_dims);
  tcase_add_test(good, test_gather_with_batch_dims_takes_one_row_per_batch);
  tcase_add_test(good, test_scatter_add_gives_data_shape_with_size_rows);
  tcase_add_test(good, test_reduce_with_and_without_keepdims);
  tcase_add_test(good, test_softmax_accepts_any_axis_in_range);
  tcase_add_test(good, test_layernorm_keeps_input_shape);
  tcase_add_test(good, test_losses_are_scalars);
  tcase_add_test(good, test_cast_changes_dtype_only);
  tcase_add_test(good, test_full_and_iota_take_shape_and_dtype_from_attrs);
  suite_add_tcase(s, good);

  TCase *bad = tcase_create("shape rules reject");
  tcase_add_checked_fixture(bad, setup, teardown);
  tcase_add_test(bad, test_matmul_rejects_inner_dim_mismatch);
  tcase_add_test(bad, test_matmul_rejects_inner_dim_mismatch_after_transpose);
  tcase_add_test(bad, test_matmul_rejects_batch_dims_that_do_not_broadcast);
  tcase_add_test(bad, test_matmul_rejects_vectors);
  tcase_add_test(bad, test_add_rejects_shapes_that_do_not_broadcast);
  tcase_add_test(bad, test_add_rejects_dtypes_that_differ);
  tcase_add_test(bad, test_float_op_rejects_int_input);
  tcase_add_test(bad, test_ops_reject_dtypes_the_ir_does_not_compute_in);
  tcase_add_test(bad, test_affine_rejects_fractional_scale_on_ints);
  tcase_add_test(bad, test_dropout_rejects_p_of_one);
  tcase_add_test(bad, test_reshape_rejects_fewer_elements);
  tcase_add_test(bad, test_reshape_rejects_more_elements);
  tcase_add_test(bad, test_reshape_rejects_minus_one_that_does_not_divide);
  tcase_add_test(bad, test_reshape_rejects_two_minus_ones);
  tcase_add_test(bad, test_permute_rejects_repeated_axis);
  tcase_add_test(bad, test_permute_rejects_wrong_length);
  tcase_add_test(bad, test_concat_rejects_mismatch_outside_axis);
  tcase_add_test(bad, test_slice_rejects_range_outside_dim);
  tcase_add_test(bad, test_slice_rejects_empty_range);
  tcase_add_test(bad, test_softmax_rejects_axis_out_of_range);
  tcase_add_test(bad, test_gather_rejects_float_indices);
  tcase_add_test(bad, test_scatter_add_rejects_updates_without_the_index_dims);
  tcase_add_test(bad, test_scatter_add_rejects_a_size_below_one);
  tcase_add_test(bad, test_gather_rejects_batch_dim_mismatch);
  tcase_add_test(bad, test_gather_rejects_batch_dims_past_axis);
  tcase_add_test(bad, test_gather_rejects_result_rank_above_max);
  tcase_add_test(bad, test_reduce_rejects_repeated_axis);
  tcase_add_test(bad, test_layernorm_rejects_weight_of_wrong_shape);
  tcase_add_test(bad, test_layernorm_rejects_bias_of_wrong_rank);
  tcase_add_test(bad, test_cross_entropy_rejects_float_labels);
  tcase_add_test(bad, test_cross_entropy_rejects_labels_not_matching_logits);
  tcase_add_test(bad, test_kl_div_rejects_shapes_that_differ);
  tcase_add_test(bad, test_full_rejects_non_positive_dims);
  tcase_add_test(bad, test_loss_must_be_a_scalar);
  suite_add_tcase(s, bad);

  TCase *graph = tcase_create("graph and verifier");
  tcase_add_checked_fixture(graph, setup, teardown);
  tcase_add_test(graph, test_finish_orders_nodes_added_out_of_order);
  tcase_add_test(graph, test_finish_reports_a_cycle_naming_its_nodes);
  tcase_add_test(graph, test_finish_reports_a_node_that_uses_itself);
  tcase_add_test(graph, test_finish_counts_uses);
  tcase_add_test(graph, test_find_returns_nodes_by_name);
  tcase_add_test(graph, test_verify_catches_a_tampered_shape);
  tcase_add_test(graph, test_verify_catches_a_tampered_dtype);
  tcase_add_test(graph, test_verify_catches_inputs_out_of_order);
  tcase_add_test(graph, test_verify_catches_wrong_arity);
  tcase_add_test(graph, test_verify_catches_copy_of_a_non_parameter);
  tcase_add_test(graph, test_verify_catches_copy_of_another_shape);
  tcase_add_test(graph, test_verify_catches_copy_cycles);
  suite_add_tcase(s, graph);

  TCase *print = tcase_create("printers and counts");
  tcase_add_checked_fixture(print, setup, teardown);
  tcase_add_test(print, test_print_text_lists_one_node_a_line);
  tcase_add_test(print, test_print_dot_draws_nodes_and_edges);
  tcase_add_test(print, test_count_params_sums_parameter_elements);
  tcase_add_test(print, test_count_flops_is_2mnk_per_matmul);
  tcase_add_test(print, test_count_flops_uses_k_of_transposed_operand);
  suite_add_tcase(s, print);

  TCase *eval = tcase_create("evaluator");
  tcase_add_checked_fixture(eval, setup, teardown);
  tcase_add_test(eval, test_eval_linear_then_softmax);
  tcase_add_test(eval, test_eval_computes_only_what_want_needs);
  tcase_add_test(eval, test_eval_names_a_missing_input);
  tcase_add_test(eval, test_eval_names_a_missing_parameter);
  tcase_add_test(eval, test_eval_prefixes_data_errors_with_the_node);
  suite_add_tcase(s, eval);

  TCase *table = tcase_create("op table");
  tcase_add_checked_fixture(table, setup, teardown);
  tcase_add_test(table, test_op_table_is_complete_and_consistent);
  tcase_add_test(table, test_op_lookup_rejects_unknown_names);
  tcase_add_test(table, test_add_sets_attribute_defaults);
  suite_add_tcase(s, table);
  return s;
}

int main(void) { return check_run(ir_suite()); }
