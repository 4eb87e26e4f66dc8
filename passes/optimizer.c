// The optimiser as graph ops: after autodiff, appends one training step's parameter
// update (AdamW or SGD with momentum, global gradient-norm clipping) to the graph, so the
// forward, backward and update compile into one JIT program and a step is one plan run.
// The step's learning rate and Adam's bias corrections are scalar inputs the trainer sets
// before each run; the optimiser state is inputs (named as in checkpoints) and outputs.
// Parameters the loss does not reach (a VQA model's pooler) keep their values and state,
// as torch.optim skips parameters whose .grad is None (else weight decay would shrink them).
#include <assert.h>
#include <string.h>

#include "passes/passes.h"

static const char *const where = PASS_OPT_WHERE;

bool pass_optimizer_decays(const char *param) {
  size_t n = strlen(param);
  return !(n >= 5 && !strcmp(param + n - 5, ".bias")) && !strstr(param, "LayerNorm");
}

const char *pass_optimizer_state_prefix(const PassOptimizer *o, int which) {
  return o->sgd ? "sgd.m." : which == 0 ? "adam.m." : "adam.v.";
}

// A new f32 input of shape s named `name`, which must not exist yet.
static IrNode *new_input(IrGraph *g, const char *name, const IrShape *s, Diag *d) {
  if (ir_graph_find(g, name))
    return diag_error(d, "%s: the model already has a tensor named \"%s\", which the optimiser "
                      "needs for its own state", g->file, name), NULL;
  IrNode *n = ir_graph_add(g, IR_OP_INPUT, name, where);
  n->dtype = DT_F32;
  n->shape = *s;
  return n;
}

static IrNode *scalar(IrBuilder *b, double v) { return ir_build_full(b, &(IrShape){0}, v, DT_F32); }
static IrNode *bin(IrBuilder *b, IrOpKind op, IrNode *x, IrNode *y) { return ir_build_binary(b, op, x, y); }

static void add_output(IrGraph *g, IrNode *n, int *cap) {
  if (g->n_outputs == *cap) {
    int nc = *cap * 2 + 8;
    IrNode **v = arena_alloc(&g->arena, (size_t)nc * sizeof *v);
    if (g->n_outputs) memcpy(v, g->outputs, (size_t)g->n_outputs * sizeof *v);
    g->outputs = v;
    *cap = nc;
  }
  g->outputs[g->n_outputs++] = n;
}

bool pass_optimizer(IrGraph *g, const PassOptimizer *o, Diag *d) {
  if (!g->n_grads) return diag_error(d, "%s: no gradients to apply (autodiff did not run)", g->file);
  IrShape one = {0};
  int first_param = -1, n_params = 0;
  for (int i = 0; i < g->n_grads; i++)
    if (g->grads[i].of->op == IR_OP_PARAM) {
      const IrNode *p = g->grads[i].of;
      if (p->dtype != DT_F32 || g->grads[i].grad->dtype != DT_F32)
        return diag_error(d, "%s: parameter \"%s\" is %s; kiln train supports f32 parameters only",
                          p->where, p->name, dt_name(p->dtype));
      if (first_param < 0) first_param = i;
      n_params++;
    }
  if (!n_params) return diag_error(d, "%s: the model has no parameters to train", g->file);
  IrNode *lr = new_input(g, PASS_OPT_LR, &one, d);
  IrNode *c1 = o->sgd ? NULL : new_input(g, PASS_OPT_C1, &one, d);
  IrNode *c2 = o->sgd ? NULL : new_input(g, PASS_OPT_C2, &one, d);
  if (!lr || (!o->sgd && (!c1 || !c2))) return false;

  // The global norm of the gradients and the clipping factor:
  //   norm = sqrt(sum g^2), scale = clip / (norm + 1e-6) where norm > clip, else 1.
  IrBuilder b;
  ir_builder_init(&b, g, "opt:clip", where);
  IrNode *sq = NULL;
  for (int i = 0; i < g->n_grads; i++) {
    if (g->grads[i].of->op != IR_OP_PARAM) continue;
    IrNode *gr = g->grads[i].grad;
    int64_t all[IR_MAX_RANK];
    for (int k = 0; k < gr->shape.rank; k++) all[k] = k;
    IrNode *s = bin(&b, IR_OP_MUL, gr, gr);
    // Rows first: a row sum takes the square as its prologue (one kernel, rows split over
    // the threads); a sum over every axis was one work item, on one thread, after a pass
    // writing g^2 (VisualBERT-base pre-training: 21.5 ms of the step, one thread idle 8.3).
    int64_t last = gr->shape.rank - 1;
    if (gr->shape.rank > 1) s = ir_build_reduce(&b, IR_OP_REDUCE_SUM, s, 1, &last, false);
    if (s->shape.rank) s = ir_build_reduce(&b, IR_OP_REDUCE_SUM, s, s->shape.rank, all, false);
    sq = sq ? bin(&b, IR_OP_ADD, sq, s) : s;
  }
  IrNode *norm = ir_build_unary(&b, IR_OP_SQRT, sq);
  IrNode *over = ir_build_unary(&b, IR_OP_STEP, ir_build_affine(&b, norm, 1.0, -o->clip));
  IrNode *shrink = bin(&b, IR_OP_DIV, scalar(&b, o->clip), ir_build_affine(&b, norm, 1.0, 1e-6));
  IrNode *scale = bin(&b, IR_OP_ADD, bin(&b, IR_OP_MUL, over, shrink),
                      ir_build_affine(&b, over, -1.0, 1.0));
  // Per-step scalars: lr / c1 (Adam's step size) and lr * weight_decay.
  IrNode *step_size = o->sgd ? lr : bin(&b, IR_OP_DIV, lr, c1);
  IrNode *lr_decay = ir_build_affine(&b, lr, o->weight_decay, 0.0);

  int cap = g->n_outputs;
  int n_state = o->sgd ? 1 : 2;
  IrTrainStep *ts = arena_alloc(&g->arena, sizeof *ts);
  memset(ts, 0, sizeof *ts);
  ts->updates = arena_alloc(&g->arena, (size_t)n_params * sizeof *ts->updates);
  ts->lr = lr, ts->c1 = c1, ts->c2 = c2;
  ts->n_model_outputs = g->n_outputs;
  for (int i = 0; i < g->n_grads; i++) {
    IrNode *p = g->grads[i].of;
    if (p->op != IR_OP_PARAM) continue;
    IrUpdate *u = &ts->updates[ts->n_updates++];
    *u = (IrUpdate){.param = p, .grad = i, .new_value = -1, .new_state = {-1, -1},
                    .decay = pass_optimizer_decays(p->name)};
    ir_builder_init(&b, g, arena_printf(&g->arena, "opt:%s", p->name), where);
    IrNode *state[2] = {NULL, NULL};
    for (int w = 0; w < n_state; w++) {
      const char *pre = pass_optimizer_state_prefix(o, w);
      state[w] = u->state[w] = new_input(g, arena_printf(&g->arena, "%s%s", pre, p->name), &p->shape, d);
      if (!state[w]) return false;
    }
    IrNode *gs = bin(&b, IR_OP_MUL, g->grads[i].grad, scale);  // clipped gradient
    IrNode *m2, *v2 = NULL, *np;
    if (!g->grads[i].reached) {  // as torch skips parameters without a gradient: no decay either
      np = p, m2 = state[0], v2 = state[1];
    } else if (o->sgd) {  // m' = momentum m + g; p' = p - lr m'
      m2 = bin(&b, IR_OP_ADD, ir_build_affine(&b, state[0], o->momentum, 0.0), gs);
      np = bin(&b, IR_OP_SUB, p, bin(&b, IR_OP_MUL, m2, lr));
    } else {  // AdamW with decoupled weight decay (torch.optim.AdamW's order)
      m2 = bin(&b, IR_OP_ADD, ir_build_affine(&b, state[0], o->beta1, 0.0),
               ir_build_affine(&b, gs, 1.0 - o->beta1, 0.0));
      v2 = bin(&b, IR_OP_ADD, ir_build_affine(&b, state[1], o->beta2, 0.0),
               ir_build_affine(&b, bin(&b, IR_OP_MUL, gs, gs), 1.0 - o->beta2, 0.0));
      IrNode *denom = ir_build_affine(&b, ir_build_unary(&b, IR_OP_SQRT, bin(&b, IR_OP_DIV, v2, c2)),
                                      1.0, o->eps);
      IrNode *upd = bin(&b, IR_OP_MUL, bin(&b, IR_OP_DIV, m2, denom), step_size);
      IrNode *base = pass_optimizer_decays(p->name)
                         ? bin(&b, IR_OP_SUB, p, bin(&b, IR_OP_MUL, p, lr_decay))
                         : p;
      np = bin(&b, IR_OP_SUB, base, upd);
    }
    u->new_value = g->n_outputs;
    add_output(g, np, &cap);
    u->new_state[0] = g->n_outputs;
    add_output(g, m2, &cap);
    if (v2) u->new_state[1] = g->n_outputs, add_output(g, v2, &cap);
  }
  ts->norm = g->n_outputs;
  add_output(g, norm, &cap);
  g->train = ts;
  if (!ir_graph_finish(g, d) || !ir_verify(g, d)) return diag_prefix(d, "optimizer (compiler bug): ");
  return true;
}
