// The precision pass: with PassOptions.bf16 (--precision bf16), decides per node which GEMMs
// take bf16 operands. Every matmul (linear layers, the heads, a batched matmul that
// fuse_attention left, and with a loss the backward matmuls autodiff built: dX = dY.W^T,
// dW = X^T.dY; this pass runs after autodiff for that) gets bf16=true: its operands are
// rounded to bf16 (round to nearest even) when the GEMM packs them and its products are
// summed in f32 (codegen/cg_gemm_bf16.c; the reference evaluator rounds the same way).
// Everything else stays f32: LayerNorm, softmax, GELU's argument (the GEMM's f32 result),
// residual adds, losses, the optimiser's update, and the fused attention op's Q.K^T and
// P.V. No conversion nodes are added: the conversion is the packing, which every GEMM
// already does; `kiln dump --after precision` shows bf16=true.
#include "passes/passes.h"

bool pass_precision(IrGraph *g, const PassOptions *o, Diag *d) {
  (void)d;
  if (!o->bf16) return true;
  int at = ir_attr_index(IR_OP_MATMUL, "bf16");
  for (int i = 0; i < g->n_nodes; i++) {
    IrNode *n = g->nodes[i];
    if (n->op == IR_OP_MATMUL && n->in[0]->dtype == DT_F32 && n->in[1]->dtype == DT_F32)
      n->attr[at].i = 1;
  }
  return true;
}
