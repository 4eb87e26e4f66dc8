// Global loss denominators: a cross_entropy with an ignore_index (MLM: -100 = not masked)
// is a mean over the labelled positions of its batch. A step spread over N processes or K
// micro-batches averages N·K such means, which is the whole batch's mean only when every
// share has as many labels. This pass, run only for such trainers (PassOptions), gives each
// cross_entropy whose labels are a graph input its denominator as a third input, an f32
// scalar the trainer sets per step to global count / (N·K) (api/train.c), so that the
// shares' averaged loss and gradients are the whole batch's. Without it nothing changes.
#include "passes/passes.h"

bool pass_loss_denominator(IrGraph *g, const PassOptions *o, Diag *d) {
  if (!o->loss_denominators) return true;
  int n = 0, cap = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    IrNode *ce = g->nodes[i];
    if (ce->op != IR_OP_CROSS_ENTROPY || ce->n_in != 2 || ce->in[1]->op != IR_OP_INPUT) continue;
    const char *name = arena_printf(&g->arena, PASS_LOSS_DENOMINATOR_PREFIX "%s", ce->name);
    if (ir_graph_find(g, name))
      return diag_error(d, "%s: the model already has a tensor named \"%s\", which the trainer needs for "
                        "the loss's denominator", g->file, name);
    IrNode *x = ir_graph_add(g, IR_OP_INPUT, name, PASS_OPT_WHERE);
    x->dtype = DT_F32;
    x->shape = (IrShape){0};
    IrNode **in = arena_alloc(&g->arena, 3 * sizeof *in);
    in[0] = ce->in[0], in[1] = ce->in[1], in[2] = x;
    ce->in = in;
    ce->n_in = 3;
    if (n == cap) {
      IrLossDenominator *v = arena_alloc(&g->arena, (size_t)(cap = cap * 2 + 4) * sizeof *v);
      for (int k = 0; k < n; k++) v[k] = g->denominators[k];
      g->denominators = v;
    }
    g->denominators[n++] = (IrLossDenominator){x, ce->in[1], ir_attr_int(ce, "ignore_index")};
  }
  g->n_denominators = n;
  return !n || ir_graph_finish(g, d);
}
