// Parameter initialisation: normal(std) values from a counter-based stream keyed by
// (seed, parameter name), so a parameter's initial value does not depend on which other
// parameters the model has; zeros; ones; copies of another parameter.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/bind.h"

static void fill_normal(double *v, size_t n, double std, uint64_t key) {
  for (size_t i = 0; i < n; i += 2) {  // Box-Muller: two normals from two uniforms
    double u1 = 1.0 - ir_rng_uniform(key, i), u2 = ir_rng_uniform(key, i + 1);
    double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    v[i] = std * r * cos(th);
    if (i + 1 < n) v[i + 1] = std * r * sin(th);
  }
}

bool fe_init_params(const IrGraph *g, uint64_t seed, IrValues *vals, Diag *d) {
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < g->n_nodes; i++) {
      const IrNode *n = g->nodes[i];
      if (n->op != IR_OP_PARAM || (pass == 0) == (n->init.kind == IR_INIT_COPY)) continue;
      size_t count = (size_t)ir_numel(&n->shape);
      free(vals->v[i]);
      vals->v[i] = malloc(count * sizeof(double) + 1);
      if (!vals->v[i])
        return diag_error(d, "%s \"%s\": out of memory for %zu values", n->where, n->name,
                          count);
      switch (n->init.kind) {
      case IR_INIT_NORMAL: fill_normal(vals->v[i], count, n->init.std, ir_rng_key(seed, n->name)); break;
      case IR_INIT_ZEROS: memset(vals->v[i], 0, count * sizeof(double)); break;
      case IR_INIT_ONES:
        for (size_t k = 0; k < count; k++) vals->v[i][k] = 1.0;
        break;
      case IR_INIT_COPY: {  // the verifier guarantees a chain of copies, without cycles,
        const IrNode *src = n;  // ending at a parameter of the same shape
        while (src->init.kind == IR_INIT_COPY) src = ir_graph_find(g, src->init.copy_of);
        memcpy(vals->v[i], vals->v[src->id], count * sizeof(double));
        break;
      }
      }
    }
  return true;
}
