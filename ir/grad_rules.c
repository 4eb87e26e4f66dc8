// Gradient rules: for each differentiable op, the IR that computes its inputs' gradients
// dx[k] from the output's gradient dy (same shape as the node). Rules build ordinary nodes
// through the builder; dx[k] is left NULL where need[k] is false or where no gradient flows
// (integer inputs, the indices of gather). The op table points each op at its rule.
#include <assert.h>
#include <math.h>

#include "ir/ops_impl.h"

#define GRAD_ARGS IrBuilder *b, IrNode *n, IrNode *dy, const bool *need, IrNode **dx, Diag *d

static IrNode *unary(IrBuilder *b, IrOpKind op, IrNode *x) { return ir_build_unary(b, op, x); }
static IrNode *bin(IrBuilder *b, IrOpKind op, IrNode *x, IrNode *y) {
  return ir_build_binary(b, op, x, y);
}
static IrNode *mul(IrBuilder *b, IrNode *x, IrNode *y) { return bin(b, IR_OP_MUL, x, y); }
static IrNode *affine(IrBuilder *b, IrNode *x, double s, double t) {
  return ir_build_affine(b, x, s, t);
}

static int norm_axis(int64_t axis, int rank) {
  if (axis < 0) axis += rank;
  assert(axis >= 0 && axis < rank);
  return (int)axis;
}

// s with one more trailing dim of size 1.
static IrShape with_unit_dim(const IrShape *s) {
  IrShape t = *s;
  t.dim[t.rank++] = 1;
  return t;
}

// 1 where x == v (both whole numbers held as floats), else 0: 1 - min(|x - v|, 1).
static IrNode *equals(IrBuilder *b, IrNode *x, IrNode *v) {
  IrNode *diff = bin(b, IR_OP_SUB, x, v);
  IrNode *abs = bin(b, IR_OP_MAXIMUM, diff, unary(b, IR_OP_NEG, diff));
  IrNode *one = ir_build_full(b, &(IrShape){0}, 1.0, DT_F32);
  return affine(b, bin(b, IR_OP_MINIMUM, abs, one), -1.0, 1.0);
}

// one_hot(idx)[..., c] = (idx[...] == c) as f32, of shape idx.shape + [count].
static IrNode *one_hot(IrBuilder *b, IrNode *idx, int64_t count) {
  IrShape s = with_unit_dim(&idx->shape);
  IrNode *col = ir_build_reshape(b, ir_build_cast(b, idx, DT_F32), &s);  // [..., 1]
  s.dim[s.rank - 1] = count;
  return equals(b, ir_build_iota(b, &s, s.rank - 1, DT_F32), col);      // [..., count]
}

// ---------------------------------------------------------------------------------------
// Elementwise binary ops: the gradient of each operand, summed back to its shape.

static void to_operands(IrBuilder *b, IrNode *n, const bool *need, IrNode **dx, IrNode *g0,
                        IrNode *g1) {
  if (need[0] && g0) dx[0] = ir_build_sum_to(b, g0, &n->in[0]->shape);
  if (need[1] && g1) dx[1] = ir_build_sum_to(b, g1, &n->in[1]->shape);
}

bool ir_grad_add(GRAD_ARGS) {
  to_operands(b, n, need, dx, dy, dy);
  return true;
}

bool ir_grad_sub(GRAD_ARGS) {
  to_operands(b, n, need, dx, dy, need[1] ? unary(b, IR_OP_NEG, dy) : NULL);
  return true;
}

bool ir_grad_mul(GRAD_ARGS) {
  IrNode *a = n->in[0], *c = n->in[1];
  to_operands(b, n, need, dx, need[0] ? mul(b, dy, c) : NULL, need[1] ? mul(b, dy, a) : NULL);
  return true;
}

// y = a / c: da = dy / c, dc = -dy * y / c.
bool ir_grad_div(GRAD_ARGS) {
  IrNode *c = n->in[1];
  IrNode *g0 = need[0] ? bin(b, IR_OP_DIV, dy, c) : NULL;
  IrNode *g1 = need[1] ? unary(b, IR_OP_NEG, bin(b, IR_OP_DIV, mul(b, dy, n), c)) : NULL;
  to_operands(b, n, need, dx, g0, g1);
  return true;
}

// maximum picks a where a >= b (ties go to a): da = dy * (1 - step(b - a)), db = dy * step(b - a).
// minimum picks a where a <= b: da = dy * (1 - step(a - b)), db = dy * step(a - b).
static bool grad_select(IrBuilder *b, IrNode *n, IrNode *dy, const bool *need, IrNode **dx,
                        bool is_max) {
  IrNode *a = n->in[0], *c = n->in[1];
  IrNode *other = unary(b, IR_OP_STEP, is_max ? bin(b, IR_OP_SUB, c, a) : bin(b, IR_OP_SUB, a, c));
  IrNode *g0 = need[0] ? mul(b, dy, affine(b, other, -1.0, 1.0)) : NULL;
  IrNode *g1 = need[1] ? mul(b, dy, other) : NULL;
  to_operands(b, n, need, dx, g0, g1);
  return true;
}

bool ir_grad_maximum(GRAD_ARGS) { return grad_select(b, n, dy, need, dx, true); }
bool ir_grad_minimum(GRAD_ARGS) { return grad_select(b, n, dy, need, dx, false); }

// ---------------------------------------------------------------------------------------
// Elementwise unary ops: dx = dy * f'(x), written with x or with the output y = n.

bool ir_grad_neg(GRAD_ARGS) {
  dx[0] = unary(b, IR_OP_NEG, dy);
  return true;
}

bool ir_grad_exp(GRAD_ARGS) {  // y
  dx[0] = mul(b, dy, n);
  return true;
}

bool ir_grad_log(GRAD_ARGS) {  // 1 / x
  dx[0] = bin(b, IR_OP_DIV, dy, n->in[0]);
  return true;
}

bool ir_grad_sqrt(GRAD_ARGS) {  // 1 / (2 y)
  dx[0] = bin(b, IR_OP_DIV, dy, affine(b, n, 2.0, 0.0));
  return true;
}

bool ir_grad_rsqrt(GRAD_ARGS) {  // -y / (2 x)
  dx[0] = mul(b, dy, affine(b, bin(b, IR_OP_DIV, n, n->in[0]), -0.5, 0.0));
  return true;
}

bool ir_grad_tanh(GRAD_ARGS) {  // 1 - y^2
  dx[0] = mul(b, dy, affine(b, mul(b, n, n), -1.0, 1.0));
  return true;
}

bool ir_grad_sigmoid(GRAD_ARGS) {  // y (1 - y)
  dx[0] = mul(b, dy, mul(b, n, affine(b, n, -1.0, 1.0)));
  return true;
}

bool ir_grad_erf(GRAD_ARGS) {  // 2 / sqrt(pi) e^(-x^2)
  IrNode *x = n->in[0];
  IrNode *e = unary(b, IR_OP_EXP, affine(b, mul(b, x, x), -1.0, 0.0));
  dx[0] = mul(b, dy, affine(b, e, 2.0 / sqrt(M_PI), 0.0));
  return true;
}

// One op, so that the fuse pass sees it whole (the GEMM making dy applies it in its
// epilogue) and the JIT computes gelu'(x) in registers.
bool ir_grad_gelu(GRAD_ARGS) {  // dy (Phi(x) + x phi(x))
  dx[0] = bin(b, IR_OP_GELU_GRAD, dy, n->in[0]);
  return true;
}

// gelu_grad(dy, x) = dy gelu'(x): linear in dy; gelu''(x) = phi(x) (2 - x^2).
bool ir_grad_gelu_grad(GRAD_ARGS) {
  IrNode *ddy = n->in[0], *x = n->in[1];
  if (need[0]) dx[0] = bin(b, IR_OP_GELU_GRAD, dy, x);
  if (need[1]) {
    IrNode *xx = mul(b, x, x);
    IrNode *pdf = affine(b, unary(b, IR_OP_EXP, affine(b, xx, -0.5, 0.0)), 1.0 / sqrt(2.0 * M_PI), 0.0);
    dx[1] = mul(b, mul(b, dy, ddy), mul(b, pdf, affine(b, xx, -1.0, 2.0)));
  }
  return true;
}

bool ir_grad_silu(GRAD_ARGS) {  // s (1 + x (1 - s)), s = sigmoid(x)
  IrNode *x = n->in[0], *s = unary(b, IR_OP_SIGMOID, x);
  dx[0] = mul(b, dy, mul(b, s, affine(b, mul(b, x, affine(b, s, -1.0, 1.0)), 1.0, 1.0)));
  return true;
}

bool ir_grad_relu(GRAD_ARGS) {  // step(x)
  dx[0] = mul(b, dy, unary(b, IR_OP_STEP, n->in[0]));
  return true;
}

bool ir_grad_affine(GRAD_ARGS) {
  dx[0] = affine(b, dy, ir_attr_float(n, "scale"), 0.0);
  return true;
}

// Only float to float carries a gradient (the IR's one float dtype: the identity).
bool ir_grad_cast(GRAD_ARGS) {
  if (n->in[0]->dtype == DT_F32 && n->dtype == DT_F32) dx[0] = dy;
  return true;
}

// step is flat almost everywhere: no gradient flows through it.
bool ir_grad_step(GRAD_ARGS) { return true; }

// Dropout's backward keeps the elements its forward kept (the same mask, drawn again from
// the forward node's name) and scales them alike.
bool ir_grad_dropout(GRAD_ARGS) {
  dx[0] = ir_build_binary(b, IR_OP_DROPOUT_GRAD, dy, n);
  return true;
}

// dropout_grad is linear in dy: its own gradient is dropout_grad of the same forward node.
bool ir_grad_dropout_grad(GRAD_ARGS) {
  if (need[0]) dx[0] = ir_build_binary(b, IR_OP_DROPOUT_GRAD, dy, n->in[1]);
  return true;
}

// ---------------------------------------------------------------------------------------
// Matmul: C = op(A) op(B) with op a transpose or not; each operand's gradient is a matmul
// of dC with the other operand, then summed over the batch dims broadcasting added. A
// weight B [K, N] under activations A [..., M, K] (a linear layer; not transposed) gets its
// gradient from one GEMM over all rows, A [rows, K]^T dC [rows, N], as torch's linear
// does: no [..., K, N] product per batch item to sum afterwards.
bool ir_grad_matmul(GRAD_ARGS) {
  IrNode *a = n->in[0], *c = n->in[1];
  bool ta = ir_attr_int(n, "transpose_a") != 0, tb = ir_attr_int(n, "transpose_b") != 0;
  IrNode *ga = NULL, *gb = NULL;
  if (need[0])
    ga = !ta ? ir_build_matmul(b, dy, c, false, !tb)   // dA = dC op(B)^T     [..., M, K]
             : ir_build_matmul(b, c, dy, tb, true);    // dA = (dC op(B)^T)^T [..., K, M]
  if (need[1] && c->shape.rank == 2 && a->shape.rank > 2 && !ta) {
    int r = a->shape.rank;
    IrShape as = {2, {ir_numel(&a->shape) / a->shape.dim[r - 1], a->shape.dim[r - 1]}};
    IrShape ds = {2, {as.dim[0], dy->shape.dim[r - 1]}};
    IrNode *a2 = ir_build_reshape(b, a, &as), *dy2 = ir_build_reshape(b, dy, &ds);  // [rows, K], [rows, N]
    gb = !tb ? ir_build_matmul(b, a2, dy2, true, false)  // [K, N]
             : ir_build_matmul(b, dy2, a2, true, false); // [N, K]
  } else if (need[1]) {
    gb = !tb ? ir_build_matmul(b, a, dy, !ta, false)   // dB = op(A)^T dC     [..., K, N]
             : ir_build_matmul(b, dy, a, true, ta);    // dB = (op(A)^T dC)^T [..., N, K]
  }
  to_operands(b, n, need, dx, ga, gb);
  return true;
}

// ---------------------------------------------------------------------------------------
// Layout ops.

bool ir_grad_reshape(GRAD_ARGS) {
  dx[0] = ir_build_reshape(b, dy, &n->in[0]->shape);
  return true;
}

bool ir_grad_permute(GRAD_ARGS) {
  const IrAttr *p = ir_attr(n, "perm");
  int64_t inv[IR_MAX_RANK];
  for (int i = 0; i < p->n; i++) inv[norm_axis(p->ints[i], p->n)] = i;
  dx[0] = ir_build_permute(b, dy, inv);
  return true;
}

bool ir_grad_concat(GRAD_ARGS) {
  int axis = norm_axis(ir_attr_int(n, "axis"), n->shape.rank);
  int64_t at = 0;
  for (int k = 0; k < n->n_in; k++) {
    int64_t len = n->in[k]->shape.dim[axis];
    if (need[k]) dx[k] = ir_build_slice(b, dy, axis, at, at + len);
    at += len;
  }
  return true;
}

// The slice's gradient in place, zeros around it: concat(zeros, dy, zeros) along axis.
bool ir_grad_slice(GRAD_ARGS) {
  const IrShape *s = &n->in[0]->shape;
  int axis = norm_axis(ir_attr_int(n, "axis"), s->rank);
  int64_t start = ir_attr_int(n, "start"), end = ir_attr_int(n, "end");
  IrNode *parts[3];
  int count = 0;
  IrShape z = *s;
  if (start > 0) {
    z.dim[axis] = start;
    parts[count++] = ir_build_full(b, &z, 0.0, DT_F32);
  }
  parts[count++] = dy;
  if (end < s->dim[axis]) {
    z.dim[axis] = s->dim[axis] - end;
    parts[count++] = ir_build_full(b, &z, 0.0, DT_F32);
  }
  dx[0] = ir_build_concat(b, count, parts, axis);
  return true;
}

// gather and scatter_add with the given attributes (gather's and scatter_add's gradients
// are each other).
static IrNode *indexed(IrBuilder *b, IrOpKind op, IrNode *x, IrNode *idx, int64_t axis,
                       int64_t bd, int64_t size) {
  IrNode *g = ir_build(b, op, 2, (IrNode *[]){x, idx});
  ir_set_int(g, "axis", axis);
  ir_set_int(g, "batch_dims", bd);
  if (op == IR_OP_SCATTER_ADD) ir_set_int(g, "size", size);
  return ir_build_done(b, g);
}

// Gather's gradient scatter-adds dy into the rows of data its indices name (ids that
// repeat add up): O(elements of dy) work, not a one-hot matmul over the whole table.
bool ir_grad_gather(GRAD_ARGS) {
  if (!need[0]) return true;
  const IrShape *sd = &n->in[0]->shape;
  int axis = norm_axis(ir_attr_int(n, "axis"), sd->rank);
  dx[0] = indexed(b, IR_OP_SCATTER_ADD, dy, n->in[1], axis, ir_attr_int(n, "batch_dims"),
                  sd->dim[axis]);
  return true;
}

// scatter_add is linear in its updates: their gradient gathers dy's rows back.
bool ir_grad_scatter_add(GRAD_ARGS) {
  if (!need[0]) return true;
  int axis = norm_axis(ir_attr_int(n, "axis"), n->shape.rank);
  dx[0] = indexed(b, IR_OP_GATHER, dy, n->in[1], axis, ir_attr_int(n, "batch_dims"), 0);
  return true;
}

// ---------------------------------------------------------------------------------------
// Reductions: dy (with the reduced dims put back as 1) spread over the reduced elements.

// The reduced axes of n (all if none listed), normalised.
static int reduced_axes(const IrNode *n, int64_t *axes) {
  const IrAttr *a = ir_attr(n, "axes");
  int rank = n->in[0]->shape.rank;
  if (a->n == 0) {
    for (int k = 0; k < rank; k++) axes[k] = k;
    return rank;
  }
  for (int k = 0; k < a->n; k++) axes[k] = norm_axis(a->ints[k], rank);
  return a->n;
}

// dy reshaped to n's output with keepdims (the reduced dims as 1).
static IrNode *kept(IrBuilder *b, IrNode *n, IrNode *dy) {
  int64_t axes[IR_MAX_RANK];
  int n_axes = reduced_axes(n, axes);
  IrShape s = n->in[0]->shape;
  for (int k = 0; k < n_axes; k++) s.dim[axes[k]] = 1;
  return ir_build_reshape(b, dy, &s);
}

bool ir_grad_reduce_sum(GRAD_ARGS) {
  dx[0] = ir_build_expand(b, kept(b, n, dy), &n->in[0]->shape);
  return true;
}

bool ir_grad_reduce_mean(GRAD_ARGS) {
  double count = (double)ir_numel(&n->in[0]->shape) / (double)ir_numel(&n->shape);
  dx[0] = ir_build_expand(b, affine(b, kept(b, n, dy), 1.0 / count, 0.0), &n->in[0]->shape);
  return true;
}

// The gradient goes to the elements equal to the max (to each of them on a tie).
bool ir_grad_reduce_max(GRAD_ARGS) {
  IrNode *x = n->in[0];
  IrNode *below = unary(b, IR_OP_STEP, bin(b, IR_OP_SUB, kept(b, n, n), x));  // 1 if x < max
  dx[0] = mul(b, kept(b, n, dy), affine(b, below, -1.0, 1.0));
  return true;
}

// ---------------------------------------------------------------------------------------
// Softmax and layernorm.

// dx = y (dy - sum(dy y)) along axis.
bool ir_grad_softmax(GRAD_ARGS) {
  int64_t axis = norm_axis(ir_attr_int(n, "axis"), n->shape.rank);
  IrNode *s = ir_build_reduce(b, IR_OP_REDUCE_SUM, mul(b, dy, n), 1, &axis, true);
  dx[0] = mul(b, n, bin(b, IR_OP_SUB, dy, s));
  return true;
}

// dx = dy - exp(y) sum(dy) along axis.
bool ir_grad_log_softmax(GRAD_ARGS) {
  int64_t axis = norm_axis(ir_attr_int(n, "axis"), n->shape.rank);
  IrNode *s = ir_build_reduce(b, IR_OP_REDUCE_SUM, dy, 1, &axis, true);
  dx[0] = bin(b, IR_OP_SUB, dy, mul(b, unary(b, IR_OP_EXP, n), s));
  return true;
}

// With xhat = (x - mean) rstd over the last axis and g = dy * weight:
//   dx = rstd (g - mean(g) - xhat mean(g xhat)), dweight = sum(dy xhat), dbias = sum(dy).
bool ir_grad_layernorm(GRAD_ARGS) {
  IrNode *x = n->in[0], *w = n->in[1];
  int64_t last = x->shape.rank - 1;
  IrNode *xc = bin(b, IR_OP_SUB, x, ir_build_reduce(b, IR_OP_REDUCE_MEAN, x, 1, &last, true));
  IrNode *var = ir_build_reduce(b, IR_OP_REDUCE_MEAN, mul(b, xc, xc), 1, &last, true);
  IrNode *rstd = unary(b, IR_OP_RSQRT, affine(b, var, 1.0, ir_attr_float(n, "eps")));
  IrNode *xhat = mul(b, xc, rstd);  // [..., H]
  if (need[0]) {
    IrNode *g = mul(b, dy, w);
    IrNode *mg = ir_build_reduce(b, IR_OP_REDUCE_MEAN, g, 1, &last, true);
    IrNode *mgx = ir_build_reduce(b, IR_OP_REDUCE_MEAN, mul(b, g, xhat), 1, &last, true);
    IrNode *inner = bin(b, IR_OP_SUB, bin(b, IR_OP_SUB, g, mg), mul(b, xhat, mgx));
    dx[0] = mul(b, rstd, inner);
  }
  if (need[1]) dx[1] = ir_build_sum_to(b, mul(b, dy, xhat), &w->shape);
  if (need[2]) dx[2] = ir_build_sum_to(b, dy, &n->in[2]->shape);
  return true;
}

// ---------------------------------------------------------------------------------------
// Losses (scalar outputs; dy is a scalar).

// dlogits = (softmax(logits) - onehot(label)) * labelled / max(count, 1) * dy, where
// labelled is 0 at positions whose label is ignore_index; with a denominator input,
// / denominator instead of / max(count, 1) (it has no gradient: a count).
bool ir_grad_cross_entropy(GRAD_ARGS) {
  if (!need[0]) return true;
  IrNode *logits = n->in[0], *labels = n->in[1];
  int64_t C = logits->shape.dim[logits->shape.rank - 1];
  IrNode *lf = ir_build_cast(b, labels, DT_F32);  // [...]
  IrNode *ignore = ir_build_full(b, &(IrShape){0}, (double)ir_attr_int(n, "ignore_index"), DT_F32);
  IrNode *labelled = affine(b, equals(b, lf, ignore), -1.0, 1.0);  // [...]
  int64_t all[IR_MAX_RANK];
  for (int k = 0; k < labels->shape.rank; k++) all[k] = k;
  int rank = labels->shape.rank;
  IrNode *den = n->n_in == 3 ? n->in[2] : NULL;
  if (!den) {
    IrNode *count = rank ? ir_build_reduce(b, IR_OP_REDUCE_SUM, labelled, rank, all, false) : labelled;
    den = bin(b, IR_OP_MAXIMUM, count, ir_build_full(b, &(IrShape){0}, 1.0, DT_F32));
  }
  IrNode *scale = bin(b, IR_OP_DIV, dy, den);  // []
  IrNode *p = ir_build_softmax(b, IR_OP_SOFTMAX, logits, -1);
  IrNode *diff = bin(b, IR_OP_SUB, p, one_hot(b, labels, C));  // [..., C]
  IrShape ls = with_unit_dim(&labels->shape);
  IrNode *mask = ir_build_reshape(b, labelled, &ls);             // [..., 1]
  dx[0] = mul(b, mul(b, diff, mask), scale);
  return true;
}

// loss = sum(t (log t - lp)) / batch: dlp = -t dy / batch, dt = (log t - lp + 1) dy / batch
// (the target's gradient is infinite where t is 0).
bool ir_grad_kl_div(GRAD_ARGS) {
  IrNode *lp = n->in[0], *t = n->in[1];
  double batch = (double)lp->shape.dim[0];
  if (need[0]) dx[0] = mul(b, t, affine(b, dy, -1.0 / batch, 0.0));
  if (need[1]) {
    IrNode *g = affine(b, bin(b, IR_OP_SUB, unary(b, IR_OP_LOG, t), lp), 1.0, 1.0);
    dx[1] = mul(b, g, affine(b, dy, 1.0 / batch, 0.0));
  }
  return true;
}
