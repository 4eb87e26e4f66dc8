// Fused nodes (see ir.h): the shape rule that checks a body against the node's inputs, the
// reference kernel that evaluates the body with the ordinary reference kernels, and the
// body's text for printers and kernel names.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops_impl.h"

const char *ir_fused_kind_name(int kind) {
  static const char *const names[IR_FUSED_KIND_COUNT] = {"loop", "gemm", "reduction"};
  return kind >= 0 && kind < IR_FUSED_KIND_COUNT ? names[kind] : "?";
}

// Appends to buf (always terminated), like snprintf at the end of what is there.
static void put(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(char *buf, size_t size, const char *fmt, ...) {
  size_t len = strlen(buf);
  if (len + 1 >= size) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + len, size - len, fmt, ap);
  va_end(ap);
}

static bool is_param(const IrBody *b, const IrNode *x) {
  return x->id < b->n_params && b->params[x->id] == x;
}

static const IrNode *mask_of(const IrNode *n) {
  return n->op == IR_OP_DROPOUT ? n : n->op == IR_OP_DROPOUT_GRAD ? n->in[1] : NULL;
}

int ir_body_mask(const IrBody *b, int i, const IrNode **fwd) {
  *fwd = mask_of(b->nodes[i]);
  if (!*fwd) return -1;
  int k = 0;
  for (int j = 0; j < i; j++) {
    const IrNode *other = mask_of(b->nodes[j]);
    if (!other) continue;
    if (other == *fwd) return ir_body_mask(b, j, fwd);  // the first user's index
    bool first = true;  // other's first use in the body counts once
    for (int t = 0; t < j && first; t++) first = mask_of(b->nodes[t]) != other;
    k += first;
  }
  return k;
}

const char *ir_body_str(const IrNode *fused, bool full, char *buf, size_t size) {
  const IrBody *b = fused->body;
  buf[0] = 0;
  if (!b) return buf;
  for (int i = 0; i < b->n; i++) {
    const IrNode *n = b->nodes[i];
    put(buf, size, "%s%s", i ? ", " : "", ir_ops[n->op].name);
    if (!full) continue;
    put(buf, size, "(");
    for (int k = 0; k < n->n_in; k++)
      put(buf, size, "%s%s%d", k ? " " : "", is_param(b, n->in[k]) ? "p" : "#", n->in[k]->id);
    for (int a = 0; a < ir_op_n_attrs(n->op); a++) {
      const IrAttr *at = &n->attr[a];
      put(buf, size, " %s=%lld/%.9g", ir_ops[n->op].attrs[a].name, (long long)at->i, at->f);
      for (int k = 0; k < at->n; k++) put(buf, size, "%s%lld", k ? "," : ":", (long long)at->ints[k]);
    }
    const IrNode *fwd;
    int mask = ir_body_mask(b, i, &fwd);
    if (mask >= 0) put(buf, size, " mask=%d p=%a", mask, ir_attr_float(fwd, "p"));
    put(buf, size, ")");
  }
  return buf;
}

// A gemm body's epilogue names its matmul and params that exist.
static bool gemm_epilogue_ok(const IrBody *b) {
  const IrGemmEpilogue *e = b->gemm;
  if (!e || e->matmul < 0 || e->matmul >= b->n || b->nodes[e->matmul]->op != IR_OP_MATMUL) return false;
  if (e->bias >= b->n_params) return false;
  if ((e->residual == IR_GEMM_RESIDUAL_NONE) != (e->residual_param < 0)) return false;
  return e->residual_param < b->n_params;
}

// The body must be well formed (params copy the inputs; every node's inputs are params or
// earlier nodes; every node passes its own shape rule) and gives the node its dtype/shape.
bool ir_shape_fused(IrNode *n, Diag *d) {
  const IrBody *b = n->body;
  if (!b || b->n < 1)
    return diag_error(d, "fused nodes are made by the fuse pass; a model file cannot write one");
  int64_t kind = ir_attr_int(n, "kind");
  if (kind < 0 || kind >= IR_FUSED_KIND_COUNT) return diag_error(d, "unknown fusion kind %lld", (long long)kind);
  if (b->n_params != n->n_in)
    return diag_error(d, "body has %d params for %d inputs", b->n_params, n->n_in);
  for (int k = 0; k < b->n_params; k++) {
    const IrNode *p = b->params[k];
    if (p->id != k || p->n_in != 0 || p->dtype != n->in[k]->dtype || !ir_shape_eq(&p->shape, &n->in[k]->shape))
      return diag_error(d, "body param %d does not match input \"%s\"", k, n->in[k]->name);
  }
  for (int i = 0; i < b->n; i++) {
    const IrNode *x = b->nodes[i];
    if (x->id != i || x->op == IR_OP_FUSED || x->body)
      return diag_error(d, "body node %d (\"%s\") is misplaced or nested", i, x->name);
    for (int k = 0; k < x->n_in; k++) {
      const IrNode *y = x->in[k];
      bool ok = y && (is_param(b, y) || (y->id < i && b->nodes[y->id] == y));
      if (!ok) return diag_error(d, "body node \"%s\": input %d is not a param or an earlier body node", x->name, k);
    }
    IrNode tmp = *x;
    if (!ir_ops[x->op].shape(&tmp, d)) return diag_prefix(d, "body node \"%s\": %s: ", x->name, ir_ops[x->op].name);
    if (tmp.dtype != x->dtype || !ir_shape_eq(&tmp.shape, &x->shape))
      return diag_error(d, "body node \"%s\": recorded shape differs from its inputs'", x->name);
  }
  if (kind == IR_FUSED_GEMM && !gemm_epilogue_ok(b))
    return diag_error(d, "gemm body without a well-formed epilogue record");
  n->dtype = ir_body_root(b)->dtype;
  n->shape = ir_body_root(b)->shape;
  return true;
}

// Evaluates the body node by node with the ops' own reference kernels; params read the
// fused node's inputs. Every intermediate is freed; the root is written to out.
bool ir_ref_fused(const IrNode *n, double *out, const double *const *in, const IrEvalMode *mode,
                  Diag *d) {
  const IrBody *b = n->body;
  double **val = calloc((size_t)b->n, sizeof *val);
  bool ok = val != NULL;
  for (int i = 0; i < b->n && ok; i++) {
    const IrNode *x = b->nodes[i];
    size_t count = (size_t)ir_numel(&x->shape);
    val[i] = i == b->n - 1 ? out : calloc(count ? count : 1, sizeof(double));
    if (!val[i]) {
      ok = diag_error(d, "out of memory evaluating fused body node \"%s\"", x->name);
      break;
    }
    const double *xin[64];
    if (x->n_in > 64) {
      ok = diag_error(d, "body node \"%s\" has too many inputs", x->name);
      break;
    }
    for (int k = 0; k < x->n_in; k++)
      xin[k] = is_param(b, x->in[k]) ? in[x->in[k]->id] : val[x->in[k]->id];
    ok = ir_ops[x->op].ref(x, val[i], xin, mode, d);
  }
  if (val)
    for (int i = 0; i < b->n - 1; i++) free(val[i]);
  free(val);
  return ok;
}
