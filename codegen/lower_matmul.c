// Lowering of matmul to the packed GEMM (codegen/cg_gemm.c): the node's shapes, transposes
// and broadcast batch dims become a CgGemm of static sizes and strides. Batches of a
// right operand that is shared by every batch (x W^T in linear layers) fold into M.
#include <string.h>

#include "codegen/compile.h"
#include "codegen/lower.h"
#include "codegen/lower_rows.h"

// Element strides of operand x's batch dims, aligned to the output's batch dims.
static void batch_strides(const IrShape *x, const IrShape *out, int64_t *stride) {
  int nb = out->rank - 2, xb = x->rank - 2;
  int64_t s = x->dim[x->rank - 1] * x->dim[x->rank - 2];
  for (int d = nb - 1; d >= 0; d--) {
    int xd = d - (nb - xb);
    if (xd < 0 || x->dim[xd] == 1) {
      stride[d] = 0;
    } else {
      stride[d] = s;
    }
    if (xd >= 0) s *= x->dim[xd];
  }
}

void cg_plan_matmul(const IrNode *n, CgGemm *out) {
  const IrShape *a = &n->in[0]->shape, *b = &n->in[1]->shape, *o = &n->shape;
  bool ta = ir_attr_int(n, "transpose_a"), tb = ir_attr_int(n, "transpose_b");
  CgGemm g = {0};
  g.M = o->dim[o->rank - 2];
  g.N = o->dim[o->rank - 1];
  g.K = ta ? a->dim[a->rank - 2] : a->dim[a->rank - 1];
  g.a_rs = ta ? 1 : g.K;
  g.a_cs = ta ? g.M : 1;
  g.b_rs = tb ? 1 : g.N;
  g.b_cs = tb ? g.K : 1;
  g.c_rs = g.N;
  g.scale = 1.0f;
  g.b_constant = n->in[1]->op == IR_OP_PARAM;
  g.bf16 = ir_attr_int(n, "bf16") != 0;
  g.int8 = ir_attr_int(n, "int8") != 0;
  int nb = o->rank - 2;
  int64_t as[IR_MAX_RANK], bs[IR_MAX_RANK];
  batch_strides(a, o, as);
  batch_strides(b, o, bs);
  bool b_shared = true, a_full = !ta;
  for (int i = 0; i < nb; i++) {
    b_shared &= bs[i] == 0;
    a_full &= as[i] != 0 || o->dim[i] == 1;
  }
  if (nb > 0 && b_shared && a_full) {  // [batch..., M, K] x [K, N]: one GEMM of M * batch rows
    for (int i = 0; i < nb; i++) g.M *= o->dim[i];
  } else {
    int64_t cs = g.M * g.N;
    for (int i = nb - 1; i >= 0; i--) {
      g.c_bstride[i] = cs;
      cs *= o->dim[i];
    }
    for (int i = 0; i < nb; i++) {
      g.bdim[g.nbatch] = o->dim[i];
      g.a_bstride[g.nbatch] = as[i];
      g.b_bstride[g.nbatch] = bs[i];
      g.c_bstride[g.nbatch] = g.c_bstride[i];
      g.nbatch++;
    }
  }
  *out = g;
}

bool cg_lower_matmul(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  CgGemm g;
  cg_plan_matmul(n, &g);
  char name[96];
  cg_kernel_name(cg, n, NULL, name, sizeof name);
  return cg_lower_gemm(cg, &g, name, cg_arg_node(n->in[0]->id), cg_arg_node(n->in[1]->id),
                       cg_arg_node(n->id), cg_arg_node(n->id), cg_arg_node(n->id), n->id, steps, d);
}
