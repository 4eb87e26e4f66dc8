// The op table: every op declared once — name, arity, flags, attribute schema, shape rule,
// reference kernel, gradient rule and a one-line description. The lowering column lives in
// codegen/lowerings.c (ir/ knows nothing of LLVM).
#include <assert.h>
#include <string.h>

#include "ir/ops_impl.h"

#define END {NULL, 0, false, 0}
#define DTYPE_DEFAULT(t) ((double)(t))

static const IrAttrSpec no_attrs[] = {END};
static const IrAttrSpec full_attrs[] = {{"shape", IR_ATTR_INTS, true, 0},
                                        {"value", IR_ATTR_FLOAT, false, 0},
                                        {"dtype", IR_ATTR_DTYPE, false, DTYPE_DEFAULT(DT_F32)},
                                        END};
static const IrAttrSpec iota_attrs[] = {{"shape", IR_ATTR_INTS, true, 0},
                                        {"axis", IR_ATTR_INT, false, 0},
                                        {"dtype", IR_ATTR_DTYPE, false, DTYPE_DEFAULT(DT_I64)},
                                        END};
static const IrAttrSpec cast_attrs[] = {{"dtype", IR_ATTR_DTYPE, true, 0}, END};
static const IrAttrSpec affine_attrs[] = {{"scale", IR_ATTR_FLOAT, false, 1},
                                          {"shift", IR_ATTR_FLOAT, false, 0},
                                          END};
static const IrAttrSpec matmul_attrs[] = {{"transpose_a", IR_ATTR_BOOL, false, 0},
                                          {"transpose_b", IR_ATTR_BOOL, false, 0},
                                          {"bf16", IR_ATTR_BOOL, false, 0},
                                          {"int8", IR_ATTR_BOOL, false, 0},
                                          END};
static const IrAttrSpec reshape_attrs[] = {{"shape", IR_ATTR_INTS, true, 0}, END};
static const IrAttrSpec permute_attrs[] = {{"perm", IR_ATTR_INTS, true, 0}, END};
static const IrAttrSpec concat_attrs[] = {{"axis", IR_ATTR_INT, true, 0}, END};
static const IrAttrSpec slice_attrs[] = {{"axis", IR_ATTR_INT, true, 0},
                                         {"start", IR_ATTR_INT, false, 0},
                                         {"end", IR_ATTR_INT, true, 0},
                                         END};
static const IrAttrSpec gather_attrs[] = {{"axis", IR_ATTR_INT, false, 0},
                                          {"batch_dims", IR_ATTR_INT, false, 0},
                                          END};
static const IrAttrSpec scatter_attrs[] = {{"axis", IR_ATTR_INT, false, 0},
                                           {"batch_dims", IR_ATTR_INT, false, 0},
                                           {"size", IR_ATTR_INT, true, 0},
                                           END};
static const IrAttrSpec reduce_attrs[] = {{"axes", IR_ATTR_INTS, false, 0},
                                          {"keepdims", IR_ATTR_BOOL, false, 0},
                                          END};
static const IrAttrSpec softmax_attrs[] = {{"axis", IR_ATTR_INT, false, -1}, END};
static const IrAttrSpec layernorm_attrs[] = {{"eps", IR_ATTR_FLOAT, false, 1e-12}, END};
static const IrAttrSpec dropout_attrs[] = {{"p", IR_ATTR_FLOAT, true, 0}, END};
static const IrAttrSpec attention_attrs[] = {{"heads", IR_ATTR_INT, true, 0},
                                             {"scale", IR_ATTR_FLOAT, false, 1},
                                             {"p", IR_ATTR_FLOAT, false, 0},
                                             {"rng_hash", IR_ATTR_INT, false, 0},
                                             {"bf16", IR_ATTR_BOOL, false, 0},
                                             END};
static const IrAttrSpec fused_attrs[] = {{"kind", IR_ATTR_INT, false, 0}, END};
static const IrAttrSpec ce_attrs[] = {{"ignore_index", IR_ATTR_INT, false, -100}, END};

#define SRC IR_FLAG_SOURCE
#define INT IR_FLAG_INT_OK
#define VIEW IR_FLAG_VIEW
#define RNG IR_FLAG_RANDOM
#define EW IR_PATTERN_ELEMENTWISE
#define BC IR_PATTERN_BROADCAST
#define INJ IR_PATTERN_INJECTIVE
#define RED IR_PATTERN_REDUCTION
#define OPQ IR_PATTERN_OPAQUE

// Columns: name, min_in, max_in (< 0: any number), pattern, flags, attribute schema,
// shape rule, reference kernel, gradient rule, FLOPs rule, rows rule (NULL: not row-wise),
// one line of doc.

const IrOpInfo ir_ops[IR_OP_COUNT] = {
  [IR_OP_INPUT] = {"input", 0, 0, OPQ, SRC | INT, no_attrs, ir_shape_source, ir_ref_source,
    NULL, ir_flops_zero, NULL,
    "a model input, filled from the inputs file"},
  [IR_OP_PARAM] = {"param", 0, 0, OPQ, SRC, no_attrs, ir_shape_source, ir_ref_source,
    NULL, ir_flops_zero, NULL,
    "a trainable parameter, filled from the weights file"},
  [IR_OP_FULL] = {"full", 0, 0, OPQ, SRC | INT, full_attrs, ir_shape_full, ir_ref_full,
    NULL, ir_flops_zero, NULL,
    "a tensor of the given shape filled with one value"},
  [IR_OP_IOTA] = {"iota", 0, 0, OPQ, SRC | INT, iota_attrs, ir_shape_full, ir_ref_iota,
    NULL, ir_flops_zero, NULL,
    "out[idx] = idx[axis] (positions 0, 1, 2, ... along axis)"},
  [IR_OP_CAST] = {"cast", 1, 1, EW, INT, cast_attrs, ir_shape_cast, ir_ref_cast,
    ir_grad_cast, ir_flops_zero, ir_rows_broadcast,
    "convert to another dtype (float to int truncates toward zero)"},
  [IR_OP_ADD] = {"add", 2, 2, BC, INT, no_attrs, ir_shape_broadcast, ir_ref_add,
    ir_grad_add, ir_flops_out, ir_rows_broadcast,
    "a + b with NumPy broadcasting"},
  [IR_OP_SUB] = {"sub", 2, 2, BC, INT, no_attrs, ir_shape_broadcast, ir_ref_sub,
    ir_grad_sub, ir_flops_out, ir_rows_broadcast,
    "a - b with NumPy broadcasting"},
  [IR_OP_MUL] = {"mul", 2, 2, BC, INT, no_attrs, ir_shape_broadcast, ir_ref_mul,
    ir_grad_mul, ir_flops_out, ir_rows_broadcast,
    "a * b with NumPy broadcasting"},
  [IR_OP_DIV] = {"div", 2, 2, BC, 0, no_attrs, ir_shape_broadcast, ir_ref_div,
    ir_grad_div, ir_flops_out, ir_rows_broadcast,
    "a / b with NumPy broadcasting (floats only)"},
  [IR_OP_MAXIMUM] = {"maximum", 2, 2, BC, INT, no_attrs, ir_shape_broadcast, ir_ref_maximum,
    ir_grad_maximum, ir_flops_out, ir_rows_broadcast,
    "elementwise max(a, b) with broadcasting"},
  [IR_OP_MINIMUM] = {"minimum", 2, 2, BC, INT, no_attrs, ir_shape_broadcast, ir_ref_minimum,
    ir_grad_minimum, ir_flops_out, ir_rows_broadcast,
    "elementwise min(a, b) with broadcasting"},
  [IR_OP_NEG] = {"neg", 1, 1, EW, INT, no_attrs, ir_shape_unary, ir_ref_neg,
    ir_grad_neg, ir_flops_out, ir_rows_broadcast,
    "-x"},
  [IR_OP_EXP] = {"exp", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_exp,
    ir_grad_exp, ir_flops_out, ir_rows_broadcast,
    "e^x"},
  [IR_OP_LOG] = {"log", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_log,
    ir_grad_log, ir_flops_out, ir_rows_broadcast,
    "natural logarithm"},
  [IR_OP_SQRT] = {"sqrt", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_sqrt,
    ir_grad_sqrt, ir_flops_out, ir_rows_broadcast,
    "square root"},
  [IR_OP_RSQRT] = {"rsqrt", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_rsqrt,
    ir_grad_rsqrt, ir_flops_out, ir_rows_broadcast,
    "1 / sqrt(x)"},
  [IR_OP_TANH] = {"tanh", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_tanh,
    ir_grad_tanh, ir_flops_out, ir_rows_broadcast,
    "hyperbolic tangent"},
  [IR_OP_ERF] = {"erf", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_erf,
    ir_grad_erf, ir_flops_out, ir_rows_broadcast,
    "the error function"},
  [IR_OP_GELU] = {"gelu", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_gelu,
    ir_grad_gelu, ir_flops_out, ir_rows_broadcast,
    "exact GELU: 0.5 x (1 + erf(x / sqrt 2))"},
  [IR_OP_RELU] = {"relu", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_relu,
    ir_grad_relu, ir_flops_out, ir_rows_broadcast,
    "max(x, 0)"},
  [IR_OP_SIGMOID] = {"sigmoid", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_sigmoid,
    ir_grad_sigmoid, ir_flops_out, ir_rows_broadcast,
    "1 / (1 + e^-x)"},
  [IR_OP_STEP] = {"step", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_step,
    ir_grad_step, ir_flops_out, ir_rows_broadcast,
    "1 where x > 0, else 0 (the derivative of relu)"},
  [IR_OP_AFFINE] = {"affine", 1, 1, EW, INT, affine_attrs, ir_shape_affine, ir_ref_affine,
    ir_grad_affine, ir_flops_out, ir_rows_broadcast,
    "x * scale + shift with constant scale and shift"},
  [IR_OP_MATMUL] = {"matmul", 2, 2, OPQ, 0, matmul_attrs, ir_shape_matmul, ir_ref_matmul,
    ir_grad_matmul, ir_flops_matmul, ir_rows_matmul,
    "batched matrix product [..., M, K] x [..., K, N] with broadcast batch "
    "dims; transpose_a/transpose_b swap the last two dims of an operand; bf16 (set by the "
    "precision pass): operands rounded to bf16, products summed in f32; int8 (likewise): "
    "A per row and B per column quantised to int8, int32 sums (runtime/dtype.h)"},
  [IR_OP_RESHAPE] = {"reshape", 1, 1, INJ, INT | VIEW, reshape_attrs, ir_shape_reshape,
    ir_ref_reshape, ir_grad_reshape, ir_flops_zero, NULL,
    "same elements, new shape (one dim may be -1)"},
  [IR_OP_PERMUTE] = {"permute", 1, 1, INJ, INT, permute_attrs, ir_shape_permute, ir_ref_permute,
    ir_grad_permute, ir_flops_zero, NULL,
    "out.shape[i] = in.shape[perm[i]]"},
  [IR_OP_CONCAT] = {"concat", 1, -1, INJ, INT, concat_attrs, ir_shape_concat, ir_ref_concat,
    ir_grad_concat, ir_flops_zero, NULL,
    "join along axis; other dims must match"},
  [IR_OP_SLICE] = {"slice", 1, 1, INJ, INT, slice_attrs, ir_shape_slice, ir_ref_slice,
    ir_grad_slice, ir_flops_zero, NULL,
    "elements start <= i < end along axis"},
  [IR_OP_GATHER] = {"gather", 2, 2, INJ, INT, gather_attrs, ir_shape_gather, ir_ref_gather,
    ir_grad_gather, ir_flops_zero, NULL,
    "take rows of data along axis by integer indices (TensorFlow gather with "
    "batch_dims); embedding lookup is gather(table, ids)"},
  [IR_OP_REDUCE_SUM] = {"reduce_sum", 1, 1, RED, INT, reduce_attrs, ir_shape_reduce,
    ir_ref_reduce_sum, ir_grad_reduce_sum, ir_flops_reduce, NULL,
    "sum over axes (all if none given)"},
  [IR_OP_REDUCE_MEAN] = {"reduce_mean", 1, 1, RED, 0, reduce_attrs, ir_shape_reduce,
    ir_ref_reduce_mean, ir_grad_reduce_mean, ir_flops_reduce, NULL,
    "mean over axes (all if none given)"},
  [IR_OP_REDUCE_MAX] = {"reduce_max", 1, 1, RED, INT, reduce_attrs, ir_shape_reduce,
    ir_ref_reduce_max, ir_grad_reduce_max, ir_flops_reduce, NULL,
    "max over axes (all if none given)"},
  [IR_OP_SOFTMAX] = {"softmax", 1, 1, RED, 0, softmax_attrs, ir_shape_softmax, ir_ref_softmax,
    ir_grad_softmax, ir_flops_norm, NULL,
    "exp(x - max) / sum along axis"},
  [IR_OP_LOG_SOFTMAX] = {"log_softmax", 1, 1, RED, 0, softmax_attrs, ir_shape_softmax,
    ir_ref_log_softmax, ir_grad_log_softmax, ir_flops_norm, NULL,
    "x - max - log(sum(exp(x - max))) along axis"},
  [IR_OP_LAYERNORM] = {"layernorm", 3, 3, RED, 0, layernorm_attrs, ir_shape_layernorm,
    ir_ref_layernorm, ir_grad_layernorm, ir_flops_norm, ir_rows_broadcast,
    "(x - mean) / sqrt(var + eps) * weight + bias over the last axis "
    "(biased variance); inputs x, weight, bias"},
  [IR_OP_DROPOUT] = {"dropout", 1, 1, EW, RNG, dropout_attrs, ir_shape_dropout, ir_ref_dropout,
    ir_grad_dropout, ir_flops_out, ir_rows_broadcast,
    "zero each element with probability p and scale the rest by 1/(1-p) "
    "when training; the identity in inference"},
  [IR_OP_DROPOUT_GRAD] = {"dropout_grad", 2, 2, EW, RNG, no_attrs, ir_shape_dropout_grad,
    ir_ref_dropout_grad, ir_grad_dropout_grad, ir_flops_out, NULL,
    "the gradient of a dropout node: inputs dy and the dropout node; dy "
    "where its mask kept an element, times 1/(1-p); the identity in "
    "inference"},
  [IR_OP_CROSS_ENTROPY] = {"cross_entropy", 2, 3, RED, INT, ce_attrs, ir_shape_cross_entropy,
    ir_ref_cross_entropy, ir_grad_cross_entropy, ir_flops_reduce, NULL,
    "mean over labelled positions of -log_softmax(logits)[label]; "
    "logits [..., C], integer labels [...]; ignore_index skipped; "
    "0 when every label is ignored; with a third input, a positive f32 "
    "scalar, the sum is divided by it instead of the labelled count"},
  [IR_OP_KL_DIV] = {"kl_div", 2, 2, RED, 0, no_attrs, ir_shape_kl_div, ir_ref_kl_div,
    ir_grad_kl_div, ir_flops_reduce, NULL,
    "sum(target * (log target - log_probs)) / batch (PyTorch KLDivLoss, "
    "batchmean; 0 log 0 = 0); inputs log_probs, target of one shape"},
  [IR_OP_ATTENTION] = {"attention", 3, 4, OPQ, RNG, attention_attrs, ir_shape_attention,
    ir_ref_attention, ir_grad_attention, ir_flops_attention, ir_rows_attention,
    "multi-head attention: per head h, dropout(softmax(scale * Q_h K_h^T + "
    "mask)) V_h; q [batch, n_q, heads*head_dim], k and v [batch, n_k, "
    "heads*head_dim] (heads side by side), optional additive mask "
    "broadcast to [batch, heads, n_q, n_k]; output like q. Dropout (p, "
    "training only) draws element ((b*heads+h)*n_q+i)*n_k+j of the stream "
    "named by rng_hash (0: this node's name); bf16 (set by the precision pass): "
    "Q.K^T and P.V multiply bf16 operands, softmax and sums stay f32"},
  [IR_OP_ATTENTION_GRAD] = {"attention_grad", 5, 6, OPQ, RNG, attention_attrs, ir_shape_attention_grad,
    ir_ref_attention_grad, ir_grad_attention_grad, ir_flops_attention_grad, NULL,
    "the gradient of attention: inputs q, k, v, out, dout[, mask]; "
    "recomputes the probabilities; result [numel(q) + 2 numel(k)]: "
    "dq, dk, dv flat, one after the other"},
  [IR_OP_FUSED] = {"fused", 1, -1, OPQ, 0, fused_attrs, ir_shape_fused, ir_ref_fused,
    NULL, ir_flops_fused, NULL,
    "made by the fuse pass, not written in model files: a body of ops computed "
    "in one kernel (kind 0 loop, 1 gemm epilogue, 2 reduction with its prologue)"},
  [IR_OP_SCATTER_ADD] = {"scatter_add", 2, 2, OPQ, INT, scatter_attrs, ir_shape_scatter_add,
    ir_ref_scatter_add, ir_grad_scatter_add, ir_flops_out, NULL,
    "the transpose of gather: inputs updates (f32, gather's output shape) "
    "and indices; out (size along axis) starts at 0 and each update row "
    "adds into the row its index names (repeated ids add up)"},
  [IR_OP_GELU_GRAD] = {"gelu_grad", 2, 2, BC, 0, no_attrs, ir_shape_broadcast, ir_ref_gelu_grad,
    ir_grad_gelu_grad, ir_flops_out, ir_rows_broadcast,
    "the gradient of gelu: inputs dy and the gelu's input x; dy * gelu'(x), "
    "gelu'(x) = Phi(x) + x phi(x)"},
  [IR_OP_SILU] = {"silu", 1, 1, EW, 0, no_attrs, ir_shape_unary_float, ir_ref_silu,
    ir_grad_silu, ir_flops_out, ir_rows_broadcast,
    "x * sigmoid(x) (SiLU, swish)"},
};

// Pinned to the enum (ggml's habit): when IR_OPS grows, this fails until the new op has its
// row above and in cg_lowerings[] (codegen/lowerings.c); test_ir checks every row is filled.
_Static_assert(IR_OP_COUNT == 45, "IR_OPS changed: give the op its row in ir_ops[] and "
                                  "cg_lowerings[], then update this count");

static const char *const op_names[IR_OP_COUNT] = {
#define X(e, s) [IR_OP_##e] = s,
  IR_OPS(X)
#undef X
};

bool ir_op_lookup(const char *name, IrOpKind *out) {
  for (int i = 0; i < IR_OP_COUNT; i++) {
    assert(ir_ops[i].name && strcmp(ir_ops[i].name, op_names[i]) == 0);
    if (strcmp(name, op_names[i]) == 0) {
      *out = (IrOpKind)i;
      return true;
    }
  }
  return false;
}

int ir_op_n_attrs(IrOpKind op) {
  int n = 0;
  while (ir_ops[op].attrs[n].name) n++;
  assert(n <= IR_MAX_ATTRS);
  return n;
}

int ir_attr_index(IrOpKind op, const char *name) {
  for (int i = 0; ir_ops[op].attrs[i].name; i++)
    if (strcmp(ir_ops[op].attrs[i].name, name) == 0) return i;
  return -1;
}

const IrAttr *ir_attr(const IrNode *n, const char *name) {
  int i = ir_attr_index(n->op, name);
  assert(i >= 0 && "attribute not in the op's schema");
  return &n->attr[i];
}

int64_t ir_attr_int(const IrNode *n, const char *name) { return ir_attr(n, name)->i; }
double ir_attr_float(const IrNode *n, const char *name) { return ir_attr(n, name)->f; }
