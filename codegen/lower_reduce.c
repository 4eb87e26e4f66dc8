// Lowering of the reductions (reduce_sum / reduce_mean / reduce_max over any axes, with or
// without keepdims), softmax and log_softmax along any axis, and layernorm over the last
// axis. Every output is computed by one work item in an order fixed at compile time, so
// results do not depend on the thread count. Float sums accumulate in f32 with Kahan
// compensation (cg_fold_*: vector lanes along contiguous rows, one lane per column along
// strided dims); int maxima stay in the int type; int sums accumulate in twice its width
// (i32 in i64, i64 in i128, exact), and a sum the dtype cannot hold is reported through the
// status word (CG_STATUS_INT_OVERFLOW), as the reference refuses it.

#include "codegen/compile.h"
#include "codegen/lower_rows.h"

// ---------------------------------------------------------------------------------------
// Nested loops over dims (size[k], stride[k]); returns the offset sum_k i_k * stride[k].
// Close them with loops_end.
typedef struct Loops {
  int n;
  CgLoop l[IR_MAX_RANK];
} Loops;

static LLVMValueRef loops_begin(Cg *cg, Loops *ls, int n, const int64_t *size,
                                const int64_t *stride) {
  LLVMValueRef off = cg_i64(cg, 0);
  ls->n = n;
  for (int k = 0; k < n; k++) {
    cg_for_begin(cg, &ls->l[k], cg_i64(cg, 0), cg_i64(cg, size[k]), cg_i64(cg, 1), "r");
    off = cg_add(cg, off, cg_mul(cg, ls->l[k].iv, stride[k]));
  }
  return off;
}

static void loops_end(Cg *cg, Loops *ls) {
  for (int k = ls->n - 1; k >= 0; k--) cg_for_end(cg, &ls->l[k]);
}

// Column blocks: a row of L contiguous columns split into blocks of W. Work item w is
// (row, block); a full block runs `body` with W lanes, the last partial block runs it once
// per column with 1 lane. body gets (row, column offset, lanes).
typedef void (*BlockBody)(Cg *cg, LLVMValueRef row, LLVMValueRef col, int lanes, void *ctx);

static int64_t column_blocks(int64_t L, int W) { return (L + W - 1) / W; }

static void for_column_blocks(Cg *cg, int64_t L, BlockBody body, void *ctx) {
  int W = cg->W;
  int64_t nb = column_blocks(L, W);
  CgLoop w;
  cg_for_begin(cg, &w, cg->begin, cg->end, cg_i64(cg, 1), "item");
  LLVMValueRef row = nb == 1 ? w.iv : LLVMBuildUDiv(cg->b, w.iv, cg_i64(cg, nb), "row");
  LLVMValueRef c0 = nb == 1 ? cg_i64(cg, 0)
                            : cg_mul(cg, LLVMBuildURem(cg->b, w.iv, cg_i64(cg, nb), "blk"), W);
  bool any_full = L >= W, any_partial = L % W != 0;
  CgIf full;
  if (any_full && any_partial)
    cg_if_begin(cg, &full, LLVMBuildICmp(cg->b, LLVMIntSLE, cg_add(cg, c0, cg_i64(cg, W)),
                                         cg_i64(cg, L), "full"));
  if (any_full) body(cg, row, c0, W, ctx);
  if (any_full && any_partial) cg_if_else(cg, &full);
  if (any_partial) {
    CgLoop c;
    cg_for_begin(cg, &c, c0, cg_i64(cg, L), cg_i64(cg, 1), "col");
    body(cg, row, c.iv, 1, ctx);
    cg_for_end(cg, &c);
  }
  if (any_full && any_partial) cg_if_end(cg, &full);
  cg_for_end(cg, &w);
}

// ---------------------------------------------------------------------------------------
// Reductions. The input's dims are grouped: size-1 dims dropped, neighbours that are both
// kept or both reduced merged. Two kernels then cover every case:
//   last group reduced (rows):    work = outputs; each folds contiguous rows of S
//                                 elements (cg_row_reduce) over the other reduced groups.
//                                 Reducing only the last axis is the case with no others.
//   last group kept (columns):    work = (output rows of L, blocks of W columns); each
//                                 block folds W-lane vectors over all reduced groups.
typedef struct Dims {
  int n;
  int64_t size[IR_MAX_RANK], stride[IR_MAX_RANK];
} Dims;

typedef struct Reduce {
  const IrNode *n;
  CgRowOp op;
  bool mean;
  LLVMTypeRef et;
  LLVMTypeRef acc;     // what is folded: et, or twice its width for a checked int sum
  bool checked;        // an int sum: range-checked before it is stored
  Dims kept, red;      // groups in order
  bool last_reduced;   // the innermost group is reduced
  int64_t count;       // elements folded into one output
  LLVMValueRef out, in, status;
} Reduce;

static void plan_reduce(Cg *cg, const IrNode *n, Reduce *r) {
  const IrShape *si = &n->in[0]->shape;
  const IrAttr *axes = ir_attr(n, "axes");
  bool red[IR_MAX_RANK];
  for (int k = 0; k < si->rank; k++) red[k] = axes->n == 0;
  for (int a = 0; a < axes->n; a++)
    red[axes->ints[a] < 0 ? axes->ints[a] + si->rank : axes->ints[a]] = true;
  *r = (Reduce){.n = n, .op = n->op == IR_OP_REDUCE_MAX ? CG_ROW_MAX : CG_ROW_SUM,
                .mean = n->op == IR_OP_REDUCE_MEAN, .et = cg_elem_type(cg, n->dtype), .count = 1};
  r->checked = r->op == CG_ROW_SUM && n->dtype != DT_F32;
  r->acc = !r->checked ? r->et : LLVMIntTypeInContext(cg->ctx, n->dtype == DT_I32 ? 64 : 128);
  int ng = 0;
  bool gred[IR_MAX_RANK];
  int64_t gsize[IR_MAX_RANK], gstride[IR_MAX_RANK], s = 1;
  for (int k = si->rank - 1; k >= 0; k--) {  // innermost first; reversed below
    if (si->dim[k] > 1) {
      if (ng > 0 && gred[ng - 1] == red[k]) {
        gsize[ng - 1] *= si->dim[k];
      } else {
        gred[ng] = red[k];
        gsize[ng] = si->dim[k];
        gstride[ng++] = s;
      }
      if (red[k]) r->count *= si->dim[k];
    }
    s *= si->dim[k];
  }
  r->last_reduced = ng > 0 && gred[0];
  for (int g = ng - 1; g >= 0; g--) {
    Dims *dst = gred[g] ? &r->red : &r->kept;
    dst->size[dst->n] = gsize[g];
    dst->stride[dst->n++] = gstride[g];
  }
  if (!r->last_reduced && r->kept.n == 0) {  // one element in all: a kept group of 1
    r->kept.size[0] = r->kept.stride[0] = 1;
    r->kept.n = 1;
  }
}

static int lanes_of(LLVMValueRef v) {
  LLVMTypeRef t = LLVMTypeOf(v);
  return LLVMGetTypeKind(t) == LLVMVectorTypeKind ? (int)LLVMGetVectorSize(t) : 1;
}

// A checked sum's map: loads the `lanes` elements at col of the row and widens them.
typedef struct Widen {
  const Reduce *r;
  LLVMValueRef row;
} Widen;

static LLVMValueRef widen_load(Cg *cg, LLVMValueRef x, LLVMValueRef col, void *ctx) {
  Widen *w = ctx;
  int lanes = lanes_of(x);
  LLVMValueRef v = cg_load(cg, w->r->et, cg_gep(cg, w->r->et, w->row, col), lanes);
  return LLVMBuildSExt(cg->b, v, cg_vec_t(cg, w->r->acc, lanes), "wide");
}

// cg_row_reduce of S elements from row, widened for a checked sum.
static LLVMValueRef reduce_row(Cg *cg, const Reduce *r, LLVMValueRef row, int64_t S) {
  if (!r->checked) return cg_row_reduce(cg, r->op, r->et, row, S, NULL, NULL);
  Widen w = {r, row};
  return cg_row_reduce(cg, r->op, r->acc, NULL, S, widen_load, &w);
}

// A checked sum's lane k, to be stored at output element at + k: reported if outside et.
static void check_sum(Cg *cg, const Reduce *r, LLVMValueRef v, LLVMValueRef at) {
  unsigned bits = LLVMGetIntTypeWidth(r->et);
  long long min = bits == 32 ? INT32_MIN : INT64_MIN;
  LLVMValueRef lo = LLVMConstInt(r->acc, (unsigned long long)min, 1);
  LLVMValueRef hi = LLVMConstInt(r->acc, bits == 32 ? INT32_MAX : INT64_MAX, 1);
  for (int k = 0; k < lanes_of(v); k++) {
    LLVMValueRef x = lanes_of(v) == 1 ? v : LLVMBuildExtractElement(cg->b, v, cg_i64(cg, k), "");
    LLVMValueRef bad = LLVMBuildOr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, x, lo, ""),
                                   LLVMBuildICmp(cg->b, LLVMIntSGT, x, hi, ""), "overflow");
    CgIf o;
    cg_if_begin(cg, &o, bad);
    cg_report_status(cg, r->status, CG_STATUS_INT_OVERFLOW, r->n->id, cg_i64(cg, 0),
                     cg_add(cg, at, cg_i64(cg, k)));
    cg_if_end(cg, &o);
  }
}

// The value stored at output element at: the mean's division, a checked sum's narrowing.
static LLVMValueRef reduce_finish(Cg *cg, const Reduce *r, LLVMValueRef v, LLVMValueRef at) {
  if (r->checked) {
    check_sum(cg, r, v, at);
    return LLVMBuildTrunc(cg->b, v, cg_vec_t(cg, r->et, lanes_of(v)), "sum");
  }
  if (!r->mean) return v;
  return LLVMBuildFDiv(cg->b, v, cg_splat_like(cg, cg_f32(cg, (double)r->count), v), "mean");
}

// Last group reduced: out[w] = fold over the other reduced groups of row_reduce(S elements).
static void emit_reduce_rows(Cg *cg, Reduce *r) {
  int64_t S = r->red.size[r->red.n - 1];
  CgLoop w;
  cg_for_begin(cg, &w, cg->begin, cg->end, cg_i64(cg, 1), "out");
  LLVMValueRef base = cg_flat_offset(cg, w.iv, r->kept.n, r->kept.size, r->kept.stride);
  LLVMValueRef v;
  if (r->red.n == 1) {  // only the last axis: one contiguous row
    v = reduce_row(cg, r, cg_gep(cg, r->et, r->in, base), S);
  } else {
    CgFold f = cg_fold_begin(cg, r->op, r->acc, 1);
    Loops ls;
    LLVMValueRef off = loops_begin(cg, &ls, r->red.n - 1, r->red.size, r->red.stride);
    LLVMValueRef row = cg_gep(cg, r->et, r->in, cg_add(cg, base, off));
    cg_fold_add(cg, &f, reduce_row(cg, r, row, S));
    loops_end(cg, &ls);
    v = cg_fold_value(cg, &f);
  }
  cg_store(cg, reduce_finish(cg, r, v, w.iv), cg_gep(cg, r->et, r->out, w.iv));
  cg_for_end(cg, &w);
}

// Last group kept: the block of `lanes` columns at (row, col) folds over every reduced group.
static void reduce_block(Cg *cg, LLVMValueRef row, LLVMValueRef col, int lanes, void *ctx) {
  Reduce *r = ctx;
  int64_t L = r->kept.size[r->kept.n - 1];
  LLVMValueRef base = cg_add(cg, cg_flat_offset(cg, row, r->kept.n - 1, r->kept.size, r->kept.stride), col);
  CgFold f = cg_fold_begin(cg, r->op, r->acc, lanes);
  Loops ls;
  LLVMValueRef off = loops_begin(cg, &ls, r->red.n, r->red.size, r->red.stride);
  LLVMValueRef x = cg_load(cg, r->et, cg_gep(cg, r->et, r->in, cg_add(cg, base, off)), lanes);
  if (r->checked) x = LLVMBuildSExt(cg->b, x, cg_vec_t(cg, r->acc, lanes), "wide");
  cg_fold_add(cg, &f, x);
  loops_end(cg, &ls);
  LLVMValueRef at = cg_add(cg, cg_mul(cg, row, L), col);
  cg_store(cg, reduce_finish(cg, r, cg_fold_value(cg, &f), at), cg_gep(cg, r->et, r->out, at));
}

bool cg_lower_reduce(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  Reduce r;
  plan_reduce(cg, n, &r);
  int64_t n_out = ir_numel(&n->shape), work;
  if (r.last_reduced) {
    work = n_out;
  } else {
    int64_t L = r.kept.size[r.kept.n - 1];
    work = n_out / L * column_blocks(L, cg->W);
  }
  char name[96];
  if (!cg_kernel_name(cg, n, NULL, name, sizeof name)) {
    cg_kernel_begin(cg, name);
    r.out = cg_buf(cg, 0);
    r.in = cg_buf(cg, 1);
    r.status = r.checked ? cg_buf(cg, 2) : NULL;
    if (r.last_reduced) emit_reduce_rows(cg, &r);
    else for_column_blocks(cg, r.kept.size[r.kept.n - 1], reduce_block, &r);
    cg_kernel_end(cg);
  }
  cg_steps_add_node(steps, name, work, n, r.checked);
  (void)d;
  return true;
}

// ---------------------------------------------------------------------------------------
// Softmax and log_softmax. x, out viewed as (outer, len, inner) around the axis.
//   inner == 1 (the last axis; the fast path): work = rows. Per row: vector max, then the
//     sum of exp(x - max) with cg_exp (softmax stores each exp as it goes), then
//     out = e / sum, or out = (x - max) - log(sum).
//   inner > 1: work = (outer, blocks of W columns of inner); each block runs the same three
//     passes down the axis with W lanes (or 1 lane per column in a partial block).
typedef struct Softmax {
  bool take_log;
  int64_t len, inner;
  LLVMValueRef out, in;      // buffers
  LLVMValueRef xrow, orow;   // fast path: the current row of x and out
  LLVMValueRef max, sum, log_sum;
} Softmax;

static LLVMValueRef softmax_exp(Cg *cg, LLVMValueRef x, LLVMValueRef col, void *ctx) {
  Softmax *s = ctx;
  LLVMValueRef e = cg_exp(cg, LLVMBuildFSub(cg->b, x, cg_splat_like(cg, s->max, x), ""));
  if (!s->take_log) cg_store(cg, e, cg_gep(cg, cg->f32, s->orow, col));
  return e;
}

static void softmax_write(Cg *cg, LLVMValueRef col, int lanes, void *ctx) {
  Softmax *s = ctx;
  LLVMValueRef at = cg_gep(cg, cg->f32, s->orow, col), v;
  if (s->take_log) {
    LLVMValueRef x = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, s->xrow, col), lanes);
    v = LLVMBuildFSub(cg->b, LLVMBuildFSub(cg->b, x, cg_splat(cg, s->max, lanes), ""),
                      cg_splat(cg, s->log_sum, lanes), "");
  } else {
    v = LLVMBuildFDiv(cg->b, cg_load(cg, cg->f32, at, lanes), cg_splat(cg, s->sum, lanes), "");
  }
  cg_store(cg, v, at);
}

static void softmax_row(Cg *cg, Softmax *s) {
  s->max = cg_row_reduce(cg, CG_ROW_MAX, cg->f32, s->xrow, s->len, NULL, NULL);
  s->sum = cg_row_reduce(cg, CG_ROW_SUM, cg->f32, s->xrow, s->len, softmax_exp, s);
  if (s->take_log) s->log_sum = cg_log(cg, s->sum);
  cg_for_cols(cg, s->len, softmax_write, s);
}

void cg_emit_softmax_row(Cg *cg, bool take_log, int64_t len, LLVMValueRef xrow, LLVMValueRef orow) {
  Softmax s = {.take_log = take_log, .len = len, .inner = 1, .xrow = xrow, .orow = orow};
  softmax_row(cg, &s);
}

static void emit_softmax_rows(Cg *cg, Softmax *s) {
  CgLoop w;  // x, out: (rows, len)
  cg_for_begin(cg, &w, cg->begin, cg->end, cg_i64(cg, 1), "row");
  s->xrow = cg_gep(cg, cg->f32, s->in, cg_mul(cg, w.iv, s->len));
  s->orow = cg_gep(cg, cg->f32, s->out, cg_mul(cg, w.iv, s->len));
  softmax_row(cg, s);
  cg_for_end(cg, &w);
}

// One block of `lanes` columns at (o, col): three passes down the axis, stride inner.
static void softmax_block(Cg *cg, LLVMValueRef o, LLVMValueRef col, int lanes, void *ctx) {
  Softmax *s = ctx;
  LLVMTypeRef f = cg->f32;
  LLVMValueRef base = cg_add(cg, cg_mul(cg, o, s->len * s->inner), col);
  CgFold mx = cg_fold_begin(cg, CG_ROW_MAX, f, lanes), sm = cg_fold_begin(cg, CG_ROW_SUM, f, lanes);
  CgLoop i;
#define AT(buf) cg_gep(cg, f, (buf), cg_add(cg, base, cg_mul(cg, i.iv, s->inner)))
  cg_for_begin(cg, &i, cg_i64(cg, 0), cg_i64(cg, s->len), cg_i64(cg, 1), "max");
  cg_fold_add(cg, &mx, cg_load(cg, f, AT(s->in), lanes));
  cg_for_end(cg, &i);
  LLVMValueRef m = cg_fold_value(cg, &mx);
  cg_for_begin(cg, &i, cg_i64(cg, 0), cg_i64(cg, s->len), cg_i64(cg, 1), "sum");
  LLVMValueRef e = cg_exp(cg, LLVMBuildFSub(cg->b, cg_load(cg, f, AT(s->in), lanes), m, ""));
  if (!s->take_log) cg_store(cg, e, AT(s->out));
  cg_fold_add(cg, &sm, e);
  cg_for_end(cg, &i);
  LLVMValueRef sum = cg_fold_value(cg, &sm), log_sum = s->take_log ? cg_log(cg, sum) : NULL;
  cg_for_begin(cg, &i, cg_i64(cg, 0), cg_i64(cg, s->len), cg_i64(cg, 1), "write");
  LLVMValueRef v;
  if (s->take_log)
    v = LLVMBuildFSub(cg->b, LLVMBuildFSub(cg->b, cg_load(cg, f, AT(s->in), lanes), m, ""), log_sum, "");
  else
    v = LLVMBuildFDiv(cg->b, cg_load(cg, f, AT(s->out), lanes), sum, "");
  cg_store(cg, v, AT(s->out));
  cg_for_end(cg, &i);
#undef AT
}

bool cg_lower_softmax(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  const IrShape *sh = &n->shape;
  int64_t axis = ir_attr_int(n, "axis");
  if (axis < 0) axis += sh->rank;
  Softmax s = {.take_log = n->op == IR_OP_LOG_SOFTMAX, .len = sh->dim[axis], .inner = 1};
  int64_t outer = 1;
  for (int k = 0; k < axis; k++) outer *= sh->dim[k];
  for (int k = (int)axis + 1; k < sh->rank; k++) s.inner *= sh->dim[k];
  int64_t work = s.inner == 1 ? outer : outer * column_blocks(s.inner, cg->W);
  char name[96];
  if (!cg_kernel_name(cg, n, NULL, name, sizeof name)) {
    cg_kernel_begin(cg, name);
    s.out = cg_buf(cg, 0);
    s.in = cg_buf(cg, 1);
    if (s.inner == 1) emit_softmax_rows(cg, &s);
    else for_column_blocks(cg, s.inner, softmax_block, &s);
    cg_kernel_end(cg);
  }
  cg_steps_add_node(steps, name, work, n, false);
  (void)d;
  return true;
}

// ---------------------------------------------------------------------------------------
// Layernorm over the last axis: x (rows, H), weight (H), bias (H). Work = rows. Per row,
// two passes for the statistics (mean, then the mean of squared deviations: the biased
// variance), then y = (x - mean) * (1 / sqrt(var + eps)) * weight + bias.
typedef struct Layernorm {
  int64_t H;
  LLVMValueRef x, y, w, b;  // x, y: the current row; w, b: (H)
  LLVMValueRef mean, rstd;
} Layernorm;

static LLVMValueRef squared_deviation(Cg *cg, LLVMValueRef x, LLVMValueRef col, void *ctx) {
  Layernorm *ln = ctx;
  LLVMValueRef dv = LLVMBuildFSub(cg->b, x, cg_splat_like(cg, ln->mean, x), "");
  return LLVMBuildFMul(cg->b, dv, dv, "");
}

static void layernorm_write(Cg *cg, LLVMValueRef col, int lanes, void *ctx) {
  Layernorm *ln = ctx;
  LLVMTypeRef f = cg->f32;
  LLVMValueRef x = cg_load(cg, f, cg_gep(cg, f, ln->x, col), lanes);
  LLVMValueRef w = cg_load(cg, f, cg_gep(cg, f, ln->w, col), lanes);
  LLVMValueRef b = cg_load(cg, f, cg_gep(cg, f, ln->b, col), lanes);
  LLVMValueRef z = LLVMBuildFMul(cg->b, LLVMBuildFSub(cg->b, x, cg_splat(cg, ln->mean, lanes), ""),
                                 cg_splat(cg, ln->rstd, lanes), "");
  cg_store(cg, cg_fma(cg, z, w, b), cg_gep(cg, f, ln->y, col));
}

static void layernorm_row(Cg *cg, Layernorm *ln, LLVMValueRef eps, LLVMValueRef H) {
  LLVMTypeRef f = cg->f32;
  LLVMValueRef sum = cg_row_reduce(cg, CG_ROW_SUM, f, ln->x, ln->H, NULL, NULL);
  ln->mean = LLVMBuildFDiv(cg->b, sum, H, "mean");
  LLVMValueRef ss = cg_row_reduce(cg, CG_ROW_SUM, f, ln->x, ln->H, squared_deviation, ln);
  LLVMValueRef var = LLVMBuildFDiv(cg->b, ss, H, "var");
  LLVMValueRef ve = LLVMBuildFAdd(cg->b, var, eps, "");
  ln->rstd = LLVMBuildFDiv(cg->b, cg_f32(cg, 1.0), cg_intrinsic(cg, "llvm.sqrt", f, &ve, 1), "rstd");
  cg_for_cols(cg, ln->H, layernorm_write, ln);
}

void cg_emit_layernorm_row(Cg *cg, int64_t H, double eps, LLVMValueRef xrow, LLVMValueRef yrow,
                           LLVMValueRef w, LLVMValueRef b) {
  Layernorm ln = {.H = H, .x = xrow, .y = yrow, .w = w, .b = b};
  layernorm_row(cg, &ln, cg_f32(cg, eps), cg_f32(cg, (double)H));
}

bool cg_lower_layernorm(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  const IrShape *sh = &n->shape;
  Layernorm ln = {.H = sh->dim[sh->rank - 1]};
  int64_t rows = ir_numel(sh) / ln.H;
  // Read by a bf16 GEMM as its A: each row also as H / 2 words of two bf16, while in L1
  // (the GEMM takes the copy instead of packing: cg_steps_words_of).
  bool words = cg->bf16_a && cg->bf16_a[n->id] && ln.H % 2 == 0 && n->dtype == DT_F32;
  char name[96];
  if (!cg_kernel_name(cg, n, words ? "words" : NULL, name, sizeof name)) {
    LLVMTypeRef f = cg->f32;
    cg_kernel_begin(cg, name);
    LLVMValueRef out = cg_buf(cg, 0), in = cg_buf(cg, 1);
    ln.w = cg_buf(cg, 2);
    ln.b = cg_buf(cg, 3);
    LLVMValueRef eps = cg_f32(cg, ir_attr_float(n, "eps")), H = cg_f32(cg, (double)ln.H);
    CgLoop r;  // x, y: (rows, H)
    cg_for_begin(cg, &r, cg->begin, cg->end, cg_i64(cg, 1), "row");
    ln.x = cg_gep(cg, f, in, cg_mul(cg, r.iv, ln.H));
    ln.y = cg_gep(cg, f, out, cg_mul(cg, r.iv, ln.H));
    layernorm_row(cg, &ln, eps, H);
    if (words) cg_gemm_bf16_row_words(cg, ln.y, cg_gep(cg, cg->i32, cg_buf(cg, 4), cg_mul(cg, r.iv, ln.H / 2)), ln.H);
    cg_for_end(cg, &r);
    cg_kernel_end(cg);
  }
  CgStep *st = cg_steps_add(steps, name, rows, n->id);
  for (int k = -1; k < 3; k++) st->args[st->n_args++] = cg_arg_node(k < 0 ? n->id : n->in[k]->id);
  if (words) cg_steps_add_words(steps, st, n->id, rows, ln.H);
  (void)d;
  return true;
}
