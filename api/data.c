// Data files bound to a model's inputs (api/kiln.h): kiln train and kiln eval read one
// tensor per input with a leading example dimension, converted once into the input's dtype;
// each batch is copied into the input buffers by example index. Held by input name, so the
// same data serves another compilation of the model (eval's last, smaller batch).
#include <stdlib.h>
#include <string.h>

#include "api/bind.h"
#include "api/model_impl.h"

typedef struct DataInput {
  char *name;
  char *rows;        // (examples, ...one example...)
  size_t row_bytes;  // one example
} DataInput;

struct KilnData {
  DataInput *in;
  int n_in;
  int64_t n_examples;
};

bool kiln_data_open(KilnModel *m, const StFile *f, const char *skip_where, KilnData **out, Diag *d) {
  *out = NULL;
  if (!kiln_is_jit(m) || !m->compiled) return diag_error(d, "kiln_data_open: the model must be compiled on the JIT (API misuse)");
  const IrGraph *g = &m->g;
  KilnData *x = calloc(1, sizeof *x);
  FeExamples *ex = calloc((size_t)g->n_nodes + 1, sizeof *ex);
  int n = 0;
  int64_t batch = (int64_t)ir_graph_config(g, "batch", -1);
  bool ok = x && ex && fe_load_examples(g, f, m->p.value, &batch, skip_where, ex, &n, &x->n_examples, d);
  if (ok) x->in = calloc((size_t)n + 1, sizeof *x->in);
  ok = ok && x->in;
  for (int i = 0; ok && i < n; i++) {  // the rows change hands; the names are copied
    x->in[i] = (DataInput){.name = strdup(ex[i].node->name), .rows = ex[i].rows, .row_bytes = ex[i].row_bytes};
    ex[i].rows = NULL;
    x->n_in++;
  }
  if (x && ex) fe_examples_free(ex, n);
  free(ex);
  if (!ok) {
    if (x && x->in) kiln_data_free(x);
    else free(x);
    return d->set ? false : diag_error(d, "out of memory loading %s", f->path);
  }
  *out = x;
  return true;
}

int64_t kiln_data_examples(const KilnData *x) { return x->n_examples; }

bool kiln_data_bind(KilnModel *m, const KilnData *x, const int64_t *ex, Diag *d) {
  if (!kiln_is_jit(m) || !m->compiled) return diag_error(d, "kiln_data_bind: the model must be compiled on the JIT (API misuse)");
  for (int i = 0; i < x->n_in; i++) {
    const IrNode *n = ir_graph_find(&m->g, x->in[i].name);
    if (!n || n->op != IR_OP_INPUT || !m->p.value[n->id]) continue;
    int64_t batch = n->shape.dim[0];
    char *dst = m->p.value[n->id];
    for (int64_t b = 0; b < batch; b++) {
      if (ex[b] < 0 || ex[b] >= x->n_examples)
        return diag_error(d, "example %lld is outside the data's %lld (API misuse)", (long long)ex[b],
                          (long long)x->n_examples);
      memcpy(dst + (size_t)b * x->in[i].row_bytes, x->in[i].rows + (size_t)ex[b] * x->in[i].row_bytes,
             x->in[i].row_bytes);
    }
    m->bound[n->id] = true;
  }
  return true;
}

bool kiln_data_bind_range(KilnModel *m, const KilnData *x, int64_t first, Diag *d) {
  int64_t batch = (int64_t)ir_graph_config(&m->g, "batch", 1);
  int64_t *ex = malloc(((size_t)(batch > 0 ? batch : 1)) * sizeof *ex);
  if (!ex) return diag_error(d, "out of memory");
  for (int64_t b = 0; b < batch; b++) ex[b] = first + b;
  bool ok = kiln_data_bind(m, x, ex, d);
  free(ex);
  return ok;
}

void kiln_data_free(KilnData *x) {
  if (!x) return;
  for (int i = 0; i < x->n_in; i++) {
    free(x->in[i].name);
    free(x->in[i].rows);
  }
  free(x->in);
  free(x);
}
