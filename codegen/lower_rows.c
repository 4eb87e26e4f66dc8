// Helpers the data, reduction and loss lowerings share (see lower_rows.h): element types,
// register variables, branches, flat-index offsets, row loops, copies, row reductions in a
// fixed order, and the status word.
#include <assert.h>
#include <math.h>

#include "codegen/lower_rows.h"

LLVMTypeRef cg_elem_type(Cg *cg, DType t) {
  switch (t) {
  case DT_F32: return cg->f32;
  case DT_I32: return cg->i32;
  case DT_I64: return cg->i64;
  default: assert(0 && "the JIT computes in f32, i32 and i64 only"); return cg->f32;
  }
}

int cg_lanes(LLVMValueRef v) {
  LLVMTypeRef t = LLVMTypeOf(v);
  return LLVMGetTypeKind(t) == LLVMVectorTypeKind ? (int)LLVMGetVectorSize(t) : 1;
}

LLVMValueRef cg_splat_like(Cg *cg, LLVMValueRef s, LLVMValueRef like) {
  return cg_splat(cg, s, cg_lanes(like));
}

// ---------------------------------------------------------------------------------------
LLVMValueRef cg_var(Cg *cg, LLVMTypeRef t, LLVMValueRef init) {
  LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(cg->fn);
  LLVMBuilderRef b = LLVMCreateBuilderInContext(cg->ctx);
  LLVMValueRef first = LLVMGetFirstInstruction(entry);
  if (first) LLVMPositionBuilderBefore(b, first);
  else LLVMPositionBuilderAtEnd(b, entry);
  LLVMValueRef var = LLVMBuildAlloca(b, t, "var");
  LLVMDisposeBuilder(b);
  if (init) LLVMBuildStore(cg->b, init, var);
  return var;
}

LLVMValueRef cg_get(Cg *cg, LLVMValueRef var) {
  return LLVMBuildLoad2(cg->b, LLVMGetAllocatedType(var), var, "");
}

void cg_set(Cg *cg, LLVMValueRef var, LLVMValueRef v) { LLVMBuildStore(cg->b, v, var); }

void cg_if_begin(Cg *cg, CgIf *c, LLVMValueRef cond) {
  LLVMBasicBlockRef then = cg_block(cg, "then");
  c->els = cg_block(cg, "else");
  c->merge = NULL;
  LLVMBuildCondBr(cg->b, cond, then, c->els);
  LLVMPositionBuilderAtEnd(cg->b, then);
}

void cg_if_else(Cg *cg, CgIf *c) {
  c->merge = cg_block(cg, "endif");
  LLVMBuildBr(cg->b, c->merge);
  LLVMPositionBuilderAtEnd(cg->b, c->els);
}

void cg_if_end(Cg *cg, CgIf *c) {
  if (!c->merge) {  // no else: the else-block is where both paths meet
    LLVMBuildBr(cg->b, c->els);
    LLVMPositionBuilderAtEnd(cg->b, c->els);
    return;
  }
  LLVMBuildBr(cg->b, c->merge);
  LLVMPositionBuilderAtEnd(cg->b, c->merge);
}

// ---------------------------------------------------------------------------------------
LLVMValueRef cg_add(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildAdd(cg->b, a, b, "");
}

LLVMValueRef cg_mul(Cg *cg, LLVMValueRef a, int64_t k) {
  return k == 1 ? a : LLVMBuildMul(cg->b, a, cg_i64(cg, k), "");
}

LLVMValueRef cg_flat_offset(Cg *cg, LLVMValueRef flat, int n, const int64_t *dim,
                            const int64_t *stride) {
  LLVMValueRef off = cg_i64(cg, 0), rem = flat;
  for (int k = n - 1; k >= 0; k--) {
    if (dim[k] == 1) continue;
    bool outermost = true;  // no dim of size > 1 before k: rem is the index itself
    for (int j = 0; j < k; j++) outermost &= dim[j] == 1;
    LLVMValueRef idx = outermost ? rem : LLVMBuildURem(cg->b, rem, cg_i64(cg, dim[k]), "");
    if (!outermost) rem = LLVMBuildUDiv(cg->b, rem, cg_i64(cg, dim[k]), "");
    if (stride[k]) off = cg_add(cg, off, cg_mul(cg, idx, stride[k]));
    if (outermost) break;
  }
  return off;
}

// ---------------------------------------------------------------------------------------
void cg_for_cols(Cg *cg, int64_t len, CgColBody body, void *ctx) {
  int64_t vec_end = len / cg->W * cg->W;
  for (int pass = 0; pass < 2; pass++) {  // (len) = vectors of W lanes, then the tail
    int lanes = pass == 0 ? cg->W : 1;
    int64_t lo = pass == 0 ? 0 : vec_end, hi = pass == 0 ? vec_end : len;
    if (lo >= hi) continue;
    if (hi - lo == lanes) {  // exactly one step: no loop
      body(cg, cg_i64(cg, lo), lanes, ctx);
      continue;
    }
    CgLoop l;
    cg_for_begin(cg, &l, cg_i64(cg, lo), cg_i64(cg, hi), cg_i64(cg, lanes), pass ? "tail" : "col");
    body(cg, l.iv, lanes, ctx);
    cg_for_end(cg, &l);
  }
}

// Copies and fills are llvm.memcpy and llvm.memset: a few instructions to compile (a
// vector loop and its tail, unrolled by the optimiser, were ~200 for each slice, concat
// and gather kernel, a fifth of the VQA program's compile time), expanded inline for small
// constant sizes and otherwise libc's, as fast as the loop on rows of hundreds of floats.
static unsigned elem_bytes(Cg *cg, LLVMTypeRef et) {
  if (LLVMGetTypeKind(et) == LLVMIntegerTypeKind) return LLVMGetIntTypeWidth(et) / 8;
  return et == cg->f64 ? 8 : 4;
}

void cg_copy_elems(Cg *cg, LLVMTypeRef et, LLVMValueRef dst, LLVMValueRef src,
                   LLVMValueRef count) {
  unsigned size = elem_bytes(cg, et);
  LLVMBuildMemCpy(cg->b, dst, size, src, size, cg_mul(cg, count, size));
}

void cg_zero_elems(Cg *cg, LLVMTypeRef et, LLVMValueRef dst, LLVMValueRef count) {
  unsigned size = elem_bytes(cg, et);
  LLVMBuildMemSet(cg->b, dst, LLVMConstInt(cg->i8, 0, 0), cg_mul(cg, count, size), size);
}

// ---------------------------------------------------------------------------------------
LLVMValueRef cg_row_identity(Cg *cg, CgRowOp op, LLVMTypeRef et, int lanes) {
  LLVMValueRef s;
  if (op == CG_ROW_SUM) s = LLVMConstNull(et);
  else if (et == cg->f32) s = LLVMConstReal(et, -INFINITY);
  else if (et == cg->i32) s = LLVMConstInt(et, (unsigned long long)(int64_t)INT32_MIN, 1);
  else s = LLVMConstInt(et, (unsigned long long)INT64_MIN, 1);
  if (lanes == 1) return s;
  LLVMValueRef v[64];
  assert(lanes <= 64);
  for (int i = 0; i < lanes; i++) v[i] = s;
  return LLVMConstVector(v, (unsigned)lanes);
}

static bool is_float_value(LLVMValueRef v) {
  LLVMTypeRef t = LLVMTypeOf(v);
  if (LLVMGetTypeKind(t) == LLVMVectorTypeKind) t = LLVMGetElementType(t);
  return LLVMGetTypeKind(t) == LLVMFloatTypeKind;
}

LLVMValueRef cg_row_combine(Cg *cg, CgRowOp op, LLVMValueRef a, LLVMValueRef b) {
  bool f = is_float_value(a);
  if (op == CG_ROW_SUM) return f ? LLVMBuildFAdd(cg->b, a, b, "") : LLVMBuildAdd(cg->b, a, b, "");
  LLVMValueRef args[2] = {a, b};
  return cg_intrinsic(cg, f ? "llvm.maximum" : "llvm.smax", LLVMTypeOf(a), args, 2);
}

// The lanes of v folded into a scalar: ordered for float sums (deterministic).
static LLVMValueRef horizontal(Cg *cg, CgRowOp op, LLVMValueRef v) {
  bool f = is_float_value(v);
  LLVMTypeRef t = LLVMTypeOf(v);
  if (op == CG_ROW_SUM && f) return cg_reduce_add(cg, v);
  const char *name = op == CG_ROW_SUM ? "llvm.vector.reduce.add"
                     : f              ? "llvm.vector.reduce.fmaximum"
                                      : "llvm.vector.reduce.smax";
  return cg_intrinsic(cg, name, t, &v, 1);
}

static LLVMValueRef load_mapped(Cg *cg, LLVMTypeRef et, LLVMValueRef row, LLVMValueRef col,
                                int lanes, CgRowMap map, void *ctx) {
  LLVMValueRef x = row ? cg_load(cg, et, cg_gep(cg, et, row, col), lanes)
                       : LLVMGetUndef(cg_vec_t(cg, et, lanes));
  return map ? map(cg, x, col, ctx) : x;
}

CgFold cg_fold_begin(Cg *cg, CgRowOp op, LLVMTypeRef et, int lanes) {
  CgFold f = {op, op == CG_ROW_SUM && et == cg->f32, NULL, NULL};
  f.acc = cg_var(cg, cg_vec_t(cg, et, lanes), cg_row_identity(cg, op, et, lanes));
  if (f.kahan) f.comp = cg_var(cg, cg_vec_t(cg, et, lanes), cg_row_identity(cg, op, et, lanes));
  return f;
}

void cg_fold_add(Cg *cg, CgFold *f, LLVMValueRef x) {
  LLVMValueRef s = cg_get(cg, f->acc);
  if (!f->kahan) {
    cg_set(cg, f->acc, cg_row_combine(cg, f->op, s, x));
    return;
  }
  LLVMBuilderRef b = cg->b;  // y = x - c; t = s + y; c = (t - s) - y; s = t
  LLVMValueRef y = LLVMBuildFSub(b, x, cg_get(cg, f->comp), "");
  LLVMValueRef t = LLVMBuildFAdd(b, s, y, "");
  LLVMValueRef c = LLVMBuildFSub(b, LLVMBuildFSub(b, t, s, ""), y, "");
  LLVMValueRef at = cg_intrinsic(cg, "llvm.fabs", LLVMTypeOf(t), &t, 1);
  LLVMValueRef finite = LLVMBuildFCmp(b, LLVMRealOLT, at, cg_const_like(cg, t, INFINITY), "");
  cg_set(cg, f->comp, LLVMBuildSelect(b, finite, c, cg_const_like(cg, c, 0.0), ""));
  cg_set(cg, f->acc, t);
}

LLVMValueRef cg_fold_value(Cg *cg, const CgFold *f) {
  LLVMValueRef acc = cg_get(cg, f->acc);
  return f->kahan ? LLVMBuildFSub(cg->b, acc, cg_get(cg, f->comp), "") : acc;
}

LLVMValueRef cg_row_reduce(Cg *cg, CgRowOp op, LLVMTypeRef et, LLVMValueRef row, int64_t len,
                           CgRowMap map, void *ctx) {
  int W = cg->W, U = len >= 4 * W ? 4 : 1;
  int64_t main_end = len / (U * W) * (U * W), vec_end = len / W * W;
  CgFold res = cg_fold_begin(cg, op, et, 1);
  if (vec_end > 0) {
    CgFold acc[4];
    for (int u = 0; u < U; u++) acc[u] = cg_fold_begin(cg, op, et, W);
    CgLoop l;  // (len / 4W blocks, 4, W): lane k of fold u takes columns u*W + k (mod 4W)
    cg_for_begin(cg, &l, cg_i64(cg, 0), cg_i64(cg, main_end), cg_i64(cg, U * W), "red");
    for (int u = 0; u < U; u++) {
      LLVMValueRef col = cg_add(cg, l.iv, cg_i64(cg, u * W));
      cg_fold_add(cg, &acc[u], load_mapped(cg, et, row, col, W, map, ctx));
    }
    cg_for_end(cg, &l);
    for (int u = 1; u < U; u++) cg_fold_add(cg, &acc[0], cg_fold_value(cg, &acc[u]));
    if (vec_end > main_end) {  // the whole vectors after the last block of 4
      CgLoop r;
      cg_for_begin(cg, &r, cg_i64(cg, main_end), cg_i64(cg, vec_end), cg_i64(cg, W), "redv");
      cg_fold_add(cg, &acc[0], load_mapped(cg, et, row, r.iv, W, map, ctx));
      cg_for_end(cg, &r);
    }
    cg_set(cg, res.acc, horizontal(cg, op, cg_fold_value(cg, &acc[0])));
  }
  if (len > vec_end) {
    CgLoop t;
    cg_for_begin(cg, &t, cg_i64(cg, vec_end), cg_i64(cg, len), cg_i64(cg, 1), "redt");
    cg_fold_add(cg, &res, load_mapped(cg, et, row, t.iv, 1, map, ctx));
    cg_for_end(cg, &t);
  }
  return cg_fold_value(cg, &res);
}

// ---------------------------------------------------------------------------------------
void cg_report_status(Cg *cg, LLVMValueRef status, int code, int node, LLVMValueRef value,
                      LLVMValueRef index) {
  LLVMValueRef r = LLVMBuildAtomicCmpXchg(cg->b, status, cg_i64(cg, CG_STATUS_OK),
                                          cg_i64(cg, code), LLVMAtomicOrderingSequentiallyConsistent,
                                          LLVMAtomicOrderingSequentiallyConsistent, 0);
  CgIf won;
  cg_if_begin(cg, &won, LLVMBuildExtractValue(cg->b, r, 1, "won"));
  cg_store(cg, cg_i64(cg, node), cg_gep(cg, cg->i64, status, cg_i64(cg, 1)));
  cg_store(cg, value, cg_gep(cg, cg->i64, status, cg_i64(cg, 2)));
  cg_store(cg, index, cg_gep(cg, cg->i64, status, cg_i64(cg, 3)));
  cg_if_end(cg, &won);
}
