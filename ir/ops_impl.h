// Private to ir/: the shape rules (ir/shape_rules.c), reference kernels (ir/ref_*.c),
// gradient rules (ir/grad_rules.c) and FLOPs rules (ir/flops.c) that the op table in
// ir/ops.c points to. One of each per op (some shared).
#ifndef KILN_OPS_IMPL_H
#define KILN_OPS_IMPL_H

#include "ir/ir.h"

// NumPy broadcasting (ir/shape.c): stride[k] for each dim k of `out`, how far to move in
// `in` when out's index k grows by 1 (0 where `in` lacks the dim or has size 1; dims align
// at the end). The reference kernels of broadcasting ops and batched matmul share it.
void ir_broadcast_strides(const IrShape *in, const IrShape *out, int64_t *stride);

// Shape rules.
#define SHAPE_RULES(X)                                                                   \
  X(source) X(full) X(cast) X(broadcast) X(unary) X(unary_float) X(affine) X(matmul)      \
  X(reshape) X(permute) X(concat) X(slice) X(gather) X(reduce) X(softmax) X(layernorm)    \
  X(dropout) X(dropout_grad) X(cross_entropy) X(kl_div)                                  \
  X(attention) X(attention_grad) X(fused) X(scatter_add)
#define X(r) bool ir_shape_##r(IrNode *n, Diag *d);
SHAPE_RULES(X)
#undef X

// Reference kernels.
#define REF_KERNELS(X)                                                                   \
  X(source) X(full) X(iota) X(cast) X(add) X(sub) X(mul) X(div) X(maximum) X(minimum)     \
  X(neg) X(exp) X(log) X(sqrt) X(rsqrt) X(tanh) X(erf) X(gelu) X(relu) X(sigmoid) X(step) \
  X(affine) X(matmul) X(reshape) X(permute) X(concat) X(slice) X(gather) X(reduce_sum)    \
  X(reduce_mean) X(reduce_max) X(softmax) X(log_softmax) X(layernorm) X(dropout)          \
  X(dropout_grad) X(cross_entropy) X(kl_div) X(attention) X(attention_grad) X(fused) X(scatter_add)  \
  X(gelu_grad) X(silu)
#define X(k)                                                                             \
  bool ir_ref_##k(const IrNode *n, double *out, const double *const *in,                  \
                  const IrEvalMode *mode, Diag *d);
REF_KERNELS(X)
#undef X

// Gradient rules (ir/grad_rules.c).
#define GRAD_RULES(X)                                                                    \
  X(add) X(sub) X(mul) X(div) X(maximum) X(minimum) X(neg) X(exp) X(log) X(sqrt) X(rsqrt) \
  X(tanh) X(erf) X(gelu) X(relu) X(sigmoid) X(step) X(affine) X(cast) X(matmul) X(reshape) \
  X(permute) X(concat) X(slice) X(gather) X(reduce_sum) X(reduce_mean) X(reduce_max)      \
  X(softmax) X(log_softmax) X(layernorm) X(dropout) X(dropout_grad) X(cross_entropy)      \
  X(kl_div) X(attention) X(attention_grad) X(scatter_add) X(gelu_grad) \
  X(silu)
#define X(r)                                                                             \
  bool ir_grad_##r(IrBuilder *b, IrNode *n, IrNode *dy, const bool *need, IrNode **dx,    \
                   Diag *d);
GRAD_RULES(X)
#undef X

// FLOPs rules (ir/flops.c).
#define FLOPS_RULES(X) X(zero) X(out) X(norm) X(reduce) X(matmul) X(attention) X(attention_grad) X(fused)
#define X(r) double ir_flops_##r(const IrNode *n);
FLOPS_RULES(X)
#undef X

// Rows rules (ir/rows.c).
#define ROWS_RULES(X) X(broadcast) X(matmul) X(attention)
#define X(r) unsigned ir_rows_##r(const IrNode *n);
ROWS_RULES(X)
#undef X

#endif
