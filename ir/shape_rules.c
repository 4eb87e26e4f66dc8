// Shape rules: for each op, the output dtype and shape from the inputs and attributes, or a
// message saying what does not fit (the caller prefixes the node's place and op name).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ir/ops_impl.h"

#define SHAPE(s) ir_shape_str((s), (char[160]){0}, 160)

static bool is_int(DType t) { return t == DT_I32 || t == DT_I64; }

// Dtype checks common to all ops: inputs must be dtypes the IR computes with, integers
// only where the op accepts them.
static bool check_dtypes(const IrNode *n, Diag *d) {
  for (int i = 0; i < n->n_in; i++) {
    DType t = n->in[i]->dtype;
    if (t != DT_F32 && t != DT_I32 && t != DT_I64)
      return diag_error(d, "input %d \"%s\" has dtype %s; the IR computes in f32, i32, i64", i,
                        n->in[i]->name, dt_name(t));
    if (is_int(t) && !(ir_ops[n->op].flags & IR_FLAG_INT_OK))
      return diag_error(d, "input %d \"%s\" is %s but this op takes floats (cast it first)", i,
                        n->in[i]->name, dt_name(t));
  }
  return true;
}

static bool norm_axis(int64_t *axis, int rank, const char *what, Diag *d) {
  int64_t a = *axis < 0 ? *axis + rank : *axis;
  if (a < 0 || a >= rank)
    return diag_error(d, "%s %lld out of range for rank %d", what, (long long)*axis, rank);
  *axis = a;
  return true;
}

static bool same_dtype(const IrNode *n, Diag *d) {
  for (int i = 1; i < n->n_in; i++)
    if (n->in[i]->dtype != n->in[0]->dtype)
      return diag_error(d, "dtypes differ: \"%s\" is %s, \"%s\" is %s (cast one of them)",
                        n->in[0]->name, dt_name(n->in[0]->dtype), n->in[i]->name,
                        dt_name(n->in[i]->dtype));
  return true;
}

bool ir_shape_source(IrNode *n, Diag *d) {
  for (int i = 0; i < n->shape.rank; i++)
    if (n->shape.dim[i] <= 0)
      return diag_error(d, "dim %d is %lld; dims must be positive", i, (long long)n->shape.dim[i]);
  return true;
}

static bool shape_from_attr(IrNode *n, const char *name, IrShape *out, Diag *d) {
  const IrAttr *a = ir_attr(n, name);
  out->rank = a->n;
  for (int i = 0; i < a->n; i++) {
    if (a->ints[i] <= 0)
      return diag_error(d, "%s[%d] is %lld; dims must be positive", name, i, (long long)a->ints[i]);
    out->dim[i] = a->ints[i];
  }
  return true;
}

bool ir_shape_full(IrNode *n, Diag *d) {  // full and iota
  if (!shape_from_attr(n, "shape", &n->shape, d)) return false;
  n->dtype = (DType)ir_attr_int(n, "dtype");
  if (n->op == IR_OP_IOTA) {
    int64_t axis = ir_attr_int(n, "axis");
    return norm_axis(&axis, n->shape.rank, "axis", d);
  }
  // An integer full holds its value truncated; one the dtype cannot hold is refused here,
  // where every backend sees it, rather than wrapping in a kernel.
  double v = ir_attr_float(n, "value"), lim = n->dtype == DT_I32 ? 0x1p31 : 0x1p63;
  if ((n->dtype == DT_I32 || n->dtype == DT_I64) && !(trunc(v) >= -lim && trunc(v) < lim))
    return diag_error(d, "value %g is outside what %s can hold", v, dt_name(n->dtype));
  return true;
}

bool ir_shape_cast(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d)) return false;
  n->dtype = (DType)ir_attr_int(n, "dtype");
  n->shape = n->in[0]->shape;
  return true;
}

bool ir_shape_broadcast(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d) || !same_dtype(n, d)) return false;
  n->dtype = n->in[0]->dtype;
  return ir_broadcast(&n->in[0]->shape, &n->in[1]->shape, &n->shape, d);
}

bool ir_shape_unary(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d)) return false;
  n->dtype = n->in[0]->dtype;
  n->shape = n->in[0]->shape;
  return true;
}

bool ir_shape_unary_float(IrNode *n, Diag *d) { return ir_shape_unary(n, d); }

bool ir_shape_affine(IrNode *n, Diag *d) {
  if (!ir_shape_unary(n, d)) return false;
  double s = ir_attr_float(n, "scale"), t = ir_attr_float(n, "shift");
  if (is_int(n->dtype) && (s != (double)(int64_t)s || t != (double)(int64_t)t))
    return diag_error(d, "scale %g and shift %g must be whole numbers for %s input", s, t,
                      dt_name(n->dtype));
  return true;
}

bool ir_shape_matmul(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d) || !same_dtype(n, d)) return false;
  const IrShape *a = &n->in[0]->shape, *b = &n->in[1]->shape;
  if (a->rank < 2 || b->rank < 2)
    return diag_error(d, "operands must have rank >= 2 (got %s and %s)", SHAPE(a), SHAPE(b));
  bool ta = ir_attr_int(n, "transpose_a"), tb = ir_attr_int(n, "transpose_b");
  int64_t m = a->dim[a->rank - (ta ? 1 : 2)], ka = a->dim[a->rank - (ta ? 2 : 1)];
  int64_t kb = b->dim[b->rank - (tb ? 1 : 2)], nn = b->dim[b->rank - (tb ? 2 : 1)];
  if (ka != kb)
    return diag_error(d, "inner dims differ (%lld vs %lld) for %s x %s%s%s", (long long)ka,
                      (long long)kb, SHAPE(a), SHAPE(b), ta ? " transpose_a" : "",
                      tb ? " transpose_b" : "");
  IrShape ba = *a, bb = *b, out;
  ba.rank -= 2;
  bb.rank -= 2;
  if (!ir_broadcast(&ba, &bb, &out, d)) return diag_prefix(d, "batch dims: ");
  out.dim[out.rank++] = m;
  out.dim[out.rank++] = nn;
  n->shape = out;
  n->dtype = n->in[0]->dtype;
  return true;
}

bool ir_shape_reshape(IrNode *n, Diag *d) {
  const IrAttr *a = ir_attr(n, "shape");
  int64_t known = 1, total = ir_numel(&n->in[0]->shape);
  int infer = -1;
  bool too_many = false;  // the known dims' product overflows int64
  IrShape s = {.rank = a->n};
  for (int i = 0; i < a->n; i++) {
    s.dim[i] = a->ints[i];
    if (a->ints[i] == -1 && infer < 0) {
      infer = i;
    } else if (a->ints[i] <= 0) {
      return diag_error(d, "shape[%d] is %lld; dims must be positive (one may be -1)", i,
                        (long long)a->ints[i]);
    } else if (a->ints[i] > INT64_MAX / known) {
      too_many = true;
    } else {
      known *= a->ints[i];
    }
  }
  if (too_many)
    return diag_error(d, "cannot reshape %s (%lld elements) to %s (too many elements)",
                      SHAPE(&n->in[0]->shape), (long long)total, SHAPE(&s));
  if (infer >= 0) {
    if (total % known)
      return diag_error(d, "cannot infer dim %d: %lld elements do not divide by %lld", infer,
                        (long long)total, (long long)known);
    s.dim[infer] = total / known;
  }
  if (ir_numel(&s) != total)
    return diag_error(d, "cannot reshape %s (%lld elements) to %s (%lld elements)",
                      SHAPE(&n->in[0]->shape), (long long)total, SHAPE(&s),
                      (long long)ir_numel(&s));
  n->shape = s;
  n->dtype = n->in[0]->dtype;
  return check_dtypes(n, d);
}

bool ir_shape_permute(IrNode *n, Diag *d) {
  const IrAttr *p = ir_attr(n, "perm");
  const IrShape *in = &n->in[0]->shape;
  if (p->n != in->rank)
    return diag_error(d, "perm has %d entries but the input %s has rank %d", p->n, SHAPE(in),
                      in->rank);
  bool seen[IR_MAX_RANK] = {0};
  for (int i = 0; i < p->n; i++) {
    if (p->ints[i] < 0 || p->ints[i] >= in->rank || seen[p->ints[i]])
      return diag_error(d, "perm is not a permutation of 0..%d", in->rank - 1);
    seen[p->ints[i]] = true;
    n->shape.dim[i] = in->dim[p->ints[i]];
  }
  n->shape.rank = in->rank;
  n->dtype = n->in[0]->dtype;
  return check_dtypes(n, d);
}

bool ir_shape_concat(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d) || !same_dtype(n, d)) return false;
  IrShape s = n->in[0]->shape;
  int64_t axis = ir_attr_int(n, "axis");
  if (!norm_axis(&axis, s.rank, "axis", d)) return false;
  for (int i = 1; i < n->n_in; i++) {
    const IrShape *t = &n->in[i]->shape;
    bool ok = t->rank == s.rank;
    for (int k = 0; ok && k < s.rank; k++) ok = k == axis || t->dim[k] == s.dim[k];
    if (!ok)
      return diag_error(d, "input %d \"%s\" %s does not match %s outside axis %lld", i,
                        n->in[i]->name, SHAPE(t), SHAPE(&n->in[0]->shape), (long long)axis);
    s.dim[axis] += t->dim[axis];
  }
  n->shape = s;
  n->dtype = n->in[0]->dtype;
  return true;
}

bool ir_shape_slice(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d)) return false;
  IrShape s = n->in[0]->shape;
  int64_t axis = ir_attr_int(n, "axis"), start = ir_attr_int(n, "start"),
          end = ir_attr_int(n, "end");
  if (!norm_axis(&axis, s.rank, "axis", d)) return false;
  if (start < 0 || end > s.dim[axis] || start >= end)
    return diag_error(d, "range [%lld, %lld) is empty or outside dim %lld of size %lld",
                      (long long)start, (long long)end, (long long)axis, (long long)s.dim[axis]);
  s.dim[axis] = end - start;
  n->shape = s;
  n->dtype = n->in[0]->dtype;
  return true;
}

bool ir_shape_gather(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d)) return false;
  const IrShape *data = &n->in[0]->shape, *idx = &n->in[1]->shape;
  if (!is_int(n->in[1]->dtype))
    return diag_error(d, "indices \"%s\" must be i32 or i64, not %s", n->in[1]->name,
                      dt_name(n->in[1]->dtype));
  int64_t axis = ir_attr_int(n, "axis"), bd = ir_attr_int(n, "batch_dims");
  if (!norm_axis(&axis, data->rank, "axis", d)) return false;
  if (bd < 0 || bd > axis || bd > idx->rank)
    return diag_error(d, "batch_dims %lld must be in [0, min(axis %lld, indices rank %d)]",
                      (long long)ir_attr_int(n, "batch_dims"), (long long)axis, idx->rank);
  for (int i = 0; i < bd; i++)
    if (data->dim[i] != idx->dim[i])
      return diag_error(d, "batch dim %d differs: data %s, indices %s", i, SHAPE(data),
                        SHAPE(idx));
  // [data dims before axis] + [index dims after the batch dims] + [data dims after axis]
  if (data->rank - 1 + idx->rank - bd > IR_MAX_RANK)
    return diag_error(d, "result rank exceeds %d", IR_MAX_RANK);
  IrShape s = {0};
  for (int i = 0; i < axis; i++) s.dim[s.rank++] = data->dim[i];
  for (int i = (int)bd; i < idx->rank; i++) s.dim[s.rank++] = idx->dim[i];
  for (int i = (int)axis + 1; i < data->rank; i++) s.dim[s.rank++] = data->dim[i];
  n->shape = s;
  n->dtype = n->in[0]->dtype;
  return true;
}

// scatter_add(updates, indices): the transpose of gather. updates has the shape gather
// would give, data.shape[:axis] + indices.shape[batch_dims:] + data.shape[axis+1:], and the
// output is data's shape, with attribute size for data.shape[axis]. axis counts in the
// output's dims.
bool ir_shape_scatter_add(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d)) return false;
  const IrShape *u = &n->in[0]->shape, *idx = &n->in[1]->shape;
  if (n->in[0]->dtype != DT_F32)
    return diag_error(d, "updates \"%s\" must be f32, not %s", n->in[0]->name,
                      dt_name(n->in[0]->dtype));
  if (!is_int(n->in[1]->dtype))
    return diag_error(d, "indices \"%s\" must be i32 or i64, not %s", n->in[1]->name,
                      dt_name(n->in[1]->dtype));
  int64_t bd = ir_attr_int(n, "batch_dims"), size = ir_attr_int(n, "size");
  if (bd < 0 || bd > idx->rank)
    return diag_error(d, "batch_dims %lld must be in [0, indices rank %d]", (long long)bd,
                      idx->rank);
  int nq = idx->rank - (int)bd;  // index dims that the output's axis replaces
  int rank = u->rank - nq + 1;
  if (rank < 1) return diag_error(d, "updates %s have fewer dims than indices %s", SHAPE(u), SHAPE(idx));
  int64_t axis = ir_attr_int(n, "axis");
  if (!norm_axis(&axis, rank, "axis", d)) return false;
  if (bd > axis)
    return diag_error(d, "batch_dims %lld must not exceed axis %lld", (long long)bd,
                      (long long)axis);
  if (size <= 0) return diag_error(d, "size %lld must be positive", (long long)size);
  for (int i = 0; i < bd; i++)
    if (u->dim[i] != idx->dim[i])
      return diag_error(d, "batch dim %d differs: updates %s, indices %s", i, SHAPE(u),
                        SHAPE(idx));
  for (int j = 0; j < nq; j++)
    if (u->dim[axis + j] != idx->dim[bd + j])
      return diag_error(d, "updates %s do not hold the index dims of %s at axis %lld", SHAPE(u),
                        SHAPE(idx), (long long)axis);
  IrShape s = {0};
  for (int i = 0; i < axis; i++) s.dim[s.rank++] = u->dim[i];
  s.dim[s.rank++] = size;
  for (int i = (int)axis + nq; i < u->rank; i++) s.dim[s.rank++] = u->dim[i];
  n->shape = s;
  n->dtype = DT_F32;
  return true;
}

bool ir_shape_reduce(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d)) return false;
  const IrShape *in = &n->in[0]->shape;
  const IrAttr *axes = ir_attr(n, "axes");
  bool keep = ir_attr_int(n, "keepdims"), red[IR_MAX_RANK] = {0};
  for (int i = 0; i < axes->n; i++) {
    int64_t a = axes->ints[i];
    if (!norm_axis(&a, in->rank, "axis", d)) return false;
    if (red[a]) return diag_error(d, "axis %lld listed twice", (long long)a);
    red[a] = true;
  }
  IrShape s = {0};
  for (int i = 0; i < in->rank; i++) {
    if (axes->n == 0 || red[i]) {
      if (keep) s.dim[s.rank++] = 1;
    } else {
      s.dim[s.rank++] = in->dim[i];
    }
  }
  n->shape = s;
  n->dtype = n->in[0]->dtype;
  return true;
}

bool ir_shape_softmax(IrNode *n, Diag *d) {
  if (!ir_shape_unary(n, d)) return false;
  int64_t axis = ir_attr_int(n, "axis");
  return norm_axis(&axis, n->shape.rank, "axis", d);
}

bool ir_shape_layernorm(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d) || !same_dtype(n, d)) return false;
  const IrShape *x = &n->in[0]->shape;
  if (x->rank < 1) return diag_error(d, "input must have rank >= 1");
  int64_t h = x->dim[x->rank - 1];
  for (int i = 1; i <= 2; i++) {
    const IrShape *p = &n->in[i]->shape;
    if (p->rank != 1 || p->dim[0] != h)
      return diag_error(d, "%s \"%s\" is %s but must be [%lld] (the last dim of %s)",
                        i == 1 ? "weight" : "bias", n->in[i]->name, SHAPE(p), (long long)h,
                        SHAPE(x));
  }
  if (ir_attr_float(n, "eps") <= 0) return diag_error(d, "eps must be positive");
  n->shape = *x;
  n->dtype = n->in[0]->dtype;
  return true;
}

bool ir_shape_dropout(IrNode *n, Diag *d) {
  if (!ir_shape_unary(n, d)) return false;
  double p = ir_attr_float(n, "p");
  if (!(p >= 0 && p < 1)) return diag_error(d, "p is %g; it must be in [0, 1)", p);
  return true;
}

// dropout_grad(dy, y): y is the dropout node whose mask applies; dy has its shape.
bool ir_shape_dropout_grad(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d) || !same_dtype(n, d)) return false;
  if (n->in[1]->op != IR_OP_DROPOUT)
    return diag_error(d, "input 1 \"%s\" must be a dropout node (its mask is reused), not %s",
                      n->in[1]->name, ir_ops[n->in[1]->op].name);
  if (!ir_shape_eq(&n->in[0]->shape, &n->in[1]->shape))
    return diag_error(d, "dy %s and the dropout node %s must have one shape",
                      SHAPE(&n->in[0]->shape), SHAPE(&n->in[1]->shape));
  n->dtype = n->in[0]->dtype;
  n->shape = n->in[0]->shape;
  return true;
}

bool ir_shape_cross_entropy(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d)) return false;
  const IrShape *lg = &n->in[0]->shape, *lb = &n->in[1]->shape;
  if (is_int(n->in[0]->dtype))
    return diag_error(d, "logits \"%s\" must be f32", n->in[0]->name);
  if (!is_int(n->in[1]->dtype))
    return diag_error(d, "labels \"%s\" must be i32 or i64, not %s", n->in[1]->name,
                      dt_name(n->in[1]->dtype));
  bool ok = lg->rank == lb->rank + 1;
  for (int i = 0; ok && i < lb->rank; i++) ok = lg->dim[i] == lb->dim[i];
  if (!ok)
    return diag_error(d, "logits %s must be labels' shape %s plus a class dim", SHAPE(lg),
                      SHAPE(lb));
  if (n->n_in == 3 && (n->in[2]->dtype != DT_F32 || n->in[2]->shape.rank != 0))
    return diag_error(d, "denominator \"%s\" must be an f32 scalar, not %s %s", n->in[2]->name,
                      dt_name(n->in[2]->dtype), SHAPE(&n->in[2]->shape));
  n->shape.rank = 0;
  n->dtype = n->in[0]->dtype;
  return true;
}

bool ir_shape_kl_div(IrNode *n, Diag *d) {
  if (!check_dtypes(n, d) || !same_dtype(n, d)) return false;
  if (!ir_shape_eq(&n->in[0]->shape, &n->in[1]->shape))
    return diag_error(d, "log_probs %s and target %s must have one shape",
                      SHAPE(&n->in[0]->shape), SHAPE(&n->in[1]->shape));
  if (n->in[0]->shape.rank < 1) return diag_error(d, "inputs must have rank >= 1");
  n->shape.rank = 0;
  n->dtype = n->in[0]->dtype;
  return true;
}
