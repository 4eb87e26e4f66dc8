// Reverse-mode automatic differentiation: from a named loss, appends the backward graph
// (ordinary IR, built by each op's gradient rule in the op table) and records the gradient
// of the loss with respect to every parameter (and, on request, every float input).
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

static bool is_float(const IrNode *n) { return n->dtype == DT_F32; }

static bool find_loss(const IrGraph *g, const char *loss, IrNode **out, Diag *d) {
  for (int i = 0; i < g->n_losses; i++)
    if (strcmp(g->losses[i].name, loss) == 0) {
      *out = g->losses[i].node;
      return true;
    }
  char list[512] = "";
  for (int i = 0; i < g->n_losses; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
             g->losses[i].name);
  return diag_error(d, "%s: no loss named \"%s\" (losses: %s)", g->file, loss,
                    g->n_losses ? list : "none");
}

static bool is_wrt(const IrNode *n, bool wrt_inputs) {
  return is_float(n) && (n->op == IR_OP_PARAM || (wrt_inputs && n->op == IR_OP_INPUT));
}

// Finds which nodes need a gradient: float nodes that depend on something differentiated
// (through float nodes) and that the loss depends on. Every such node's op must have a rule.
static bool mark_active(const IrGraph *g, const IrNode *loss, bool wrt_inputs, bool *active,
                        Diag *d) {
  int nn = g->n_nodes;
  bool *varies = calloc((size_t)nn, sizeof *varies), *reaches = calloc((size_t)nn, 1);
  for (int i = 0; i < nn; i++) {
    const IrNode *n = g->nodes[i];
    varies[i] = is_wrt(n, wrt_inputs);
    for (int k = 0; k < n->n_in && !varies[i]; k++) varies[i] = is_float(n) && varies[n->in[k]->id];
  }
  reaches[loss->id] = true;
  for (int i = loss->id; i >= 0; i--)
    if (reaches[i])
      for (int k = 0; k < g->nodes[i]->n_in; k++) reaches[g->nodes[i]->in[k]->id] = true;
  bool ok = true;
  for (int i = 0; i < nn && ok; i++) {
    const IrNode *n = g->nodes[i];
    active[i] = varies[i] && reaches[i];
    if (active[i] && !(ir_ops[n->op].flags & IR_FLAG_SOURCE) && !ir_ops[n->op].grad)
      ok = diag_error(d, "%s \"%s\": %s is not differentiable, and the loss depends on it "
                      "through a float path", n->where, n->name, ir_ops[n->op].name);
  }
  free(varies);
  free(reaches);
  return ok;
}

// grad[id] += g, adding a node when the tensor already has a gradient from another use.
static void accumulate(IrGraph *g, IrNode **grad, IrNode *x, IrNode *dx) {
  assert(ir_shape_eq(&dx->shape, &x->shape) && dx->dtype == DT_F32);
  if (!grad[x->id]) {
    grad[x->id] = dx;
    return;
  }
  IrBuilder b;
  ir_builder_init(&b, g, arena_printf(&g->arena, "grad:%s:sum", x->name), x->where);
  grad[x->id] = ir_build_binary(&b, IR_OP_ADD, grad[x->id], dx);
}

bool pass_autodiff(IrGraph *g, const char *loss_name, bool wrt_inputs, Diag *d) {
  IrNode *loss = NULL;
  if (!find_loss(g, loss_name, &loss, d)) return false;
  assert(loss->shape.rank == 0 && is_float(loss));
  int nn = g->n_nodes;  // the forward graph: nodes added below come after it
  bool *active = calloc((size_t)nn, sizeof *active);
  IrNode **grad = calloc((size_t)nn, sizeof *grad);
  bool ok = mark_active(g, loss, wrt_inputs, active, d);

  IrBuilder b;
  if (ok && active[loss->id]) {
    ir_builder_init(&b, g, arena_printf(&g->arena, "grad:%s", loss->name), loss->where);
    grad[loss->id] = ir_build_full(&b, &loss->shape, 1.0, DT_F32);  // dloss/dloss
  }
  for (int i = loss->id; ok && i >= 0; i--) {  // reverse topological order
    IrNode *n = g->nodes[i];
    if (!active[i] || !grad[i] || (ir_ops[n->op].flags & IR_FLAG_SOURCE)) continue;
    bool need[64] = {false};
    IrNode *dx[64] = {NULL};
    assert(n->n_in <= 64);
    for (int k = 0; k < n->n_in; k++) need[k] = active[n->in[k]->id];
    ir_builder_init(&b, g, arena_printf(&g->arena, "grad:%s", n->name),
                    arena_printf(&g->arena, "%s (gradient)", n->where));
    ok = ir_ops[n->op].grad(&b, n, grad[i], need, dx, d);
    for (int k = 0; ok && k < n->n_in; k++)
      if (need[k] && dx[k]) accumulate(g, grad, n->in[k], dx[k]);
  }

  // One gradient per parameter (and float input): zeros where the loss does not reach it.
  int count = 0;
  for (int i = 0; i < nn; i++) count += is_wrt(g->nodes[i], wrt_inputs);
  g->grads = arena_alloc(&g->arena, (size_t)(count + 1) * sizeof *g->grads);
  g->n_grads = 0;
  for (int i = 0; ok && i < nn; i++) {
    IrNode *n = g->nodes[i];
    if (!is_wrt(n, wrt_inputs)) continue;
    IrNode *dn = grad[i];
    bool reached = dn != NULL;
    if (!dn) {
      ir_builder_init(&b, g, arena_printf(&g->arena, "grad:%s", n->name), n->where);
      dn = ir_build_full(&b, &n->shape, 0.0, DT_F32);
    }
    g->grads[g->n_grads++] = (IrGrad){n, dn, reached};
  }
  free(active);
  free(grad);
  if (!ok) return diag_prefix(d, "autodiff of loss \"%s\": ", loss_name);
  if (!ir_graph_finish(g, d) || !ir_verify(g, d))
    return diag_prefix(d, "autodiff of loss \"%s\" (compiler bug): ", loss_name);
  return true;
}
