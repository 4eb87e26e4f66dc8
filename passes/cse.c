// Common-subexpression elimination: nodes with the same op, inputs and attributes compute
// the same tensor, so all but the first are replaced by it. Never merged: inputs and
// parameters (distinct tensors the user binds) and dropout nodes (each node's mask is
// drawn from its own name, so two dropouts of the same x differ).
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

static bool mergeable(const IrNode *n) {
  return n->op != IR_OP_INPUT && n->op != IR_OP_PARAM && n->op != IR_OP_DROPOUT;
}

static uint64_t node_hash(const IrNode *n) {
  uint64_t h = 1469598103934665603ull;
#define MIX(x) h = (h ^ (uint64_t)(x)) * 1099511628211ull
  MIX(n->op);
  MIX(n->dtype);
  MIX(n->shape.rank);
  for (int i = 0; i < n->shape.rank; i++) MIX(n->shape.dim[i]);
  MIX(n->n_in);
  for (int k = 0; k < n->n_in; k++) MIX(n->in[k]->id);
  for (int a = 0; a < ir_op_n_attrs(n->op); a++) {
    uint64_t fbits;
    memcpy(&fbits, &n->attr[a].f, sizeof fbits);
    MIX(n->attr[a].i);
    MIX(fbits);
    MIX(n->attr[a].n);
    for (int i = 0; i < n->attr[a].n; i++) MIX(n->attr[a].ints[i]);
  }
#undef MIX
  return h;
}

static bool same_node(const IrNode *a, const IrNode *b) {
  if (a->op != b->op || a->dtype != b->dtype || !ir_shape_eq(&a->shape, &b->shape) || a->n_in != b->n_in)
    return false;
  for (int k = 0; k < a->n_in; k++)
    if (a->in[k] != b->in[k]) return false;
  for (int i = 0; i < ir_op_n_attrs(a->op); i++) {
    const IrAttr *x = &a->attr[i], *y = &b->attr[i];
    if (x->i != y->i || memcmp(&x->f, &y->f, sizeof x->f) != 0 || x->n != y->n) return false;
    for (int k = 0; k < x->n; k++)
      if (x->ints[k] != y->ints[k]) return false;
  }
  return true;
}

bool pass_cse(IrGraph *g, const PassOptions *o, Diag *d) {
  (void)o;
  int nn = g->n_nodes, cap = 64;
  while (cap < 2 * nn) cap *= 2;
  IrNode **repl = calloc((size_t)nn + 1, sizeof *repl);
  IrNode **table = calloc((size_t)cap, sizeof *table);
  int merged = 0;
  for (int i = 0; i < nn; i++) {  // topological order: a node's inputs are final already
    IrNode *n = g->nodes[i];
    ir_rewrite_inputs(repl, nn, n);
    if (!mergeable(n)) continue;
    uint64_t slot = node_hash(n) & (uint64_t)(cap - 1);
    for (; table[slot]; slot = (slot + 1) & (uint64_t)(cap - 1))
      if (same_node(table[slot], n)) break;
    if (table[slot]) {
      repl[i] = table[slot];
      merged++;
    } else {
      table[slot] = n;
    }
  }
  free(table);
  if (merged) ir_rewrite_apply(g, repl, nn);
  free(repl);
  return !merged || ir_remove_dead(g, d) >= 0;
}
