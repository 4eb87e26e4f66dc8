// Tests of the optimisation passes (passes/simplify.c, cse.c, dce.c, rowprune.c, schedule.c) on small
// graphs built by hand: each rule changes the node count as it should, outputs keep their
// names, and the optimised graph computes the same numbers as the unoptimised one on the
// reference evaluator (double) and on the JIT (f32, KILN_POISON_BUFFERS=1).
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/compile.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/test_attrs.h"
#include "tests/test_tuning.h"
#include "tests/check_run.h"

// ---------------------------------------------------------------------------------------
// A graph is built twice by the same function: one copy is optimised, one is not.

typedef void (*BuildFn)(IrGraph *g, IrBuilder *b);

static IrNode *input(IrGraph *g, const char *name, IrShape s) {
  IrNode *n = ir_graph_add(g, IR_OP_INPUT, name, "test");
  n->shape = s;
  n->dtype = DT_F32;
  return n;
}

static IrNode *param(IrGraph *g, const char *name, IrShape s) {
  IrNode *n = ir_graph_add(g, IR_OP_PARAM, name, "test");
  n->shape = s;
  n->dtype = DT_F32;
  return n;
}

static void set_outputs(IrGraph *g, int count, IrNode *const *outs) {
  g->outputs = arena_alloc(&g->arena, (size_t)count * sizeof *g->outputs);
  for (int i = 0; i < count; i++) g->outputs[i] = outs[i];
  g->n_outputs = count;
}

static void make(IrGraph *g, BuildFn build) {
  ir_graph_init(g, "test");
  IrBuilder b;
  ir_builder_init(&b, g, "t", "test");
  build(g, &b);
  Diag d = {0};
  ck_assert_msg(ir_graph_finish(g, &d) && ir_verify(g, &d), "%s", d.msg);
}

static int count_op(const IrGraph *g, IrOpKind op) {
  int k = 0;
  for (int i = 0; i < g->n_nodes; i++) k += g->nodes[i]->op == op;
  return k;
}

static void run_pass(IrGraph *g, PassFn pass, const PassOptions *o) {
  Diag d = {0};
  ck_assert_msg(pass(g, o, &d), "%s", d.msg);
  ck_assert_msg(ir_verify(g, &d), "after the pass: %s", d.msg);
}

// Inputs and parameters get values from their names (same in both graphs), in [0.5, 1.5)
// so that log, sqrt and division stay finite.
static void fill_sources(const IrGraph *g, IrValues *vals) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) continue;
    uint64_t h = ir_rng_name_hash(n->name);
    int64_t count = ir_numel(&n->shape);
    vals->v[i] = malloc((size_t)(count ? count : 1) * sizeof(double));
    for (int64_t j = 0; j < count; j++) vals->v[i][j] = 0.5 + ir_rng_uniform(h, (uint64_t)j);
  }
}

static void reference(const IrGraph *g, IrValues *vals) {
  ir_values_init(vals, g);
  fill_sources(g, vals);
  IrEvalMode mode = {.training = true, .seed = 3};
  Diag d = {0};
  ck_assert_msg(ir_eval(g, vals, NULL, &mode, &d), "%s", d.msg);
}

// g compiled for its outputs and run on the JIT (one thread, seed 3), its inputs and
// parameters set from vals.
static void jit_run(const IrGraph *g, const IrValues *vals, CgProgram *p) {
  bool *want = calloc((size_t)g->n_nodes + 1, sizeof *want);
  for (int k = 0; k < g->n_outputs; k++) want[g->outputs[k]->id] = true;
  CgOptions copt = {.training = true, .tuning = test_tuning()};
  Diag d = {0};
  ck_assert_msg(cg_compile(g, want, &copt, p, &d), "%s", d.msg);
  for (int i = 0; i < g->n_nodes; i++)
    if ((g->nodes[i]->op == IR_OP_INPUT || g->nodes[i]->op == IR_OP_PARAM) && p->value[i])
      for (int64_t j = 0; j < ir_numel(&g->nodes[i]->shape); j++)
        ((float *)p->value[i])[j] = (float)vals->v[i][j];
  *p->seed = 3;
  rt_plan_prepare(&p->plan, 1);
  rt_plan_run(&p->plan, 1);
  free(want);
}

// The optimised graph's outputs against the original's: reference within 1e-12, JIT (f32)
// within 1e-5 relative; output names kept.
static void expect_same_numbers(const IrGraph *orig, const IrGraph *opt) {
  ck_assert_int_eq(orig->n_outputs, opt->n_outputs);
  IrValues a, b;
  reference(orig, &a);
  reference(opt, &b);
  CgProgram p;
  jit_run(opt, &b, &p);
  for (int k = 0; k < orig->n_outputs; k++) {
    const IrNode *x = orig->outputs[k], *y = opt->outputs[k];
    ck_assert_str_eq(x->name, y->name);
    ck_assert(ir_shape_eq(&x->shape, &y->shape));
    for (int64_t j = 0; j < ir_numel(&x->shape); j++) {
      double want_v = a.v[x->id][j], got = b.v[y->id][j], jit = ((float *)p.value[y->id])[j];
      ck_assert_msg(fabs(want_v - got) <= 1e-12 * (1 + fabs(want_v)), "%s[%lld]: %g vs %g", x->name,
                    (long long)j, want_v, got);
      ck_assert_msg(fabs(want_v - jit) <= 1e-5 * (1 + fabs(want_v)), "%s[%lld] (jit): %g vs %g",
                    x->name, (long long)j, want_v, jit);
    }
  }
  cg_program_free(&p);
  ir_values_free(&a);
  ir_values_free(&b);
}

// Builds the graph twice, runs `pass` on one copy, checks the numbers and returns the
// node counts before and after in *before, *after (the copy stays in *opt).
static void optimise(BuildFn build, PassFn pass, const PassOptions *o, IrGraph *orig, IrGraph *opt) {
  make(orig, build);
  make(opt, build);
  run_pass(opt, pass, o);
  expect_same_numbers(orig, opt);
}

static const PassOptions training = {.loss = "loss"}, inference = {.loss = NULL};

// ---------------------------------------------------------------------------------------
// DCE

static void build_dead_branch(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(2, 3, 4));
  input(g, "unused", shp(1, 2));  // inputs stay even when nothing reads them
  IrNode *dead = ir_build_unary(b, IR_OP_EXP, x);
  dead = ir_build_unary(b, IR_OP_TANH, ir_build_unary(b, IR_OP_LOG, dead));
  IrNode *out = ir_build_unary(b, IR_OP_NEG, x);
  set_outputs(g, 1, &out);
}

START_TEST(test_dce_removes_nodes_no_output_reaches) {
  IrGraph a, g;
  optimise(build_dead_branch, pass_dce, &inference, &a, &g);
  ck_assert_int_eq(g.n_nodes, a.n_nodes - 3);
  ck_assert_ptr_nonnull(ir_graph_find(&g, "unused"));
  ck_assert_int_eq(count_op(&g, IR_OP_EXP), 0);
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

// ---------------------------------------------------------------------------------------
// CSE

static void build_repeats(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(2, 3, 4)), *y = input(g, "y", shp(1, 4));
  IrNode *s1 = ir_build_binary(b, IR_OP_ADD, x, y), *s2 = ir_build_binary(b, IR_OP_ADD, x, y);
  IrNode *e1 = ir_build_unary(b, IR_OP_EXP, s1), *e2 = ir_build_unary(b, IR_OP_EXP, s2);
  IrNode *m = ir_build_binary(b, IR_OP_MUL, e1, e2);
  ir_build_affine(b, ir_build_binary(b, IR_OP_ADD, x, y), 2.0, 0.0);  // dead
  IrNode *outs[2] = {m, ir_build_binary(b, IR_OP_ADD, x, y)};  // equal to s1: keeps its name
  set_outputs(g, 2, outs);
}

START_TEST(test_cse_merges_equal_nodes_and_outputs_keep_names) {
  IrGraph a, g;
  optimise(build_repeats, pass_cse, &inference, &a, &g);
  // x+y four times -> once (the output's node forwards it by reshape), exp twice -> once;
  // the unused affine is dead.
  ck_assert_int_eq(count_op(&g, IR_OP_ADD), 1);
  ck_assert_int_eq(count_op(&g, IR_OP_EXP), 1);
  ck_assert_int_eq(count_op(&g, IR_OP_AFFINE), 0);
  ck_assert_str_eq(g.outputs[1]->name, a.outputs[1]->name);
  ck_assert_int_eq(g.outputs[1]->op, IR_OP_RESHAPE);
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

static void build_distinct_sources(IrGraph *g, IrBuilder *b) {
  IrNode *p1 = param(g, "p1", shp(1, 4)), *p2 = param(g, "p2", shp(1, 4));
  IrNode *x = input(g, "x", shp(2, 2, 4));
  IrNode *d1 = ir_build_unary(b, IR_OP_DROPOUT, x), *d2 = ir_build_unary(b, IR_OP_DROPOUT, x);
  ir_set_float(d1, "p", 0.5);
  ir_set_float(d2, "p", 0.5);
  IrNode *z1 = ir_build_full(b, &x->shape, 0.0, DT_F32), *z2 = ir_build_full(b, &x->shape, 0.0, DT_F32);
  IrNode *s = ir_build_binary(b, IR_OP_ADD, ir_build_binary(b, IR_OP_MUL, d1, p1),
                              ir_build_binary(b, IR_OP_MUL, d2, p2));
  s = ir_build_binary(b, IR_OP_SUB, ir_build_binary(b, IR_OP_ADD, s, z1), z2);
  set_outputs(g, 1, &s);
}

START_TEST(test_cse_never_merges_params_inputs_or_dropouts) {
  IrGraph a, g;
  optimise(build_distinct_sources, pass_cse, &training, &a, &g);
  ck_assert_int_eq(count_op(&g, IR_OP_PARAM), 2);
  ck_assert_int_eq(count_op(&g, IR_OP_DROPOUT), 2);
  ck_assert_int_eq(count_op(&g, IR_OP_FULL), 1);  // equal constants do merge
  ck_assert_int_eq(g.n_nodes, a.n_nodes - 1);
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

// ---------------------------------------------------------------------------------------
// simplify: one graph per family of rules.

static void build_identities(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(2, 3, 4));
  IrShape sc = shp(0);
  IrNode *one = ir_build_full(b, &sc, 1.0, DT_F32), *zero = ir_build_full(b, &sc, 0.0, DT_F32);
  IrNode *v = ir_build_binary(b, IR_OP_MUL, x, one);        // x*1
  v = ir_build_binary(b, IR_OP_ADD, zero, v);               // 0+x
  v = ir_build_binary(b, IR_OP_SUB, v, zero);               // x-0
  v = ir_build_binary(b, IR_OP_DIV, v, one);                // x/1
  v = ir_build_affine(b, v, 1.0, 0.0);                      // affine(x,1,0)
  v = ir_build_unary(b, IR_OP_NEG, ir_build_unary(b, IR_OP_NEG, v));  // neg(neg x)
  IrNode *out = ir_build_unary(b, IR_OP_EXP, v);
  set_outputs(g, 1, &out);
}

START_TEST(test_simplify_removes_identities) {
  IrGraph a, g;
  optimise(build_identities, pass_simplify, &inference, &a, &g);
  ck_assert_int_eq(g.n_nodes, 2);  // x, exp(x)
  ck_assert_ptr_eq(g.outputs[0]->in[0], ir_graph_find(&g, "x"));
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

static void build_affine_chain(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(2, 3, 4));
  IrShape sc = shp(0);
  IrNode *v = ir_build_binary(b, IR_OP_MUL, x, ir_build_full(b, &sc, 3.0, DT_F32));  // 3x
  v = ir_build_binary(b, IR_OP_ADD, v, ir_build_full(b, &sc, 0.5, DT_F32));          // + 0.5
  v = ir_build_affine(b, v, -2.0, 1.0);                                              // -6x + 0
  IrNode *w = ir_build_affine(b, ir_build_affine(b, x, -1.0, 1.0), -1.0, 1.0);      // x
  IrNode *outs[2] = {v, ir_build_unary(b, IR_OP_EXP, w)};
  set_outputs(g, 2, outs);
}

START_TEST(test_simplify_folds_scalings_into_one_affine) {
  IrGraph a, g;
  optimise(build_affine_chain, pass_simplify, &inference, &a, &g);
  ck_assert_int_eq(count_op(&g, IR_OP_AFFINE), 1);
  ck_assert_int_eq(count_op(&g, IR_OP_FULL), 0);
  ck_assert_int_eq(g.n_nodes, 3);  // x, affine(x,-6,0), exp(x)
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

static void build_shapes(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(3, 2, 3, 4));
  IrShape s1 = shp(2, 6, 4), s2 = shp(3, 3, 2, 4);
  IrNode *r = ir_build_reshape(b, ir_build_reshape(b, x, &s1), &s2);  // reshape of reshape
  IrNode *same = ir_build(b, IR_OP_RESHAPE, 1, &r);                   // reshape to its own shape
  ir_set_ints(same, "shape", 3, s2.dim);
  ir_build_done(b, same);
  int64_t p1[] = {2, 0, 1}, p2[] = {1, 2, 0}, p3[] = {0, 2, 1};
  IrNode *id = ir_build_permute(b, ir_build_permute(b, same, p1), p2);  // p1 then p2: identity
  IrNode *two = ir_build_permute(b, ir_build_permute(b, x, p1), p3);    // composed into one
  IrNode *outs[2] = {ir_build_unary(b, IR_OP_EXP, id), ir_build_unary(b, IR_OP_EXP, two)};
  set_outputs(g, 2, outs);
}

START_TEST(test_simplify_folds_reshapes_and_permutes) {
  IrGraph a, g;
  optimise(build_shapes, pass_simplify, &inference, &a, &g);
  ck_assert_int_eq(count_op(&g, IR_OP_RESHAPE), 1);
  ck_assert_int_eq(count_op(&g, IR_OP_PERMUTE), 1);
  ck_assert_int_eq(g.n_nodes, 5);  // x, reshape, exp, permute, exp
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

static void build_constants(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(2, 3, 4));
  IrShape s = shp(2, 3, 4);
  IrNode *c = ir_build_full(b, &s, 2.0, DT_F32);
  c = ir_build_unary(b, IR_OP_EXP, ir_build_affine(b, c, 0.5, 0.0));  // e
  int64_t ax = 1;
  c = ir_build_reduce(b, IR_OP_REDUCE_SUM, c, 1, &ax, true);          // 4e, [3,1]
  c = ir_build_binary(b, IR_OP_SUB, c, ir_build_full(b, &(IrShape){0}, 1.0, DT_F32));
  IrNode *out = ir_build_binary(b, IR_OP_MUL, x, c);  // broadcast: stays a mul by a constant
  set_outputs(g, 1, &out);
}

START_TEST(test_simplify_folds_constant_subgraphs) {
  IrGraph a, g;
  optimise(build_constants, pass_simplify, &inference, &a, &g);
  ck_assert_int_eq(g.n_nodes, 2);  // x, affine(x, 4e-1, 0): the constant went into the scale
  ck_assert_int_eq(count_op(&g, IR_OP_FULL), 0);
  ck_assert_double_eq_tol(ir_attr_float(g.outputs[0], "scale"), 4 * exp(1.0) - 1, 1e-12);
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

// Constant folding goes through the reference kernels: every op folds, gelu and step too.
static void build_unary_constants(IrGraph *g, IrBuilder *b) {
  IrShape s = shp(2, 2, 3);
  IrNode *outs[5] = {
    ir_build_unary(b, IR_OP_GELU, ir_build_full(b, &s, 0.7, DT_F32)),
    ir_build_unary(b, IR_OP_STEP, ir_build_full(b, &s, 0.25, DT_F32)),
    ir_build_unary(b, IR_OP_STEP, ir_build_full(b, &s, -0.25, DT_F32)),
    ir_build_matmul(b, ir_build_full(b, &s, 2.0, DT_F32), ir_build_full(b, &(IrShape){2, {3, 4}}, 0.1, DT_F32),
                    false, false),
    ir_build_softmax(b, IR_OP_SOFTMAX, ir_build_full(b, &s, 5.0, DT_F32), -1),
  };
  set_outputs(g, 5, outs);
}

START_TEST(test_simplify_folds_every_op_through_its_reference) {
  IrGraph a, g;
  optimise(build_unary_constants, pass_simplify, &inference, &a, &g);
  IrValues ref;
  reference(&a, &ref);
  for (int k = 0; k < g.n_outputs; k++) {
    const IrNode *o = g.outputs[k];
    ck_assert_msg(o->op == IR_OP_FULL, "%s (%s) was not folded", o->name, ir_ops[a.outputs[k]->op].name);
    double got = ir_attr_float(o, "value"), want = ref.v[a.outputs[k]->id][0];
    ck_assert_msg(memcmp(&got, &want, sizeof got) == 0, "%s: folded %.17g, reference %.17g",
                  ir_ops[a.outputs[k]->op].name, got, want);
  }
  ck_assert_double_eq(ir_attr_float(g.outputs[1], "value"), 1);  // step(0.25)
  ck_assert_double_eq(ir_attr_float(g.outputs[2], "value"), 0);  // step(-0.25)
  ck_assert_int_eq(count_op(&g, IR_OP_FULL), g.n_nodes);
  ir_values_free(&ref);
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

// What the reference refuses stays for run time (where the error is reported); results
// that differ per element (a concat of two values) cannot be one full and stay too.
static void build_unfoldable(IrGraph *g, IrBuilder *b) {
  IrShape s = shp(2, 2, 3);
  IrNode *big = ir_build_cast(b, ir_build_full(b, &s, 3e9, DT_F32), DT_I32);  // does not fit
  IrNode *two[2] = {ir_build_full(b, &s, 1.0, DT_F32), ir_build_full(b, &s, 2.0, DT_F32)};
  IrNode *outs[3] = {
    big,
    ir_build_binary(b, IR_OP_ADD, ir_build_full(b, &s, 2e9, DT_I32), ir_build_full(b, &s, 2e9, DT_I32)),
    ir_build_concat(b, 2, two, 0),
  };
  set_outputs(g, 3, outs);
}

START_TEST(test_simplify_leaves_what_the_reference_refuses) {
  IrGraph g;
  make(&g, build_unfoldable);
  run_pass(&g, pass_simplify, &inference);
  ck_assert_int_eq(g.outputs[0]->op, IR_OP_CAST);
  ck_assert_int_eq(g.outputs[1]->op, IR_OP_ADD);
  ck_assert_int_eq(g.outputs[2]->op, IR_OP_CONCAT);
  IrValues v;
  ir_values_init(&v, &g);
  IrEvalMode mode = {0};
  Diag d = {0};
  ck_assert(!ir_eval(&g, &v, NULL, &mode, &d));  // the reference's error, at run time
  ck_assert_msg(strstr(d.msg, "cannot hold"), "%s", d.msg);
  ir_values_free(&v);
  ir_graph_free(&g);
}
END_TEST

static void build_slice_of_concat(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(3, 2, 3, 4)), *y = input(g, "y", shp(3, 2, 5, 4));
  IrNode *cat = ir_build_concat(b, 2, (IrNode *[]){ir_build_unary(b, IR_OP_EXP, x), y}, 1);
  IrNode *outs[3] = {ir_build_slice(b, cat, 1, 3, 8),   // exactly y
                     ir_build_slice(b, cat, -2, 0, 3),  // exactly exp(x), negative axis
                     ir_build_slice(b, cat, 1, 2, 5)};  // across both: stays
  for (int k = 0; k < 3; k++) outs[k] = ir_build_unary(b, IR_OP_NEG, outs[k]);
  set_outputs(g, 3, outs);
}

START_TEST(test_simplify_slice_of_concat_takes_the_part) {
  IrGraph a, g;
  optimise(build_slice_of_concat, pass_simplify, &inference, &a, &g);
  ck_assert_int_eq(count_op(&g, IR_OP_SLICE), 1);
  ck_assert_ptr_eq(g.outputs[0]->in[0], ir_graph_find(&g, "y"));
  ck_assert_int_eq(g.outputs[1]->in[0]->op, IR_OP_EXP);
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

static void build_dropouts(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(2, 3, 4));
  IrNode *d0 = ir_build_unary(b, IR_OP_DROPOUT, x);
  ir_set_float(d0, "p", 0.0);
  IrNode *d1 = ir_build_unary(b, IR_OP_DROPOUT, ir_build_unary(b, IR_OP_EXP, d0));
  ir_set_float(d1, "p", 0.25);
  IrNode *g0 = ir_build_binary(b, IR_OP_DROPOUT_GRAD, d1, d0);  // through a p=0 mask
  IrNode *outs[2] = {d1, g0};
  set_outputs(g, 2, outs);
}

START_TEST(test_simplify_drops_inert_dropout) {
  IrGraph a, g;
  optimise(build_dropouts, pass_simplify, &training, &a, &g);  // p = 0 goes, p = 0.25 stays
  ck_assert_int_eq(count_op(&g, IR_OP_DROPOUT), 1);
  ck_assert_int_eq(count_op(&g, IR_OP_DROPOUT_GRAD), 0);
  ir_graph_free(&a);
  ir_graph_free(&g);
  make(&g, build_dropouts);  // inference: every dropout is the identity
  const char *name = g.outputs[0]->name;
  run_pass(&g, pass_simplify, &inference);
  ck_assert_int_eq(count_op(&g, IR_OP_DROPOUT), 0);
  ck_assert_str_eq(g.outputs[0]->name, name);  // the output forwards exp(x) under its name
  ck_assert_int_eq(g.outputs[0]->op, IR_OP_RESHAPE);
  ir_graph_free(&g);
}
END_TEST

// ---------------------------------------------------------------------------------------
// schedule

static void build_branches(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(2, 64, 64));  // [64, 64]
  IrNode *big[4], *sum = NULL;
  for (int k = 0; k < 4; k++) big[k] = ir_build_unary(b, IR_OP_EXP, ir_build_affine(b, x, 0.1 * (k + 1), 0.0));
  int64_t axes[] = {0, 1};
  for (int k = 0; k < 4; k++) {  // in file order, all four big tensors live at once
    IrNode *r = ir_build_reduce(b, IR_OP_REDUCE_SUM, big[k], 2, axes, false);
    sum = sum ? ir_build_binary(b, IR_OP_ADD, sum, r) : r;
  }
  set_outputs(g, 1, &sum);
}

START_TEST(test_schedule_lowers_the_peak_of_live_bytes) {
  IrGraph a, g;
  make(&a, build_branches);
  int64_t before = pass_schedule_peak(&a);
  ir_graph_free(&a);
  optimise(build_branches, pass_schedule, &inference, &a, &g);
  int64_t after = pass_schedule_peak(&g);
  ck_assert_int_eq(g.n_nodes, a.n_nodes);
  const int64_t t = 64 * 64 * 4;  // one [64,64] f32 tensor
  ck_assert_int_eq(before, 5 * t);    // at the fourth exp: three exps, an affine, the exp
  ck_assert_int_le(after, 2 * t + 64);  // one affine and its exp, then reduced at once
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

// A 2-layer VisualBERT of hidden size 32 from models/MODEL.
static void load_tiny(const char *model, IrGraph *g) {
  static char args[][64] = {"layers=2", "hidden=32", "heads=4", "intermediate=64", "vocab=50",
                            "visual_dim=24", "text_len=6", "regions=5", "batch=2", "max_positions=16"};
  FeSet sets[16];
  int n = (int)(sizeof args / sizeof args[0]);
  for (int i = 0; i < n; i++) ck_assert(fe_parse_set(args[i], &sets[i]));
  Diag d = {0};
  ck_assert_msg(fe_load_model(model, sets, n, g, &d), "%s", d.msg);
}

START_TEST(test_schedule_never_worse_than_file_order_on_visualbert_tiny) {
  const char *models[] = {"models/visualbert-vqa.json", "models/visualbert-pretrain.json"};
  for (int m = 0; m < 2; m++) {
    IrGraph g;
    Diag d = {0};
    load_tiny(models[m], &g);
    PassOptions po = {.loss = m ? "loss" : NULL};
    ck_assert_msg(pass_run_pipeline(&g, &po, "dce", NULL, 0, &d), "%s", d.msg);
    int64_t before = pass_schedule_peak(&g);
    int nn = g.n_nodes;
    run_pass(&g, pass_schedule, &po);  // verifies: every input before its user
    ck_assert_int_eq(g.n_nodes, nn);
    ck_assert_int_le(pass_schedule_peak(&g), before);
    ir_graph_free(&g);
  }
}
END_TEST

// The optimizer's global gradient norm: the squares of a matrix's gradient are summed by
// rows in the kernel that squares them (a fused row reduction, rows split over the
// threads), never written out whole and summed over every axis on one thread.
START_TEST(test_optimizer_sums_squares_by_rows_in_one_kernel) {
  IrGraph g;
  Diag d = {0};
  load_tiny("models/visualbert-pretrain.json", &g);
  const PassOptimizer adamw = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-6, .weight_decay = 0.01, .clip = 1.0};
  PassOptions po = {.loss = "loss", .training = true, .optimizer = &adamw};
  ck_assert_msg(pass_run_pipeline(&g, &po, "fuse", NULL, 0, &d), "%s", d.msg);
  int row_sums = 0;
  for (int i = 0; i < g.n_nodes; i++) {
    const IrNode *x = g.nodes[i];
    if (strncmp(x->name, "opt:clip", 8) != 0) continue;
    ck_assert_msg(x->shape.rank <= 1, "%s: %s of rank %d", x->name, ir_ops[x->op].name, x->shape.rank);
    row_sums += x->op == IR_OP_FUSED && ir_attr_int(x, "kind") == IR_FUSED_REDUCTION;
  }
  ck_assert_int_ge(row_sums, 10);  // one per parameter
  ir_graph_free(&g);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Precision: int8 marks matmuls of a parameter (linear layers) with K up to 65536, not a
// matmul of two activations; training is refused.

static void build_matmuls(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(3, 2, 3, 8)), *w = param(g, "w", shp(2, 5, 8));
  IrNode *lin = ir_build_matmul(b, x, w, false, true);  // x W^T
  IrNode *att = ir_build_matmul(b, x, x, false, true);  // x x^T
  IrNode *wide = ir_build_matmul(b, input(g, "v", shp(2, 1, 70000)), param(g, "u", shp(2, 70000, 2)),
                                 false, false);  // K past 65536
  IrNode *outs[3] = {lin, att, wide};
  set_outputs(g, 3, outs);
}

START_TEST(test_precision_int8_marks_linear_layers_only) {
  IrGraph g;
  make(&g, build_matmuls);
  run_pass(&g, pass_precision, &(PassOptions){.int8 = true});
  ck_assert_int_eq(ir_attr_int(g.outputs[0], "int8"), 1);
  ck_assert_int_eq(ir_attr_int(g.outputs[1], "int8"), 0);
  ck_assert_int_eq(ir_attr_int(g.outputs[2], "int8"), 0);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(ir_attr_int(g.outputs[i], "bf16"), 0);
  Diag d = {0};
  ck_assert(!pass_precision(&g, &(PassOptions){.int8 = true, .loss = "loss"}, &d));
  ck_assert_msg(strstr(d.msg, "--precision int8 is not yet supported for training"), "%s", d.msg);
  const PassOptimizer sgd = {.sgd = true};
  for (int k = 0; k < 3; k++) {  // a loss, training mode, an optimizer: each refused, by the one rule
    PassOptions po = {.int8 = true, .loss = k == 0 ? "loss" : NULL, .training = k == 1, .optimizer = k == 2 ? &sgd : NULL};
    d = (Diag){0};
    ck_assert(!pass_precision_supported(&po, &d));
    ck_assert_msg(strstr(d.msg, "--precision int8 is not yet supported for training"), "%s", d.msg);
    po.int8 = false;
    ck_assert(pass_precision_supported(&po, &d));
  }
  ck_assert(pass_precision_supported(&(PassOptions){.int8 = true}, &d));
  ir_graph_free(&g);
}
END_TEST

// ---------------------------------------------------------------------------------------
// Row pruning: a layer's tail (linear, GELU, residual add, LayerNorm) and an attention's
// queries computed on the rows a slice and a batched gather read, as VisualBERT's pooler
// and VQA head read the last layer.

static IrNode *rows_layer(IrGraph *g, IrBuilder *b, IrNode *x) {
  IrNode *mask = input(g, "mask", shp(4, 2, 1, 1, 6));
  IrNode *q = ir_build_binary(b, IR_OP_ADD, ir_build_matmul(b, x, param(g, "wq", shp(2, 8, 8)), false, true),
                              param(g, "bq", shp(1, 8)));
  IrNode *att = ir_build(b, IR_OP_ATTENTION, 4, (IrNode *[]){q, x, x, mask});
  ir_set_int(att, "heads", 2);
  ir_set_float(att, "scale", 0.5);
  att = ir_build_done(b, att);
  IrNode *h = ir_build_unary(b, IR_OP_GELU, ir_build_matmul(b, att, param(g, "w1", shp(2, 16, 8)), false, true));
  h = ir_build_binary(b, IR_OP_ADD, ir_build_matmul(b, h, param(g, "w2", shp(2, 8, 16)), false, true), x);
  IrNode *ln = ir_build(b, IR_OP_LAYERNORM, 3, (IrNode *[]){h, param(g, "lw", shp(1, 8)), param(g, "lb", shp(1, 8))});
  return ir_build_done(b, ln);
}

// Readers of y [2, 6, 8]: rows 1..3 (slice), and row 5 + rows_step * k of example k
// (gather, batch_dims 1; rows_step 1: row 6 of example 1 is out of range).
static int rows_step = -1;

static void rows_readers(IrGraph *g, IrBuilder *b, IrNode *y, IrNode *also) {
  IrNode *first = ir_build_slice(b, y, 1, 1, 3);
  IrShape two = shp(1, 2);
  IrNode *idx = ir_build_affine(b, ir_build_iota(b, &two, 0, DT_I64), rows_step, 5);
  IrNode *pick = ir_build(b, IR_OP_GATHER, 2, (IrNode *[]){y, idx});
  ir_set_int(pick, "axis", 1);
  ir_set_int(pick, "batch_dims", 1);
  IrNode *outs[3] = {ir_build_unary(b, IR_OP_TANH, first), ir_build_unary(b, IR_OP_NEG, ir_build_done(b, pick)),
                     also};
  set_outputs(g, also ? 3 : 2, outs);
}

static void build_rows_read(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(3, 2, 6, 8));
  rows_readers(g, b, rows_layer(g, b, x), NULL);
}

// The same, and something reads all of the layer's last matmul.
static void build_rows_all_read(IrGraph *g, IrBuilder *b) {
  IrNode *x = input(g, "x", shp(3, 2, 6, 8));
  IrNode *y = rows_layer(g, b, x);
  IrNode *all = ir_build_reduce(b, IR_OP_REDUCE_SUM, y->in[0]->in[0], 1, (int64_t[]){1}, false);
  rows_readers(g, b, y, all);
}

static int count_rows(const IrGraph *g, IrOpKind op, int64_t rows) {
  int k = 0;
  for (int i = 0; i < g->n_nodes; i++)
    k += g->nodes[i]->op == op && g->nodes[i]->shape.rank == 3 && g->nodes[i]->shape.dim[1] == rows;
  return k;
}

// want[i]: {op, rows, count}: count nodes of op with that many rows.
static void expect_rows(const IrGraph *g, int n, const int (*want)[3]) {
  for (int i = 0; i < n; i++)
    ck_assert_msg(count_rows(g, (IrOpKind)want[i][0], want[i][1]) == want[i][2], "%d %s on %d rows, not %d",
                  count_rows(g, (IrOpKind)want[i][0], want[i][1]), ir_ops[want[i][0]].name, want[i][1],
                  want[i][2]);
}

// optimise() with rowprune in inference, and the pruned graph's JIT outputs bit for bit the
// original's.
static void prune_same_bits(BuildFn build, IrGraph *orig, IrGraph *opt) {
  optimise(build, pass_rowprune, &inference, orig, opt);
  IrValues a, b;
  reference(orig, &a);
  reference(opt, &b);
  CgProgram pa, pb;
  jit_run(orig, &a, &pa);
  jit_run(opt, &b, &pb);
  for (int k = 0; k < orig->n_outputs; k++) {
    size_t bytes = (size_t)ir_numel(&orig->outputs[k]->shape) * sizeof(float);
    ck_assert_msg(memcmp(pa.value[orig->outputs[k]->id], pb.value[opt->outputs[k]->id], bytes) == 0,
                  "output %s differs", orig->outputs[k]->name);
  }
  cg_program_free(&pa);
  cg_program_free(&pb);
  ir_values_free(&a);
  ir_values_free(&b);
}

START_TEST(test_rowprune_computes_the_rows_slices_and_gathers_read) {
  IrGraph a, g;
  prune_same_bits(build_rows_read, &a, &g);
  // Rows 1, 2 and one per example: the three matmuls, the attention and the LayerNorm on 3
  // rows, none on 6; the gather checks its indices against the 6 rows of an iota.
  expect_rows(&g, 5, (const int[][3]){{IR_OP_MATMUL, 3, 3}, {IR_OP_ATTENTION, 3, 1},
                                      {IR_OP_LAYERNORM, 3, 1}, {IR_OP_MATMUL, 6, 0},
                                      {IR_OP_ATTENTION, 6, 0}});
  ck_assert_int_eq(count_op(&g, IR_OP_GATHER), 2);
  const char *gather = NULL;
  for (int i = 0; i < a.n_nodes; i++)
    if (a.nodes[i]->op == IR_OP_GATHER) gather = a.nodes[i]->name;
  IrNode *checks = ir_graph_find(&g, gather);
  ck_assert(checks->op == IR_OP_GATHER && checks->in[0]->op == IR_OP_IOTA &&
            checks->in[0]->shape.dim[1] == 6 && checks->in[1]->op == IR_OP_AFFINE);
  ir_graph_free(&a);
  ir_graph_free(&g);
  // Training: gradients need every row.
  make(&g, build_rows_read);
  int nn = g.n_nodes;
  run_pass(&g, pass_rowprune, &(PassOptions){.training = true});
  ck_assert_int_eq(g.n_nodes, nn);
  ck_assert_int_eq(count_rows(&g, IR_OP_MATMUL, 3), 0);
  ir_graph_free(&g);
}
END_TEST

// An index out of range: the same message from the same node, on the reference and the JIT.
START_TEST(test_rowprune_keeps_the_gathers_message) {
  rows_step = 1;
  IrGraph a, g;
  make(&a, build_rows_read);
  make(&g, build_rows_read);
  run_pass(&g, pass_rowprune, &inference);
  ck_assert_int_eq(count_rows(&g, IR_OP_LAYERNORM, 3), 1);
  Diag ref[2] = {0}, jit[2] = {0};  // [0]: unpruned, [1]: pruned
  for (int k = 0; k < 2; k++) {
    const IrGraph *x = k ? &g : &a;
    IrValues v;
    ir_values_init(&v, x);
    fill_sources(x, &v);
    ck_assert(!ir_eval(x, &v, NULL, &(IrEvalMode){0}, &ref[k]));
    CgProgram p;
    jit_run(x, &v, &p);
    ck_assert(!cg_program_status(&p, &jit[k]));
    cg_program_free(&p);
    ir_values_free(&v);
  }
  ck_assert_msg(strstr(ref[0].msg, "gather: index 6 out of range [0, 6) at element 1"), "%s", ref[0].msg);
  ck_assert_str_eq(ref[1].msg, ref[0].msg);
  ck_assert_msg(strstr(jit[0].msg, "index 6 out of range [0, 6) at element 1"), "%s", jit[0].msg);
  ck_assert_str_eq(jit[1].msg, jit[0].msg);
  rows_step = -1;
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

START_TEST(test_rowprune_stops_where_all_rows_are_read) {
  IrGraph a, g;
  prune_same_bits(build_rows_all_read, &a, &g);
  // The residual add's matmul is read whole: only the add and the LayerNorm after it take
  // 3 rows (the matmul's and x's rows taken once each); the attention keeps its 6 queries.
  expect_rows(&g, 5, (const int[][3]){{IR_OP_MATMUL, 6, 3}, {IR_OP_ATTENTION, 6, 1},
                                      {IR_OP_ADD, 3, 1}, {IR_OP_LAYERNORM, 3, 1},
                                      {IR_OP_CONCAT, 3, 2}});
  ir_graph_free(&a);
  ir_graph_free(&g);
}
END_TEST

int main(void) {
  Suite *s = suite_create("passes");
  TCase *tc = tcase_create("passes");
  tcase_add_test(tc, test_dce_removes_nodes_no_output_reaches);
  tcase_add_test(tc, test_cse_merges_equal_nodes_and_outputs_keep_names);
  tcase_add_test(tc, test_cse_never_merges_params_inputs_or_dropouts);
  tcase_add_test(tc, test_simplify_removes_identities);
  tcase_add_test(tc, test_simplify_folds_scalings_into_one_affine);
  tcase_add_test(tc, test_simplify_folds_reshapes_and_permutes);
  tcase_add_test(tc, test_simplify_folds_constant_subgraphs);
  tcase_add_test(tc, test_simplify_folds_every_op_through_its_reference);
  tcase_add_test(tc, test_simplify_leaves_what_the_reference_refuses);
  tcase_add_test(tc, test_simplify_drops_inert_dropout);
  tcase_add_test(tc, test_simplify_slice_of_concat_takes_the_part);
  tcase_add_test(tc, test_schedule_lowers_the_peak_of_live_bytes);
  tcase_add_test(tc, test_schedule_never_worse_than_file_order_on_visualbert_tiny);
  tcase_add_test(tc, test_optimizer_sums_squares_by_rows_in_one_kernel);
  tcase_add_test(tc, test_precision_int8_marks_linear_layers_only);
  tcase_add_test(tc, test_rowprune_computes_the_rows_slices_and_gathers_read);
  tcase_add_test(tc, test_rowprune_keeps_the_gathers_message);
  tcase_add_test(tc, test_rowprune_stops_where_all_rows_are_read);
  suite_add_tcase(s, tc);
  return check_run(s);
}
