// The lowering column of the op table: for each IR op, the function that turns a node
// into kernels and plan steps. (It lives here, not in ir/ops.c, because ir/ knows nothing
// of LLVM; tests/test_jit_ops.c checks that every op has one.)
#include "codegen/compile.h"
#include "codegen/lower.h"

const CgLowerFn cg_lowerings[IR_OP_COUNT] = {
  [IR_OP_INPUT] = NULL, [IR_OP_PARAM] = NULL,  // bound, not computed
  [IR_OP_FULL] = cg_lower_source, [IR_OP_IOTA] = cg_lower_source,
  [IR_OP_CAST] = cg_lower_elementwise, [IR_OP_ADD] = cg_lower_elementwise,
  [IR_OP_SUB] = cg_lower_elementwise, [IR_OP_MUL] = cg_lower_elementwise,
  [IR_OP_DIV] = cg_lower_elementwise, [IR_OP_MAXIMUM] = cg_lower_elementwise,
  [IR_OP_MINIMUM] = cg_lower_elementwise, [IR_OP_NEG] = cg_lower_elementwise,
  [IR_OP_EXP] = cg_lower_elementwise, [IR_OP_LOG] = cg_lower_elementwise,
  [IR_OP_SQRT] = cg_lower_elementwise, [IR_OP_RSQRT] = cg_lower_elementwise,
  [IR_OP_TANH] = cg_lower_elementwise, [IR_OP_ERF] = cg_lower_elementwise,
  [IR_OP_GELU] = cg_lower_elementwise, [IR_OP_RELU] = cg_lower_elementwise,
  [IR_OP_SIGMOID] = cg_lower_elementwise, [IR_OP_AFFINE] = cg_lower_elementwise,
  [IR_OP_STEP] = cg_lower_elementwise,
  [IR_OP_DROPOUT] = cg_lower_elementwise, [IR_OP_DROPOUT_GRAD] = cg_lower_elementwise,
  [IR_OP_MATMUL] = cg_lower_matmul,
  [IR_OP_RESHAPE] = cg_lower_copy, [IR_OP_PERMUTE] = cg_lower_permute,
  [IR_OP_CONCAT] = cg_lower_concat, [IR_OP_SLICE] = cg_lower_slice,
  [IR_OP_GATHER] = cg_lower_gather,
  [IR_OP_REDUCE_SUM] = cg_lower_reduce, [IR_OP_REDUCE_MEAN] = cg_lower_reduce,
  [IR_OP_REDUCE_MAX] = cg_lower_reduce,
  [IR_OP_SOFTMAX] = cg_lower_softmax, [IR_OP_LOG_SOFTMAX] = cg_lower_softmax,
  [IR_OP_LAYERNORM] = cg_lower_layernorm,
  [IR_OP_CROSS_ENTROPY] = cg_lower_cross_entropy, [IR_OP_KL_DIV] = cg_lower_kl_div,
  [IR_OP_FUSED] = cg_lower_fused,
  [IR_OP_ATTENTION] = cg_lower_attention, [IR_OP_ATTENTION_GRAD] = cg_lower_attention_grad,
  [IR_OP_SCATTER_ADD] = cg_lower_scatter_add,
  [IR_OP_GELU_GRAD] = cg_lower_elementwise, [IR_OP_SILU] = cg_lower_elementwise,
};
const bool cg_quick_ops[IR_OP_COUNT] = {
  [IR_OP_FULL] = true, [IR_OP_IOTA] = true, [IR_OP_CAST] = true, [IR_OP_RESHAPE] = true,
  [IR_OP_PERMUTE] = true, [IR_OP_CONCAT] = true, [IR_OP_SLICE] = true, [IR_OP_GATHER] = true,
};

_Static_assert(IR_OP_COUNT == 45, "IR_OPS changed: give the op its lowering above (and its row "
                                  "in ir_ops[], ir/ops.c), then update this count");
