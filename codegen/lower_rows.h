// Helpers the data, reduction and loss lowerings share (codegen/lower_rows.c): element
// types, variables the optimiser keeps in registers, branches, offsets of flat indices,
// vector loops over a row (W lanes, then a scalar tail), vectorised copies, row reductions
// in a fixed order, and reporting a data error through the plan's status word.
#ifndef KILN_LOWER_ROWS_H
#define KILN_LOWER_ROWS_H

#include "codegen/lower.h"

LLVMTypeRef cg_elem_type(Cg *cg, DType t);  // f32 -> float, i32 -> i32, i64 -> i64
int cg_lanes(LLVMValueRef v);                // 1 for a scalar
// The scalar s repeated to the lane count of `like` (s itself when `like` is a scalar).
LLVMValueRef cg_splat_like(Cg *cg, LLVMValueRef s, LLVMValueRef like);

// ---- variables: an alloca in the kernel's entry block, promoted to registers by SROA --
LLVMValueRef cg_var(Cg *cg, LLVMTypeRef t, LLVMValueRef init);  // init may be NULL
LLVMValueRef cg_get(Cg *cg, LLVMValueRef var);
void cg_set(Cg *cg, LLVMValueRef var, LLVMValueRef v);

// ---- if (cond) { then } [else { ... }] ------------------------------------------------
typedef struct CgIf {
  LLVMBasicBlockRef els, merge;
} CgIf;
void cg_if_begin(Cg *cg, CgIf *c, LLVMValueRef cond);  // builder in the then-block
void cg_if_else(Cg *cg, CgIf *c);                      // builder in the else-block
void cg_if_end(Cg *cg, CgIf *c);                       // builder after both

// ---- addressing -----------------------------------------------------------------------
// sum_k idx_k * stride[k], where (idx_0, ..., idx_{n-1}) is the row-major multi-index of
// `flat` over dims dim[0..n). Unsigned division by constants; size-1 dims cost nothing.
LLVMValueRef cg_flat_offset(Cg *cg, LLVMValueRef flat, int n, const int64_t *dim,
                            const int64_t *stride);
LLVMValueRef cg_add(Cg *cg, LLVMValueRef a, LLVMValueRef b);                  // i64 a + b
LLVMValueRef cg_mul(Cg *cg, LLVMValueRef a, int64_t k);                       // i64 a * k

// ---- loops over one row of `len` elements (static length) ------------------------------
// Calls body(col, lanes) for col = 0, W, 2W, ... with lanes = W, then for the tail
// columns one at a time with lanes = 1.
typedef void (*CgColBody)(Cg *cg, LLVMValueRef col, int lanes, void *ctx);
void cg_for_cols(Cg *cg, int64_t len, CgColBody body, void *ctx);

// dst[0..count) = src[0..count) (runtime count), and zeros: llvm.memcpy, llvm.memset.
void cg_copy_elems(Cg *cg, LLVMTypeRef et, LLVMValueRef dst, LLVMValueRef src,
                   LLVMValueRef count);
void cg_zero_elems(Cg *cg, LLVMTypeRef et, LLVMValueRef dst, LLVMValueRef count);

// ---- row reductions -------------------------------------------------------------------
// SUM adds (floats: fadd, ints: wrapping add); MAX is llvm.maximum for floats (a NaN, once
// in, stays, as in the reference) and smax for ints.
typedef enum { CG_ROW_SUM, CG_ROW_MAX } CgRowOp;
LLVMValueRef cg_row_identity(Cg *cg, CgRowOp op, LLVMTypeRef et, int lanes);  // 0 or -inf/min
LLVMValueRef cg_row_combine(Cg *cg, CgRowOp op, LLVMValueRef a, LLVMValueRef b);

// A running fold acc = acc op x over scalars or vectors of `lanes`. Float sums are
// compensated (Kahan): the rounding error of each addition is carried into the next, so
// a sum of many values that cancel is still accurate to a few roundings of the result,
// in f32 and in a fixed order. A non-finite partial sum drops the compensation, so
// inf + finite stays inf rather than becoming NaN.
typedef struct CgFold {
  CgRowOp op;
  bool kahan;
  LLVMValueRef acc, comp;  // variables; comp: what acc lacks, negated (Kahan's c)
} CgFold;
CgFold cg_fold_begin(Cg *cg, CgRowOp op, LLVMTypeRef et, int lanes);
void cg_fold_add(Cg *cg, CgFold *f, LLVMValueRef x);
LLVMValueRef cg_fold_value(Cg *cg, const CgFold *f);  // acc - comp for sums

// Optional map applied to each loaded value x (scalar or vector) whose first lane is at
// column `col` of the row; returns what is folded.
typedef LLVMValueRef (*CgRowMap)(Cg *cg, LLVMValueRef x, LLVMValueRef col, void *ctx);

// Folds map(row[0..len)) with op into a scalar of type et, in an order fixed at compile
// time: four W-lane folds over blocks of 4W (when len >= 4W), folded into the first in
// order 1, 2, 3; the remaining whole vectors into the first; its lanes added in order
// (llvm.vector.reduce.fadd without reassociation); then the tail elements one by one.
// row may be NULL when map computes each value itself (x is then undef, of `lanes`).
LLVMValueRef cg_row_reduce(Cg *cg, CgRowOp op, LLVMTypeRef et, LLVMValueRef row, int64_t len,
                           CgRowMap map, void *ctx);

// ---- data errors ----------------------------------------------------------------------
// status is int64_t[4] {code, node id, value, index}. The first error wins: a
// compare-and-swap of status[0] from CG_STATUS_OK to `code`; the winner fills the rest.
// value and index are i64.
void cg_report_status(Cg *cg, LLVMValueRef status, int code, int node, LLVMValueRef value,
                      LLVMValueRef index);

// ---- pieces of single-op lowerings that fused kernels reuse (codegen/lower_fused.c) ----
// lower_ew.c: elementwise op n on loaded operands v (float ops, no range checks); dropout
// or dropout_grad in training: x through the mask of dropout node fwd at flat indices
// idx, idx + 1, ... (the seed read from seed_ptr, the stream an i64 value).
LLVMValueRef cg_ew_apply(Cg *cg, const IrNode *n, LLVMValueRef *v);
// Element offset in input shape `in` (broadcast to `out`) of the first element of output
// row `row` (rows of out's last dim); whether `in` runs along that row (else: one value).
LLVMValueRef cg_ew_row_offset(Cg *cg, const IrShape *out, const IrShape *in, LLVMValueRef row);
bool cg_ew_inner_contiguous(const IrShape *out, const IrShape *in);
LLVMValueRef cg_ew_dropout_train(Cg *cg, const IrNode *fwd, LLVMValueRef x, LLVMValueRef idx,
                                 LLVMValueRef seed_ptr, LLVMValueRef stream);
// The dropout stream (ir/ref_elementwise.c's ir_rng_key and ir_rng_uniform, in IR): the
// key of stream `stream` (i64: a name hash, read from the step's CG_ARG_STREAMS table or a
// constant) under the plan's seed (seed_ptr[0]), advanced by the run's share (seed_ptr[1])
// times the mask's numel elements, and whether the elements with i64 counters ctr (scalar
// or vector) are kept, i.e. their 53-bit uniform >= threshold.
LLVMValueRef cg_dropout_key(Cg *cg, LLVMValueRef stream, LLVMValueRef seed_ptr, int64_t numel);
// Stream k of the step's table at buffer streams_ptr.
LLVMValueRef cg_dropout_stream(Cg *cg, LLVMValueRef streams_ptr, int k);
LLVMValueRef cg_dropout_keep(Cg *cg, LLVMValueRef key, LLVMValueRef ctr, uint64_t threshold);
// lower_reduce.c: one row of softmax / log_softmax (len) or layernorm (H, weight w and
// bias b of H), from xrow to orow; in place (xrow == orow) is allowed.
void cg_emit_softmax_row(Cg *cg, bool take_log, int64_t len, LLVMValueRef xrow, LLVMValueRef orow);
void cg_emit_layernorm_row(Cg *cg, int64_t H, double eps, LLVMValueRef xrow, LLVMValueRef yrow,
                           LLVMValueRef w, LLVMValueRef b);
// lower_matmul.c: the CgGemm of matmul node n (no epilogue).
void cg_plan_matmul(const IrNode *n, CgGemm *g);

#endif
