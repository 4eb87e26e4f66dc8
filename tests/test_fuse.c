// Tests of the fusion pass (passes/fuse.c) and of fused nodes (ir/fused.c,
// codegen/lower_fused.c). For each rule a small graph is built twice: one copy stays as it
// is, the other goes through the pass. Then:
//   shape:   the fused copy has the expected fused nodes (kind and body ops) and no more;
//   numbers: the fused graph's reference equals the unfused graph's (the same reference
//            kernels, run on the body: bit for bit), and the fused graph's JIT, for W = 16
//            and W = 8 and 1 and 2 threads, matches the unfused reference within
//            1e-5 max|b| per output (dropout in training: the same masks, from the
//            dropout's original name).
// Also: the body prints, the verifier catches a broken body, a model file cannot write a
// fused node, and backward graphs (after autodiff) fuse and keep their gradients.
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/compile.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/plan.h"
#include "tests/test_attrs.h"
#include "tests/test_tuning.h"
#include "tests/check_run.h"

// ---------------------------------------------------------------------------------------
// Building a graph (twice: `plain` and `fused`).

typedef void (*BuildFn)(IrGraph *g);

static IrNode *in_node(IrGraph *g, const char *name, IrShape s) {
  IrNode *n = ir_graph_add(g, IR_OP_INPUT, name, NULL);
  n->shape = s;
  return n;
}

static IrNode *node(IrGraph *g, IrOpKind op, const char *name, int n_in, IrNode *a, IrNode *b,
                    IrNode *c) {
  IrNode *n = ir_graph_add(g, op, name, NULL);
  IrNode *xs[3] = {a, b, c};
  n->n_in = n_in;
  n->in = arena_alloc(&g->arena, (size_t)(n_in + 1) * sizeof *n->in);
  for (int k = 0; k < n_in; k++) n->in[k] = xs[k];
  return n;
}

static void output(IrGraph *g, IrNode *n) {
  IrNode **o = arena_alloc(&g->arena, (size_t)(g->n_outputs + 1) * sizeof *o);
  if (g->n_outputs) memcpy(o, g->outputs, (size_t)g->n_outputs * sizeof *o);
  o[g->n_outputs++] = n;
  g->outputs = o;
}

static void make_loss(IrGraph *g, IrNode *x) {
  IrNode *sq = node(g, IR_OP_MUL, "loss:sq", 2, x, x, NULL);
  IrNode *l = node(g, IR_OP_REDUCE_SUM, "loss", 1, sq, NULL, NULL);
  g->losses = arena_alloc(&g->arena, sizeof *g->losses);
  g->losses[0] = (IrLoss){"loss", l};
  g->n_losses = 1;
}

static void finish(IrGraph *g) {
  Diag d = {0};
  ck_assert_msg(ir_graph_finish(g, &d) && ir_verify(g, &d), "graph rejected: %s", d.msg);
}

static void fuse(IrGraph *g) {
  Diag d = {0};
  PassOptions o = {0};
  ck_assert_msg(pass_fuse(g, &o, &d), "fuse failed: %s", d.msg);
  ck_assert_msg(ir_verify(g, &d), "fused graph fails the verifier: %s", d.msg);
}

// ---------------------------------------------------------------------------------------
// The expected shape: "loop:add,mul,gelu;gemm:matmul,add" lists every fused node (in graph
// order) as kind:body ops.
static void expect_fused(const IrGraph *g, const char *want) {
  char got[2048] = "", body[1024];
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_FUSED) continue;
    ir_body_str(n, false, body, sizeof body);
    for (char *s = body; *s; s++)  // "mul, add" -> "mul,add"
      if (*s == ' ') memmove(s, s + 1, strlen(s));
    snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s:%s", got[0] ? ";" : "",
             ir_fused_kind_name((int)ir_attr_int(n, "kind")), body);
  }
  ck_assert_str_eq(got, want);
}

// ---------------------------------------------------------------------------------------
// Numbers.

static uint64_t rng;
static double uniform(void) {
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1p-53;
}

// Inputs by name, the same values in both graphs (f32-representable, in [-2, 2)).
static void fill(const IrGraph *g, IrValues *v) {
  ir_values_init(v, g);
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_INPUT) continue;
    rng = ir_rng_name_hash(n->name);
    int64_t c = ir_numel(&n->shape);
    v->v[i] = malloc((size_t)(c ? c : 1) * sizeof(double));
    for (int64_t j = 0; j < c; j++)  // labels (integers): classes 0..4
      v->v[i][j] = n->dtype == DT_F32 ? (double)(float)(4 * uniform() - 2) : floor(5 * uniform());
  }
}

static void eval(const IrGraph *g, IrValues *v, const IrEvalMode *mode) {
  Diag d = {0};
  fill(g, v);
  ck_assert_msg(ir_eval(g, v, NULL, mode, &d), "reference failed: %s", d.msg);
}

// What is compared: outputs, losses and gradients, by name.
static int checked(const IrGraph *g, const IrNode **out, const char **label) {
  int n = 0;
  for (int i = 0; i < g->n_outputs; i++) out[n] = g->outputs[i], label[n++] = g->outputs[i]->name;
  for (int i = 0; i < g->n_losses; i++) out[n] = g->losses[i].node, label[n++] = g->losses[i].name;
  for (int i = 0; i < g->n_grads; i++) out[n] = g->grads[i].grad, label[n++] = g->grads[i].of->name;
  return n;
}

static void compare(const char *what, const char *name, int64_t count, const double *want,
                    const float *got_f, const double *got_d, double rel) {
  double max_b = 0, worst = 0;
  for (int64_t j = 0; j < count; j++) max_b = fmax(max_b, fabs(want[j]));
  for (int64_t j = 0; j < count; j++) {
    double a = got_f ? (double)got_f[j] : got_d[j];
    double err = fabs(a - want[j]);
    if (!(err <= rel * fmax(max_b, FLT_MIN)))
      ck_abort_msg("%s: \"%s\" element %lld: %.9g, unfused reference %.9g", what, name,
                   (long long)j, a, want[j]);
    worst = fmax(worst, err);
  }
}

// The fused graph against the unfused one: reference, then JIT (W 16, 8; threads 1, 2).
static void check_numbers(const IrGraph *plain, const IrGraph *fused, bool training) {
  IrEvalMode mode = {.training = training, .seed = 42};
  IrValues pv, fv;
  eval(plain, &pv, &mode);
  eval(fused, &fv, &mode);
  const IrNode *po[64], *fo[64];
  const char *pl[64], *fl[64];
  int n = checked(plain, po, pl);
  ck_assert_int_eq(checked(fused, fo, fl), n);
  for (int k = 0; k < n; k++) {
    ck_assert_str_eq(pl[k], fl[k]);
    compare("reference", pl[k], ir_numel(&po[k]->shape), pv.v[po[k]->id], NULL, fv.v[fo[k]->id], 0);
  }
  static const int widths[] = {16, 8};
  for (int wi = 0; wi < 2; wi++) {
    CgOptions opt = {.vector_floats = widths[wi], .training = training, .tuning = test_tuning()};
    CgProgram p;
    Diag d = {0};
    ck_assert_msg(cg_compile(fused, NULL, &opt, &p, &d), "W=%d: compile failed: %s", widths[wi], d.msg);
    for (int i = 0; i < fused->n_nodes; i++) {
      const IrNode *x = fused->nodes[i];
      if (x->op != IR_OP_INPUT || !p.value[i]) continue;
      for (int64_t j = 0; j < ir_numel(&x->shape); j++) dt_store(x->dtype, p.value[i], (size_t)j, fv.v[i][j]);
    }
    *p.seed = 42;
    rt_plan_prepare(&p.plan, 1);
    for (int threads = 1; threads <= 2; threads++) {
      char what[64];
      snprintf(what, sizeof what, "JIT W=%d threads=%d", widths[wi], threads);
      rt_plan_run(&p.plan, threads);
      ck_assert_msg(cg_program_status(&p, &d), "%s: %s", what, d.msg);
      for (int k = 0; k < n; k++)
        compare(what, pl[k], ir_numel(&po[k]->shape), pv.v[po[k]->id], p.value[fo[k]->id], NULL, 1e-5);
    }
    cg_program_free(&p);
  }
  ir_values_free(&pv);
  ir_values_free(&fv);
}

// Builds the graph twice, fuses one copy, checks its shape and its numbers (inference, and
// training when dropout is in it), and returns nothing: both graphs are freed.
static void check_rule(BuildFn build, const char *want, bool training) {
  IrGraph plain, fused;
  ir_graph_init(&plain, "test.json");
  ir_graph_init(&fused, "test.json");
  build(&plain);
  build(&fused);
  finish(&plain);
  finish(&fused);
  fuse(&fused);
  expect_fused(&fused, want);
  check_numbers(&plain, &fused, false);
  if (training) check_numbers(&plain, &fused, true);
  ir_graph_free(&plain);
  ir_graph_free(&fused);
}

// ---------------------------------------------------------------------------------------
// Rule loop: elementwise and broadcast chains.

// y = gelu(dropout((x + bias) * z)) with bias broadcast: one loop kernel.
static void build_chain(IrGraph *g) {
  IrNode *x = in_node(g, "x", shp(3, 2, 5, 37)), *bias = in_node(g, "bias", shp(1, 37));
  IrNode *z = in_node(g, "z", shp(3, 2, 5, 37));
  IrNode *a = node(g, IR_OP_ADD, "a", 2, x, bias, NULL);
  IrNode *m = node(g, IR_OP_MUL, "m", 2, a, z, NULL);
  IrNode *dr = node(g, IR_OP_DROPOUT, "drop", 1, m, NULL, NULL);
  set_float(dr, "p", 0.3);
  IrNode *s = node(g, IR_OP_AFFINE, "s", 1, dr, NULL, NULL);
  set_float(s, "scale", 0.5);
  set_float(s, "shift", 0.25);
  output(g, node(g, IR_OP_GELU, "y", 1, s, NULL, NULL));
}

START_TEST(test_elementwise_chain_with_broadcast_and_dropout_becomes_one_loop) {
  check_rule(build_chain, "loop:add,mul,dropout,affine,gelu", true);
}
END_TEST

// A producer whose value is needed elsewhere (here: an output) is not absorbed; the DAG
// below it (two uses of one node inside the group) still is.
static void build_shared(IrGraph *g) {
  IrNode *x = in_node(g, "x", shp(2, 7, 19)), *y = in_node(g, "y", shp(2, 7, 1));
  IrNode *t = node(g, IR_OP_TANH, "t", 1, x, NULL, NULL);
  output(g, t);
  IrNode *e = node(g, IR_OP_EXP, "e", 1, t, NULL, NULL);
  IrNode *m = node(g, IR_OP_MUL, "m", 2, e, e, NULL);
  IrNode *s = node(g, IR_OP_SUB, "s", 2, m, y, NULL);
  output(g, node(g, IR_OP_DIV, "q", 2, s, e, NULL));
}

START_TEST(test_loop_fusion_keeps_producers_needed_elsewhere) {
  check_rule(build_shared, "loop:exp,mul,sub,div", false);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Rule gemm: epilogues in the register tile.

// r + gelu(x W^T + b): matmul, bias, GELU, residual in one GEMM.
static void build_linear(IrGraph *g) {
  IrNode *x = in_node(g, "x", shp(3, 2, 5, 24)), *w = in_node(g, "w", shp(2, 40, 24));
  IrNode *b = in_node(g, "b", shp(1, 40)), *r = in_node(g, "r", shp(3, 2, 5, 40));
  IrNode *mm = node(g, IR_OP_MATMUL, "xw", 2, x, w, NULL);
  set_int(mm, "transpose_b", 1);
  IrNode *a = node(g, IR_OP_ADD, "xwb", 2, mm, b, NULL);
  IrNode *ge = node(g, IR_OP_GELU, "act", 1, a, NULL, NULL);
  output(g, node(g, IR_OP_ADD, "y", 2, r, ge, NULL));
}

START_TEST(test_matmul_bias_gelu_residual_becomes_one_gemm) {
  check_rule(build_linear, "gemm:matmul,add,gelu,add", false);
}
END_TEST

// The pass records the epilogue it chose, in body and param indices, for lowering to read.
START_TEST(test_gemm_fusion_records_its_epilogue) {
  IrGraph g;
  ir_graph_init(&g, "test.json");
  build_linear(&g);
  finish(&g);
  fuse(&g);
  const IrNode *y = ir_graph_find(&g, "y");
  ck_assert_int_eq(y->op, IR_OP_FUSED);
  const IrGemmEpilogue *e = y->body->gemm;
  ck_assert_ptr_nonnull(e);
  ck_assert_int_eq(y->body->nodes[e->matmul]->op, IR_OP_MATMUL);
  ck_assert_double_eq(e->scale, 1);
  ck_assert(e->bias >= 0 && e->gelu && e->residual == IR_GEMM_RESIDUAL_ADD);
  ck_assert_str_eq(y->in[e->bias]->name, "b");
  ck_assert_str_eq(y->in[e->residual_param]->name, "r");
  y->body->gemm = NULL;  // lowering would have nothing to read: the verifier says so
  Diag d = {0};
  ck_assert(!ir_verify(&g, &d));
  ck_assert_msg(strstr(d.msg, "epilogue record"), "%s", d.msg);
  ir_graph_free(&g);
}
END_TEST

// Attention scores with a per-batch mask: matmul and scale go to the GEMM (a batched one),
// mask add and softmax become one reduction.
static void build_scores(IrGraph *g) {
  IrNode *q = in_node(g, "q", shp(4, 2, 3, 7, 16)), *k = in_node(g, "k", shp(4, 2, 3, 7, 16));
  IrNode *mask = in_node(g, "mask", shp(4, 2, 1, 1, 7));
  IrNode *mm = node(g, IR_OP_MATMUL, "scores", 2, q, k, NULL);
  set_int(mm, "transpose_b", 1);
  IrNode *sc = node(g, IR_OP_AFFINE, "scaled", 1, mm, NULL, NULL);
  set_float(sc, "scale", 0.25);
  IrNode *ma = node(g, IR_OP_ADD, "masked", 2, sc, mask, NULL);
  output(g, node(g, IR_OP_SOFTMAX, "probs", 1, ma, NULL, NULL));
}

START_TEST(test_scale_goes_to_the_gemm_and_mask_add_to_the_softmax) {
  check_rule(build_scores, "gemm:matmul,affine;reduction:add,softmax", false);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Rule reduction: residual add (+ dropout) + layernorm; log_softmax.

static void build_add_norm(IrGraph *g) {
  IrNode *h = in_node(g, "h", shp(3, 2, 3, 37)), *res = in_node(g, "res", shp(3, 2, 3, 37));
  IrNode *w = in_node(g, "gamma", shp(1, 37)), *b = in_node(g, "beta", shp(1, 37));
  IrNode *dr = node(g, IR_OP_DROPOUT, "drop", 1, h, NULL, NULL);
  set_float(dr, "p", 0.2);
  IrNode *a = node(g, IR_OP_ADD, "sum", 2, dr, res, NULL);
  output(g, node(g, IR_OP_LAYERNORM, "norm", 3, a, w, b));
  IrNode *l = node(g, IR_OP_AFFINE, "logits", 1, res, NULL, NULL);
  set_float(l, "scale", 3.0);
  output(g, node(g, IR_OP_LOG_SOFTMAX, "logp", 1, l, NULL, NULL));
}

START_TEST(test_residual_add_and_dropout_fuse_into_layernorm) {
  check_rule(build_add_norm, "reduction:dropout,add,layernorm;reduction:affine,log_softmax", true);
}
END_TEST

// Row reductions over the last axis fold their elementwise prologue as it is computed, and
// apply a unary epilogue to each row's value.
static void build_row_reduce(IrGraph *g) {
  IrNode *x = in_node(g, "x", shp(3, 3, 5, 37)), *y = in_node(g, "y", shp(3, 3, 5, 37));
  IrNode *m = node(g, IR_OP_MUL, "xy", 2, x, y, NULL);
  IrNode *s = node(g, IR_OP_REDUCE_SUM, "rowsum", 1, m, NULL, NULL);
  set_ints(s, "axes", 1, -1);
  set_int(s, "keepdims", 1);
  output(g, s);
  IrNode *t = node(g, IR_OP_TANH, "t", 1, x, NULL, NULL);
  IrNode *mx = node(g, IR_OP_REDUCE_MAX, "rowmax", 1, t, NULL, NULL);
  set_ints(mx, "axes", 1, 2);
  output(g, mx);
  IrNode *a = node(g, IR_OP_AFFINE, "ay", 1, y, NULL, NULL);
  set_float(a, "scale", -3.0);
  IrNode *mn = node(g, IR_OP_REDUCE_MEAN, "rowmean", 1, a, NULL, NULL);
  set_ints(mn, "axes", 1, -1);
  IrNode *e = node(g, IR_OP_AFFINE, "var_eps", 1, mn, NULL, NULL);
  set_float(e, "shift", 9.5);
  output(g, node(g, IR_OP_RSQRT, "rstd", 1, e, NULL, NULL));
  IrNode *my = node(g, IR_OP_REDUCE_MAX, "ymax", 1, y, NULL, NULL);  // no prologue
  set_ints(my, "axes", 1, -1);
  output(g, node(g, IR_OP_NEG, "neg_ymax", 1, my, NULL, NULL));
}

START_TEST(test_row_reductions_fold_their_prologue) {
  check_rule(build_row_reduce, "reduction:mul,reduce_sum;reduction:tanh,reduce_max;reduction:affine,reduce_mean,affine,rsqrt;reduction:reduce_max,neg", false);
}
END_TEST

// An elementwise epilogue after softmax runs on the row in place: the probabilities'
// dropout (its mask in training the unfused one's).
static void build_softmax_epilogue(IrGraph *g) {
  IrNode *s = in_node(g, "s", shp(4, 2, 3, 5, 21)), *mask = in_node(g, "mask", shp(4, 2, 1, 1, 21));
  IrNode *m = node(g, IR_OP_ADD, "masked", 2, s, mask, NULL);
  IrNode *p = node(g, IR_OP_SOFTMAX, "probs", 1, m, NULL, NULL);
  IrNode *dr = node(g, IR_OP_DROPOUT, "probs_drop", 1, p, NULL, NULL);
  set_float(dr, "p", 0.1);
  output(g, dr);
}

START_TEST(test_softmax_takes_its_dropout_as_epilogue) {
  check_rule(build_softmax_epilogue, "reduction:add,softmax,dropout", true);
}
END_TEST

// Cross-entropy: its backward (softmax(logits) - one_hot, scaled) is one reduction kernel.
static void build_ce(IrGraph *g) {
  IrNode *x = in_node(g, "x", shp(3, 2, 6, 37)), *lab = in_node(g, "labels", shp(2, 2, 6));
  lab->dtype = DT_I64;
  IrNode *l = node(g, IR_OP_AFFINE, "logits", 1, x, NULL, NULL);
  set_float(l, "scale", 2.0);
  IrNode *ce = node(g, IR_OP_CROSS_ENTROPY, "loss", 2, l, lab, NULL);
  g->losses = arena_alloc(&g->arena, sizeof *g->losses);
  g->losses[0] = (IrLoss){"loss", ce};
  g->n_losses = 1;
}

START_TEST(test_cross_entropy_backward_fuses_softmax_with_its_epilogue) {
  IrGraph plain, fused;
  ir_graph_init(&plain, "test.json");
  ir_graph_init(&fused, "test.json");
  build_ce(&plain);
  build_ce(&fused);
  finish(&plain);
  finish(&fused);
  Diag d = {0};
  ck_assert_msg(pass_autodiff(&plain, "loss", true, &d), "%s", d.msg);
  ck_assert_msg(pass_autodiff(&fused, "loss", true, &d), "%s", d.msg);
  fuse(&fused);
  bool found = false;
  for (int i = 0; i < fused.n_nodes; i++) {
    const IrNode *n = fused.nodes[i];
    char body[1024];
    if (n->op == IR_OP_FUSED && ir_attr_int(n, "kind") == IR_FUSED_REDUCTION &&
        strncmp(ir_body_str(n, false, body, sizeof body), "softmax, sub, mul", 17) == 0)
      found = true;
  }
  ck_assert_msg(found, "softmax - one_hot of the backward is not one reduction");
  check_numbers(&plain, &fused, false);
  ir_graph_free(&plain);
  ir_graph_free(&fused);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Backward graphs: autodiff first, then fusion; gradients must not change.

static void build_mlp(IrGraph *g) {
  IrNode *x = in_node(g, "x", shp(2, 6, 24)), *w1 = in_node(g, "w1", shp(2, 40, 24));
  IrNode *b1 = in_node(g, "b1", shp(1, 40)), *w2 = in_node(g, "w2", shp(2, 24, 40));
  IrNode *gm = in_node(g, "gamma", shp(1, 24)), *bt = in_node(g, "beta", shp(1, 24));
  IrNode *h = node(g, IR_OP_MATMUL, "h", 2, x, w1, NULL);
  set_int(h, "transpose_b", 1);
  IrNode *hb = node(g, IR_OP_ADD, "hb", 2, h, b1, NULL);
  IrNode *a = node(g, IR_OP_GELU, "a", 1, hb, NULL, NULL);
  IrNode *o = node(g, IR_OP_MATMUL, "o", 2, a, w2, NULL);
  set_int(o, "transpose_b", 1);
  IrNode *dr = node(g, IR_OP_DROPOUT, "drop", 1, o, NULL, NULL);
  set_float(dr, "p", 0.25);
  IrNode *r = node(g, IR_OP_ADD, "r", 2, dr, x, NULL);
  IrNode *n = node(g, IR_OP_LAYERNORM, "n", 3, r, gm, bt);
  make_loss(g, n);
}

START_TEST(test_backward_graph_fuses_and_keeps_its_gradients) {
  IrGraph plain, fused;
  ir_graph_init(&plain, "test.json");
  ir_graph_init(&fused, "test.json");
  build_mlp(&plain);
  build_mlp(&fused);
  finish(&plain);
  finish(&fused);
  Diag d = {0};
  // Weights are inputs here: autodiff records the gradient of every f32 input.
  ck_assert_msg(pass_autodiff(&plain, "loss", true, &d), "%s", d.msg);
  ck_assert_msg(pass_autodiff(&fused, "loss", true, &d), "%s", d.msg);
  int before = fused.n_nodes;
  fuse(&fused);
  int kinds[IR_FUSED_KIND_COUNT] = {0};
  // dy * gelu'(x) is a kernel of its own, not the epilogue of the GEMM that makes dy (where
  // its erf and exp ran 1.45x the GEMM's time: passes/fuse.c).
  bool gelu_grad_alone = false;
  for (int i = 0; i < fused.n_nodes; i++) {
    const IrNode *n = fused.nodes[i];
    if (n->op == IR_OP_GELU_GRAD) gelu_grad_alone = true;
    if (n->op != IR_OP_FUSED) continue;
    int64_t kind = ir_attr_int(n, "kind");
    kinds[kind]++;
    char body[1024];
    ir_body_str(n, false, body, sizeof body);
    if (kind == IR_FUSED_GEMM) ck_assert_msg(!strstr(body, "gelu_grad"), "gelu_grad in a GEMM: %s", body);
    else if (strstr(body, "gelu_grad")) gelu_grad_alone = true;
  }
  ck_assert_msg(gelu_grad_alone, "no kernel computes dy * gelu'(x)");
  ck_assert_int_lt(fused.n_nodes, before);
  ck_assert_int_ge(kinds[IR_FUSED_GEMM], 2);  // forward linear layers
  ck_assert_int_ge(kinds[IR_FUSED_LOOP], 1);  // backward elementwise (GELU', dropout, LN)
  check_numbers(&plain, &fused, false);
  check_numbers(&plain, &fused, true);
  ir_graph_free(&plain);
  ir_graph_free(&fused);
}
END_TEST

// ---------------------------------------------------------------------------------------
// The IR around fused nodes.

START_TEST(test_fused_node_prints_its_body) {
  IrGraph g;
  ir_graph_init(&g, "test.json");
  build_linear(&g);
  finish(&g);
  fuse(&g);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ir_print_text(&g, f);
  fclose(f);
  ck_assert_msg(strstr(buf, "y: f32[2,5,40] = fused.gemm %0, %1, %2, %3 {matmul, add, gelu, add}"),
                "%s", buf);
  free(buf);
  f = open_memstream(&buf, &len);
  ir_print_dot(&g, f);
  fclose(f);
  ck_assert_msg(strstr(buf, "fused.gemm\\n{matmul, add, gelu, add}"), "%s", buf);
  free(buf);
  ir_graph_free(&g);
}
END_TEST

START_TEST(test_verifier_rejects_a_body_whose_param_does_not_match_its_input) {
  IrGraph g;
  ir_graph_init(&g, "test.json");
  build_chain(&g);
  finish(&g);
  fuse(&g);
  IrNode *y = ir_graph_find(&g, "y");
  ck_assert_int_eq(y->op, IR_OP_FUSED);
  y->body->params[0]->shape.dim[0] += 1;
  Diag d = {0};
  ck_assert(!ir_verify(&g, &d));
  ck_assert_msg(strstr(d.msg, "body param 0 does not match input"), "%s", d.msg);
  ir_graph_free(&g);
}
END_TEST

START_TEST(test_a_fused_node_without_body_is_refused) {
  IrGraph g;
  ir_graph_init(&g, "test.json");
  IrNode *x = in_node(&g, "x", shp(1, 3));
  node(&g, IR_OP_FUSED, "f", 1, x, NULL, NULL);
  Diag d = {0};
  ck_assert(!ir_graph_finish(&g, &d));
  ck_assert_msg(strstr(d.msg, "fused nodes are made by the fuse pass"), "%s", d.msg);
  ir_graph_free(&g);
}
END_TEST

START_TEST(test_fuse_can_be_disabled_in_the_pipeline) {
  IrGraph g;
  ir_graph_init(&g, "test.json");
  build_chain(&g);
  finish(&g);
  Diag d = {0};
  PassOptions o = {0};
  const char *off[] = {"fuse"};
  ck_assert_msg(pass_run_pipeline(&g, &o, NULL, off, 1, &d), "%s", d.msg);
  for (int i = 0; i < g.n_nodes; i++) ck_assert_int_ne(g.nodes[i]->op, IR_OP_FUSED);
  ck_assert_msg(pass_run_pipeline(&g, &o, NULL, NULL, 0, &d), "%s", d.msg);
  ck_assert_int_eq(ir_graph_find(&g, "y")->op, IR_OP_FUSED);
  ck_assert_msg(ir_graph_find(&g, "a") == NULL, "an absorbed node keeps its name in the graph");
  ir_graph_free(&g);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("fuse");
  TCase *tc = tcase_create("rules");
  tcase_add_test(tc, test_elementwise_chain_with_broadcast_and_dropout_becomes_one_loop);
  tcase_add_test(tc, test_loop_fusion_keeps_producers_needed_elsewhere);
  tcase_add_test(tc, test_matmul_bias_gelu_residual_becomes_one_gemm);
  tcase_add_test(tc, test_gemm_fusion_records_its_epilogue);
  tcase_add_test(tc, test_scale_goes_to_the_gemm_and_mask_add_to_the_softmax);
  tcase_add_test(tc, test_residual_add_and_dropout_fuse_into_layernorm);
  tcase_add_test(tc, test_row_reductions_fold_their_prologue);
  tcase_add_test(tc, test_softmax_takes_its_dropout_as_epilogue);
  tcase_add_test(tc, test_cross_entropy_backward_fuses_softmax_with_its_epilogue);
  tcase_add_test(tc, test_backward_graph_fuses_and_keeps_its_gradients);
  suite_add_tcase(s, tc);
  TCase *ir = tcase_create("ir");
  tcase_add_test(ir, test_fused_node_prints_its_body);
  tcase_add_test(ir, test_verifier_rejects_a_body_whose_param_does_not_match_its_input);
  tcase_add_test(ir, test_a_fused_node_without_body_is_refused);
  tcase_add_test(ir, test_fuse_can_be_disabled_in_the_pipeline);
  suite_add_tcase(s, ir);
  return s;
}

int main(void) { return check_run(suite()); }
