// The precision pass: decides per node which GEMMs take reduced-precision operands.
// With PassOptions.bf16 (--precision bf16) every matmul (linear layers, the heads, a batched
// matmul that fuse_attention left, and with a loss the backward matmuls autodiff built:
// dX = dY.W^T, dW = X^T.dY; this pass runs after autodiff for that) gets bf16=true: its
// operands are rounded to bf16 (round to nearest even) when the GEMM packs them and its
// products are summed in f32 (codegen/cg_gemm_bf16.c; the reference evaluator rounds the
// same way). So does every fused attention: its Q.K^T and P.V multiply bf16 operands with
// f32 sums, its softmax stays f32 (codegen/lower_attention.c, ir/attention.c); so does its
// backward (attention_grad): S, dP = dO.V^T, dV, dQ and dK multiply bf16 operands with f32
// sums, the softmax, D_i = rowsum(dO * O) and dS stay f32.
// With PassOptions.int8 (--precision int8, inference only) the matmuls whose right operand
// is a parameter (linear layers with constant weights: Q/K/V, attention output,
// intermediate, output dense and the heads) get int8=true: weights quantised per output
// channel, activations per row, int32 sums (codegen/cg_gemm_int8.c, runtime/dtype.h); a
// matmul of two activations (attention's Q.K^T and P.V, in or out of the fused attention
// op), or one of K > 65536, stays f32.
// Everything else stays f32: LayerNorm, softmax, GELU's argument (the GEMM's f32 result),
// residual adds, losses, embedding lookups, the optimiser's update. No conversion nodes are added: the conversion is the packing, which
// every GEMM already does; `kiln dump --after precision` shows the attributes.
#include "passes/passes.h"

// The int8 GEMM's i32 sums of K products of a u8 and an s8 (at most 255 · 127 each) cannot
// overflow below this K; a longer matmul stays f32.
enum { INT8_MAX_K = 65536 };

static int64_t matmul_k(const IrNode *n) {
  const IrShape *a = &n->in[0]->shape;
  return a->dim[a->rank - (ir_attr_int(n, "transpose_a") ? 2 : 1)];
}

bool pass_precision_supported(const PassOptions *o, Diag *d) {
  if (o->int8 && (o->loss || o->training || o->optimizer))
    return diag_error(d, "--precision int8 is not yet supported for training or gradients (inference only: "
                      "kiln run, bench, eval, compile)");
  return true;
}

bool pass_precision(IrGraph *g, const PassOptions *o, Diag *d) {
  if (!o->bf16 && !o->int8) return true;
  if (!pass_precision_supported(o, d)) return false;
  int at = ir_attr_index(IR_OP_MATMUL, o->int8 ? "int8" : "bf16");
  int attn_at = ir_attr_index(IR_OP_ATTENTION, "bf16");
  for (int i = 0; i < g->n_nodes; i++) {
    IrNode *n = g->nodes[i];
    if ((n->op == IR_OP_ATTENTION || n->op == IR_OP_ATTENTION_GRAD) && o->bf16) n->attr[attn_at].i = 1;
    if (n->op != IR_OP_MATMUL || n->in[0]->dtype != DT_F32 || n->in[1]->dtype != DT_F32) continue;
    if (o->int8 && (n->in[1]->op != IR_OP_PARAM || matmul_k(n) > INT8_MAX_K)) continue;
    n->attr[at].i = 1;
  }
  return true;
}
