// Graph rewriting shared by the passes (see ir.h): applying a replacement map to every use
// of a node (inputs, losses, gradients; outputs keep their names), and removing the nodes
// nothing reads any more.
#include <stdlib.h>
#include <string.h>

#include "ir/ops_impl.h"

IrNode *ir_rewrite_resolve(IrNode *const *repl, int n_repl, IrNode *x) {
  while (x->id < n_repl && repl[x->id] && repl[x->id] != x) x = repl[x->id];
  return x;
}

void ir_rewrite_inputs(IrNode *const *repl, int n_repl, IrNode *n) {
  for (int k = 0; k < n->n_in; k++) n->in[k] = ir_rewrite_resolve(repl, n_repl, n->in[k]);
}

bool ir_is_root(const IrGraph *g, const IrNode *n) {
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i] == n) return true;
  for (int i = 0; i < g->n_losses; i++)
    if (g->losses[i].node == n) return true;
  for (int i = 0; i < g->n_grads; i++)
    if (g->grads[i].grad == n) return true;
  return false;
}

// Output node n keeps its name but now only forwards r: reshape(r) to its own shape (the
// JIT aliases a reshape's buffer, so this costs no copy).
static void forward_output(IrGraph *g, IrNode *n, IrNode *r) {
  n->op = IR_OP_RESHAPE;
  n->n_in = 1;
  n->in = arena_alloc(&g->arena, 2 * sizeof *n->in);
  n->in[0] = r;
  memset(n->attr, 0, sizeof n->attr);
  int a = ir_attr_index(IR_OP_RESHAPE, "shape");
  n->attr[a].set = true;
  n->attr[a].n = n->shape.rank;
  for (int k = 0; k < n->shape.rank; k++) n->attr[a].ints[k] = n->shape.dim[k];
}

void ir_rewrite_apply(IrGraph *g, IrNode *const *repl, int n_repl) {
  for (int i = 0; i < g->n_nodes; i++) ir_rewrite_inputs(repl, n_repl, g->nodes[i]);
  for (int i = 0; i < g->n_losses; i++)
    g->losses[i].node = ir_rewrite_resolve(repl, n_repl, g->losses[i].node);
  for (int i = 0; i < g->n_grads; i++)
    g->grads[i].grad = ir_rewrite_resolve(repl, n_repl, g->grads[i].grad);
  for (int i = 0; i < g->n_outputs; i++) {
    IrNode *n = g->outputs[i], *r = ir_rewrite_resolve(repl, n_repl, n);
    if (r != n) forward_output(g, n, r);
  }
}

int ir_remove_dead(IrGraph *g, Diag *d) {
  int nn = g->n_nodes;
  bool *live = calloc((size_t)nn + 1, sizeof *live);
  for (int i = 0; i < g->n_outputs; i++) live[g->outputs[i]->id] = true;
  for (int i = 0; i < g->n_losses; i++) live[g->losses[i].node->id] = true;
  for (int i = 0; i < g->n_grads; i++) live[g->grads[i].grad->id] = live[g->grads[i].of->id] = true;
  for (int i = 0; i < nn; i++)
    if (g->nodes[i]->op == IR_OP_INPUT || g->nodes[i]->op == IR_OP_PARAM) live[i] = true;
  // Nodes built by a pass may sit after their users until the graph is finished again, so
  // mark to a fixed point rather than in one reverse sweep.
  for (bool changed = true; changed;) {
    changed = false;
    for (int i = nn - 1; i >= 0; i--)
      if (live[i])
        for (int k = 0; k < g->nodes[i]->n_in; k++)
          if (!live[g->nodes[i]->in[k]->id]) live[g->nodes[i]->in[k]->id] = changed = true;
  }
  int removed = 0;
  for (int i = 0; i < nn; i++) {
    live[i] = !live[i];  // now: remove
    removed += live[i];
  }
  ir_graph_remove(g, live);
  free(live);
  return ir_graph_finish(g, d) ? removed : -1;
}
