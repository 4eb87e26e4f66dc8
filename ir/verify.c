// The verifier: checks a whole graph's invariants. Runs after parsing and after every pass;
// any failure here after a pass is a compiler bug, after parsing a user's mistake.
#include <string.h>

#include "ir/ops_impl.h"

bool ir_verify(const IrGraph *g, Diag *d) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    const IrOpInfo *op = &ir_ops[n->op];
    if (n->id != i) return diag_error(d, "%s \"%s\": node id %d at position %d", n->where, n->name, n->id, i);
    if (ir_graph_find(g, n->name) != n)
      return diag_error(d, "%s \"%s\": name is not unique in the graph", n->where, n->name);
    if (n->n_in < op->min_in || (op->max_in >= 0 && n->n_in > op->max_in))
      return diag_error(d, "%s \"%s\": %s takes %d%s inputs, got %d", n->where, n->name, op->name,
                        op->min_in, op->max_in < 0 ? " or more" : "", n->n_in);
    for (int k = 0; k < n->n_in; k++)
      if (!n->in[k] || n->in[k]->id >= i || g->nodes[n->in[k]->id] != n->in[k])
        return diag_error(d, "%s \"%s\": input %d is not an earlier node of the graph", n->where,
                          n->name, k);
    IrNode tmp = *n;
    if (!op->shape(&tmp, d)) return diag_prefix(d, "%s \"%s\": %s: ", n->where, n->name, op->name);
    if (tmp.dtype != n->dtype || !ir_shape_eq(&tmp.shape, &n->shape)) {
      char a[160], b[160];
      return diag_error(d, "%s \"%s\": %s: recorded %s%s but the inputs give %s%s", n->where,
                        n->name, op->name, dt_name(n->dtype), ir_shape_str(&n->shape, a, sizeof a),
                        dt_name(tmp.dtype), ir_shape_str(&tmp.shape, b, sizeof b));
    }
    if (n->op == IR_OP_PARAM && n->init.kind == IR_INIT_COPY) {
      const IrNode *src = ir_graph_find(g, n->init.copy_of);
      if (!src || src->op != IR_OP_PARAM)
        return diag_error(d, "%s \"%s\": init copies \"%s\", which is not a parameter", n->where,
                          n->name, n->init.copy_of);
      if (!ir_shape_eq(&src->shape, &n->shape)) {
        char a[160], b[160];
        return diag_error(d, "%s \"%s\": init copies \"%s\" of shape %s into shape %s",
                          n->where, n->name, src->name, ir_shape_str(&src->shape, a, sizeof a),
                          ir_shape_str(&n->shape, b, sizeof b));
      }
      // A chain of copies must end at a parameter with an initialiser of its own.
      int steps = 0;
      while (src && src->op == IR_OP_PARAM && src->init.kind == IR_INIT_COPY &&
             steps++ < g->n_nodes)
        src = ir_graph_find(g, src->init.copy_of);
      if (steps >= g->n_nodes)
        return diag_error(d, "%s \"%s\": init copies form a cycle (through \"%s\")", n->where,
                          n->name, n->init.copy_of);
    }
  }
  for (int i = 0; i < g->n_outputs; i++)
    if (ir_graph_find(g, g->outputs[i]->name) != g->outputs[i])
      return diag_error(d, "%s: output %d is not a node of the graph", g->file, i);
  for (int i = 0; i < g->n_losses; i++) {
    const IrNode *n = g->losses[i].node;
    if (n->shape.rank != 0 || n->dtype != DT_F32) {
      char a[160];
      return diag_error(d, "%s: loss \"%s\" is \"%s\" of %s%s; a loss must be an f32 scalar",
                        g->file, g->losses[i].name, n->name, dt_name(n->dtype),
                        ir_shape_str(&n->shape, a, sizeof a));
    }
  }
  return true;
}
