// Lowering of elementwise ops (unary, binary with NumPy broadcasting, affine, cast,
// dropout and its gradient, in inference and in training) and of the sources full and
// iota. One kernel per signature:
// work items are rows of the output's last dim; each row runs a vector loop of W lanes
// and a scalar tail. Broadcast inputs are read with stride 0 (a splat in the row loop).
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen/compile.h"
#include "codegen/lower.h"
#include "codegen/lower_rows.h"

static LLVMTypeRef elem_type(Cg *cg, DType t) {
  switch (t) {
  case DT_I64: return cg->i64;
  case DT_I32: return cg->i32;
  default: return cg->f32;
  }
}

static bool is_float(DType t) { return t == DT_F32; }

// Constant of the value's shape (scalar or vector) and element type.
static LLVMValueRef const_of(Cg *cg, LLVMValueRef like, LLVMTypeRef elem, double v) {
  LLVMTypeRef t = LLVMTypeOf(like);
  LLVMValueRef c = elem == cg->f32 ? LLVMConstReal(elem, v) : LLVMConstInt(elem, (unsigned long long)(int64_t)v, 1);
  if (LLVMGetTypeKind(t) != LLVMVectorTypeKind) return c;
  unsigned n = LLVMGetVectorSize(t);
  LLVMValueRef lanes[64];
  for (unsigned i = 0; i < n; i++) lanes[i] = c;
  return LLVMConstVector(lanes, n);
}

// The op on already-loaded operands (scalars or vectors of one lane count).
static LLVMValueRef apply(Cg *cg, const IrNode *n, LLVMValueRef *v) {
  LLVMBuilderRef b = cg->b;
  bool f = is_float(n->dtype);
  LLVMTypeRef et = elem_type(cg, n->dtype);
  LLVMTypeRef vt = LLVMTypeOf(v[0]);
  switch (n->op) {
  case IR_OP_CAST: {
    DType from = n->in[0]->dtype, to = n->dtype;
    unsigned lanes = LLVMGetTypeKind(vt) == LLVMVectorTypeKind ? LLVMGetVectorSize(vt) : 1;
    LLVMTypeRef dst = lanes > 1 ? LLVMVectorType(et, lanes) : et;
    if (from == to) return v[0];
    if (is_float(from)) return LLVMBuildFPToSI(b, v[0], dst, "");
    if (is_float(to)) return LLVMBuildSIToFP(b, v[0], dst, "");
    return LLVMBuildIntCast2(b, v[0], dst, 1, "");
  }
  case IR_OP_ADD: return f ? LLVMBuildFAdd(b, v[0], v[1], "") : LLVMBuildAdd(b, v[0], v[1], "");
  case IR_OP_SUB: return f ? LLVMBuildFSub(b, v[0], v[1], "") : LLVMBuildSub(b, v[0], v[1], "");
  case IR_OP_MUL: return f ? LLVMBuildFMul(b, v[0], v[1], "") : LLVMBuildMul(b, v[0], v[1], "");
  case IR_OP_DIV: return LLVMBuildFDiv(b, v[0], v[1], "");
  case IR_OP_MAXIMUM:
    return cg_intrinsic(cg, f ? "llvm.maximum" : "llvm.smax", vt, v, 2);
  case IR_OP_MINIMUM:
    return cg_intrinsic(cg, f ? "llvm.minimum" : "llvm.smin", vt, v, 2);
  case IR_OP_NEG: return f ? LLVMBuildFNeg(b, v[0], "") : LLVMBuildNeg(b, v[0], "");
  case IR_OP_EXP: return cg_exp(cg, v[0]);
  case IR_OP_LOG: return cg_log(cg, v[0]);
  case IR_OP_SQRT: return cg_intrinsic(cg, "llvm.sqrt", vt, v, 1);
  case IR_OP_RSQRT:
    return LLVMBuildFDiv(b, const_of(cg, v[0], et, 1.0), cg_intrinsic(cg, "llvm.sqrt", vt, v, 1), "");
  case IR_OP_TANH: return cg_tanh(cg, v[0]);
  case IR_OP_ERF: return cg_erf(cg, v[0]);
  case IR_OP_GELU: return cg_gelu(cg, v[0]);
  case IR_OP_GELU_GRAD: return LLVMBuildFMul(b, v[0], cg_gelu_grad(cg, v[1]), "");  // dy gelu'(x)
  case IR_OP_SIGMOID: return cg_sigmoid(cg, v[0]);
  case IR_OP_SILU: return LLVMBuildFMul(b, v[0], cg_sigmoid(cg, v[0]), "");
  case IR_OP_RELU: {  // x < 0 ? 0 : x (NaN stays NaN)
    LLVMValueRef zero = const_of(cg, v[0], et, 0.0);
    return LLVMBuildSelect(b, LLVMBuildFCmp(b, LLVMRealOLT, v[0], zero, ""), zero, v[0], "");
  }
  case IR_OP_AFFINE: {
    double s = ir_attr_float(n, "scale"), t = ir_attr_float(n, "shift");
    if (f) return cg_fma(cg, v[0], const_of(cg, v[0], et, s), const_of(cg, v[0], et, t));
    return LLVMBuildAdd(b, LLVMBuildMul(b, v[0], const_of(cg, v[0], et, s), ""),
                        const_of(cg, v[0], et, t), "");
  }
  case IR_OP_STEP: {  // x > 0 ? 1 : 0 (NaN gives 0)
    LLVMValueRef gt = LLVMBuildFCmp(b, LLVMRealOGT, v[0], const_of(cg, v[0], et, 0.0), "");
    return LLVMBuildSelect(b, gt, const_of(cg, v[0], et, 1.0), const_of(cg, v[0], et, 0.0), "");
  }
  case IR_OP_DROPOUT: return v[0];       // inference (or p = 0): the identity
  case IR_OP_DROPOUT_GRAD: return v[0];  // inference (or p = 0): dy as it is
  default: break;
  }
  return NULL;
}

// Integer results that may not fit their dtype are computed one element at a time with
// a range check, so a NaN cast or an overflow is reported (as the reference evaluator
// does) instead of producing a wrapped or poisoned value.
static bool needs_check(const IrNode *n) {
  bool to_int = !is_float(n->dtype);
  if (n->op == IR_OP_CAST)
    return to_int && (is_float(n->in[0]->dtype) || (n->dtype == DT_I32 && n->in[0]->dtype == DT_I64));
  return to_int && (n->op == IR_OP_ADD || n->op == IR_OP_SUB || n->op == IR_OP_MUL ||
                    n->op == IR_OP_NEG || n->op == IR_OP_AFFINE);
}

// Scalar op with overflow detection: sets *bad (i1).
static LLVMValueRef apply_checked(Cg *cg, const IrNode *n, LLVMValueRef *v, LLVMValueRef *bad) {
  LLVMBuilderRef b = cg->b;
  LLVMTypeRef et = elem_type(cg, n->dtype);
  if (n->op == IR_OP_CAST && is_float(n->in[0]->dtype)) {  // in range and not NaN
    double lim = n->dtype == DT_I32 ? 2147483648.0 : 9223372036854775808.0;
    LLVMValueRef lo = LLVMBuildFCmp(b, LLVMRealOGE, v[0], cg_f32(cg, -lim), "");
    LLVMValueRef hi = LLVMBuildFCmp(b, LLVMRealOLT, v[0], cg_f32(cg, lim), "");
    *bad = LLVMBuildNot(b, LLVMBuildAnd(b, lo, hi, ""), "");
    LLVMValueRef safe = LLVMBuildSelect(b, *bad, cg_f32(cg, 0), v[0], "");
    return LLVMBuildFPToSI(b, safe, et, "");
  }
  if (n->op == IR_OP_CAST) {  // i64 to i32
    LLVMValueRef t = LLVMBuildTrunc(b, v[0], et, "");
    *bad = LLVMBuildICmp(b, LLVMIntNE, LLVMBuildSExt(b, t, cg->i64, ""), v[0], "");
    return t;
  }
  const char *name = NULL;
  LLVMValueRef x = v[0], y = n->n_in > 1 ? v[1] : NULL;
  switch (n->op) {
  case IR_OP_ADD: name = "llvm.sadd.with.overflow"; break;
  case IR_OP_SUB: name = "llvm.ssub.with.overflow"; break;
  case IR_OP_MUL: name = "llvm.smul.with.overflow"; break;
  case IR_OP_NEG: name = "llvm.ssub.with.overflow"; y = x; x = LLVMConstInt(et, 0, 1); break;
  case IR_OP_AFFINE: {
    LLVMValueRef s = LLVMConstInt(et, (unsigned long long)(int64_t)ir_attr_float(n, "scale"), 1);
    LLVMValueRef t = LLVMConstInt(et, (unsigned long long)(int64_t)ir_attr_float(n, "shift"), 1);
    LLVMValueRef args[2] = {x, s};
    LLVMValueRef m = cg_intrinsic(cg, "llvm.smul.with.overflow", et, args, 2);
    LLVMValueRef args2[2] = {LLVMBuildExtractValue(b, m, 0, ""), t};
    LLVMValueRef a = cg_intrinsic(cg, "llvm.sadd.with.overflow", et, args2, 2);
    *bad = LLVMBuildOr(b, LLVMBuildExtractValue(b, m, 1, ""), LLVMBuildExtractValue(b, a, 1, ""), "");
    return LLVMBuildExtractValue(b, a, 0, "");
  }
  default: break;
  }
  LLVMValueRef args[2] = {x, y};
  LLVMValueRef r = cg_intrinsic(cg, name, et, args, 2);
  *bad = LLVMBuildExtractValue(b, r, 1, "");
  return LLVMBuildExtractValue(b, r, 0, "");
}

// Element offset of input k at output row `row` (multi-index over the output's leading
// dims, dotted with the input's broadcast strides).
LLVMValueRef cg_ew_row_offset(Cg *cg, const IrShape *out, const IrShape *in, LLVMValueRef row) {
  int r = out->rank;
  if (ir_shape_eq(out, in)) return LLVMBuildMul(cg->b, row, cg_i64(cg, out->rank ? out->dim[r - 1] : 1), "");
  int64_t stride[IR_MAX_RANK] = {0}, s = 1;
  for (int d = in->rank - 1; d >= 0; d--) {
    int od = d + (r - in->rank);
    stride[od] = in->dim[d] == 1 ? 0 : s;
    s *= in->dim[d];
  }
  LLVMValueRef off = cg_i64(cg, 0), rem = row;
  for (int d = r - 2; d >= 0; d--) {  // row = ((i0 * d1 + i1) * d2 + i2) ...
    LLVMValueRef idx = d == 0 ? rem : LLVMBuildSRem(cg->b, rem, cg_i64(cg, out->dim[d]), "");
    if (d > 0) rem = LLVMBuildSDiv(cg->b, rem, cg_i64(cg, out->dim[d]), "");
    if (stride[d]) off = LLVMBuildAdd(cg->b, off, LLVMBuildMul(cg->b, idx, cg_i64(cg, stride[d]), ""), "");
  }
  return off;
}

bool cg_ew_inner_contiguous(const IrShape *out, const IrShape *in) {
  return in->rank > 0 && out->rank > 0 && in->dim[in->rank - 1] == out->dim[out->rank - 1] &&
         out->dim[out->rank - 1] != 1;
}

// ---------------------------------------------------------------------------------------
// Dropout in training: element i of dropout node `fwd` is kept iff
// ir_rng_uniform(ir_rng_key(seed, fwd->name), i) >= p, and kept values are x * (1 / (1 - p)),
// the reference's masks bit for bit. The seed is read from the plan (CG_ARG_SEED) when the
// kernel runs; the name's hash is a constant. uniform(key, i) = (z >> 11) * 2^-53 with
// z = mix64(key + (i + 1) * golden), so u >= p is the integer test (z >> 11) >= ceil(p * 2^53)
// (exact: scaling by 2^53 loses nothing). Values are computed in double and rounded once,
// as the reference does.
#define RNG_GOLDEN 0x9E3779B97F4A7C15ull

// An i64 constant of x's shape (x: i64 scalar or vector).
static LLVMValueRef i64_like(Cg *cg, LLVMValueRef x, int64_t v) {
  return cg_splat(cg, cg_i64(cg, v), cg_lanes(x));
}

// splitmix64's finaliser on i64 scalars or vectors (mix64 in ir/ref_elementwise.c).
static LLVMValueRef emit_mix64(Cg *cg, LLVMValueRef z) {
  LLVMBuilderRef b = cg->b;
  z = LLVMBuildXor(b, z, LLVMBuildLShr(b, z, i64_like(cg, z, 30), ""), "");
  z = LLVMBuildMul(b, z, i64_like(cg, z, (int64_t)0xBF58476D1CE4E5B9ull), "");
  z = LLVMBuildXor(b, z, LLVMBuildLShr(b, z, i64_like(cg, z, 27), ""), "");
  z = LLVMBuildMul(b, z, i64_like(cg, z, (int64_t)0x94D049BB133111EBull), "");
  return LLVMBuildXor(b, z, LLVMBuildLShr(b, z, i64_like(cg, z, 31), ""), "");
}

typedef struct DropoutRow {
  LLVMValueRef x, out;  // (numel) f32
  LLVMValueRef base;    // flat index of the row's first element
  LLVMValueRef key;     // i64
  uint64_t threshold;   // keep iff (z >> 11) >= threshold
  double scale;
} DropoutRow;

// x (f32, `lanes` lanes) through the mask at flat indices idx, idx + 1, ...
static LLVMValueRef dropout_value(Cg *cg, LLVMValueRef x, LLVMValueRef idx, int lanes,
                                  LLVMValueRef key, uint64_t threshold, double scale) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef ctr = cg_splat(cg, idx, lanes);  // (lanes) element indices
  if (lanes > 1) {
    LLVMValueRef lane[64];
    for (int i = 0; i < lanes; i++) lane[i] = cg_i64(cg, i);
    ctr = LLVMBuildAdd(b, ctr, LLVMConstVector(lane, (unsigned)lanes), "");
  }
  LLVMValueRef keep = cg_dropout_keep(cg, key, ctr, threshold);
  LLVMTypeRef dt = lanes > 1 ? LLVMVectorType(cg->f64, (unsigned)lanes) : cg->f64;
  LLVMTypeRef ft = lanes > 1 ? LLVMVectorType(cg->f32, (unsigned)lanes) : cg->f32;
  LLVMValueRef xd = LLVMBuildFPExt(b, x, dt, "");
  LLVMValueRef scaled = LLVMBuildFMul(b, xd, cg_const_like(cg, xd, scale), "");
  LLVMValueRef v = LLVMBuildFPTrunc(b, scaled, ft, "");
  return LLVMBuildSelect(b, keep, v, cg_const_like(cg, v, 0.0), "");
}

// The key, advanced by the run's share (seed_ptr[1]) times the mask's numel counters: as
// z = mix64(key + (i + 1) * golden), key + k * golden draws element i as the unshifted key
// draws element i + k. A process of a data-parallel run (or a micro-batch) holding share s
// of the step's rows, s times the batch, so draws the masks of rows s·batch ... of the
// whole step (api/train.c); share 0 (every other run) leaves the key as it is.
LLVMValueRef cg_dropout_key(Cg *cg, LLVMValueRef stream, LLVMValueRef seed_ptr, int64_t numel) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef seed = LLVMBuildLoad2(b, cg->i64, seed_ptr, "seed");
  LLVMValueRef share = LLVMBuildLoad2(b, cg->i64, cg_gep(cg, cg->i64, seed_ptr, cg_i64(cg, 1)), "share");
  LLVMValueRef s = emit_mix64(cg, LLVMBuildAdd(b, seed, cg_i64(cg, (int64_t)RNG_GOLDEN), ""));
  LLVMValueRef key = emit_mix64(cg, LLVMBuildXor(b, s, stream, ""));
  LLVMValueRef skip = LLVMBuildMul(b, share, cg_i64(cg, (int64_t)((uint64_t)numel * RNG_GOLDEN)), "");
  return LLVMBuildAdd(b, key, skip, "key");
}

LLVMValueRef cg_dropout_stream(Cg *cg, LLVMValueRef streams_ptr, int k) {
  return LLVMBuildLoad2(cg->b, cg->i64, cg_gep(cg, cg->i64, streams_ptr, cg_i64(cg, k)), "stream");
}

LLVMValueRef cg_dropout_keep(Cg *cg, LLVMValueRef key, LLVMValueRef ctr, uint64_t threshold) {
  LLVMBuilderRef b = cg->b;
  // z = mix64(key + (i + 1) * golden), wrapping
  LLVMValueRef c1 = LLVMBuildAdd(b, ctr, i64_like(cg, ctr, 1), "");
  LLVMValueRef z = LLVMBuildAdd(b, cg_splat(cg, key, cg_lanes(ctr)),
                                LLVMBuildMul(b, c1, i64_like(cg, ctr, (int64_t)RNG_GOLDEN), ""), "");
  z = emit_mix64(cg, z);
  LLVMValueRef bits = LLVMBuildLShr(b, z, i64_like(cg, z, 11), "");
  return LLVMBuildICmp(b, LLVMIntUGE, bits, i64_like(cg, z, (int64_t)threshold), "keep");
}

static void dropout_cols(Cg *cg, LLVMValueRef col, int lanes, void *ctx) {
  DropoutRow *r = ctx;
  LLVMValueRef idx = cg_add(cg, r->base, col);  // flat index of the first lane
  LLVMValueRef x = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, r->x, idx), lanes);
  LLVMValueRef v = dropout_value(cg, x, idx, lanes, r->key, r->threshold, r->scale);
  cg_store(cg, v, cg_gep(cg, cg->f32, r->out, idx));
}

LLVMValueRef cg_ew_apply(Cg *cg, const IrNode *n, LLVMValueRef *v) { return apply(cg, n, v); }

LLVMValueRef cg_ew_dropout_train(Cg *cg, const IrNode *fwd, LLVMValueRef x, LLVMValueRef idx,
                                 LLVMValueRef seed_ptr, LLVMValueRef stream) {
  double p = ir_attr_float(fwd, "p");
  if (p <= 0) return x;
  uint64_t threshold = (uint64_t)ceil(p * 0x1.0p53);
  double scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;
  return dropout_value(cg, x, idx, cg_lanes(x), cg_dropout_key(cg, stream, seed_ptr, ir_numel(&fwd->shape)),
                       threshold, scale);
}

// dropout(x) or dropout_grad(dy, y): in[0] through the mask of `fwd` (n, or n->in[1]).
static bool lower_dropout_training(Cg *cg, const IrNode *n, CgSteps *steps) {
  const IrNode *fwd = n->op == IR_OP_DROPOUT ? n : n->in[1];
  assert(fwd->op == IR_OP_DROPOUT && n->dtype == DT_F32);
  double p = ir_attr_float(fwd, "p");
  int64_t cols = n->shape.rank ? n->shape.dim[n->shape.rank - 1] : 1;
  int64_t rows = ir_numel(&n->shape) / (cols ? cols : 1);
  char name[96], extra[64];
  // The mask is the forward node's: its p is the kernel's, its stream the step's (dropouts
  // alike share the kernel).
  snprintf(extra, sizeof extra, "train:p=%a", p);
  if (!cg_kernel_name(cg, n, extra, name, sizeof name)) {
    cg_kernel_begin(cg, name);
    DropoutRow r = {.out = cg_buf(cg, 0), .x = cg_buf(cg, 1)};
    // (1 - p) * 2^53 leaves nothing out: ceil gives the least kept 53-bit value.
    r.threshold = (uint64_t)ceil(p * 0x1.0p53);
    r.scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;  // p == 1 keeps nothing
    r.key = cg_dropout_key(cg, cg_dropout_stream(cg, cg_buf(cg, 3), 0), cg_buf(cg, 2), ir_numel(&n->shape));
    CgLoop rl;
    cg_for_begin(cg, &rl, cg->begin, cg->end, cg_i64(cg, 1), "row");  // (rows, cols)
    r.base = cg_mul(cg, rl.iv, cols);
    cg_for_cols(cg, cols, dropout_cols, &r);
    cg_for_end(cg, &rl);
    cg_kernel_end(cg);
  }
  CgStep *st = cg_steps_add(steps, name, rows, n->id);
  st->args[st->n_args++] = cg_arg_node(n->id);
  st->args[st->n_args++] = cg_arg_node(n->in[0]->id);
  st->args[st->n_args++] = cg_arg_seed();
  cg_steps_add_stream(st, ir_rng_name_hash(fwd->name));
  return true;
}

bool cg_lower_elementwise(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  if ((n->op == IR_OP_DROPOUT || n->op == IR_OP_DROPOUT_GRAD) && cg->training) {
    const IrNode *fwd = n->op == IR_OP_DROPOUT ? n : n->in[1];
    if (ir_attr_float(fwd, "p") > 0) return lower_dropout_training(cg, n, steps);
  }
  char name[96], node_tag[32];
  int64_t cols = n->shape.rank ? n->shape.dim[n->shape.rank - 1] : 1;
  int64_t rows = ir_numel(&n->shape) / (cols ? cols : 1);
  bool checked = needs_check(n);
  snprintf(node_tag, sizeof node_tag, "node%d", n->id);  // checked kernels report their node
  if (!cg_kernel_name(cg, n, checked ? node_tag : NULL, name, sizeof name)) {
    cg_kernel_begin(cg, name);
    LLVMValueRef out = cg_buf(cg, 0), in[IR_MAX_RANK];
    LLVMValueRef status = checked ? cg_buf(cg, n->n_in + 1) : NULL;
    LLVMTypeRef oet = elem_type(cg, n->dtype);
    for (int k = 0; k < n->n_in; k++) in[k] = cg_buf(cg, k + 1);
    CgLoop rl;
    cg_for_begin(cg, &rl, cg->begin, cg->end, cg_i64(cg, 1), "row");
    LLVMValueRef off[IR_MAX_RANK], splat[IR_MAX_RANK];
    bool contig[IR_MAX_RANK];
    for (int k = 0; k < n->n_in; k++) {
      const IrNode *a = n->in[k];
      off[k] = cg_ew_row_offset(cg, &n->shape, &a->shape, rl.iv);
      contig[k] = cg_ew_inner_contiguous(&n->shape, &a->shape) || cols == 1;
      splat[k] = NULL;
      if (!contig[k])  // one element for the whole row
        splat[k] = cg_load(cg, elem_type(cg, a->dtype), cg_gep(cg, elem_type(cg, a->dtype), in[k], off[k]), 1);
    }
    LLVMValueRef obase = LLVMBuildMul(cg->b, rl.iv, cg_i64(cg, cols), "");
    int64_t vec_end = checked ? 0 : cols / cg->W * cg->W;
    for (int pass = 0; pass < 2; pass++) {  // vector body, then scalar tail
      int lanes = pass == 0 ? cg->W : 1;
      int64_t lo = pass == 0 ? 0 : vec_end, hi = pass == 0 ? vec_end : cols;
      if (lo >= hi) continue;
      CgLoop cl;
      cg_for_begin(cg, &cl, cg_i64(cg, lo), cg_i64(cg, hi), cg_i64(cg, lanes), pass ? "tail" : "col");
      LLVMValueRef v[IR_MAX_RANK];
      for (int k = 0; k < n->n_in; k++) {
        LLVMTypeRef et = elem_type(cg, n->in[k]->dtype);
        if (contig[k])
          v[k] = cg_load(cg, et, cg_gep(cg, et, in[k], LLVMBuildAdd(cg->b, off[k], cl.iv, "")), lanes);
        else
          v[k] = cg_splat(cg, splat[k], lanes);
      }
      LLVMValueRef idx = LLVMBuildAdd(cg->b, obase, cl.iv, "");
      LLVMValueRef r;
      if (checked) {
        LLVMValueRef bad;
        r = apply_checked(cg, n, v, &bad);
        CgIf ifbad;
        cg_if_begin(cg, &ifbad, bad);
        LLVMValueRef val = is_float(n->in[0]->dtype)
            ? LLVMBuildZExt(cg->b, LLVMBuildBitCast(cg->b, v[0], cg->i32, ""), cg->i64, "")
            : cg_i64(cg, 0);
        cg_report_status(cg, status, n->op == IR_OP_CAST && is_float(n->in[0]->dtype)
                                         ? CG_STATUS_CAST_RANGE : CG_STATUS_INT_OVERFLOW,
                         n->id, val, idx);
        cg_if_end(cg, &ifbad);
      } else {
        r = apply(cg, n, v);
      }
      cg_store(cg, r, cg_gep(cg, oet, out, idx));
      cg_for_end(cg, &cl);
    }
    cg_for_end(cg, &rl);
    cg_kernel_end(cg);
  }
  cg_steps_add_node(steps, name, rows, n, checked);
  (void)d;
  return true;
}

// full and iota: value of element (row, col) from constants and the index.
bool cg_lower_source(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  char name[96];
  int64_t cols = n->shape.rank ? n->shape.dim[n->shape.rank - 1] : 1;
  int64_t rows = ir_numel(&n->shape) / (cols ? cols : 1);
  if (!cg_kernel_name(cg, n, NULL, name, sizeof name)) {
    cg_kernel_begin(cg, name);
    LLVMTypeRef et = elem_type(cg, n->dtype);
    LLVMValueRef out = cg_buf(cg, 0);
    int64_t axis = n->op == IR_OP_IOTA ? ir_attr_int(n, "axis") : 0;
    if (axis < 0) axis += n->shape.rank;
    int64_t inner = 1;  // elements per step of the iota axis
    for (int i = (int)axis + 1; i < n->shape.rank; i++) inner *= n->shape.dim[i];
    CgLoop rl, cl;
    cg_for_begin(cg, &rl, cg->begin, cg->end, cg_i64(cg, 1), "row");
    cg_for_begin(cg, &cl, cg_i64(cg, 0), cg_i64(cg, cols), cg_i64(cg, 1), "col");
    LLVMValueRef flat = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, rl.iv, cg_i64(cg, cols), ""), cl.iv, "");
    LLVMValueRef v;
    if (n->op == IR_OP_FULL) {
      double val = ir_attr_float(n, "value");
      v = et == cg->f32 ? cg_f32(cg, val) : LLVMConstInt(et, (unsigned long long)(int64_t)val, 1);
    } else {
      LLVMValueRef i = LLVMBuildSRem(cg->b, LLVMBuildSDiv(cg->b, flat, cg_i64(cg, inner), ""),
                                     cg_i64(cg, n->shape.dim[axis]), "");
      v = et == cg->f32 ? LLVMBuildSIToFP(cg->b, i, et, "") : LLVMBuildIntCast2(cg->b, i, et, 1, "");
    }
    cg_store(cg, v, cg_gep(cg, et, out, flat));
    cg_for_end(cg, &cl);
    cg_for_end(cg, &rl);
    cg_kernel_end(cg);
  }
  CgStep *st = cg_steps_add(steps, name, rows, n->id);
  st->args[st->n_args++] = cg_arg_node(n->id);
  (void)d;
  return true;
}

