// Binding tensor files to a graph (see bind.h): weights, inputs, outputs.
#include <stdlib.h>
#include <string.h>

#include "api/bind.h"
#include "runtime/program.h"

// Checks t against node n and converts it into n's dtype at dst (refusing lossy
// conversions): the runtime's binding check (runtime/program.h), the AOT runner's too.
static bool convert_into(const IrNode *n, const StFile *f, const StTensor *t, void *dst, Diag *d) {
  RtTensor want = {.name = n->name, .dtype = n->dtype, .rank = n->shape.rank};
  for (int i = 0; i < n->shape.rank; i++) want.shape[i] = n->shape.dim[i];
  return rt_tensor_convert(&want, f, t, dst, d);
}

// The reference evaluator's form: doubles.
static bool load_tensor(const IrNode *n, const StFile *f, const StTensor *t, double **out, Diag *d) {
  const char *file = f->path;
  size_t count = (size_t)ir_numel(&n->shape);
  void *tmp = malloc(count * dt_size(n->dtype) + 1);
  double *v = malloc(count * sizeof *v + 1);
  if (!tmp || !v) {
    free(tmp);
    free(v);
    return diag_error(d, "%s: out of memory loading \"%s\"", file, t->name);
  }
  if (!convert_into(n, f, t, tmp, d)) {
    free(tmp);
    free(v);
    return false;
  }
  for (size_t i = 0; i < count; i++) v[i] = dt_load(n->dtype, tmp, i);
  free(tmp);
  free(*out);
  *out = v;
  return true;
}

bool fe_bind_native(const IrGraph *g, const StFile *f, IrOpKind kind, void *const *value,
                    bool *given, FILE *log, Diag *d) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != kind || !value[i]) continue;
    const StTensor *t = st_find(f, n->name);
    if (!t) {
      if (kind == IR_OP_INPUT) continue;
      return diag_error(d, "%s: parameter \"%s\" is missing (declared at %s)", f->path, n->name,
                        n->where);
    }
    if (!convert_into(n, f, t, value[i], d)) return false;
    if (given) given[i] = true;
  }
  for (int k = 0; k < f->n && log; k++) {
    const IrNode *n = ir_graph_find(g, f->tensors[k].name);
    if (!n || n->op != kind)
      fprintf(log, "%s: tensor \"%s\" is not %s of the model (ignored)\n", f->path,
              f->tensors[k].name, kind == IR_OP_PARAM ? "a parameter" : "an input");
  }
  return true;
}

// Lists up to three names and the rest as a count: "a, b, c and 4 more".
static void list_names(FILE *out, const char *const *names, int n) {
  for (int k = 0; k < n && k < 3; k++) fprintf(out, "%s%s", k ? ", " : "", names[k]);
  if (n > 3) fprintf(out, " and %d more", n - 3);
}

bool fe_bind_partial(const IrGraph *g, const StFile *f, void *const *value, uint64_t seed, FILE *log,
                     Diag *d) {
  const char **fresh = calloc((size_t)g->n_nodes + 1, sizeof *fresh);
  const char **copies = calloc((size_t)g->n_nodes + 1, sizeof *copies);
  const char **extra = calloc((size_t)f->n + 1, sizeof *extra);
  int n_fresh = 0, n_copies = 0, n_extra = 0, n_copied = 0;
  bool ok = fresh && copies && extra;
  if (!ok) diag_error(d, "%s: out of memory", f->path);
  for (int i = 0; ok && i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_PARAM || !value[i]) continue;
    const StTensor *t = st_find(f, n->name);
    if (t) {
      ok = convert_into(n, f, t, value[i], d);
      n_copied++;
      continue;
    }
    // init "copy(P)" (a chain of them; same shape, the verifier's guarantee) starts from
    // the file's P when it has it, as the copy in kiln init starts from P's initial value.
    const IrNode *src = n;
    while (src->init.kind == IR_INIT_COPY && !(t = st_find(f, src->init.copy_of)))
      src = ir_graph_find(g, src->init.copy_of);
    if (t) {
      ok = convert_into(n, f, t, value[i], d);
      copies[n_copies++] = n->name;
      continue;
    }
    size_t count = (size_t)ir_numel(&n->shape);
    double *tmp = malloc(count * sizeof(double) + 1);
    if (!tmp) {
      ok = diag_error(d, "%s \"%s\": out of memory for %zu values", n->where, n->name, count);
      break;
    }
    fe_init_param(g, n, seed, tmp);
    for (size_t k = 0; k < count; k++) dt_store(n->dtype, value[i], k, tmp[k]);
    free(tmp);
    fresh[n_fresh++] = n->name;
  }
  for (int k = 0; ok && k < f->n; k++) {
    const IrNode *n = ir_graph_find(g, f->tensors[k].name);
    if (!n || n->op != IR_OP_PARAM) extra[n_extra++] = f->tensors[k].name;
  }
  if (ok && log) {
    fprintf(log, "%s: %d parameters copied", f->path, n_copied);
    if (n_copies) {
      fprintf(log, "; %d not in the file, copies of the file's tensors they are initialised from: ", n_copies);
      list_names(log, copies, n_copies);
    }
    if (n_fresh) {
      fprintf(log, "; %d not in the file, initialised (seed %llu): ", n_fresh, (unsigned long long)seed);
      list_names(log, fresh, n_fresh);
    }
    fprintf(log, "\n");
    if (n_extra) {
      fprintf(log, "%s: %d tensors are not parameters of the model (ignored): ", f->path, n_extra);
      list_names(log, extra, n_extra);
      fprintf(log, "\n");
    }
  }
  free(fresh);
  free(copies);
  free(extra);
  return ok;
}

bool fe_bind_weights(const IrGraph *g, const StFile *w, IrValues *vals, FILE *log, Diag *d) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_PARAM) continue;
    const StTensor *t = st_find(w, n->name);
    if (!t)
      return diag_error(d, "%s: parameter \"%s\" is missing (declared at %s)", w->path, n->name,
                        n->where);
    if (!load_tensor(n, w, t, &vals->v[i], d)) return false;
  }
  int extra = 0;
  for (int k = 0; k < w->n; k++) {
    const IrNode *n = ir_graph_find(g, w->tensors[k].name);
    if (n && n->op == IR_OP_PARAM) continue;
    if (log) fprintf(log, "%s: extra tensor \"%s\" is not a parameter of the model (ignored)\n",
                     w->path, w->tensors[k].name);
    extra++;
  }
  (void)extra;
  return true;
}

bool fe_bind_inputs(const IrGraph *g, const StFile *in, IrValues *vals, bool *given, FILE *log,
                    Diag *d) {
  for (int k = 0; k < in->n; k++) {
    const StTensor *t = &in->tensors[k];
    const IrNode *n = ir_graph_find(g, t->name);
    if (!n || n->op != IR_OP_INPUT) {
      if (log) fprintf(log, "%s: tensor \"%s\" is not an input of the model (ignored)\n", in->path,
                       t->name);
      continue;
    }
    if (!load_tensor(n, in, t, &vals->v[n->id], d)) return false;
    given[n->id] = true;
  }
  return true;
}

void fe_available(const IrGraph *g, const bool *given, bool *avail) {
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    bool ok = n->op == IR_OP_INPUT ? given[i] : true;
    for (int k = 0; k < n->n_in && ok; k++) ok = avail[n->in[k]->id];
    avail[i] = ok;
  }
}

// Name, dtype and shape of a tensor written for node (its data is the caller's).
static StTensor tensor_of(const IrNode *node, const char *name, DType dtype) {
  StTensor t = {.name = (char *)name, .dtype = dtype, .rank = node->shape.rank};
  for (int i = 0; i < node->shape.rank; i++) t.shape[i] = node->shape.dim[i];
  t.nbytes = (size_t)ir_numel(&node->shape) * dt_size(dtype);
  return t;
}

// Writes the nodes' values (vals: doubles; else value: native buffers), f32 ones as `floats`
// (DT_F32, or DT_BF16: each f32 value rounded to nearest even), the rest in their dtypes.
static bool write_as(const char *path, const IrNode *const *nodes, const char *const *names, int n,
                     const IrValues *vals, void *const *value, DType floats, Diag *d) {
  StTensor *ts = calloc((size_t)n + 1, sizeof *ts);
  bool *own = calloc((size_t)n + 1, sizeof *own);
  bool ok = ts && own;
  if (!ok) diag_error(d, "out of memory");
  for (int k = 0; k < n && ok; k++) {
    const IrNode *node = nodes[k];
    bool narrow = node->dtype == DT_F32 && floats != DT_F32;
    ts[k] = tensor_of(node, names[k], narrow ? floats : node->dtype);
    if (!vals && !narrow) {
      ts[k].data = value[node->id];
      continue;
    }
    size_t count = (size_t)ir_numel(&node->shape);
    own[k] = true;
    if (!(ts[k].data = malloc(ts[k].nbytes + 1))) ok = diag_error(d, "out of memory writing \"%s\"", names[k]);
    for (size_t i = 0; ok && i < count; i++) {
      double v = vals ? vals->v[node->id][i] : ((const float *)value[node->id])[i];
      dt_store(ts[k].dtype, ts[k].data, i, narrow ? dt_round_bf16((float)v) : v);
    }
  }
  if (ok) ok = st_write(path, ts, n, d);
  for (int k = 0; k < n && ts && own; k++)
    if (own[k]) free(ts[k].data);
  free(ts);
  free(own);
  return ok;
}

bool fe_write_values(const char *path, const IrNode *const *nodes, const char *const *names,
                     int n, const IrValues *vals, DType floats, Diag *d) {
  return write_as(path, nodes, names, n, vals, NULL, floats, d);
}

bool fe_write_native(const char *path, const IrNode *const *nodes, const char *const *names,
                     int n, void *const *value, DType floats, Diag *d) {
  return write_as(path, nodes, names, n, NULL, value, floats, d);
}

bool fe_load_examples(const IrGraph *g, const StFile *f, void *const *value, int64_t *batch, const char *skip_where,
                      FeExamples *out, int *n_out, int64_t *n_examples, Diag *d) {
  *n_out = 0;
  *n_examples = -1;
  for (int i = 0; i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    if (n->op != IR_OP_INPUT || !value[i] || (skip_where && !strcmp(n->where, skip_where))) continue;
    char want[160], got[160];
    if (*batch < 0 && n->shape.rank > 0) *batch = n->shape.dim[0];
    if (n->shape.rank == 0 || n->shape.dim[0] != *batch)
      return diag_error(d, "%s: input \"%s\" has shape %s, not (batch, ...) with batch %lld: training and "
                        "evaluation need a leading batch dimension", g->file, n->name,
                        ir_shape_str(&n->shape, want, sizeof want), (long long)*batch);
    const StTensor *t = st_find(f, n->name);
    if (!t) return diag_error(d, "%s: input \"%s\" is missing", f->path, n->name);
    IrShape per = {.rank = n->shape.rank - 1};  // one example's shape
    for (int k = 1; k < n->shape.rank; k++) per.dim[k - 1] = n->shape.dim[k];
    bool ok = t->rank == n->shape.rank;
    for (int k = 1; ok && k < t->rank; k++) ok = t->shape[k] == n->shape.dim[k];
    if (!ok) {
      IrShape ts = {.rank = t->rank};
      for (int k = 0; k < t->rank && k < IR_MAX_RANK; k++) ts.dim[k] = t->shape[k];
      return diag_error(d, "%s: tensor \"%s\" has shape %s; expected (examples)+%s", f->path, t->name,
                        ir_shape_str(&ts, got, sizeof got), ir_shape_str(&per, want, sizeof want));
    }
    if (*n_examples >= 0 && t->shape[0] != *n_examples)
      return diag_error(d, "%s: tensor \"%s\" has %lld examples but \"%s\" has %lld", f->path, t->name,
                        (long long)t->shape[0], out[0].node->name, (long long)*n_examples);
    *n_examples = t->shape[0];
    size_t count = (size_t)st_numel(t);
    FeExamples *e = &out[(*n_out)++];
    *e = (FeExamples){.node = n, .row_bytes = (size_t)ir_numel(&per) * dt_size(n->dtype),
                      .rows = malloc(count * dt_size(n->dtype) + 1)};
    if (!e->rows) return diag_error(d, "%s: out of memory loading \"%s\"", f->path, t->name);
    if (!dt_convert(t->dtype, t->data, n->dtype, e->rows, count, t->name, d)) return diag_prefix(d, "%s: ", f->path);
  }
  if (*n_out == 0) return diag_error(d, "%s: the model reads no inputs from %s", g->file, f->path);
  return true;
}

void fe_examples_free(FeExamples *ex, int n) {
  for (int i = 0; i < n; i++) free(ex[i].rows);
}
