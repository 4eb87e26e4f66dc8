// Tests of reverse-mode autodiff (passes/autodiff.c and the gradient rules of ir/grad_rules.c):
// every rule against central finite differences of the loss on the reference evaluator, in
// double, on small graphs built by hand (broadcasting, tensors used several times, a tied
// parameter, repeated gather ids, ignored labels, dropout in training), and on a tiny
// VisualBERT pre-training model.
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/test_attrs.h"
#include "tests/check_run.h"

#define EPS 1e-6  // finite-difference step
#define TOL 1e-6  // |fd - grad| <= TOL * (1 + |grad|)

// ---------------------------------------------------------------------------------------
// A case: a graph built by hand, and values for its inputs and parameters by name.

#define MAX_VALUES 256
typedef struct Case {
  IrGraph g;
  int n;
  const char *name[MAX_VALUES];
  double *value[MAX_VALUES];
  IrEvalMode mode;
} Case;

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static double uniform(double lo, double hi) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return lo + (hi - lo) * (double)(rng_state >> 11) * 0x1.0p-53;
}

static void case_init(Case *c) {
  memset(c, 0, sizeof *c);
  ir_graph_init(&c->g, "test");
}

static void case_free(Case *c) {
  for (int i = 0; i < c->n; i++) free(c->value[i]);
  ir_graph_free(&c->g);
}


// Values for source `name`: given ones, or uniform in [lo, hi).
static void set_values(Case *c, const char *name, int64_t count, const double *v, double lo,
                       double hi) {
  ck_assert_int_lt(c->n, MAX_VALUES);
  c->name[c->n] = name;
  c->value[c->n] = malloc((size_t)(count ? count : 1) * sizeof(double));
  for (int64_t j = 0; j < count; j++) c->value[c->n][j] = v ? v[j] : uniform(lo, hi);
  c->n++;
}

static double *values_of(Case *c, const char *name) {
  for (int i = 0; i < c->n; i++)
    if (strcmp(c->name[i], name) == 0) return c->value[i];
  return NULL;
}

// A parameter or input with random values in [lo, hi).
static IrNode *source_in(Case *c, IrOpKind op, const char *name, IrShape s, double lo, double hi) {
  IrNode *n = ir_graph_add(&c->g, op, name, "test");
  n->shape = s;
  n->dtype = DT_F32;
  set_values(c, name, ir_numel(&s), NULL, lo, hi);
  return n;
}

static IrNode *param(Case *c, const char *name, IrShape s) {
  return source_in(c, IR_OP_PARAM, name, s, -1, 1);
}

// An integer input with the given values.
static IrNode *int_input(Case *c, const char *name, IrShape s, const double *v) {
  IrNode *n = ir_graph_add(&c->g, IR_OP_INPUT, name, "test");
  n->shape = s;
  n->dtype = DT_I64;
  set_values(c, name, ir_numel(&s), v, 0, 0);
  return n;
}

// A node with attributes at their defaults (set them with set_int & co. before check()).
static IrNode *op(Case *c, IrOpKind kind, const char *name, int n_in, ...) {
  IrNode *n = ir_graph_add(&c->g, kind, name, "test");
  n->n_in = n_in;
  n->in = arena_alloc(&c->g.arena, (size_t)(n_in + 1) * sizeof *n->in);
  va_list ap;
  va_start(ap, n_in);
  for (int k = 0; k < n_in; k++) n->in[k] = va_arg(ap, IrNode *);
  va_end(ap);
  return n;
}

static void set_loss(Case *c, IrNode *n) {
  c->g.losses = arena_alloc(&c->g.arena, sizeof *c->g.losses);
  c->g.losses[0] = (IrLoss){"loss", n};
  c->g.n_losses = 1;
}

// loss = sum(y * w) with random weights w of y's shape (an input, so not differentiated),
// so that every element of y's gradient differs.
static IrNode *weighted_loss(Case *c, IrNode *y, IrShape s) {
  char *wn = arena_printf(&c->g.arena, "w:%s", y->name);
  IrNode *w = source_in(c, IR_OP_INPUT, wn, s, -1, 1);
  IrNode *p = op(c, IR_OP_MUL, arena_printf(&c->g.arena, "wy:%s", y->name), 2, y, w);
  IrNode *l = op(c, IR_OP_REDUCE_SUM, "loss:sum", 1, p);
  set_loss(c, l);
  return l;
}

// ---------------------------------------------------------------------------------------
// The check: gradients from the backward graph against central differences of the loss.

static void load_sources(Case *c, IrValues *vals) {
  ir_values_init(vals, &c->g);
  for (int i = 0; i < c->g.n_nodes; i++) {
    const IrNode *n = c->g.nodes[i];
    if (n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) continue;
    double *v = values_of(c, n->name);
    ck_assert_msg(v, "no values for %s", n->name);
    size_t count = (size_t)ir_numel(&n->shape);
    vals->v[i] = malloc((count ? count : 1) * sizeof(double));
    memcpy(vals->v[i], v, count * sizeof(double));
  }
}

static double eval_loss(Case *c) {
  IrValues vals;
  load_sources(c, &vals);
  bool *want = calloc((size_t)c->g.n_nodes, sizeof *want);
  const IrNode *loss = c->g.losses[0].node;
  want[loss->id] = true;
  Diag d = {0};
  ck_assert_msg(ir_eval(&c->g, &vals, want, &c->mode, &d), "eval: %s", d.msg);
  double l = vals.v[loss->id][0];
  free(want);
  ir_values_free(&vals);
  return l;
}

// Differentiates c's loss and compares at most `sample` entries of each gradient (all if
// 0) with finite differences. Returns the number of entries compared.
static int check(Case *c, bool wrt_inputs, int sample) {
  Diag d = {0};
  if (!c->g.n_grads) {  // not differentiated yet
    ck_assert_msg(ir_graph_finish(&c->g, &d), "finish: %s", d.msg);
    ck_assert_msg(pass_autodiff(&c->g, c->g.losses[0].name, wrt_inputs, &d), "autodiff: %s",
                  d.msg);
  }
  IrValues vals;
  load_sources(c, &vals);
  ck_assert_msg(ir_eval(&c->g, &vals, NULL, &c->mode, &d), "eval: %s", d.msg);
  int compared = 0;
  for (int p = 0; p < c->g.n_grads; p++) {
    const IrGrad *gr = &c->g.grads[p];
    ck_assert(ir_shape_eq(&gr->of->shape, &gr->grad->shape));
    double *x = values_of(c, gr->of->name), *grad = vals.v[gr->grad->id];
    int64_t count = ir_numel(&gr->of->shape);
    int64_t step = sample && count > sample ? count / sample : 1;
    for (int64_t j = 0; j < count; j += step) {
      double keep = x[j];
      x[j] = keep + EPS;
      double up = eval_loss(c);
      x[j] = keep - EPS;
      double down = eval_loss(c);
      x[j] = keep;
      double fd = (up - down) / (2 * EPS);
      ck_assert_msg(fabs(fd - grad[j]) <= TOL * (1 + fabs(grad[j])),
                    "d loss / d %s[%lld]: backward graph %.12g, finite differences %.12g",
                    gr->of->name, (long long)j, grad[j], fd);
      compared++;
    }
  }
  ir_values_free(&vals);
  return compared;
}

// The gradient of parameter `name` as computed (after check).
static double grad_at(Case *c, const char *name, int64_t j) {
  for (int p = 0; p < c->g.n_grads; p++)
    if (strcmp(c->g.grads[p].of->name, name) == 0) {
      IrValues vals;
      load_sources(c, &vals);
      Diag d = {0};
      ck_assert_msg(ir_eval(&c->g, &vals, NULL, &c->mode, &d), "eval: %s", d.msg);
      double v = vals.v[c->g.grads[p].grad->id][j];
      ir_values_free(&vals);
      return v;
    }
  ck_abort_msg("no gradient for %s", name);
  return 0;
}

// ---------------------------------------------------------------------------------------
// Elementwise ops.

static const IrOpKind binary_ops[] = {IR_OP_ADD, IR_OP_SUB, IR_OP_MUL, IR_OP_DIV, IR_OP_MAXIMUM,
                                      IR_OP_MINIMUM};

START_TEST(test_binary_op_gradients_sum_over_broadcast_dims) {
  IrOpKind kind = binary_ops[_i];
  Case c;
  case_init(&c);
  IrNode *a = param(&c, "a", shp(3, 2, 3, 4));
  IrNode *b = source_in(&c, IR_OP_PARAM, "b", shp(2, 3, 1), 0.5, 1.5);
  IrNode *y = op(&c, kind, "y", 2, a, b);  // [2, 3, 4]
  weighted_loss(&c, y, shp(3, 2, 3, 4));
  ck_assert_int_eq(check(&c, false, 0), 24 + 3);
  case_free(&c);
}
END_TEST

static const IrOpKind unary_ops[] = {IR_OP_NEG, IR_OP_EXP, IR_OP_LOG, IR_OP_SQRT, IR_OP_RSQRT,
                                     IR_OP_TANH, IR_OP_ERF, IR_OP_GELU, IR_OP_RELU,
                                     IR_OP_SIGMOID, IR_OP_SILU, IR_OP_AFFINE};

START_TEST(test_unary_op_gradients_match_finite_differences) {
  IrOpKind kind = unary_ops[_i];
  bool positive = kind == IR_OP_LOG || kind == IR_OP_SQRT || kind == IR_OP_RSQRT;
  Case c;
  case_init(&c);
  IrNode *x = source_in(&c, IR_OP_PARAM, "x", shp(2, 3, 4), positive ? 0.2 : -2,
                        positive ? 2 : 2);
  IrNode *y = op(&c, kind, "y", 1, x);
  if (kind == IR_OP_AFFINE) {
    set_float(y, "scale", -1.5);
    set_float(y, "shift", 0.25);
  }
  weighted_loss(&c, y, shp(2, 3, 4));
  ck_assert_int_eq(check(&c, false, 0), 12);
  case_free(&c);
}
END_TEST

// gelu_grad(dy, x) (what gelu's rule emits) differentiated again, in dy and in x.
START_TEST(test_gelu_grad_gradient_matches_finite_differences) {
  Case c;
  case_init(&c);
  IrNode *dy = source_in(&c, IR_OP_PARAM, "dy", shp(2, 3, 4), -2, 2);
  IrNode *x = source_in(&c, IR_OP_PARAM, "x", shp(2, 3, 4), -3, 3);
  IrNode *y = op(&c, IR_OP_GELU_GRAD, "y", 2, dy, x);
  weighted_loss(&c, y, shp(2, 3, 4));
  ck_assert_int_eq(check(&c, false, 0), 24);
  case_free(&c);
}
END_TEST

// A tensor with several consumers gets the sum of their gradients: y = h * h + h, h = tanh x.
START_TEST(test_gradients_add_up_over_several_uses) {
  Case c;
  case_init(&c);
  IrNode *x = param(&c, "x", shp(1, 5));
  IrNode *h = op(&c, IR_OP_TANH, "h", 1, x);
  IrNode *y = op(&c, IR_OP_ADD, "y", 2, op(&c, IR_OP_MUL, "hh", 2, h, h), h);
  weighted_loss(&c, y, shp(1, 5));
  check(&c, false, 0);
  case_free(&c);
}
END_TEST

// One parameter used in two places (a tied weight): y = tanh(x W) W^T.
START_TEST(test_tied_parameter_gets_both_gradients) {
  Case c;
  case_init(&c);
  IrNode *x = source_in(&c, IR_OP_INPUT, "x", shp(2, 3, 4), -1, 1);
  IrNode *w = param(&c, "W", shp(2, 4, 5));
  IrNode *h = op(&c, IR_OP_TANH, "h", 1, op(&c, IR_OP_MATMUL, "xw", 2, x, w));  // [3, 5]
  IrNode *y = op(&c, IR_OP_MATMUL, "y", 2, h, w);                               // [3, 4]
  set_int(y, "transpose_b", 1);
  weighted_loss(&c, y, shp(2, 3, 4));
  ck_assert_int_eq(check(&c, true, 0), 20 + 12 + 12);  // W; x and the loss weights on request
  case_free(&c);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Matmul, every transpose combination, with batch dims that broadcast both ways.
START_TEST(test_matmul_gradients_with_transposes_and_batch_broadcast) {
  bool ta = _i & 1, tb = _i & 2;
  Case c;
  case_init(&c);
  IrNode *a = param(&c, "a", ta ? shp(4, 2, 1, 4, 3) : shp(4, 2, 1, 3, 4));  // op(a) [3, 4]
  IrNode *b = param(&c, "b", tb ? shp(3, 5, 2, 4) : shp(3, 5, 4, 2));        // op(b) [4, 2]
  IrNode *y = op(&c, IR_OP_MATMUL, "y", 2, a, b);                            // [2, 5, 3, 2]
  set_int(y, "transpose_a", ta);
  set_int(y, "transpose_b", tb);
  weighted_loss(&c, y, shp(4, 2, 5, 3, 2));
  ck_assert_int_eq(check(&c, false, 0), 24 + 40);
  case_free(&c);
}
END_TEST

// A linear layer's weight under [batch, rows, in] activations: its gradient is one 2-D
// GEMM over all batch x rows (no [batch, out, in] product summed afterwards, which held
// every layer's activations to the end of the backward), and still the right values.
START_TEST(test_linear_weight_gradient_is_one_gemm_over_all_rows) {
  bool tb = _i & 1;
  Case c;
  case_init(&c);
  IrNode *x = param(&c, "x", shp(3, 2, 3, 4));                             // [2, 3, 4]
  IrNode *w = param(&c, "w", tb ? shp(2, 5, 4) : shp(2, 4, 5));            // op(w) [4, 5]
  IrNode *y = op(&c, IR_OP_MATMUL, "y", 2, x, w);                          // [2, 3, 5]
  set_int(y, "transpose_b", tb);
  weighted_loss(&c, y, shp(3, 2, 3, 5));
  ck_assert_int_eq(check(&c, false, 0), 24 + 20);
  int reduces = 0;
  for (int i = 0; i < c.g.n_nodes; i++) {
    const IrNode *n = c.g.nodes[i];
    if (n->op == IR_OP_MATMUL && strstr(n->name, "grad:") == n->name && n->shape.rank == 2)
      ck_assert_int_eq(ir_numel(&n->shape), 20);
    reduces += n->op == IR_OP_REDUCE_SUM && strstr(n->name, "grad:y") == n->name;
  }
  ck_assert_int_eq(reduces, 0);
  case_free(&c);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Layout ops.
START_TEST(test_layout_op_gradients) {
  Case c;
  case_init(&c);
  IrNode *a = param(&c, "a", shp(3, 2, 3, 4));
  IrNode *b = param(&c, "b", shp(3, 2, 1, 4));
  IrNode *cat = op(&c, IR_OP_CONCAT, "cat", 3, a, b, a);  // [2, 7, 4], a used twice
  set_int(cat, "axis", 1);
  IrNode *sl = op(&c, IR_OP_SLICE, "sl", 1, cat);  // [2, 4, 4]
  set_int(sl, "axis", 1);
  set_int(sl, "start", 2);
  set_int(sl, "end", 6);
  IrNode *pm = op(&c, IR_OP_PERMUTE, "pm", 1, sl);  // [4, 2, 4]
  set_ints(pm, "perm", 3, 2, 0, 1);
  IrNode *rs = op(&c, IR_OP_RESHAPE, "rs", 1, pm);  // [8, 4]
  set_ints(rs, "shape", 2, 8, -1);
  IrNode *y = op(&c, IR_OP_TANH, "y", 1, rs);
  weighted_loss(&c, y, shp(2, 8, 4));
  ck_assert_int_eq(check(&c, false, 0), 24 + 8);
  case_free(&c);
}
END_TEST

// An embedding lookup with repeated ids: the rows they name get the sum of the gradients.
START_TEST(test_gather_gradient_adds_up_repeated_ids) {
  Case c;
  case_init(&c);
  IrNode *table = param(&c, "table", shp(2, 5, 3));
  IrNode *ids = int_input(&c, "ids", shp(2, 2, 3), (double[]){1, 3, 1, 0, 1, 4});
  IrNode *y = op(&c, IR_OP_GATHER, "y", 2, table, ids);  // [2, 3, 3]
  weighted_loss(&c, y, shp(3, 2, 3, 3));
  check(&c, false, 0);
  ck_assert(grad_at(&c, "table", 2 * 3) == 0.0);  // row 2 is never looked up
  case_free(&c);
}
END_TEST

// Gather along axis 1 with one batch dim: data [2, 4, 3], indices [2, 2] -> [2, 2, 3].
START_TEST(test_gather_gradient_with_batch_dims) {
  Case c;
  case_init(&c);
  IrNode *data = param(&c, "data", shp(3, 2, 4, 3));
  IrNode *idx = int_input(&c, "idx", shp(2, 2, 2), (double[]){3, 3, 0, 2});
  IrNode *y = op(&c, IR_OP_GATHER, "y", 2, data, idx);
  set_int(y, "axis", 1);
  set_int(y, "batch_dims", 1);
  weighted_loss(&c, y, shp(3, 2, 2, 3));
  check(&c, false, 0);
  case_free(&c);
}
END_TEST

// scatter_add (gather's gradient) has a gradient of its own, a gather: updates [2, 3, 4]
// scattered along axis 1 into 5 rows with repeated ids, then tanh so that the loss is not
// linear in the updates.
START_TEST(test_scatter_add_gradient_gathers_back) {
  Case c;
  case_init(&c);
  IrNode *u = param(&c, "u", shp(3, 2, 3, 4));
  IrNode *ids = int_input(&c, "ids", shp(1, 3), (double[]){4, 0, 4});
  IrNode *s = op(&c, IR_OP_SCATTER_ADD, "s", 2, u, ids);  // [2, 5, 4]
  set_int(s, "axis", 1);
  set_int(s, "size", 5);
  IrNode *y = op(&c, IR_OP_TANH, "y", 1, s);
  weighted_loss(&c, y, shp(3, 2, 5, 4));
  ck_assert_int_eq(check(&c, false, 0), 24);
  case_free(&c);
}
END_TEST

// The gradient graph of an embedding lookup holds a scatter_add and no matmul (the old
// one-hot product cost T x V x H).
START_TEST(test_gather_gradient_is_a_scatter_add) {
  Case c;
  case_init(&c);
  IrNode *table = param(&c, "table", shp(2, 50, 3));
  IrNode *ids = int_input(&c, "ids", shp(1, 4), (double[]){7, 7, 49, 0});
  IrNode *y = op(&c, IR_OP_GATHER, "y", 2, table, ids);
  weighted_loss(&c, y, shp(2, 4, 3));
  check(&c, false, 0);
  int scatters = 0, matmuls = 0;
  for (int i = 0; i < c.g.n_nodes; i++) {
    scatters += c.g.nodes[i]->op == IR_OP_SCATTER_ADD;
    matmuls += c.g.nodes[i]->op == IR_OP_MATMUL;
  }
  ck_assert_int_eq(scatters, 1);
  ck_assert_int_eq(matmuls, 0);
  ck_assert(grad_at(&c, "table", 7 * 3) != 0.0);
  case_free(&c);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Reductions, softmax, layernorm.
START_TEST(test_reduction_gradients) {
  Case c;
  case_init(&c);
  IrNode *x = param(&c, "x", shp(3, 2, 3, 4));
  IrNode *s = op(&c, IR_OP_REDUCE_SUM, "s", 1, x);  // [2, 4]
  set_ints(s, "axes", 1, 1);
  IrNode *m = op(&c, IR_OP_REDUCE_MEAN, "m", 1, x);  // [1, 3, 1]
  set_ints(m, "axes", 2, 0, 2);
  set_int(m, "keepdims", 1);
  IrNode *mx = op(&c, IR_OP_REDUCE_MAX, "mx", 1, x);  // [2, 3]
  set_ints(mx, "axes", 1, -1);
  IrNode *s3 = op(&c, IR_OP_RESHAPE, "s3", 1, s);  // [2, 1, 4]
  set_ints(s3, "shape", 3, 2, 1, 4);
  IrNode *mx3 = op(&c, IR_OP_RESHAPE, "mx3", 1, mx);  // [2, 3, 1]
  set_ints(mx3, "shape", 3, 2, 3, 1);
  IrNode *sm = op(&c, IR_OP_MUL, "sm", 2, s3, m);  // [2, 3, 4]
  IrNode *y = op(&c, IR_OP_ADD, "y", 2, sm, mx3);
  weighted_loss(&c, y, shp(3, 2, 3, 4));
  ck_assert_int_eq(check(&c, false, 0), 24);
  case_free(&c);
}
END_TEST

START_TEST(test_softmax_and_log_softmax_gradients) {
  Case c;
  case_init(&c);
  IrNode *x = param(&c, "x", shp(3, 2, 3, 4));
  IrNode *sm = op(&c, IR_OP_SOFTMAX, "sm", 1, x);
  set_int(sm, "axis", 1);
  IrNode *ls = op(&c, IR_OP_LOG_SOFTMAX, "ls", 1, x);
  IrNode *y = op(&c, IR_OP_ADD, "y", 2, sm, ls);
  weighted_loss(&c, y, shp(3, 2, 3, 4));
  check(&c, false, 0);
  case_free(&c);
}
END_TEST

START_TEST(test_layernorm_gradients) {
  Case c;
  case_init(&c);
  IrNode *x = source_in(&c, IR_OP_PARAM, "x", shp(3, 2, 3, 5), -2, 2);
  IrNode *w = param(&c, "w", shp(1, 5));
  IrNode *b = param(&c, "b", shp(1, 5));
  IrNode *y = op(&c, IR_OP_LAYERNORM, "y", 3, x, w, b);
  set_float(y, "eps", 1e-5);
  weighted_loss(&c, y, shp(3, 2, 3, 5));
  ck_assert_int_eq(check(&c, false, 0), 30 + 5 + 5);
  case_free(&c);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Losses and dropout.
START_TEST(test_cross_entropy_gradient_skips_ignored_labels) {
  Case c;
  case_init(&c);
  IrNode *logits = source_in(&c, IR_OP_PARAM, "logits", shp(3, 2, 3, 4), -2, 2);
  IrNode *labels = int_input(&c, "labels", shp(2, 2, 3), (double[]){1, -100, 3, 0, 2, -100});
  IrNode *l = op(&c, IR_OP_CROSS_ENTROPY, "ce", 2, logits, labels);
  set_loss(&c, l);
  check(&c, false, 0);
  for (int k = 0; k < 4; k++) ck_assert(grad_at(&c, "logits", 4 + k) == 0.0);  // ignored row
  case_free(&c);
}
END_TEST

// With a denominator input (a count, no gradient of its own): finite differences agree, and
// the gradient is (softmax - onehot) / denominator, not / the labelled count (2).
START_TEST(test_cross_entropy_gradient_with_a_denominator) {
  Case c;
  case_init(&c);
  IrNode *logits = source_in(&c, IR_OP_PARAM, "logits", shp(3, 2, 3, 4), -2, 2);
  IrNode *labels = int_input(&c, "labels", shp(2, 2, 3), (double[]){1, -100, 3, -100, -100, -100});
  IrNode *den = source_in(&c, IR_OP_INPUT, "den", shp(0), 5, 5);
  set_loss(&c, op(&c, IR_OP_CROSS_ENTROPY, "ce", 3, logits, labels, den));
  ck_assert_int_eq(check(&c, false, 0), 24);
  const double *x = values_of(&c, "logits");  // row 0, label 1
  double sum = exp(x[0]) + exp(x[1]) + exp(x[2]) + exp(x[3]);
  ck_assert_double_eq_tol(grad_at(&c, "logits", 1), (exp(x[1]) / sum - 1) / 5, 1e-9);
  case_free(&c);
}
END_TEST

START_TEST(test_cross_entropy_gradient_is_zero_when_every_label_is_ignored) {
  Case c;
  case_init(&c);
  IrNode *logits = param(&c, "logits", shp(2, 2, 3));
  IrNode *labels = int_input(&c, "labels", shp(1, 2), (double[]){7, 7});
  IrNode *l = op(&c, IR_OP_CROSS_ENTROPY, "ce", 2, logits, labels);
  set_int(l, "ignore_index", 7);
  set_loss(&c, l);
  check(&c, false, 0);
  for (int k = 0; k < 6; k++) ck_assert(grad_at(&c, "logits", k) == 0.0);
  case_free(&c);
}
END_TEST

START_TEST(test_kl_div_gradients_of_both_inputs) {
  Case c;
  case_init(&c);
  IrNode *a = param(&c, "a", shp(2, 3, 4));
  IrNode *b = param(&c, "b", shp(2, 3, 4));
  IrNode *lp = op(&c, IR_OP_LOG_SOFTMAX, "lp", 1, a);
  IrNode *t = op(&c, IR_OP_SOFTMAX, "t", 1, b);
  set_loss(&c, op(&c, IR_OP_KL_DIV, "kl", 2, lp, t));
  ck_assert_int_eq(check(&c, false, 0), 24);
  case_free(&c);
}
END_TEST

// In training the backward pass drops the same elements as the forward pass.
START_TEST(test_dropout_gradient_reuses_the_forward_mask) {
  Case c;
  case_init(&c);
  c.mode = (IrEvalMode){.training = true, .seed = 1234};
  IrNode *x = param(&c, "x", shp(2, 6, 5));
  IrNode *y = op(&c, IR_OP_DROPOUT, "drop", 1, x);
  set_float(y, "p", 0.3);
  weighted_loss(&c, y, shp(2, 6, 5));
  check(&c, false, 0);
  int zeros = 0;
  for (int j = 0; j < 30; j++) zeros += grad_at(&c, "x", j) == 0.0;
  ck_assert_int_gt(zeros, 0);   // some dropped ...
  ck_assert_int_lt(zeros, 30);  // ... not all
  case_free(&c);
}
END_TEST

// ---------------------------------------------------------------------------------------
// The pass itself.
START_TEST(test_parameter_the_loss_does_not_reach_gets_zeros) {
  Case c;
  case_init(&c);
  IrNode *x = param(&c, "x", shp(1, 3));
  param(&c, "unused", shp(2, 2, 2));
  weighted_loss(&c, op(&c, IR_OP_EXP, "y", 1, x), shp(1, 3));
  ck_assert_int_eq(check(&c, false, 0), 3 + 4);
  ck_assert_int_eq(c.g.n_grads, 2);
  for (int j = 0; j < 4; j++) ck_assert(grad_at(&c, "unused", j) == 0.0);
  case_free(&c);
}
END_TEST

START_TEST(test_unknown_loss_is_reported_by_name) {
  Case c;
  case_init(&c);
  IrNode *x = param(&c, "x", shp(1, 3));
  weighted_loss(&c, x, shp(1, 3));
  Diag d = {0};
  ck_assert(ir_graph_finish(&c.g, &d));
  ck_assert(!pass_autodiff(&c.g, "nope", false, &d));
  ck_assert_msg(strstr(d.msg, "no loss named \"nope\" (losses: loss)"), "%s", d.msg);
  case_free(&c);
}
END_TEST

START_TEST(test_every_float_op_has_a_gradient_rule) {
  for (int k = 0; k < IR_OP_COUNT; k++) {
    if (ir_ops[k].flags & IR_FLAG_SOURCE) continue;
    if (k == IR_OP_FUSED) continue;  // made by fusion, which runs after autodiff
    ck_assert_msg(ir_ops[k].grad, "%s has no gradient rule", ir_ops[k].name);
  }
}
END_TEST

// ---------------------------------------------------------------------------------------
// A whole model: tiny VisualBERT pre-training, its summed loss, a sample of every parameter.
START_TEST(test_visualbert_pretrain_gradients) {
  static const char *sets[][2] = {
    {"layers", "1"}, {"hidden", "8"}, {"heads", "2"}, {"intermediate", "16"}, {"vocab", "11"},
    {"visual_dim", "6"}, {"text_len", "4"}, {"regions", "3"}, {"batch", "2"},
    {"max_positions", "8"}, {"dropout", "0"}};
  int n_sets = (int)(sizeof sets / sizeof sets[0]);
  FeSet fs[16];
  for (int i = 0; i < n_sets; i++) {
    snprintf(fs[i].name, sizeof fs[i].name, "%s", sets[i][0]);
    fs[i].value = sets[i][1];
  }
  Case c;
  memset(&c, 0, sizeof c);
  Diag d = {0};
  ck_assert_msg(fe_load_model("models/visualbert-pretrain.json", fs, n_sets, &c.g, &d), "%s",
                d.msg);
  for (int i = 0; i < c.g.n_nodes; i++) {
    const IrNode *n = c.g.nodes[i];
    int64_t count = ir_numel(&n->shape);
    if (n->op == IR_OP_PARAM) {
      set_values(&c, n->name, count, NULL, -0.5, 0.5);
    } else if (n->op == IR_OP_INPUT) {
      double *v = malloc((size_t)count * sizeof *v);
      for (int64_t j = 0; j < count; j++) {
        const char *nm = n->name;
        if (strcmp(nm, "input_ids") == 0) v[j] = floor(uniform(0, 11));
        else if (strcmp(nm, "labels") == 0) v[j] = j % 3 == 1 ? -100 : floor(uniform(0, 11));
        else if (strstr(nm, "type_ids") || strcmp(nm, "sentence_image_labels") == 0)
          v[j] = floor(uniform(0, 2));
        else if (strstr(nm, "attention_mask")) v[j] = j % 4 == 3 ? 0 : 1;
        else v[j] = uniform(-1, 1);
      }
      set_values(&c, n->name, count, v, 0, 0);
      free(v);
    }
  }
  ck_assert_msg(pass_autodiff(&c.g, "loss", false, &d), "%s", d.msg);
  ck_assert_int_gt(c.g.n_grads, 20);
  int compared = check(&c, false, 1);  // one entry of every parameter
  ck_assert_int_ge(compared, 20);
  ir_graph_free(&c.g);
  for (int i = 0; i < c.n; i++) free(c.value[i]);
}
END_TEST

static Suite *autodiff_suite(void) {
  Suite *s = suite_create("autodiff");
  TCase *ops = tcase_create("rules");
  tcase_add_loop_test(ops, test_binary_op_gradients_sum_over_broadcast_dims, 0,
                      (int)(sizeof binary_ops / sizeof binary_ops[0]));
  tcase_add_loop_test(ops, test_unary_op_gradients_match_finite_differences, 0,
                      (int)(sizeof unary_ops / sizeof unary_ops[0]));
  tcase_add_test(ops, test_gelu_grad_gradient_matches_finite_differences);
  tcase_add_test(ops, test_gradients_add_up_over_several_uses);
  tcase_add_test(ops, test_tied_parameter_gets_both_gradients);
  tcase_add_loop_test(ops, test_matmul_gradients_with_transposes_and_batch_broadcast, 0, 4);
  tcase_add_loop_test(ops, test_linear_weight_gradient_is_one_gemm_over_all_rows, 0, 2);
  tcase_add_test(ops, test_layout_op_gradients);
  tcase_add_test(ops, test_gather_gradient_adds_up_repeated_ids);
  tcase_add_test(ops, test_gather_gradient_with_batch_dims);
  tcase_add_test(ops, test_scatter_add_gradient_gathers_back);
  tcase_add_test(ops, test_gather_gradient_is_a_scatter_add);
  tcase_add_test(ops, test_reduction_gradients);
  tcase_add_test(ops, test_softmax_and_log_softmax_gradients);
  tcase_add_test(ops, test_layernorm_gradients);
  tcase_add_test(ops, test_cross_entropy_gradient_skips_ignored_labels);
  tcase_add_test(ops, test_cross_entropy_gradient_is_zero_when_every_label_is_ignored);
  tcase_add_test(ops, test_cross_entropy_gradient_with_a_denominator);
  tcase_add_test(ops, test_kl_div_gradients_of_both_inputs);
  tcase_add_test(ops, test_dropout_gradient_reuses_the_forward_mask);
  suite_add_tcase(s, ops);
  TCase *pass = tcase_create("pass");
  tcase_add_test(pass, test_parameter_the_loss_does_not_reach_gets_zeros);
  tcase_add_test(pass, test_unknown_loss_is_reported_by_name);
  tcase_add_test(pass, test_every_float_op_has_a_gradient_rule);
  tcase_add_test(pass, test_visualbert_pretrain_gradients);
  suite_add_tcase(s, pass);
  return s;
}

int main(void) { return check_run(autodiff_suite()); }
