// Tests of fused attention: the attention op and its gradient (ir/attention.c), the pass
// that makes it (passes/fuse_attention.c) and its JIT kernels (codegen/lower_attention.c).
// Graphs are built by hand in VisualBERT's shape — head split, Q.K^T, scale, additive mask,
// softmax, dropout, .V, merge — once unfused and once through the pass, with the same
// values by name. Checked: the pass's result; the fused reference against the unfused one
// (inference and training with dropout, same seed: same numbers); the gradient against
// central finite differences and against the unfused graph's; the JIT against the
// reference for W = 16 and 8, 1 and 2 threads, odd sizes (n = 1, 7, 33, 130, Nq != Nk;
// head_dim 3, 8, 12, 20, 64, 72) and every number of query rows per forward item; the bf16
// forward against the bf16 reference, vdpbf16ps against its fallback bitwise; that the [batch, heads, n, n] buffers are gone from the JIT program; and one
// attention node per layer in the VisualBERT files.
#include <check.h>
#include <llvm-c/TargetMachine.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/compile.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/plan.h"
#include "tests/test_attrs.h"
#include "tests/test_tuning.h"
#include "tests/check_run.h"

typedef struct Dims {
  int B, H, Nq, Nk, D;
  bool mask, dropout;
} Dims;

static double uniform_of(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(*s >> 11) * 0x1.0p-53;
}

// ---------------------------------------------------------------------------------------
// The graph: q [B,Nq,H*D], k, v [B,Nk,H*D] parameters; mask [B,1,1,Nk] input; out and
// loss = sum(out * w) (w an input) as outputs.

static IrNode *node(IrGraph *g, IrOpKind op, const char *name, int n_in, IrNode *a, IrNode *b) {
  IrNode *n = ir_graph_add(g, op, name, "test");
  n->n_in = n_in;
  n->in = arena_alloc(&g->arena, 2 * sizeof *n->in);
  n->in[0] = a;
  if (n_in > 1) n->in[1] = b;
  return n;
}

static IrNode *source(IrGraph *g, IrOpKind op, const char *name, IrShape s) {
  IrNode *n = ir_graph_add(g, op, name, "test");
  n->shape = s;
  n->dtype = DT_F32;
  return n;
}

static IrNode *split(IrGraph *g, IrNode *x, const char *name, const Dims *dm, int n) {
  IrNode *r = node(g, IR_OP_RESHAPE, arena_printf(&g->arena, "%s:4d", name), 1, x, NULL);
  int64_t s[4] = {dm->B, n, dm->H, dm->D}, perm[4] = {0, 2, 1, 3};
  ir_set_ints(r, "shape", 4, s);
  IrNode *p = node(g, IR_OP_PERMUTE, name, 1, r, NULL);
  ir_set_ints(p, "perm", 4, perm);
  return p;
}

static void build(IrGraph *g, const Dims *dm) {
  ir_graph_init(g, "test");
  int HD = dm->H * dm->D;
  IrNode *q = source(g, IR_OP_PARAM, "q", shp(3, dm->B, dm->Nq, HD));
  IrNode *k = source(g, IR_OP_PARAM, "k", shp(3, dm->B, dm->Nk, HD));
  IrNode *v = source(g, IR_OP_PARAM, "v", shp(3, dm->B, dm->Nk, HD));
  IrNode *x = node(g, IR_OP_MATMUL, "scores", 2, split(g, q, "qh", dm, dm->Nq), split(g, k, "kh", dm, dm->Nk));
  ir_set_int(x, "transpose_b", 1);
  x = node(g, IR_OP_AFFINE, "scaled", 1, x, NULL);
  ir_set_float(x, "scale", 1.0 / sqrt(dm->D));
  if (dm->mask) x = node(g, IR_OP_ADD, "masked", 2, x, source(g, IR_OP_INPUT, "mask", shp(4, dm->B, 1, 1, dm->Nk)));
  x = node(g, IR_OP_SOFTMAX, "probs", 1, x, NULL);
  if (dm->dropout) {
    x = node(g, IR_OP_DROPOUT, "probs_drop", 1, x, NULL);
    ir_set_float(x, "p", 0.25);
  }
  x = node(g, IR_OP_MATMUL, "ctx", 2, x, split(g, v, "vh", dm, dm->Nk));
  IrNode *c4 = node(g, IR_OP_PERMUTE, "ctx4", 1, x, NULL);
  ir_set_ints(c4, "perm", 4, (int64_t[]){0, 2, 1, 3});
  IrNode *out = node(g, IR_OP_RESHAPE, "out", 1, c4, NULL);
  ir_set_ints(out, "shape", 3, (int64_t[]){dm->B, dm->Nq, HD});
  IrNode *w = source(g, IR_OP_INPUT, "w", shp(3, dm->B, dm->Nq, HD));
  IrNode *l = node(g, IR_OP_REDUCE_SUM, "loss", 1, node(g, IR_OP_MUL, "wy", 2, out, w), NULL);
  g->outputs = arena_alloc(&g->arena, 2 * sizeof *g->outputs);
  g->outputs[0] = out;
  g->outputs[1] = l;
  g->n_outputs = 2;
  g->losses = arena_alloc(&g->arena, sizeof *g->losses);
  g->losses[0] = (IrLoss){"loss", l};
  g->n_losses = 1;
  Diag d = {0};
  ck_assert_msg(ir_graph_finish(g, &d) && ir_verify(g, &d), "%s", d.msg);
}

// The graph through parse, fuse_attention (unless `unfused`), with `grad` autodiff, and
// with `bf16` the precision pass's bf16 (the attention node's bf16 attribute).
static void pipeline_with(IrGraph *g, const Dims *dm, bool unfused, bool grad, bool bf16) {
  build(g, dm);
  // training: keep dropout in the graph (simplify drops it for inference-only graphs), so
  // one graph runs in both modes
  PassOptions po = {.loss = grad ? "loss" : NULL, .training = true, .bf16 = bf16};
  const char *off[2] = {"fuse_attention", "fuse"};  // unfused: no fusion of any kind
  Diag d = {0};
  ck_assert_msg(pass_run_pipeline(g, &po, NULL, off, unfused ? 2 : 0, &d), "%s", d.msg);
}

static void pipeline(IrGraph *g, const Dims *dm, bool unfused, bool grad) {
  pipeline_with(g, dm, unfused, grad, false);
}

static int count_op(const IrGraph *g, IrOpKind op) {
  int c = 0;
  for (int i = 0; i < g->n_nodes; i++) c += g->nodes[i]->op == op;
  return c;
}

// Values of the sources by name (so both graphs get the same): q, k, v in [-2, 2); the mask
// 0 or -10000 (about one key in four; key 0 always kept); w in [-1, 1).
static void fill(const IrGraph *g, IrValues *vals) {
  ir_values_init(vals, g);
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_PARAM && n->op != IR_OP_INPUT) continue;
    uint64_t s = ir_rng_name_hash(n->name);
    int64_t count = ir_numel(&n->shape);
    vals->v[i] = malloc((size_t)count * sizeof(double));
    for (int64_t j = 0; j < count; j++) {
      double u = uniform_of(&s);
      if (strcmp(n->name, "mask") == 0)
        vals->v[i][j] = (j % n->shape.dim[3]) != 0 && u < 0.25 ? -10000.0 : 0.0;
      else
        vals->v[i][j] = strcmp(n->name, "w") == 0 ? 2 * u - 1 : 4 * u - 2;
    }
  }
}

static void eval_ok(const IrGraph *g, IrValues *vals, bool training) {
  IrEvalMode mode = {.training = training, .seed = 42};
  Diag d = {0};
  ck_assert_msg(ir_eval(g, vals, NULL, &mode, &d), "%s", d.msg);
}

static const double *value_of(const IrGraph *g, const IrValues *vals, const char *name) {
  IrNode *n = ir_graph_find(g, name);
  ck_assert_msg(n, "no node %s", name);
  return vals->v[n->id];
}

static const IrNode *grad_of(const IrGraph *g, const char *name) {
  for (int i = 0; i < g->n_grads; i++)
    if (strcmp(g->grads[i].of->name, name) == 0) return g->grads[i].grad;
  ck_abort_msg("no gradient of %s", name);
  return NULL;
}

// max |a - b| / max(max|b|, tiny) over count elements
static double rel_err(const double *a, const double *b, int64_t count) {
  double mb = 0, e = 0;
  for (int64_t j = 0; j < count; j++) mb = fmax(mb, fabs(b[j]));
  for (int64_t j = 0; j < count; j++) e = fmax(e, fabs(a[j] - b[j]));
  return e / fmax(mb, 1e-300);
}

// ---------------------------------------------------------------------------------------
// The pass.

START_TEST(test_pass_replaces_the_attention_chain_by_one_node) {
  Dims dm = {2, 3, 5, 5, 4, true, true};
  IrGraph g;
  pipeline(&g, &dm, false, false);
  ck_assert_int_eq(count_op(&g, IR_OP_ATTENTION), 1);
  ck_assert_int_eq(count_op(&g, IR_OP_SOFTMAX) + count_op(&g, IR_OP_MATMUL) +
                   count_op(&g, IR_OP_PERMUTE) + count_op(&g, IR_OP_DROPOUT) +
                   count_op(&g, IR_OP_AFFINE), 0);
  IrNode *a = ir_graph_find(&g, "out");
  ck_assert(a && a->op == IR_OP_ATTENTION && a->n_in == 4);
  ck_assert_str_eq(a->in[0]->name, "q");
  ck_assert_str_eq(a->in[3]->name, "mask");
  ck_assert_int_eq(ir_attr_int(a, "heads"), 3);
  ck_assert(fabs(ir_attr_float(a, "scale") - 0.5) < 1e-15);
  ck_assert(ir_attr_float(a, "p") == 0.25);
  ck_assert(ir_graph_find(&g, "scores") == NULL);
  ck_assert_uint_eq((uint64_t)ir_attr_int(a, "rng_hash"), ir_rng_name_hash("probs_drop"));
  ir_graph_free(&g);
  // disabled: unchanged
  pipeline(&g, &dm, true, false);
  ck_assert_int_eq(count_op(&g, IR_OP_ATTENTION), 0);
  ck_assert_int_eq(count_op(&g, IR_OP_SOFTMAX), 1);
  ir_graph_free(&g);
  // without mask and dropout: still fused, three inputs
  Dims plain = {1, 2, 3, 4, 8, false, false};
  pipeline(&g, &plain, false, false);
  ck_assert_int_eq(ir_graph_find(&g, "out")->n_in, 3);
  ck_assert_int_eq(count_op(&g, IR_OP_MATMUL), 0);
  ir_graph_free(&g);
}
END_TEST

START_TEST(test_pass_leaves_attention_whose_probabilities_are_used_elsewhere) {
  Dims dm = {1, 2, 3, 3, 4, true, false};
  IrGraph g;
  build(&g, &dm);
  // make "probs" an output too
  IrNode **o = arena_alloc(&g.arena, 3 * sizeof *o);
  o[0] = g.outputs[0], o[1] = g.outputs[1], o[2] = ir_graph_find(&g, "probs");
  g.outputs = o;
  g.n_outputs = 3;
  PassOptions po = {0};
  Diag d = {0};
  ck_assert_msg(pass_run_pipeline(&g, &po, NULL, NULL, 0, &d), "%s", d.msg);
  ck_assert_int_eq(count_op(&g, IR_OP_ATTENTION), 0);
  ck_assert_int_eq(count_op(&g, IR_OP_SOFTMAX), 1);
  ir_graph_free(&g);
}
END_TEST

// A mask that autodiff differentiates (here a parameter) keeps the attention unfused when
// the pipeline runs for a loss (attention has no mask gradient), and fused otherwise.
START_TEST(test_pass_leaves_a_reshape_to_rank_3_of_anything_but_a_permute) {
  // VCR's reshape of visual_embeds [batch, choices, regions, dim] to [sequences, regions,
  // dim]: the pass must look at the op before reading a permute's attribute.
  IrGraph g;
  ir_graph_init(&g, "test");
  IrNode *x = source(&g, IR_OP_INPUT, "x", shp(4, 2, 3, 4, 5));
  IrNode *r = node(&g, IR_OP_RESHAPE, "r", 1, x, NULL);
  ir_set_ints(r, "shape", 3, (int64_t[]){6, 4, 5});
  g.outputs = arena_alloc(&g.arena, sizeof *g.outputs);
  g.outputs[0] = r;
  g.n_outputs = 1;
  PassOptions po = {0};
  Diag d = {0};
  ck_assert_msg(ir_graph_finish(&g, &d) && pass_run_pipeline(&g, &po, NULL, NULL, 0, &d), "%s", d.msg);
  ck_assert_int_eq(count_op(&g, IR_OP_ATTENTION), 0);
  ck_assert_int_eq(ir_graph_find(&g, "r")->shape.rank, 3);
  ir_graph_free(&g);
}
END_TEST

START_TEST(test_pass_leaves_attention_with_a_differentiated_mask_when_training) {
  Dims dm = {1, 2, 3, 3, 4, true, true};
  for (int grad = 0; grad <= 1; grad++) {
    IrGraph g;
    build(&g, &dm);
    ir_graph_find(&g, "mask")->op = IR_OP_PARAM;
    PassOptions po = {.loss = grad ? "loss" : NULL};
    Diag d = {0};
    ck_assert_msg(pass_run_pipeline(&g, &po, NULL, NULL, 0, &d), "%s", d.msg);
    ck_assert_int_eq(count_op(&g, IR_OP_ATTENTION), grad ? 0 : 1);
    ir_graph_free(&g);
  }
}
END_TEST

// ---------------------------------------------------------------------------------------
// The reference: fused equals unfused (the same sums in the same order: to rounding).

static const Dims ref_cases[] = {
  {1, 1, 1, 1, 8, true, true},  {2, 2, 7, 7, 8, true, true},  {1, 3, 33, 33, 64, true, true},
  {2, 2, 130, 130, 8, true, true}, {2, 2, 3, 5, 4, false, false}, {1, 2, 7, 7, 8, false, true},
};

START_TEST(test_reference_fused_equals_unfused_in_inference_and_training) {
  const Dims *dm = &ref_cases[_i];
  for (int training = 0; training <= 1; training++) {
    IrGraph gf, gu;
    pipeline(&gf, dm, false, false);
    pipeline(&gu, dm, true, false);
    ck_assert_int_eq(count_op(&gf, IR_OP_ATTENTION), 1);
    IrValues vf, vu;
    fill(&gf, &vf);
    fill(&gu, &vu);
    eval_ok(&gf, &vf, training);
    eval_ok(&gu, &vu, training);
    int64_t count = ir_numel(&ir_graph_find(&gf, "out")->shape);
    double e = rel_err(value_of(&gf, &vf, "out"), value_of(&gu, &vu, "out"), count);
    ck_assert_msg(e < 1e-12, "case %d training %d: rel err %g", _i, training, e);
    ir_values_free(&vf);
    ir_values_free(&vu);
    ir_graph_free(&gf);
    ir_graph_free(&gu);
  }
}
END_TEST

// Dropout on in training really drops: the output differs from inference.
START_TEST(test_reference_dropout_changes_the_output_in_training) {
  Dims dm = {1, 2, 7, 7, 8, true, true};
  IrGraph g;
  pipeline(&g, &dm, false, false);
  IrValues a, b;
  fill(&g, &a);
  fill(&g, &b);
  eval_ok(&g, &a, false);
  eval_ok(&g, &b, true);
  ck_assert(rel_err(value_of(&g, &a, "out"), value_of(&g, &b, "out"), 7 * 16) > 1e-3);
  ir_values_free(&a);
  ir_values_free(&b);
  ir_graph_free(&g);
}
END_TEST

// ---------------------------------------------------------------------------------------
// The gradient.

static double loss_at(const IrGraph *g, IrValues *vals, bool training) {
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->op != IR_OP_PARAM && g->nodes[i]->op != IR_OP_INPUT) {
      free(vals->v[i]);
      vals->v[i] = NULL;
    }
  eval_ok(g, vals, training);
  return value_of(g, vals, "loss")[0];
}

START_TEST(test_gradient_matches_central_differences) {
  Dims dm = {2, 2, 3, 5, 4, true, true};
  IrGraph g;
  pipeline(&g, &dm, false, true);
  ck_assert_int_eq(count_op(&g, IR_OP_ATTENTION_GRAD), 1);
  ck_assert_int_eq(count_op(&g, IR_OP_SOFTMAX), 0);
  IrValues vals;
  fill(&g, &vals);
  eval_ok(&g, &vals, true);
  const char *names[3] = {"q", "k", "v"};
  double *grads[3];
  for (int t = 0; t < 3; t++) {
    const IrNode *gn = grad_of(&g, names[t]);
    int64_t count = ir_numel(&gn->shape);
    grads[t] = malloc((size_t)count * sizeof(double));
    memcpy(grads[t], vals.v[gn->id], (size_t)count * sizeof(double));
  }
  for (int t = 0; t < 3; t++) {
    IrNode *src = ir_graph_find(&g, names[t]);
    int64_t count = ir_numel(&src->shape);
    for (int64_t j = 0; j < count; j++) {
      double *x = &vals.v[src->id][j], x0 = *x, h = 1e-6;
      *x = x0 + h;
      double lp = loss_at(&g, &vals, true);
      *x = x0 - h;
      double lm = loss_at(&g, &vals, true);
      *x = x0;
      double fd = (lp - lm) / (2 * h);
      ck_assert_msg(fabs(fd - grads[t][j]) <= 1e-6 * (1 + fabs(grads[t][j])),
                    "d loss / d %s[%lld]: finite differences %.10g, gradient %.10g", names[t],
                    (long long)j, fd, grads[t][j]);
    }
    free(grads[t]);
  }
  ir_values_free(&vals);
  ir_graph_free(&g);
}
END_TEST

START_TEST(test_gradient_equals_the_unfused_graphs) {
  const Dims *dm = &ref_cases[_i];
  IrGraph gf, gu;
  pipeline(&gf, dm, false, true);
  pipeline(&gu, dm, true, true);
  IrValues vf, vu;
  fill(&gf, &vf);
  fill(&gu, &vu);
  eval_ok(&gf, &vf, true);
  eval_ok(&gu, &vu, true);
  const char *names[3] = {"q", "k", "v"};
  for (int t = 0; t < 3; t++) {
    const IrNode *a = grad_of(&gf, names[t]), *b = grad_of(&gu, names[t]);
    double e = rel_err(vf.v[a->id], vu.v[b->id], ir_numel(&a->shape));
    ck_assert_msg(e < 1e-10, "case %d: d loss / d %s: rel err %g", _i, names[t], e);
  }
  ir_values_free(&vf);
  ir_values_free(&vu);
  ir_graph_free(&gf);
  ir_graph_free(&gu);
}
END_TEST

// ---------------------------------------------------------------------------------------
// The JIT against the reference.

static void bind(const IrGraph *g, CgProgram *p, const IrValues *vals) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if ((n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) || !p->value[i]) continue;
    for (int64_t j = 0; j < ir_numel(&n->shape); j++) dt_store(DT_F32, p->value[i], (size_t)j, vals->v[i][j]);
  }
  rt_plan_prepare(&p->plan, 1);
}

static double jit_err(const IrNode *n, const CgProgram *p, const double *want) {
  int64_t count = ir_numel(&n->shape);
  double *got = malloc((size_t)count * sizeof *got);
  for (int64_t j = 0; j < count; j++) got[j] = dt_load(DT_F32, p->value[n->id], (size_t)j);
  double e = rel_err(got, want, count);
  free(got);
  return e;
}

static const Dims jit_cases[] = {
  {1, 1, 1, 1, 8, true, true},    {2, 2, 7, 7, 8, true, true},     {1, 3, 33, 33, 64, true, true},
  {2, 2, 130, 130, 8, true, true}, {1, 2, 130, 130, 64, true, false}, {2, 3, 5, 9, 12, false, true},
  {1, 1, 17, 17, 3, true, true},
  // head_dim 20 (the forward's d loop: 8, 8, then 4) and 72 (chunks 64 + 8 at W = 16),
  // Nq != Nk, neither a multiple of W
  {1, 2, 19, 23, 20, true, true}, {2, 1, 3, 40, 72, true, false},
  // Nk = 1100: the bf16 forward's superblocks of 512 keys (two whole ones, then 76 keys
  // with the tail block), the running maximum rising between them
  {1, 1, 5, 1100, 8, true, true},
};

START_TEST(test_jit_matches_the_reference_forward_and_backward) {
  const Dims *dm = &jit_cases[_i];
  for (int training = 0; training <= 1; training++) {
    IrGraph g;
    pipeline(&g, dm, false, training);
    IrValues ref;
    fill(&g, &ref);
    eval_ok(&g, &ref, training);
    static const int widths[] = {16, 8};
    for (int wi = 0; wi < 2; wi++) {
      CgOptions opt = {.vector_floats = widths[wi], .training = training, .tuning = test_tuning()};
      CgProgram p;
      Diag d = {0};
      ck_assert_msg(cg_compile(&g, NULL, &opt, &p, &d), "%s", d.msg);
      bind(&g, &p, &ref);
      *p.seed = 42;
      void *first = NULL;
      for (int threads = 1; threads <= 2; threads++) {
        rt_plan_run(&p.plan, threads);
        ck_assert(cg_program_status(&p, &d));
        const IrNode *out = ir_graph_find(&g, "out");
        double e = jit_err(out, &p, ref.v[out->id]);
        ck_assert_msg(e < 2e-5, "case %d W=%d threads=%d training=%d: out rel err %g", _i,
                      widths[wi], threads, training, e);
        for (int t = 0; training && t < 3; t++) {
          const IrNode *gn = grad_of(&g, (const char *[]){"q", "k", "v"}[t]);
          e = jit_err(gn, &p, ref.v[gn->id]);
          ck_assert_msg(e < 1e-4, "case %d W=%d threads=%d: gradient %d rel err %g", _i,
                        widths[wi], threads, t, e);
        }
        if (threads == 1) {  // the same bits with 2 threads
          first = malloc(p.bytes[out->id]);
          memcpy(first, p.value[out->id], p.bytes[out->id]);
        } else {
          ck_assert(memcmp(first, p.value[out->id], p.bytes[out->id]) == 0);
          free(first);
        }
      }
      cg_program_free(&p);
    }
    ir_values_free(&ref);
    ir_graph_free(&g);
  }
}
END_TEST

// The forward with every number of query rows per work item (RtTuning.attn_rows, i.e.
// KILN_ATTN_ROWS, 1 .. 8, the last item's rows clamped to the last row), in inference and
// with dropout: B·H·ceil(Nq / rows) work items, and the same numbers as the reference each
// time, so the blocking changes neither scores nor masks.
START_TEST(test_jit_forward_matches_the_reference_with_any_rows_per_item) {
  Dims dm = {2, 2, 13, 21, 20, true, true};
  for (int training = 0; training <= 1; training++) {
    IrGraph g;
    pipeline(&g, &dm, false, false);
    IrValues ref;
    fill(&g, &ref);
    eval_ok(&g, &ref, training);
    const IrNode *out = ir_graph_find(&g, "out");
    for (int rows = 1; rows <= 8; rows++) {
      for (int W = 8; W <= 16; W *= 2) {
        CgOptions opt = {.vector_floats = W, .training = training, .tuning = test_tuning()};
        opt.tuning.attn_rows = rows;
        CgProgram p;
        Diag d = {0};
        ck_assert_msg(cg_compile(&g, NULL, &opt, &p, &d), "%s", d.msg);
        int64_t items = 0;  // of the attention step (the other one packs K^T: B·H items)
        for (int k = 0; k < p.steps.n; k++)
          if (g.nodes[p.steps.v[k].node]->op == IR_OP_ATTENTION && !strstr(p.steps.v[k].fn, "_kt"))
            items = p.steps.v[k].work;
        ck_assert_int_eq(items, (int64_t)dm.B * dm.H * ((dm.Nq + rows - 1) / rows));
        bind(&g, &p, &ref);
        *p.seed = 42;
        rt_plan_run(&p.plan, 2);
        ck_assert(cg_program_status(&p, &d));
        double e = jit_err(out, &p, ref.v[out->id]);
        ck_assert_msg(e < 2e-5, "rows %d W=%d training=%d: out rel err %g", rows, W, training, e);
        cg_program_free(&p);
      }
    }
    ir_values_free(&ref);
    ir_graph_free(&g);
  }
}
END_TEST

// bf16 (the precision pass's attribute): Q.K^T and P.V over bf16 operands, and in the
// backward (attention_grad) S, dP, dV, dQ and dK. Per case, in inference and training
// (dropout), at W = 16 (vdpbf16ps) and 8 (the FMA fallback): the JIT is held to the bf16
// reference (ir/attention.c: the same roundings; only f32 sums against double and an
// operand on the two sides of a rounding boundary differ), its error against the f32
// graph's reference is bf16-sized (so the roundings happen), its gradients differ from the
// reference's with attention_grad's bf16 cleared (so the backward rounds too), and at W = 16
// the fallback (-avx512bf16) gives vdpbf16ps's bits, output and gradients.
static const IrNode *attention_grad_of(const IrGraph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i]->op == IR_OP_ATTENTION_GRAD) return g->nodes[i];
  return NULL;
}

// Runs g on vals; err[0] (out) and err[1..3] (the gradients of q, k, v in training) against
// ref. Returns the output's bits, and in *grad_bits attention_grad's (training).
static void *run_out(IrGraph *g, const IrValues *vals, int W, bool training, const char *features,
                     double *err, const IrValues *ref, void **grad_bits) {
  CgOptions opt = {.vector_floats = W, .training = training, .tuning = test_tuning()};
  if (features) opt.tuning.features = features;
  CgProgram p;
  Diag d = {0};
  ck_assert_msg(cg_compile(g, NULL, &opt, &p, &d), "%s", d.msg);
  bind(g, &p, vals);
  *p.seed = 42;
  rt_plan_run(&p.plan, 2);
  ck_assert(cg_program_status(&p, &d));
  const IrNode *out = ir_graph_find(g, "out");
  err[0] = jit_err(out, &p, ref->v[out->id]);
  for (int t = 0; training && t < 3; t++) {
    const IrNode *gn = grad_of(g, (const char *[]){"q", "k", "v"}[t]);
    err[1 + t] = jit_err(gn, &p, ref->v[gn->id]);
  }
  void *bits = malloc(p.bytes[out->id]);
  memcpy(bits, p.value[out->id], p.bytes[out->id]);
  const IrNode *ag = attention_grad_of(g);
  if (grad_bits && ag) {
    size_t bytes = (size_t)ir_numel(&ag->shape) * sizeof(float);
    *grad_bits = malloc(bytes);
    memcpy(*grad_bits, p.value[ag->id], bytes);
  }
  cg_program_free(&p);
  return bits;
}

START_TEST(test_jit_bf16_matches_the_bf16_reference) {
  const Dims *dm = &jit_cases[_i];
  for (int training = 0; training <= 1; training++) {
    IrGraph g, g32, gf;  // gf: g with attention_grad's bf16 cleared
    pipeline_with(&g, dm, false, training, true);
    pipeline_with(&g32, dm, false, training, false);
    pipeline_with(&gf, dm, false, training, true);
    int bf16_nodes = 0, bf16_grads = 0;
    for (int i = 0; i < g.n_nodes; i++) {
      bf16_nodes += g.nodes[i]->op == IR_OP_ATTENTION && ir_attr_int(g.nodes[i], "bf16");
      bf16_grads += g.nodes[i]->op == IR_OP_ATTENTION_GRAD && ir_attr_int(g.nodes[i], "bf16");
    }
    ck_assert_int_eq(bf16_nodes, 1);
    ck_assert_int_eq(bf16_grads, training);
    if (training) ir_set_int((IrNode *)attention_grad_of(&gf), "bf16", 0);
    IrValues ref, ref32, reff;
    fill(&g, &ref);
    fill(&g32, &ref32);
    fill(&gf, &reff);
    eval_ok(&g, &ref, training);
    eval_ok(&g32, &ref32, training);
    eval_ok(&gf, &reff, training);
    for (int W = 8; W <= 16; W *= 2) {
      double e[4] = {0}, e32[4] = {0}, ef[4] = {0};
      void *gbits = NULL, *bits = run_out(&g, &ref, W, training, NULL, e, &ref, &gbits);
      free(run_out(&g, &ref, W, training, NULL, e32, &ref32, NULL));
      if (training) free(run_out(&g, &ref, W, training, NULL, ef, &reff, NULL));
      printf("bf16 attention case %d W=%d training=%d: vs bf16 reference %.2g, vs f32 %.2g; "
             "gradients vs bf16 reference %.2g %.2g %.2g, vs f32 %.2g %.2g %.2g, vs f32 backward %.2g %.2g %.2g\n",
             _i, W, training, e[0], e32[0], e[1], e[2], e[3], e32[1], e32[2], e32[3], ef[1], ef[2], ef[3]);
      ck_assert_msg(e[0] < 2e-5, "case %d W=%d training=%d: out rel err %g", _i, W, training, e[0]);
      // (one key and dropout: P = 1 exactly and the key dropped, out = 0 in both)
      ck_assert_msg((e32[0] > 1e-4 || dm->Nk == 1) && e32[0] < 2e-2,
                    "case %d W=%d training=%d: against f32 %g", _i, W, training, e32[0]);
      for (int t = 1; training && t < 4; t++) {
        ck_assert_msg(e[t] < 1e-4, "case %d W=%d: gradient %d rel err %g", _i, W, t - 1, e[t]);
        ck_assert_msg(e32[t] < 2e-2, "case %d W=%d: gradient %d against f32 %g", _i, W, t - 1, e32[t]);
        ck_assert_msg(ef[t] > 1e-4 || dm->Nk == 1, "case %d W=%d: gradient %d not rounded: %g against the f32 "
                      "backward", _i, W, t - 1, ef[t]);
      }
      if (W == 16) {
        char *host = LLVMGetHostCPUFeatures(), features[8192];
        snprintf(features, sizeof features, "%s,-avx512bf16", host);
        LLVMDisposeMessage(host);
        void *fgbits = NULL, *fallback = run_out(&g, &ref, W, training, features, e, &ref, &fgbits);
        const IrNode *out = ir_graph_find(&g, "out"), *ag = attention_grad_of(&g);
        ck_assert_msg(memcmp(bits, fallback, (size_t)ir_numel(&out->shape) * sizeof(float)) == 0,
                      "case %d training=%d: the fallback's bits differ from vdpbf16ps's", _i, training);
        ck_assert_msg(!training || memcmp(gbits, fgbits, (size_t)ir_numel(&ag->shape) * sizeof(float)) == 0,
                      "case %d: the fallback's gradient bits differ from vdpbf16ps's", _i);
        free(fallback);
        free(fgbits);
      }
      free(bits);
      free(gbits);
    }
    ir_values_free(&ref);
    ir_values_free(&ref32);
    ir_values_free(&reff);
    ir_graph_free(&g);
    ir_graph_free(&g32);
    ir_graph_free(&gf);
  }
}
END_TEST

// The JIT's fused program keeps no [B, H, Nq, Nk] buffer; the unfused one keeps several.
START_TEST(test_jit_program_has_no_score_sized_buffers) {
  Dims dm = {2, 4, 130, 130, 16, true, true};
  size_t bytes[2] = {0, 0}, largest[2] = {0, 0};
  for (int unfused = 0; unfused <= 1; unfused++) {
    IrGraph g;
    pipeline(&g, &dm, unfused, true);
    CgOptions opt = {.vector_floats = 8, .training = true, .tuning = test_tuning()};
    CgProgram p;
    Diag d = {0};
    ck_assert_msg(cg_compile(&g, NULL, &opt, &p, &d), "%s", d.msg);
    for (int i = 0; i < g.n_nodes; i++)
      if (p.value[i] && p.prog.bufs[i].kind != RT_BUF_ALIAS) {
        bytes[unfused] += p.bytes[i];
        largest[unfused] = p.bytes[i] > largest[unfused] ? p.bytes[i] : largest[unfused];
      }
    for (int s = 0; s < p.n_scratch; s++) bytes[unfused] += p.scratch_bytes[s];
    cg_program_free(&p);
    ir_graph_free(&g);
  }
  size_t scores = (size_t)dm.B * dm.H * dm.Nq * dm.Nk * sizeof(float);
  printf("training graph B=2 H=4 n=130 D=16: JIT buffers %zu bytes fused, %zu unfused "
         "(largest %zu vs %zu; one score tensor is %zu)\n", bytes[0], bytes[1], largest[0],
         largest[1], scores);
  ck_assert_uint_lt(largest[0], scores);
  ck_assert_uint_ge(bytes[1] - bytes[0], 4 * scores);
}
END_TEST

// ---------------------------------------------------------------------------------------
// The VisualBERT files at a tiny size: one attention node per layer (the late-fusion VQA
// file has an extra layer), none of the [batch, heads, n, n] tensors left, and with --grad
// one attention_grad per layer.

static const struct {
  const char *file;
  int attention;
} models[] = {{"models/visualbert-vqa.json", 3}, {"models/visualbert-pretrain.json", 3},
              {"models/visualbert-vqa-late.json", 4}, {"models/visualbert-nlvr2.json", 3}};

// A VisualBERT file at a tiny size: 3 layers of hidden 32, 4 heads, batch 2.
static void load_tiny(const char *file, IrGraph *g) {
  static const char *sets[][2] = {
    {"layers", "3"}, {"hidden", "32"}, {"heads", "4"}, {"intermediate", "64"}, {"vocab", "50"},
    {"visual_dim", "24"}, {"text_len", "6"}, {"regions", "5"}, {"batch", "2"},
    {"max_positions", "16"}, {"num_labels", "7"}};
  int n_sets = (int)(sizeof sets / sizeof sets[0]);
  FeSet fs[16];
  for (int i = 0; i < n_sets; i++) {
    snprintf(fs[i].name, sizeof fs[i].name, "%s", sets[i][0]);
    fs[i].value = sets[i][1];
  }
  Diag d = {0};
  ck_assert_msg(fe_load_model(file, fs, n_sets, g, &d), "%s", d.msg);
}

START_TEST(test_visualbert_has_one_attention_node_per_layer) {
  for (int grad = 0; grad <= 1; grad++) {
    IrGraph g;
    Diag d = {0};
    load_tiny(models[_i].file, &g);
    PassOptions po = {.loss = grad ? "loss" : NULL};
    ck_assert_msg(pass_run_pipeline(&g, &po, NULL, NULL, 0, &d), "%s", d.msg);
    ck_assert_int_eq(count_op(&g, IR_OP_ATTENTION), models[_i].attention);
    ck_assert_int_eq(count_op(&g, IR_OP_ATTENTION_GRAD), grad ? models[_i].attention : 0);
    for (int i = 0; i < g.n_nodes; i++) {  // (other softmaxes, of the heads' losses, remain)
      const IrShape *s = &g.nodes[i]->shape;
      ck_assert_msg(!(s->rank == 4 && s->dim[1] == 4), "%s: \"%s\" is a per-head tensor",
                    models[_i].file, g.nodes[i]->name);
    }
    ir_graph_free(&g);
  }
}
END_TEST

// The VQA program at inference: rowprune leaves the last layer's attention one query row
// an example, a kernel of its own, but its K^T pack kernel is the other layers' (named by
// what it reads: one compile, not two).
START_TEST(test_pruned_attention_shares_the_pack_kernel) {
  IrGraph g;
  Diag d = {0};
  load_tiny("models/visualbert-vqa.json", &g);
  PassOptions po = {0};
  ck_assert_msg(pass_run_pipeline(&g, &po, NULL, NULL, 0, &d), "%s", d.msg);
  CgOptions opt = {.vector_floats = 16, .tuning = test_tuning()};
  CgProgram p;
  ck_assert_msg(cg_compile(&g, NULL, &opt, &p, &d), "%s", d.msg);
  const char *packs[8], *kernels[8];
  int n_packs = 0, n_kernels = 0;
  for (int i = 0; i < p.steps.n; i++) {
    const char *fn = p.steps.v[i].fn;
    bool pack = strncmp(fn, "attention_kt_", 13) == 0;
    if (!pack && strncmp(fn, "attention_", 10) != 0) continue;
    const char **seen = pack ? packs : kernels;
    int *n = pack ? &n_packs : &n_kernels, k = 0;
    while (k < *n && strcmp(seen[k], fn) != 0) k++;
    if (k == *n && *n < 8) seen[(*n)++] = fn;
  }
  ck_assert_int_eq(n_kernels, 2);  // the full layers' and the pruned one's
  ck_assert_int_eq(n_packs, 1);
  cg_program_free(&p);
  ir_graph_free(&g);
}
END_TEST

// ---------------------------------------------------------------------------------------
static Suite *suite(void) {
  Suite *s = suite_create("attention");
  TCase *tc = tcase_create("attention");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, test_pass_replaces_the_attention_chain_by_one_node);
  tcase_add_test(tc, test_pass_leaves_attention_whose_probabilities_are_used_elsewhere);
  tcase_add_test(tc, test_pass_leaves_attention_with_a_differentiated_mask_when_training);
  tcase_add_test(tc, test_pass_leaves_a_reshape_to_rank_3_of_anything_but_a_permute);
  int n_ref = (int)(sizeof ref_cases / sizeof ref_cases[0]);
  int n_jit = (int)(sizeof jit_cases / sizeof jit_cases[0]);
  tcase_add_loop_test(tc, test_reference_fused_equals_unfused_in_inference_and_training, 0, n_ref);
  tcase_add_test(tc, test_reference_dropout_changes_the_output_in_training);
  tcase_add_test(tc, test_gradient_matches_central_differences);
  tcase_add_loop_test(tc, test_gradient_equals_the_unfused_graphs, 0, n_ref);
  tcase_add_loop_test(tc, test_jit_matches_the_reference_forward_and_backward, 0, n_jit);
  tcase_add_test(tc, test_jit_forward_matches_the_reference_with_any_rows_per_item);
  tcase_add_loop_test(tc, test_jit_bf16_matches_the_bf16_reference, 0, n_jit);
  tcase_add_test(tc, test_jit_program_has_no_score_sized_buffers);
  tcase_add_test(tc, test_pruned_attention_shares_the_pack_kernel);
  tcase_add_loop_test(tc, test_visualbert_has_one_attention_node_per_layer, 0,
                      (int)(sizeof models / sizeof models[0]));
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return check_run(suite()); }
