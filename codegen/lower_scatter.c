// Lowering of scatter_add (gather's transpose, the gradient of an embedding lookup).
// Deterministic and independent of the thread count: every work item owns a block of
// output columns of one outer row and adds the updates into it in index order, so no two
// threads touch one output element and repeated ids add up in a fixed order.
#include <stdio.h>

#include "codegen/compile.h"
#include "codegen/lower_rows.h"

typedef struct AddCtx {
  LLVMValueRef dst, src;  // float pointers
} AddCtx;

// dst[i..i+lanes) += src[i..i+lanes)
static void add_body(Cg *cg, LLVMValueRef i, int lanes, void *p) {
  AddCtx *c = p;
  LLVMValueRef at = cg_gep(cg, cg->f32, c->dst, i);
  LLVMValueRef x = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, c->src, i), lanes);
  cg_store(cg, LLVMBuildFAdd(cg->b, cg_load(cg, cg->f32, at, lanes), x, ""), at);
}

// dst[0..count) += src[0..count) for a runtime count: W-lane vectors, then scalars.
static void add_elems(Cg *cg, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef count) {
  AddCtx c = {dst, src};
  LLVMValueRef vec_end = cg_mul(cg, LLVMBuildUDiv(cg->b, count, cg_i64(cg, cg->W), ""), cg->W);
  CgLoop v, t;
  cg_for_begin(cg, &v, cg_i64(cg, 0), vec_end, cg_i64(cg, cg->W), "vadd");
  add_body(cg, v.iv, cg->W, &c);
  cg_for_end(cg, &v);
  cg_for_begin(cg, &t, vec_end, count, cg_i64(cg, 1), "tadd");
  add_body(cg, t.iv, 1, &c);
  cg_for_end(cg, &t);
}

// scatter_add (see ir_ref_scatter_add):
//   updates (B, P, Q, inner), indices (B, Q) -> out (B, P, dim, inner), zeros first, then
//   out[b, p, indices[b, q], :] += updates[b, p, q, :] for q = 0, 1, ...
// Work items: (o = (b, p), column block) with blocks of 4W columns, so an embedding table's
// gradient [V, H] still splits H across threads. An index outside [0, dim) adds nothing
// and the status word records (node, index, element of indices).
bool cg_lower_scatter_add(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  const IrShape *so = &n->shape, *si = &n->in[1]->shape;
  int64_t axis = ir_attr_int(n, "axis");
  if (axis < 0) axis += so->rank;
  int bd = (int)ir_attr_int(n, "batch_dims");
  int64_t P = 1, Q = 1, inner = 1, A = 1, dim = so->dim[axis];
  for (int k = 0; k < axis; k++) A *= so->dim[k];
  for (int k = bd; k < axis; k++) P *= so->dim[k];
  for (int k = bd; k < si->rank; k++) Q *= si->dim[k];
  for (int k = (int)axis + 1; k < so->rank; k++) inner *= so->dim[k];
  int64_t block = 4 * (int64_t)cg->W, nblk = (inner + block - 1) / block;
  char name[96], node[32];
  snprintf(node, sizeof node, "node%d", n->id);  // the kernel reports this node: not shared
  if (!cg_kernel_name(cg, n, node, name, sizeof name)) {
    LLVMTypeRef it = cg_elem_type(cg, n->in[1]->dtype), f = cg->f32;
    cg_kernel_begin(cg, name);
    LLVMValueRef out = cg_buf(cg, 0), upd = cg_buf(cg, 1), idx = cg_buf(cg, 2);
    LLVMValueRef status = cg_buf(cg, 3);
    CgLoop w;  // w = (o, column block)
    cg_for_begin(cg, &w, cg->begin, cg->end, cg_i64(cg, 1), "item");
    LLVMValueRef o = LLVMBuildUDiv(cg->b, w.iv, cg_i64(cg, nblk), "o");
    LLVMValueRef c0 = cg_mul(cg, LLVMBuildURem(cg->b, w.iv, cg_i64(cg, nblk), "blk"), block);
    LLVMValueRef args[2] = {LLVMBuildSub(cg->b, cg_i64(cg, inner), c0, ""), cg_i64(cg, block)};
    LLVMValueRef count = cg_intrinsic(cg, "llvm.smin", cg->i64, args, 2);
    LLVMValueRef b = LLVMBuildUDiv(cg->b, o, cg_i64(cg, P), "b");
    LLVMValueRef out_o = cg_gep(cg, f, out, cg_add(cg, cg_mul(cg, o, dim * inner), c0));
    LLVMValueRef upd_o = cg_gep(cg, f, upd, cg_add(cg, cg_mul(cg, o, Q * inner), c0));
    if (nblk == 1) {  // the whole (dim, inner) slab of o is contiguous
      cg_zero_elems(cg, f, out_o, cg_i64(cg, dim * inner));
    } else {
      CgLoop r;  // out[o, r, c0 : c0 + count) = 0
      cg_for_begin(cg, &r, cg_i64(cg, 0), cg_i64(cg, dim), cg_i64(cg, 1), "zrow");
      cg_zero_elems(cg, f, cg_gep(cg, f, out_o, cg_mul(cg, r.iv, inner)), count);
      cg_for_end(cg, &r);
    }
    CgLoop q;  // in index order: the sums do not depend on the thread count
    cg_for_begin(cg, &q, cg_i64(cg, 0), cg_i64(cg, Q), cg_i64(cg, 1), "q");
    LLVMValueRef ie = cg_add(cg, cg_mul(cg, b, Q), q.iv);  // element of indices: (b, q)
    LLVMValueRef row = cg_load(cg, it, cg_gep(cg, it, idx, ie), 1);
    if (it != cg->i64) row = LLVMBuildSExt(cg->b, row, cg->i64, "");
    CgIf ok;  // unsigned compare: negative indices are out of range too
    cg_if_begin(cg, &ok, LLVMBuildICmp(cg->b, LLVMIntULT, row, cg_i64(cg, dim), "in_range"));
    add_elems(cg, cg_gep(cg, f, out_o, cg_mul(cg, row, inner)),
              cg_gep(cg, f, upd_o, cg_mul(cg, q.iv, inner)), count);
    cg_if_else(cg, &ok);
    cg_report_status(cg, status, CG_STATUS_INDEX_RANGE, n->id, row, ie);
    cg_if_end(cg, &ok);
    cg_for_end(cg, &q);
    cg_for_end(cg, &w);
    cg_kernel_end(cg);
  }
  cg_steps_add_node(steps, name, A * nblk, n, true);
  (void)d;
  return true;
}
