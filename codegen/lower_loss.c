// Lowering of the losses, both scalars computed by one work item (work = 1) so the order
// of the sum is fixed whatever the thread count: cross_entropy (per labelled row a
// vectorised max and sum of exp; the rows' losses added in double) and kl_div (one
// vectorised sum over every element).
#include <stdio.h>

#include "codegen/compile.h"
#include "codegen/lower_rows.h"

// exp(x - max) for the sum of a row.
static LLVMValueRef exp_shifted(Cg *cg, LLVMValueRef x, LLVMValueRef col, void *max) {
  return cg_exp(cg, LLVMBuildFSub(cg->b, x, cg_splat_like(cg, max, x), ""));
}

// cross_entropy(logits (P, C), labels (P)[, denominator]) = mean over rows whose label is
// not ignore_index of log(sum exp(row - max)) - (row[label] - max); 0 if no row is labelled.
// With the denominator input (a scalar, before the status word in the buffer table) the
// sum is divided by it instead of the count. A label outside [0, C) (and not
// ignore_index) reports CG_STATUS_LABEL_RANGE and the row is skipped.
bool cg_lower_cross_entropy(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  const IrShape *sl = &n->in[0]->shape;
  int64_t C = sl->dim[sl->rank - 1], P = ir_numel(&n->in[1]->shape);
  char name[96], node[32];
  snprintf(node, sizeof node, "node%d", n->id);  // the kernel reports this node: not shared
  if (!cg_kernel_name(cg, n, node, name, sizeof name)) {
    LLVMTypeRef f = cg->f32, lt = cg_elem_type(cg, n->in[1]->dtype);
    LLVMBuilderRef b = cg->b;
    cg_kernel_begin(cg, name);
    LLVMValueRef out = cg_buf(cg, 0), logits = cg_buf(cg, 1), labels = cg_buf(cg, 2);
    bool given = n->n_in == 3;  // the denominator
    LLVMValueRef den = given ? cg_buf(cg, 3) : NULL, status = cg_buf(cg, n->n_in + 1);
    CgLoop w;  // the single work item
    cg_for_begin(cg, &w, cg->begin, cg->end, cg_i64(cg, 1), "item");
    LLVMValueRef total = cg_var(cg, cg->f64, LLVMConstReal(cg->f64, 0.0));
    LLVMValueRef counted = cg_var(cg, cg->i64, cg_i64(cg, 0));
    CgLoop p;  // logits (P, C), labels (P)
    cg_for_begin(cg, &p, cg_i64(cg, 0), cg_i64(cg, P), cg_i64(cg, 1), "pos");
    LLVMValueRef label = cg_load(cg, lt, cg_gep(cg, lt, labels, p.iv), 1);
    if (lt != cg->i64) label = LLVMBuildSExt(b, label, cg->i64, "");
    CgIf used, in_range;
    cg_if_begin(cg, &used, LLVMBuildICmp(b, LLVMIntNE, label, cg_i64(cg, ir_attr_int(n, "ignore_index")), ""));
    cg_if_begin(cg, &in_range, LLVMBuildICmp(b, LLVMIntULT, label, cg_i64(cg, C), ""));
    LLVMValueRef row = cg_gep(cg, f, logits, cg_mul(cg, p.iv, C));
    LLVMValueRef max = cg_row_reduce(cg, CG_ROW_MAX, f, row, C, NULL, NULL);
    LLVMValueRef sum = cg_row_reduce(cg, CG_ROW_SUM, f, row, C, exp_shifted, max);
    LLVMValueRef picked = LLVMBuildFSub(b, cg_load(cg, f, cg_gep(cg, f, row, label), 1), max, "");
    LLVMValueRef loss = LLVMBuildFSub(b, cg_log(cg, sum), picked, "loss");
    cg_set(cg, total, LLVMBuildFAdd(b, cg_get(cg, total), LLVMBuildFPExt(b, loss, cg->f64, ""), ""));
    cg_set(cg, counted, cg_add(cg, cg_get(cg, counted), cg_i64(cg, 1)));
    cg_if_else(cg, &in_range);
    cg_report_status(cg, status, CG_STATUS_LABEL_RANGE, n->id, label, p.iv);
    cg_if_end(cg, &in_range);
    cg_if_end(cg, &used);
    cg_for_end(cg, &p);
    LLVMValueRef c = cg_get(cg, counted);
    LLVMValueRef by = given ? LLVMBuildFPExt(b, cg_load(cg, f, den, 1), cg->f64, "")
                            : LLVMBuildSIToFP(b, c, cg->f64, "");
    LLVMValueRef mean = LLVMBuildFDiv(b, cg_get(cg, total), by, "");
    LLVMValueRef any = LLVMBuildICmp(b, LLVMIntSGT, c, cg_i64(cg, 0), "");
    LLVMValueRef v = LLVMBuildSelect(b, any, mean, LLVMConstReal(cg->f64, 0.0), "");
    cg_store(cg, LLVMBuildFPTrunc(b, v, f, ""), out);
    cg_for_end(cg, &w);
    cg_kernel_end(cg);
  }
  cg_steps_add_node(steps, name, 1, n, true);
  (void)d;
  return true;
}

// kl_div(log_probs, target) = sum(target * (log target - log_probs)) / shape[0]; a zero
// target contributes 0 (0 log 0 = 0). A negative or NaN target is reported (the first, in
// order) as CG_STATUS_TARGET_RANGE, as the reference refuses it.
static LLVMValueRef kl_term(Cg *cg, LLVMValueRef t, LLVMValueRef col, void *log_probs) {
  LLVMValueRef lp = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, log_probs, col), cg_lanes(t));
  LLVMValueRef v = LLVMBuildFMul(cg->b, t, LLVMBuildFSub(cg->b, cg_log(cg, t), lp, ""), "");
  LLVMValueRef zero = cg_const_like(cg, t, 0.0);
  return LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOEQ, t, zero, ""), zero, v, "");
}

bool cg_lower_kl_div(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  const IrShape *s = &n->in[0]->shape;
  int64_t total = ir_numel(s);
  char name[96], node[32];
  snprintf(node, sizeof node, "node%d", n->id);  // the kernel reports this node: not shared
  if (!cg_kernel_name(cg, n, node, name, sizeof name)) {
    cg_kernel_begin(cg, name);
    LLVMValueRef out = cg_buf(cg, 0), log_probs = cg_buf(cg, 1), target = cg_buf(cg, 2);
    LLVMValueRef status = cg_buf(cg, 3);
    CgLoop w;  // the single work item: log_probs, target (total)
    cg_for_begin(cg, &w, cg->begin, cg->end, cg_i64(cg, 1), "item");
    CgLoop j;
    cg_for_begin(cg, &j, cg_i64(cg, 0), cg_i64(cg, total), cg_i64(cg, 1), "target");
    LLVMValueRef t = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, target, j.iv), 1);
    CgIf bad;  // t < 0 or NaN
    cg_if_begin(cg, &bad, LLVMBuildFCmp(cg->b, LLVMRealULT, t, cg_f32(cg, 0.0), "bad"));
    LLVMValueRef bits = LLVMBuildZExt(cg->b, LLVMBuildBitCast(cg->b, t, cg->i32, ""), cg->i64, "");
    cg_report_status(cg, status, CG_STATUS_TARGET_RANGE, n->id, bits, j.iv);
    cg_if_end(cg, &bad);
    cg_for_end(cg, &j);
    LLVMValueRef sum = cg_row_reduce(cg, CG_ROW_SUM, cg->f32, target, total, kl_term, log_probs);
    cg_store(cg, LLVMBuildFDiv(cg->b, sum, cg_f32(cg, (double)s->dim[0]), ""), out);
    cg_for_end(cg, &w);
    cg_kernel_end(cg);
  }
  cg_steps_add_node(steps, name, 1, n, true);
  (void)d;
  return true;
}
