// Parameter initialisation: normal(std) values from a counter-based stream keyed by
// (seed, parameter name), so a parameter's initial value does not depend on which other
// parameters the model has; zeros; ones; copies of another parameter.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/bind.h"

static void fill_normal(double *v, size_t n, double std, uint64_t key) {
  for (size_t i = 0; i < n; i += 2) {  // Box-Muller: two normals from two uniforms
    double u1 = 1.0 - ir_rng_uniform(key, i), u2 = ir_rng_uniform(key, i + 1);
    double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    v[i] = std * r * cos(th);
    if (i + 1 < n) v[i + 1] = std * r * sin(th);
  }
}

void fe_init_param(const IrGraph *g, const IrNode *n, uint64_t seed, double *out) {
  const IrNode *src = n;  // the verifier guarantees a chain of copies, without cycles,
  while (src->init.kind == IR_INIT_COPY) src = ir_graph_find(g, src->init.copy_of);  // same shape
  size_t count = (size_t)ir_numel(&n->shape);
  switch (src->init.kind) {
  case IR_INIT_NORMAL: fill_normal(out, count, src->init.std, ir_rng_key(seed, src->name)); break;
  case IR_INIT_ZEROS: memset(out, 0, count * sizeof(double)); break;
  case IR_INIT_ONES:
    for (size_t k = 0; k < count; k++) out[k] = 1.0;
    break;
  case IR_INIT_COPY: break;  // not reached
  }
}

bool fe_init_params(const IrGraph *g, uint64_t seed, IrValues *vals, Diag *d) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_PARAM) continue;
    size_t count = (size_t)ir_numel(&n->shape);
    free(vals->v[i]);
    vals->v[i] = malloc(count * sizeof(double) + 1);
    if (!vals->v[i])
      return diag_error(d, "%s \"%s\": out of memory for %zu values", n->where, n->name, count);
    fe_init_param(g, n, seed, vals->v[i]);
  }
  return true;
}

bool fe_init_native(const IrGraph *g, uint64_t seed, void *const *value, Diag *d) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_PARAM || !value[i]) continue;
    size_t count = (size_t)ir_numel(&n->shape);
    double *tmp = malloc(count * sizeof(double) + 1);
    if (!tmp) return diag_error(d, "%s \"%s\": out of memory for %zu values", n->where, n->name, count);
    fe_init_param(g, n, seed, tmp);
    for (size_t k = 0; k < count; k++) dt_store(n->dtype, value[i], k, tmp[k]);
    free(tmp);
  }
  return true;
}
