// The node builder: adds nodes to a finished graph one at a time, each with a fresh unique
// name ("<prefix>:<k>"), its attributes set and its shape inferred at once by its op's shape
// rule. Passes that generate IR (the gradient rules, autodiff) build through it.
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "ir/ops_impl.h"

void ir_builder_init(IrBuilder *b, IrGraph *g, const char *prefix, const char *where) {
  b->g = g;
  b->prefix = prefix;
  b->where = where;
  b->k = 0;
}

IrNode *ir_build(IrBuilder *b, IrOpKind op, int n_in, IrNode *const *in) {
  char name[512];
  do snprintf(name, sizeof name, "%s:%d", b->prefix, b->k++);
  while (ir_graph_find(b->g, name));
  IrNode *n = ir_graph_add(b->g, op, name, b->where);
  n->n_in = n_in;
  n->in = arena_alloc(&b->g->arena, (size_t)(n_in + 1) * sizeof *n->in);
  for (int k = 0; k < n_in; k++) {
    assert(in[k]);
    n->in[k] = in[k];
  }
  return n;
}

// A generated node whose shape rule fails is a bug in the generator, not a user's mistake.
IrNode *ir_build_done(IrBuilder *b, IrNode *n) {
  Diag d = {0};
  if (!ir_ops[n->op].shape(n, &d)) {
    fprintf(stderr, "ir_build_done: \"%s\" (%s): %s\n", n->name, ir_ops[n->op].name, d.msg);
    assert(0 && "a generated node failed its shape rule");
  }
  return n;
}

static IrAttr *attr_slot(IrNode *n, const char *name) {
  int i = ir_attr_index(n->op, name);
  assert(i >= 0 && "attribute not in the op's schema");
  n->attr[i].set = true;
  return &n->attr[i];
}

void ir_set_int(IrNode *n, const char *name, int64_t v) { attr_slot(n, name)->i = v; }
void ir_set_float(IrNode *n, const char *name, double v) { attr_slot(n, name)->f = v; }

void ir_set_ints(IrNode *n, const char *name, int count, const int64_t *v) {
  IrAttr *a = attr_slot(n, name);
  assert(count >= 0 && count <= IR_MAX_RANK);
  a->n = count;
  for (int k = 0; k < count; k++) a->ints[k] = v[k];
}

static void set_shape(IrNode *n, const char *name, const IrShape *s) {
  ir_set_ints(n, name, s->rank, s->dim);
}

// ---------------------------------------------------------------------------------------
// One helper per kind of node.

IrNode *ir_build_unary(IrBuilder *b, IrOpKind op, IrNode *x) {
  return ir_build_done(b, ir_build(b, op, 1, &x));
}

IrNode *ir_build_binary(IrBuilder *b, IrOpKind op, IrNode *x, IrNode *y) {
  return ir_build_done(b, ir_build(b, op, 2, (IrNode *[]){x, y}));
}

IrNode *ir_build_affine(IrBuilder *b, IrNode *x, double scale, double shift) {
  IrNode *n = ir_build(b, IR_OP_AFFINE, 1, &x);
  ir_set_float(n, "scale", scale);
  ir_set_float(n, "shift", shift);
  return ir_build_done(b, n);
}

IrNode *ir_build_full(IrBuilder *b, const IrShape *shape, double value, DType dt) {
  IrNode *n = ir_build(b, IR_OP_FULL, 0, NULL);
  set_shape(n, "shape", shape);
  ir_set_float(n, "value", value);
  ir_set_int(n, "dtype", dt);
  return ir_build_done(b, n);
}

IrNode *ir_build_iota(IrBuilder *b, const IrShape *shape, int axis, DType dt) {
  IrNode *n = ir_build(b, IR_OP_IOTA, 0, NULL);
  set_shape(n, "shape", shape);
  ir_set_int(n, "axis", axis);
  ir_set_int(n, "dtype", dt);
  return ir_build_done(b, n);
}

IrNode *ir_build_cast(IrBuilder *b, IrNode *x, DType dt) {
  if (x->dtype == dt) return x;
  IrNode *n = ir_build(b, IR_OP_CAST, 1, &x);
  ir_set_int(n, "dtype", dt);
  return ir_build_done(b, n);
}

IrNode *ir_build_reshape(IrBuilder *b, IrNode *x, const IrShape *shape) {
  if (ir_shape_eq(&x->shape, shape)) return x;
  IrNode *n = ir_build(b, IR_OP_RESHAPE, 1, &x);
  set_shape(n, "shape", shape);
  return ir_build_done(b, n);
}

IrNode *ir_build_permute(IrBuilder *b, IrNode *x, const int64_t *perm) {
  IrNode *n = ir_build(b, IR_OP_PERMUTE, 1, &x);
  ir_set_ints(n, "perm", x->shape.rank, perm);
  return ir_build_done(b, n);
}

IrNode *ir_build_matmul(IrBuilder *b, IrNode *x, IrNode *y, bool ta, bool tb) {
  IrNode *n = ir_build(b, IR_OP_MATMUL, 2, (IrNode *[]){x, y});
  ir_set_int(n, "transpose_a", ta);
  ir_set_int(n, "transpose_b", tb);
  return ir_build_done(b, n);
}

IrNode *ir_build_slice(IrBuilder *b, IrNode *x, int axis, int64_t start, int64_t end) {
  IrNode *n = ir_build(b, IR_OP_SLICE, 1, &x);
  ir_set_int(n, "axis", axis);
  ir_set_int(n, "start", start);
  ir_set_int(n, "end", end);
  return ir_build_done(b, n);
}

IrNode *ir_build_concat(IrBuilder *b, int count, IrNode *const *xs, int axis) {
  if (count == 1) return xs[0];
  IrNode *n = ir_build(b, IR_OP_CONCAT, count, xs);
  ir_set_int(n, "axis", axis);
  return ir_build_done(b, n);
}

IrNode *ir_build_reduce(IrBuilder *b, IrOpKind op, IrNode *x, int n_axes, const int64_t *axes,
                        bool keepdims) {
  assert(n_axes > 0 && "an empty axes list means every axis; list them");
  IrNode *n = ir_build(b, op, 1, &x);
  ir_set_ints(n, "axes", n_axes, axes);
  ir_set_int(n, "keepdims", keepdims);
  return ir_build_done(b, n);
}

IrNode *ir_build_softmax(IrBuilder *b, IrOpKind op, IrNode *x, int64_t axis) {
  IrNode *n = ir_build(b, op, 1, &x);
  ir_set_int(n, "axis", axis);
  return ir_build_done(b, n);
}

// x summed over the dims that broadcasting added or stretched, so that it takes `shape`
// (the reverse of NumPy broadcasting from `shape` to x's shape).
IrNode *ir_build_sum_to(IrBuilder *b, IrNode *x, const IrShape *shape) {
  if (ir_shape_eq(&x->shape, shape)) return x;
  int lead = x->shape.rank - shape->rank;
  assert(lead >= 0);
  int64_t axes[IR_MAX_RANK];
  int n_axes = 0;
  for (int k = 0; k < x->shape.rank; k++)
    if (k < lead || (shape->dim[k - lead] == 1 && x->shape.dim[k] != 1)) axes[n_axes++] = k;
  IrNode *s = n_axes ? ir_build_reduce(b, IR_OP_REDUCE_SUM, x, n_axes, axes, false) : x;
  return ir_build_reshape(b, s, shape);
}

// x broadcast to `shape` (x + zeros of that shape: the IR has no broadcast op of its own).
IrNode *ir_build_expand(IrBuilder *b, IrNode *x, const IrShape *shape) {
  if (ir_shape_eq(&x->shape, shape)) return x;
  return ir_build_binary(b, IR_OP_ADD, x, ir_build_full(b, shape, 0.0, x->dtype));
}
