// The reference evaluator: runs the graph node by node with each op's reference kernel, all
// values in double. Slow and plain on purpose: it is the oracle the JIT, the passes and the
// gradients are held to.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

void ir_values_init(IrValues *vals, const IrGraph *g) {
  vals->n = g->n_nodes;
  vals->v = calloc((size_t)g->n_nodes, sizeof *vals->v);
}

void ir_values_free(IrValues *vals) {
  for (int i = 0; i < vals->n; i++) free(vals->v[i]);
  free(vals->v);
  vals->v = NULL;
  vals->n = 0;
}

// Integer results are held in doubles; each must be a value the node's dtype can hold (a
// cast of NaN, or i32 arithmetic that overflows, is an error rather than a wrong number).
// The wording is the JIT's (codegen/compile.c cg_program_status): a cast names the value,
// integer arithmetic (mul, reduce_sum, ...) says that it overflows.
static bool check_int_values(const IrNode *n, const double *v, size_t count, Diag *d) {
  double lo = n->dtype == DT_I32 ? -0x1p31 : -0x1p63, hi = n->dtype == DT_I32 ? 0x1p31 : 0x1p63;
  for (size_t j = 0; j < count; j++) {
    if (v[j] >= lo && v[j] < hi && v[j] == trunc(v[j])) continue;
    if (n->op != IR_OP_CAST && v[j] == trunc(v[j]))
      return diag_error(d, "%s: element %zu overflows: %s cannot hold the result",
                        ir_ops[n->op].name, j, dt_name(n->dtype));
    return diag_error(d, "%s: element %zu is %g, which %s cannot hold", ir_ops[n->op].name, j,
                      v[j], dt_name(n->dtype));
  }
  return true;
}

bool ir_eval_node(const IrNode *n, double *out, const double *const *in, const IrEvalMode *mode,
                  Diag *d) {
  if (!ir_ops[n->op].ref(n, out, in, mode, d)) return false;
  if (n->dtype == DT_I32 || n->dtype == DT_I64) return check_int_values(n, out, (size_t)ir_numel(&n->shape), d);
  return true;
}

// The nodes an evaluation of `want` (NULL: all) computes or reads; NULL if out of memory.
static bool *needed(const IrGraph *g, const bool *want) {
  int nn = g->n_nodes;
  bool *need = calloc((size_t)nn + 1, sizeof *need);
  if (!need) return NULL;
  for (int i = 0; i < nn; i++) need[i] = want ? want[i] : true;
  for (int i = nn - 1; i >= 0; i--)
    if (need[i])
      for (int k = 0; k < g->nodes[i]->n_in; k++) need[g->nodes[i]->in[k]->id] = true;
  return need;
}

uint64_t ir_eval_bytes(const IrGraph *g, const IrValues *vals, const bool *want) {
  bool *need = needed(g, want);
  uint64_t bytes = 0;
  for (int i = 0; i < g->n_nodes; i++)
    if (!need || need[i] || vals->v[i]) {
      uint64_t count = (uint64_t)ir_numel(&g->nodes[i]->shape);
      bytes += (count ? count : 1) * sizeof(double);
    }
  free(need);
  return bytes;
}

bool ir_eval(const IrGraph *g, IrValues *vals, const bool *want, const IrEvalMode *mode,
             Diag *d) {
  int nn = g->n_nodes;
  bool *need = needed(g, want);
  if (!need) return diag_error(d, "out of memory");
  bool ok = true;
  for (int i = 0; i < nn && ok; i++) {
    const IrNode *n = g->nodes[i];
    if (!need[i] || vals->v[i]) continue;
    if (n->op == IR_OP_INPUT || n->op == IR_OP_PARAM) {
      ok = diag_error(d, "%s \"%s\" has no value: it is needed but was not given",
                      n->op == IR_OP_INPUT ? "input" : "parameter", n->name);
      break;
    }
    size_t count = (size_t)ir_numel(&n->shape);
    vals->v[i] = calloc(count ? count : 1, sizeof(double));
    if (!vals->v[i]) {
      ok = diag_error(d, "out of memory evaluating \"%s\" (%zu elements)", n->name, count);
      break;
    }
    const double *in[64];
    const double **inp = n->n_in <= 64 ? in : malloc((size_t)n->n_in * sizeof *inp);
    for (int k = 0; k < n->n_in; k++) inp[k] = vals->v[n->in[k]->id];
    ok = ir_eval_node(n, vals->v[i], (const double *const *)inp, mode, d);
    if (!ok) diag_prefix(d, "%s \"%s\": ", n->where, n->name);
    if (inp != in) free(inp);
  }
  free(need);
  return ok;
}
