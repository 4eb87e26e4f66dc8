// Lowering of the data-movement ops: reshape (a copy), permute, concat, slice and gather,
// for every dtype (f32, i32, i64). Most become "row copies": rows of contiguous elements
// moved with W-lane vectors and a scalar tail. Gather checks every index and reports one
// out of range through the status word instead of reading outside the table.
#include <stdio.h>

#include "codegen/compile.h"
#include "codegen/lower_rows.h"

// ---------------------------------------------------------------------------------------
// Row copies: for r in [0, rows): dst[dst_off + r*dst_stride + c] = src[src_off +
// r*src_stride + c], c in [0, len). Work items are blocks of at most COPY_BLOCK elements
// of one row, so a single long row (a reshape, a concat along axis 0) still splits across
// threads.
#define COPY_BLOCK 4096

typedef struct RowCopy {
  int64_t rows, len;
  int64_t src_off, src_stride;
  int64_t dst_off, dst_stride;
} RowCopy;

// Emits (unless it exists) kernel `name`: bufs {dst, src}. Returns the step's work.
static int64_t emit_row_copy(Cg *cg, const char *name, bool exists, DType dt, RowCopy rc) {
  int64_t nblk = (rc.len + COPY_BLOCK - 1) / COPY_BLOCK;
  if (exists) return rc.rows * nblk;
  LLVMTypeRef et = cg_elem_type(cg, dt);
  cg_kernel_begin(cg, name);
  LLVMValueRef dst = cg_buf(cg, 0), src = cg_buf(cg, 1);
  CgLoop w;  // work item w = (row r, block b)
  cg_for_begin(cg, &w, cg->begin, cg->end, cg_i64(cg, 1), "item");
  LLVMValueRef r = w.iv, c0 = cg_i64(cg, 0), count = cg_i64(cg, rc.len);
  if (nblk > 1) {
    r = LLVMBuildUDiv(cg->b, w.iv, cg_i64(cg, nblk), "row");
    c0 = cg_mul(cg, LLVMBuildURem(cg->b, w.iv, cg_i64(cg, nblk), "blk"), COPY_BLOCK);
    LLVMValueRef left = LLVMBuildSub(cg->b, cg_i64(cg, rc.len), c0, "");
    LLVMValueRef args[2] = {left, cg_i64(cg, COPY_BLOCK)};
    count = cg_intrinsic(cg, "llvm.smin", cg->i64, args, 2);
  }
  LLVMValueRef s = cg_add(cg, cg_add(cg, cg_i64(cg, rc.src_off), cg_mul(cg, r, rc.src_stride)), c0);
  LLVMValueRef t = cg_add(cg, cg_add(cg, cg_i64(cg, rc.dst_off), cg_mul(cg, r, rc.dst_stride)), c0);
  cg_copy_elems(cg, et, cg_gep(cg, et, dst, t), cg_gep(cg, et, src, s), count);
  cg_for_end(cg, &w);
  cg_kernel_end(cg);
  return rc.rows * nblk;
}

// One row-copy step from node `from` into node n.
static void row_copy_step(Cg *cg, const IrNode *n, const IrNode *from, const char *extra,
                          RowCopy rc, CgSteps *steps) {
  char name[96];
  bool exists = cg_kernel_name(cg, n, extra, name, sizeof name);
  int64_t work = emit_row_copy(cg, name, exists, n->dtype, rc);
  CgStep *st = cg_steps_add(steps, name, work, n->id);
  st->args[st->n_args++] = cg_arg_node(n->id);
  st->args[st->n_args++] = cg_arg_node(from->id);
}

static int norm_axis(int64_t axis, int rank) { return (int)(axis < 0 ? axis + rank : axis); }

// reshape: the same elements in the same order.
bool cg_lower_copy(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  int64_t total = ir_numel(&n->shape);
  row_copy_step(cg, n, n->in[0], NULL, (RowCopy){1, total, 0, total, 0, total}, steps);
  (void)d;
  return true;
}

// x (outer, dim, inner) -> out (outer, len, inner) taking start <= i < end along axis.
bool cg_lower_slice(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  const IrShape *si = &n->in[0]->shape;
  int axis = norm_axis(ir_attr_int(n, "axis"), si->rank);
  int64_t dim = si->dim[axis], start = ir_attr_int(n, "start");
  if (start < 0) start += dim;
  int64_t len = n->shape.dim[axis], outer = 1, inner = 1;
  for (int k = 0; k < axis; k++) outer *= si->dim[k];
  for (int k = axis + 1; k < si->rank; k++) inner *= si->dim[k];
  RowCopy rc = {outer, len * inner, start * inner, dim * inner, 0, len * inner};
  row_copy_step(cg, n, n->in[0], NULL, rc, steps);
  (void)d;
  return true;
}

// out (outer, row): input t (outer, len_t * inner) lands at columns [at_t, at_t + part_t).
// One step per input (their columns are disjoint).
bool cg_lower_concat(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  const IrShape *so = &n->shape;
  int axis = norm_axis(ir_attr_int(n, "axis"), so->rank);
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < axis; k++) outer *= so->dim[k];
  for (int k = axis + 1; k < so->rank; k++) inner *= so->dim[k];
  int64_t row = so->dim[axis] * inner, at = 0;
  for (int t = 0; t < n->n_in; t++) {
    int64_t part = n->in[t]->shape.dim[axis] * inner;
    char extra[32];
    snprintf(extra, sizeof extra, "in%d", t);
    row_copy_step(cg, n, n->in[t], extra, (RowCopy){outer, part, 0, part, at, row}, steps);
    at += part;
  }
  (void)d;
  return true;
}

// ---------------------------------------------------------------------------------------
// Permute. The output's dims are first merged where consecutive output dims are also
// consecutive, in order, in the input (and size-1 dims dropped): [B,T,H,D] -> [B,H,T,D]
// stays 4-d but [B,T,H,D] -> [B,T,H,D] is one dim, a plain copy. Work items are output
// rows (the merged last dim, L elements): a contiguous vector copy when the input's stride
// for that dim is 1, else a strided scalar gather.
bool cg_lower_permute(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  const IrShape *si = &n->in[0]->shape, *so = &n->shape;
  const IrAttr *perm = ir_attr(n, "perm");
  int64_t in_stride[IR_MAX_RANK], s = 1;
  for (int k = si->rank - 1; k >= 0; k--) {
    in_stride[k] = s;
    s *= si->dim[k];
  }
  // Merged output dims: size[g], input stride[g]; last_p: input dim that ends group g.
  int ng = 0, last_p = -1;
  int64_t size[IR_MAX_RANK], stride[IR_MAX_RANK];
  for (int i = 0; i < so->rank; i++) {
    int p = norm_axis(perm->ints[i], si->rank);
    if (so->dim[i] == 1) continue;
    bool follows = ng > 0 && p > last_p;  // next in the input, skipping size-1 dims
    for (int j = last_p + 1; follows && j < p; j++) follows = si->dim[j] == 1;
    if (follows) {
      size[ng - 1] *= so->dim[i];
      stride[ng - 1] = in_stride[p];
    } else {
      size[ng] = so->dim[i];
      stride[ng++] = in_stride[p];
    }
    last_p = p;
  }
  int64_t total = ir_numel(so);
  if (ng <= 1) {  // the identity on the data: a copy
    row_copy_step(cg, n, n->in[0], NULL, (RowCopy){1, total, 0, total, 0, total}, steps);
    return true;
  }
  int64_t L = size[ng - 1], rows = total / L;
  char name[96];
  if (!cg_kernel_name(cg, n, NULL, name, sizeof name)) {
    LLVMTypeRef et = cg_elem_type(cg, n->dtype);
    cg_kernel_begin(cg, name);
    LLVMValueRef out = cg_buf(cg, 0), in = cg_buf(cg, 1);
    CgLoop r;  // output rows: out (rows, L)
    cg_for_begin(cg, &r, cg->begin, cg->end, cg_i64(cg, 1), "row");
    LLVMValueRef src = cg_gep(cg, et, in, cg_flat_offset(cg, r.iv, ng - 1, size, stride));
    LLVMValueRef dst = cg_gep(cg, et, out, cg_mul(cg, r.iv, L));
    if (stride[ng - 1] == 1) {
      cg_copy_elems(cg, et, dst, src, cg_i64(cg, L));
    } else {
      CgLoop c;  // out[c] = in[c * stride]
      cg_for_begin(cg, &c, cg_i64(cg, 0), cg_i64(cg, L), cg_i64(cg, 1), "col");
      LLVMValueRef v = cg_load(cg, et, cg_gep(cg, et, src, cg_mul(cg, c.iv, stride[ng - 1])), 1);
      cg_store(cg, v, cg_gep(cg, et, dst, c.iv));
      cg_for_end(cg, &c);
    }
    cg_for_end(cg, &r);
    cg_kernel_end(cg);
  }
  cg_steps_add_node(steps, name, rows, n, false);
  (void)d;
  return true;
}

// ---------------------------------------------------------------------------------------
// Gather (TensorFlow, with batch_dims; see ir_ref_gather):
//   data (B, P, dim, inner), indices (B, Q) -> out (B, P, Q, inner)
// where B = data.shape[:batch_dims], P = data.shape[batch_dims:axis] and Q =
// indices.shape[batch_dims:]. Work items are output rows (b, p, q), each a copy of `inner`
// elements from data row indices[b, q]. An index outside [0, dim) is never read through:
// the row becomes zeros and the status word records (node, index, element of indices).
bool cg_lower_gather(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  const IrShape *sd = &n->in[0]->shape, *si = &n->in[1]->shape;
  int axis = norm_axis(ir_attr_int(n, "axis"), sd->rank);
  int64_t bd64 = ir_attr_int(n, "batch_dims");
  int bd = (int)(bd64 < 0 ? bd64 + sd->rank : bd64);
  int64_t P = 1, Q = 1, inner = 1, A = 1, dim = sd->dim[axis];
  for (int k = 0; k < axis; k++) A *= sd->dim[k];
  for (int k = bd; k < axis; k++) P *= sd->dim[k];
  for (int k = bd; k < si->rank; k++) Q *= si->dim[k];
  for (int k = axis + 1; k < sd->rank; k++) inner *= sd->dim[k];
  int64_t rows = A * Q;
  char name[96], node[32];
  snprintf(node, sizeof node, "node%d", n->id);  // the kernel reports this node: not shared
  if (!cg_kernel_name(cg, n, node, name, sizeof name)) {
    LLVMTypeRef et = cg_elem_type(cg, n->dtype), it = cg_elem_type(cg, n->in[1]->dtype);
    cg_kernel_begin(cg, name);
    LLVMValueRef out = cg_buf(cg, 0), data = cg_buf(cg, 1), idx = cg_buf(cg, 2);
    LLVMValueRef status = cg_buf(cg, 3);
    CgLoop w;  // w = (o, q) with o = (b, p)
    cg_for_begin(cg, &w, cg->begin, cg->end, cg_i64(cg, 1), "row");
    LLVMValueRef o = LLVMBuildUDiv(cg->b, w.iv, cg_i64(cg, Q), "o");
    LLVMValueRef q = LLVMBuildURem(cg->b, w.iv, cg_i64(cg, Q), "q");
    LLVMValueRef b = LLVMBuildUDiv(cg->b, o, cg_i64(cg, P), "b");
    LLVMValueRef ie = cg_add(cg, cg_mul(cg, b, Q), q);  // element of indices: (b, q)
    LLVMValueRef row = cg_load(cg, it, cg_gep(cg, it, idx, ie), 1);
    if (it != cg->i64) row = LLVMBuildSExt(cg->b, row, cg->i64, "");
    LLVMValueRef dst = cg_gep(cg, et, out, cg_mul(cg, w.iv, inner));
    CgIf ok;  // unsigned compare: negative indices are out of range too
    cg_if_begin(cg, &ok, LLVMBuildICmp(cg->b, LLVMIntULT, row, cg_i64(cg, dim), "in_range"));
    LLVMValueRef src = cg_gep(cg, et, data, cg_mul(cg, cg_add(cg, cg_mul(cg, o, dim), row), inner));
    cg_copy_elems(cg, et, dst, src, cg_i64(cg, inner));
    cg_if_else(cg, &ok);
    cg_report_status(cg, status, CG_STATUS_INDEX_RANGE, n->id, row, ie);
    cg_zero_elems(cg, et, dst, cg_i64(cg, inner));
    cg_if_end(cg, &ok);
    cg_for_end(cg, &w);
    cg_kernel_end(cg);
  }
  cg_steps_add_node(steps, name, rows, n, true);
  (void)d;
  return true;
}
