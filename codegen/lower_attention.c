// Lowering of attention and attention_grad (ir/attention.c), flash-attention style: the
// scores of one query row are computed a block of keys at a time with an online softmax
// (running max and sum, the accumulator rescaled when the max grows), so no [B,H,Nq,Nk]
// tensor is ever stored. q, k, v and the output stay in the [B, n, H*D] layout: head h of
// row j is the D elements at (j * H + h) * D. Dropout draws the reference's masks (element
// ((b*H + h)*Nq + i)*Nk + j of the stream named by the node's rng hash).
//   forward:  a pack step copies K of each head transposed (keys along the lanes, rows
//             padded to a multiple of W); then work item = FWD_ROWS query rows of one head
//             (b, h) (KILN_ATTN_ROWS overrides it, for tuning); the last item's rows past
//             Nq repeat row Nq - 1. Keys go a superblock (512) at a time (fwd_super): the
//             scores of each block of W keys are register-blocked outer products (q(r, d)
//             broadcast times a W-key vector of K^T, FMAs over d, no horizontal sums) kept
//             on the stack, then the superblock's softmax weights, then P.V (the weight
//             p(r, j) a broadcast load times the chunks of v row j).
//   backward: work item = one head (b, h): it owns dk and dv of that head, so the sums over
//             queries need no atomics; per group of query rows a first sweep finds the
//             rows' max and sum, a second recomputes the probabilities and accumulates dq,
//             dk, dv (one load-add-store of a dk or dv row per group). Its dot products of
//             a block of W keys are summed by a shuffle tree into one W-lane vector.
//   bf16 (both): the products take words of two bf16 (cg_gemm_bf16_dot: vdpbf16ps, or
//             FMAs giving its bits) with f32 sums; the softmax, D_i and dS stay f32. A pack
//             step converts K^T (and the backward's V^T) into panels like the forward's f32
//             kt, q (and dout) into row words, v (the backward's k) into key-pair words; S
//             and dP are register-blocked panel products as the forward's scores, dQ sums
//             key pairs, dK and dV sum pairs of query rows. The bf16 forward's maximum is a
//             whole number of ln 2s.
// head_dim is split into chunks of W, W/2, ... lanes. exp of the softmax is exp_neg below
// (arguments <= 0 only: about half of cg_exp's operations).
#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "codegen/compile.h"
#include "codegen/lower.h"
#include "codegen/lower_rows.h"

#define PAD_SCORE (-3.0e38)  // scores of the lanes past the last key: exp gives 0
#define MAX_CHUNKS 64
#define MAX_ROWS 8    // query rows of one forward work item (they share the loads of kt, v)
#define FWD_ROWS 4    // ... by default (KILN_ATTN_ROWS overrides it, 1 .. MAX_ROWS)
#define GRAD_ROWS 4   // most query rows of one backward group

// ---------------------------------------------------------------------------------------
// The kernel's sizes and values.
typedef struct Attn {
  int64_t B, H, Nq, Nk, D, HD;
  int64_t ms[4];               // mask strides over [B, H, Nq, Nk] (0: broadcast)
  bool has_mask, dropout;
  bool bf16;                   // the products over words of two bf16 (forward and backward)
  int64_t D2;                  // words of a q or k row with bf16: ceil(D / 2)
  double scale, p;
  uint64_t rng_hash;
  // head_dim split into chunks of lanes[c] (powers of two <= W) at offset off[c]
  int n_chunks;
  int lanes[MAX_CHUNKS];
  int64_t off[MAX_CHUNKS];
  // per kernel / per row values
  LLVMValueRef q, k, v, mask, key;  // buffers; key: dropout key (i64)
  LLVMValueRef kv_head;             // offset of (b, key 0, h, 0) in k and v
  int rows;                         // query rows handled together (row r: i0 + r, clamped)
  LLVMValueRef mask_row[MAX_ROWS];  // offset of (b, h, i, key 0) in the mask
  LLVMValueRef ctr_row[MAX_ROWS];   // dropout counter of (b, h, i, key 0)
  LLVMValueRef qc[MAX_ROWS][MAX_CHUNKS];  // the query rows' chunks
} Attn;

static bool attn_init(Attn *a, const IrNode *n, int W, bool training) {
  const IrShape *q = &n->in[0]->shape, *k = &n->in[1]->shape;
  a->B = q->dim[0];
  a->Nq = q->dim[1];
  a->Nk = k->dim[1];
  a->HD = q->dim[2];
  a->H = ir_attr_int(n, "heads");
  a->D = a->HD / a->H;
  a->scale = ir_attr_float(n, "scale");
  a->p = ir_attr_float(n, "p");
  a->dropout = training && a->p > 0;
  a->rng_hash = ir_attention_rng_hash(n);
  a->bf16 = ir_attr_int(n, "bf16") && W >= 2;
  a->D2 = (a->D + 1) / 2;
  int mask_at = n->op == IR_OP_ATTENTION ? 3 : 5;
  a->has_mask = n->n_in > mask_at;
  if (a->has_mask) {  // aligned to the trailing dims; size-1 dims broadcast
    const IrShape *m = &n->in[mask_at]->shape;
    int64_t step = 1;
    for (int d = 3; d >= 0; d--) {
      int md = d - (4 - m->rank);
      a->ms[d] = 0;
      if (md < 0) continue;
      if (m->dim[md] != 1) a->ms[d] = step;
      step *= m->dim[md];
    }
  }
  a->n_chunks = 0;
  for (int64_t off = 0; off < a->D;) {
    int l = W;
    while (l > a->D - off) l /= 2;
    if (a->n_chunks == MAX_CHUNKS) return false;
    a->lanes[a->n_chunks] = l;
    a->off[a->n_chunks++] = off;
    off += l;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Small helpers.

// (W) f32: 1 / (1 - p) where the dropout keeps key jb + lane of row r, else 0.
static LLVMValueRef keep_scale(Cg *cg, const Attn *a, int r, LLVMValueRef jb) {
  LLVMBuilderRef b = cg->b;
  int W = cg->W;
  LLVMValueRef lane[64];
  for (int t = 0; t < W; t++) lane[t] = cg_i64(cg, t);
  LLVMValueRef ctr = LLVMBuildAdd(b, cg_splat(cg, cg_add(cg, a->ctr_row[r], jb), W),
                                  LLVMConstVector(lane, (unsigned)W), "");
  uint64_t threshold = (uint64_t)ceil(a->p * 0x1.0p53);  // keep iff u >= p, exactly
  LLVMValueRef keep = cg_dropout_keep(cg, a->key, ctr, threshold);
  LLVMValueRef one = cg_splat(cg, cg_f32(cg, 1.0 / (1.0 - a->p)), W);
  return LLVMBuildSelect(b, keep, one, cg_const_like(cg, one, 0.0), "");
}

// e^r of the reduced argument h - n ln2 (n = roundeven(h log2 e), ln2 in two parts).
static LLVMValueRef exp_reduced(Cg *cg, LLVMValueRef h, LLVMValueRef n) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef r = cg_fma(cg, n, cg_const_like(cg, h, -CG_LN2_HI), h);  // exact
  r = cg_fma(cg, n, cg_const_like(cg, h, -CG_LN2_LO), r);
  LLVMValueRef p = cg_const_like(cg, h, cg_exp_poly[CG_EXP_POLY_N - 1]);
  for (int i = CG_EXP_POLY_N - 2; i >= 0; i--) p = cg_fma(cg, p, r, cg_const_like(cg, h, cg_exp_poly[i]));
  return LLVMBuildFAdd(b, cg_fma(cg, LLVMBuildFMul(b, r, r, ""), p, r), cg_const_like(cg, h, 1.0), "");
}

// 2^t for integral t (f32) in [-126, 127]: the exponent bits.
static LLVMValueRef pow2(Cg *cg, LLVMValueRef t) {
  LLVMTypeRef ft = LLVMTypeOf(t);
  LLVMTypeRef it = LLVMGetTypeKind(ft) == LLVMVectorTypeKind ? LLVMVectorType(cg->i32, LLVMGetVectorSize(ft)) : cg->i32;
  LLVMValueRef ti = LLVMBuildFPToSI(cg->b, t, it, "");
  LLVMValueRef bits = LLVMBuildShl(cg->b, LLVMBuildAdd(cg->b, ti, cg_const_int_like(cg, ti, 127), ""),
                                   cg_const_int_like(cg, ti, 23), "");
  return LLVMBuildBitCast(cg->b, bits, ft, "");
}

// exp(x) for x <= 0 that may be hugely negative (softmax arguments: score - running max),
// exactly 0 below -87 and 1 at 0: n = roundeven(x log2 e), r = x - n ln2 (ln2 in two
// parts), e^r = 1 + r + r^2 P(r) (P: the minimax polynomial of cg_math's exp, relative
// error 2^-31), times 2^n built in the exponent bits (n in [-126, 0]). About half the
// operations of cg_exp, which also handles overflow, subnormal results and NaN.
static LLVMValueRef exp_neg(Cg *cg, LLVMValueRef x) {
  LLVMBuilderRef b = cg->b;
  LLVMTypeRef ft = LLVMTypeOf(x);
  LLVMValueRef args[2] = {x, cg_const_like(cg, x, -87.0)};
  LLVMValueRef h = cg_intrinsic(cg, "llvm.maxnum", ft, args, 2);
  LLVMValueRef n = LLVMBuildFMul(b, h, cg_const_like(cg, x, CG_LOG2E), "");
  n = cg_intrinsic(cg, "llvm.roundeven", ft, &n, 1);
  LLVMValueRef e = LLVMBuildFMul(b, exp_reduced(cg, h, n), pow2(cg, n), "");
  LLVMValueRef tiny = LLVMBuildFCmp(b, LLVMRealOLT, x, cg_const_like(cg, x, -87.0), "");
  return LLVMBuildSelect(b, tiny, cg_const_like(cg, x, 0.0), e, "");
}

// The bf16 forward's softmax: exponents against a running maximum kept as a whole number
// k of ln 2 (RowState.m), so that e = exp(s) 2^-k has the same significand whatever k the
// row has reached and its bf16 rounding is the reference's (ir/attention.c: exp(s - K ln 2)
// with the row's final K). *h = the scores s clamped to >= -2^20 (the padding's -3e38 and
// -inf masks stay finite; NaN gives -2^20), *n = roundeven(h log2 e); the weight is then
// exp_reduced(h, n) 2^(n - k) (k >= every n), 0 where n - k < -126 (super_weights).
#define BF16_MIN_SCORE (-1048576.0)
static void exp_pow2_parts(Cg *cg, LLVMValueRef s, LLVMValueRef *h, LLVMValueRef *n) {
  LLVMTypeRef ft = LLVMTypeOf(s);
  LLVMValueRef args[2] = {s, cg_const_like(cg, s, BF16_MIN_SCORE)};
  *h = cg_intrinsic(cg, "llvm.maxnum", ft, args, 2);
  LLVMValueRef t = LLVMBuildFMul(cg->b, *h, cg_const_like(cg, s, CG_LOG2E), "");
  *n = cg_intrinsic(cg, "llvm.roundeven", ft, &t, 1);
}
// 2^t for integral t <= 127, 0 below -126.
static LLVMValueRef pow2_or_zero(Cg *cg, LLVMValueRef t) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef zero = cg_const_like(cg, t, 0.0);
  LLVMValueRef tiny = LLVMBuildFCmp(b, LLVMRealOLT, t, cg_const_like(cg, t, -126.0), "");
  return LLVMBuildSelect(b, tiny, zero, pow2(cg, LLVMBuildSelect(b, tiny, zero, t, "")), "");
}

// sum over chunks of x[c] * y(ptr + off[c]); the W-lane chunks summed as vectors first.
static LLVMValueRef dot(Cg *cg, const Attn *a, LLVMValueRef *x, LLVMValueRef ptr) {
  LLVMValueRef vsum = NULL, s = NULL;
  for (int c = 0; c < a->n_chunks; c++) {
    LLVMValueRef y = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, ptr, cg_i64(cg, a->off[c])), a->lanes[c]);
    if (a->lanes[c] == cg->W) {
      vsum = vsum ? cg_fma(cg, x[c], y, vsum) : LLVMBuildFMul(cg->b, x[c], y, "");
    } else {
      LLVMValueRef t = cg_reduce_add(cg, LLVMBuildFMul(cg->b, x[c], y, ""));
      s = s ? LLVMBuildFAdd(cg->b, s, t, "") : t;
    }
  }
  LLVMValueRef v = vsum ? cg_reduce_add(cg, vsum) : NULL;
  if (v && s) return LLVMBuildFAdd(cg->b, v, s, "");
  return v ? v : s;
}

// Loads the D elements at ptr as chunks.
static void load_chunks(Cg *cg, const Attn *a, LLVMValueRef ptr, LLVMValueRef *out) {
  for (int c = 0; c < a->n_chunks; c++)
    out[c] = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, ptr, cg_i64(cg, a->off[c])), a->lanes[c]);
}

static LLVMValueRef key_row(Cg *cg, const Attn *a, LLVMValueRef buf, LLVMValueRef j) {
  return cg_gep(cg, cg->f32, buf, cg_add(cg, a->kv_head, cg_mul(cg, j, a->HD)));
}

// A W-lane vector whose lanes add up to x . row (x: the row's chunks): the products of the
// widest chunks summed lane by lane, the narrower chunks' sums added into lane 0.
static LLVMValueRef partial_dot(Cg *cg, const Attn *a, LLVMValueRef *x, LLVMValueRef ptr) {
  LLVMBuilderRef b = cg->b;
  int L0 = a->lanes[0];
  LLVMValueRef acc = NULL, rest = NULL;
  for (int c = 0; c < a->n_chunks; c++) {
    LLVMValueRef y = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, ptr, cg_i64(cg, a->off[c])), a->lanes[c]);
    if (a->lanes[c] == L0) {
      acc = acc ? cg_fma(cg, x[c], y, acc) : LLVMBuildFMul(b, x[c], y, "");
    } else {
      LLVMValueRef t = cg_reduce_add(cg, LLVMBuildFMul(b, x[c], y, ""));
      rest = rest ? LLVMBuildFAdd(b, rest, t, "") : t;
    }
  }
  if (L0 == 1) acc = cg_splat(cg, acc, 1);  // a scalar: as a one-lane vector below
  if (rest) {
    LLVMValueRef lane0 = L0 > 1 ? LLVMBuildExtractElement(b, acc, cg_i32(cg, 0), "") : acc;
    LLVMValueRef sum = LLVMBuildFAdd(b, lane0, rest, "");
    acc = L0 > 1 ? LLVMBuildInsertElement(b, acc, sum, cg_i32(cg, 0), "") : sum;
  }
  if (L0 == cg->W) return acc;
  // widen to W lanes with zeros: lanes 0..L0-1 from acc, the rest lane 0 of a zero vector
  LLVMTypeRef vt = cg_vec_t(cg, cg->f32, L0);
  if (L0 == 1) {
    LLVMValueRef v = LLVMBuildInsertElement(b, LLVMConstNull(LLVMVectorType(cg->f32, 1)), acc, cg_i32(cg, 0), "");
    acc = v;
    vt = LLVMVectorType(cg->f32, 1);
  }
  LLVMValueRef mask[64];
  for (int t = 0; t < cg->W; t++) mask[t] = cg_i32(cg, t < L0 ? t : L0);
  return LLVMBuildShuffleVector(b, acc, LLVMConstNull(vt), LLVMConstVector(mask, (unsigned)cg->W), "");
}

// (W) lane t = x . row(jb + t) for t < count, 0 beyond: W partial vectors summed in a
// tree of shuffles (pairwise sums of two vectors into one, log2 W levels), no horizontal
// reduction per key.
static LLVMValueRef dots(Cg *cg, const Attn *a, LLVMValueRef *x, LLVMValueRef buf, LLVMValueRef jb,
                         int count) {
  LLVMBuilderRef b = cg->b;
  int W = cg->W;
  LLVMValueRef v[64];
  for (int t = 0; t < W; t++)
    v[t] = t < count ? partial_dot(cg, a, x, key_row(cg, a, buf, cg_add(cg, jb, cg_i64(cg, t))))
                     : LLVMConstNull(cg_vec_t(cg, cg->f32, W));
  if (W == 1) return v[0];
  LLVMValueRef even[64], odd[64];
  for (int t = 0; t < W; t++) {
    even[t] = cg_i32(cg, 2 * t);
    odd[t] = cg_i32(cg, 2 * t + 1);
  }
  LLVMValueRef me = LLVMConstVector(even, (unsigned)W), mo = LLVMConstVector(odd, (unsigned)W);
  for (int m = W; m > 1; m /= 2)  // m vectors -> m / 2
    for (int i = 0; i < m / 2; i++)
      v[i] = LLVMBuildFAdd(b, LLVMBuildShuffleVector(b, v[2 * i], v[2 * i + 1], me, ""),
                           LLVMBuildShuffleVector(b, v[2 * i], v[2 * i + 1], mo, ""), "");
  return v[0];
}

// (W) scores of keys jb .. jb+count-1 of row r: scale * q . k_j + mask; lanes from count
// on are PAD_SCORE.
static LLVMValueRef finish_scores(Cg *cg, const Attn *a, int r, LLVMValueRef s, LLVMValueRef jb, int count);
static LLVMValueRef scores(Cg *cg, const Attn *a, int r, LLVMValueRef jb, int count) {
  return finish_scores(cg, a, r, dots(cg, a, (LLVMValueRef *)a->qc[r], a->k, jb, count), jb, count);
}

// Query row r of a work item starting at row i0: i0 + r, clamped to the last row (a
// clamped row computes the last row again and stores the same values).
static LLVMValueRef row_index(Cg *cg, const Attn *a, LLVMValueRef i0, int r) {
  LLVMValueRef args[2] = {cg_add(cg, i0, cg_i64(cg, r)), cg_i64(cg, a->Nq - 1)};
  return r ? cg_intrinsic(cg, "llvm.umin", cg->i64, args, 2) : i0;
}

// Sets the per-row offsets of rows i0 .. i0 + rows - 1 of head (b, h), loads their query
// chunks.
static void row_setup(Cg *cg, Attn *a, LLVMValueRef b_, LLVMValueRef h, LLVMValueRef i0) {
  a->kv_head = cg_add(cg, cg_mul(cg, b_, a->Nk * a->HD), cg_mul(cg, h, a->D));
  for (int r = 0; r < a->rows; r++) {
    LLVMValueRef i = row_index(cg, a, i0, r);
    LLVMValueRef qrow = cg_add(cg, cg_mul(cg, cg_add(cg, cg_mul(cg, b_, a->Nq), i), a->HD), cg_mul(cg, h, a->D));
    load_chunks(cg, a, cg_gep(cg, cg->f32, a->q, qrow), a->qc[r]);
    if (a->has_mask)
      a->mask_row[r] = cg_add(cg, cg_add(cg, cg_mul(cg, b_, a->ms[0]), cg_mul(cg, h, a->ms[1])),
                              cg_mul(cg, i, a->ms[2]));
    a->ctr_row[r] = cg_mul(cg, cg_add(cg, cg_mul(cg, cg_add(cg, cg_mul(cg, b_, a->H), h), a->Nq), i), a->Nk);
  }
}

// Runs body(jb, count) over the key blocks: full blocks of W in a loop, then the tail block.
typedef void (*BlockFn)(Cg *cg, Attn *a, LLVMValueRef jb, int count, void *ctx);
static void for_key_blocks(Cg *cg, Attn *a, BlockFn body, void *ctx) {
  int64_t full = a->Nk / cg->W * cg->W;
  if (full > 0) {
    CgLoop kl;
    cg_for_begin(cg, &kl, cg_i64(cg, 0), cg_i64(cg, full), cg_i64(cg, cg->W), "keys");
    body(cg, a, kl.iv, cg->W, ctx);
    cg_for_end(cg, &kl);
  }
  if (a->Nk > full) body(cg, a, cg_i64(cg, full), (int)(a->Nk - full), ctx);
}

// ---------------------------------------------------------------------------------------
// Online softmax state of each row: running max m, sum l of exp(s - m) (W partial sums,
// added up at the end of the row), and (forward) the accumulator
// acc = sum_j exp(s_j - m) * keep_j * v_j.
typedef struct RowState {
  LLVMValueRef m[MAX_ROWS], l[MAX_ROWS];       // variables: f32, (W) f32
  LLVMValueRef acc[MAX_ROWS][MAX_CHUNKS];      // chunk variables (forward only)
  bool with_acc;
} RowState;

// max of two vectors, NaN lanes of y ignored; with nonan (neither has NaN): one vmaxps.
static LLVMValueRef vmax(Cg *cg, LLVMValueRef x, LLVMValueRef y, bool nonan) {
  LLVMValueRef args[2] = {x, y};
  LLVMValueRef m = cg_intrinsic(cg, "llvm.maxnum", LLVMTypeOf(x), args, 2);
  if (nonan) LLVMSetFastMathFlags(m, LLVMFastMathNoNaNs | LLVMFastMathNoSignedZeros);
  return m;
}

// Row r's max and sum with the block's scores s (W).
static void online_update(Cg *cg, RowState *st, int r, LLVMValueRef s) {
  LLVMBuilderRef b = cg->b;
  int W = cg->W;
  {
    LLVMValueRef m_old = cg_get(cg, st->m[r]);
    LLVMValueRef mx[2] = {m_old, cg_reduce_max_nonan(cg, vmax(cg, cg_splat(cg, cg_f32(cg, PAD_SCORE), W), s, false))};
    LLVMValueRef m_new = cg_intrinsic(cg, "llvm.maxnum", cg->f32, mx, 2);
    LLVMValueRef corr = exp_neg(cg, LLVMBuildFSub(b, m_old, m_new, ""));
    LLVMValueRef pe = exp_neg(cg, LLVMBuildFSub(b, s, cg_splat(cg, m_new, W), ""));  // (W)
    cg_set(cg, st->l[r], cg_fma(cg, cg_get(cg, st->l[r]), cg_splat(cg, corr, W), pe));
    cg_set(cg, st->m[r], m_new);
  }
}

static void online_block(Cg *cg, Attn *a, LLVMValueRef jb, int count, void *ctx) {
  for (int r = 0; r < a->rows; r++) online_update(cg, ctx, r, scores(cg, a, r, jb, count));
}

static void row_state_init(Cg *cg, const Attn *a, RowState *st, bool with_acc) {
  st->with_acc = with_acc;
  for (int r = 0; r < a->rows; r++) {
    cg_set(cg, st->m[r], cg_f32(cg, PAD_SCORE));
    cg_set(cg, st->l[r], cg_splat(cg, cg_f32(cg, 0.0), cg->W));
    for (int c = 0; with_acc && c < a->n_chunks; c++)
      cg_set(cg, st->acc[r][c], cg_splat(cg, cg_f32(cg, 0.0), a->lanes[c]));
  }
}

static void row_state_vars(Cg *cg, const Attn *a, RowState *st, bool with_acc) {
  for (int r = 0; r < a->rows; r++) {
    st->m[r] = cg_var(cg, cg->f32, NULL);
    st->l[r] = cg_var(cg, cg_vec_t(cg, cg->f32, cg->W), NULL);
    for (int c = 0; with_acc && c < a->n_chunks; c++)
      st->acc[r][c] = cg_var(cg, cg_vec_t(cg, cg->f32, a->lanes[c]), NULL);
  }
}

static void name_of(Cg *cg, const IrNode *n, const Attn *a, bool words, char *name, size_t size, bool *exists) {
  char extra[64];
  IrNode key = *n;
  key.attr[ir_attr_index(n->op, "rng_hash")].i = 0;
  // the stream (rng_hash) is the step's (CG_ARG_STREAMS): layers alike share the kernel
  snprintf(extra, sizeof extra, "%s%s", a->dropout ? "train" : "infer", words ? "_words" : "");
  *exists = cg_kernel_name(cg, &key, extra, name, size);
}

// ---------------------------------------------------------------------------------------
// The forward's register-blocked scores. A pack step first copies K of every head (b, h)
// transposed into kt[(b*H + h)][j / W][d][j % W] (j < Nkp, Nk rounded up to W; zeros past
// Nk; each key block's panel contiguous), so a
// block of W keys lies along the lanes: S(rows x W keys) += q(r, d) * kt[jb/W][d][0..W) is
// one broadcast and one FMA per row and d, accumulated in 2 * rows vector registers (even
// and odd d apart, added at the end) with no horizontal reduction.

// Scale, mask and pad of the raw dot products s of row r, keys jb .. jb+count-1.
static LLVMValueRef finish_scores(Cg *cg, const Attn *a, int r, LLVMValueRef s, LLVMValueRef jb, int count) {
  LLVMBuilderRef b = cg->b;
  int W = cg->W;
  s = LLVMBuildFMul(b, s, cg_splat(cg, cg_f32(cg, a->scale), W), "");
  if (a->has_mask) {
    LLVMValueRef mrow = cg_gep(cg, cg->f32, a->mask, cg_add(cg, a->mask_row[r], cg_mul(cg, jb, a->ms[3])));
    LLVMValueRef mv;
    if (a->ms[3] == 1 && count == W) {
      mv = cg_load(cg, cg->f32, mrow, W);
    } else if (a->ms[3] == 0) {
      mv = cg_splat(cg, cg_load(cg, cg->f32, mrow, 1), W);
    } else {
      mv = LLVMConstNull(cg_vec_t(cg, cg->f32, W));
      for (int t = 0; t < count; t++)
        mv = LLVMBuildInsertElement(b, mv, cg_load(cg, cg->f32, cg_gep(cg, cg->f32, mrow, cg_i64(cg, t * a->ms[3])), 1),
                                    cg_i32(cg, t), "");
    }
    s = LLVMBuildFAdd(b, s, mv, "");
  }
  if (count < W) {
    LLVMValueRef pad[64];
    for (int t = 0; t < W; t++) pad[t] = LLVMConstInt(cg->i1, t < count, 0);
    s = LLVMBuildSelect(b, LLVMConstVector(pad, (unsigned)W), s, cg_splat(cg, cg_f32(cg, PAD_SCORE), W), "");
  }
  return s;
}

// One product of the rows with a block of W keys, register-blocked: a panel bt of the
// keys' rows along the lanes, [nkp / W][D][W] (bf16: [D2] words; the forward's kt, the
// backward's kt and vt) times the rows' operand aw (f32 q, or bf16 words [Nq][D2]: the
// forward's and backward's qw, the backward's dO words dow).
typedef struct Panel {
  LLVMValueRef bt, aw;
  LLVMValueRef arow[MAX_ROWS];     // offset of each row in aw
  LLVMValueRef sv[2][MAX_ROWS];    // accumulator variables of the d loop
} Panel;

typedef struct Fwd {
  RowState st;
  Panel pn;                        // S = Q K^T: {kt, q or qw, qrow or qwrow}
  LLVMValueRef qrow[MAX_ROWS];     // offset of the rows' q (and out) elements
  LLVMValueRef vw;                 // bf16: this head's v words [nkp / 2][D]
} Fwd;

// s[p][r] += q(r, d) * kt[d][jb..] for d = d0 .. d0 + count - 1 (parity p of d - d0).
static void score_fmas(Cg *cg, const Attn *a, const Panel *pn, LLVMValueRef jb, LLVMValueRef d0, int count,
                       LLVMValueRef s[2][MAX_ROWS]) {
  int W = cg->W;
  for (int t = 0; t < count; t++) {
    LLVMValueRef d = cg_add(cg, d0, cg_i64(cg, t));
    LLVMValueRef kv = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, pn->bt, cg_add(cg, cg_mul(cg, d, W), cg_mul(cg, jb, a->D))), W);
    for (int r = 0; r < a->rows; r++) {
      LLVMValueRef q = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, pn->aw, cg_add(cg, pn->arow[r], d)), 1);
      LLVMValueRef *acc = &s[t & 1][r];
      *acc = *acc ? cg_fma(cg, cg_splat(cg, q, W), kv, *acc) : LLVMBuildFMul(cg->b, cg_splat(cg, q, W), kv, "");
    }
  }
}

// bf16: s[p][r] += q(r, pair d2) . kt[pair d2][jb..] for d2 = d0 .. d0 + count - 1 (parity
// p of d2 - d0), over words of two bf16 (cg_gemm_bf16_dot: vdpbf16ps or the same bits).
static void score_dots(Cg *cg, const Attn *a, const Panel *pn, LLVMValueRef jb, LLVMValueRef d0, int count,
                       LLVMValueRef s[2][MAX_ROWS]) {
  int W = cg->W;
  for (int t = 0; t < count; t++) {
    LLVMValueRef d2 = cg_add(cg, d0, cg_i64(cg, t)), bw[2];
    LLVMValueRef words = cg_load(cg, cg->i32, cg_gep(cg, cg->i32, pn->bt, cg_add(cg, cg_mul(cg, d2, W), cg_mul(cg, jb, a->D2))), W);
    cg_gemm_bf16_prepare_b(cg, words, bw);
    for (int r = 0; r < a->rows; r++) {
      LLVMValueRef qword = cg_load(cg, cg->i32, cg_gep(cg, cg->i32, pn->aw, cg_add(cg, pn->arow[r], d2)), 1);
      s[t & 1][r] = cg_gemm_bf16_dot(cg, s[t & 1][r], qword, bw);
    }
  }
}

// bf16: acc[r][c] += the block's weights of keys jb .. jb + count - 1 times rows of a key
// operand: words[r] (W / 2 words) holds row r's weights of keys (2 t2, 2 t2 + 1), pw the
// words [nkp / 2][D] of the key rows 2 t2, 2 t2 + 1 (the backward's dQ = dS K: kw).
static void key_pairs_times_words(Cg *cg, const Attn *a, const LLVMValueRef *words, LLVMValueRef pw, LLVMValueRef jb,
                                  int count, LLVMValueRef acc[MAX_ROWS][MAX_CHUNKS]) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef pair0 = LLVMBuildUDiv(b, jb, cg_i64(cg, 2), "");
  for (int t2 = 0; t2 < (count + 1) / 2; t2++) {
    LLVMValueRef vrow = cg_gep(cg, cg->i32, pw, cg_mul(cg, cg_add(cg, pair0, cg_i64(cg, t2)), a->D));
    LLVMValueRef aw[MAX_ROWS];
    for (int r = 0; r < a->rows; r++) aw[r] = LLVMBuildExtractElement(b, words[r], cg_i32(cg, t2), "");
    for (int c = 0; c < a->n_chunks; c++) {
      LLVMValueRef bw[2];
      cg_gemm_bf16_prepare_b(cg, cg_load(cg, cg->i32, cg_gep(cg, cg->i32, vrow, cg_i64(cg, a->off[c])), a->lanes[c]), bw);
      for (int r = 0; r < a->rows; r++) acc[r][c] = cg_gemm_bf16_dot(cg, acc[r][c], aw[r], bw);
    }
  }
}

// The panel's sums of the rows with keys jb .. jb + W - 1: s[0][r] + s[1][r] (even and odd
// d apart). d in a loop, 8 at a time (unrolled, the row loads are hoisted out of the key
// loop and spilled), then the rest.
static void panel_sums(Cg *cg, const Attn *a, const Panel *pn, LLVMValueRef jb, LLVMValueRef s[2][MAX_ROWS]) {
  int W = cg->W;
  int64_t nd = a->bf16 ? a->D2 : a->D;  // the d loop's steps: elements, or bf16 words
  LLVMValueRef zero = cg_splat(cg, cg_f32(cg, 0.0), W);
  for (int p = 0; p < 2; p++)
    for (int r = 0; r < a->rows; r++) cg_set(cg, pn->sv[p][r], zero);
  CgLoop dl;
  int64_t full = nd / 8 * 8;
  void (*steps)(Cg *, const Attn *, const Panel *, LLVMValueRef, LLVMValueRef, int, LLVMValueRef[2][MAX_ROWS]) =
      a->bf16 ? score_dots : score_fmas;
  cg_for_begin(cg, &dl, cg_i64(cg, 0), cg_i64(cg, full), cg_i64(cg, 8), "d");
  for (int p = 0; p < 2; p++)
    for (int r = 0; r < a->rows; r++) s[p][r] = cg_get(cg, pn->sv[p][r]);
  steps(cg, a, pn, jb, dl.iv, 8, s);
  for (int p = 0; p < 2; p++)
    for (int r = 0; r < a->rows; r++) cg_set(cg, pn->sv[p][r], s[p][r]);
  cg_for_end(cg, &dl);
  for (int p = 0; p < 2; p++)
    for (int r = 0; r < a->rows; r++) s[p][r] = cg_get(cg, pn->sv[p][r]);
  if (nd > full) steps(cg, a, pn, jb, cg_i64(cg, full), (int)(nd - full), s);
}

// The forward's keys, a superblock of at most SUPER_KEYS (a multiple of W) at a time, in
// three passes: (1) the rows' scores of its key blocks into sbuf, and their lane-wise
// maximum; (2) with the superblock's maximum m (the running maximum's update, l and the
// accumulators rescaled by exp(m_old - m)), the weights e = exp(s - m) of every key, summed
// into l, into pbuf; (3) P.V: per key (bf16: key pair), the rows' weights as broadcast
// loads (the FMA's or vdpbf16ps's memory operand) times the key's v. Against an online
// softmax step per block of W keys: one horizontal maximum and rescaling a row per
// superblock, and no lane extraction (VisualBERT's n = 120 is one superblock; its f32 and
// bf16 kernels took 1.5x and 1.6x as long with a step per block, bench/attn_bench.c).
// bf16: sbuf holds exp_pow2_parts' clamped h, m is a whole number k of ln 2 (so the
// rescaling 2^(k_old - k) is exact and the words are the reference's whatever k was
// reached), e = exp(s) 2^-k, and pbuf holds words of key pairs.
#define SUPER_KEYS 512

typedef struct Super {
  LLVMValueRef sbuf, pbuf;      // [rows][SUPER_KEYS] f32 scores, [rows][SUPER_KEYS] f32 (bf16: / 2 words)
  LLVMValueRef smax[MAX_ROWS];  // (W) variables: lane-wise maximum of the scores
  LLVMValueRef s0;              // the superblock's first key
} Super;

// Pass 1 on the block at key jb = s0 + o (count keys).
static void super_scores(Cg *cg, Attn *a, Fwd *f, Super *sp, LLVMValueRef o, int count) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef jb = cg_add(cg, sp->s0, o), s[2][MAX_ROWS] = {{0}};
  panel_sums(cg, a, &f->pn, jb, s);
  for (int r = 0; r < a->rows; r++) {
    LLVMValueRef sc = finish_scores(cg, a, r, LLVMBuildFAdd(b, s[0][r], s[1][r], ""), jb, count), n;
    if (a->bf16) exp_pow2_parts(cg, sc, &sc, &n);  // clamped: no NaN
    cg_store(cg, sc, cg_gep(cg, cg->f32, sp->sbuf, cg_add(cg, o, cg_i64(cg, r * SUPER_KEYS))));
    cg_set(cg, sp->smax[r], vmax(cg, cg_get(cg, sp->smax[r]), sc, a->bf16));
  }
}

// Pass 2's weights of the block at offset o of row r (m: the row's maximum).
static LLVMValueRef super_weights(Cg *cg, const Attn *a, const Super *sp, int r, LLVMValueRef o, LLVMValueRef m) {
  LLVMBuilderRef b = cg->b;
  int W = cg->W;
  LLVMValueRef sc = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, sp->sbuf, cg_add(cg, o, cg_i64(cg, r * SUPER_KEYS))), W);
  if (!a->bf16) return exp_neg(cg, LLVMBuildFSub(b, sc, cg_splat(cg, m, W), ""));
  LLVMValueRef t = LLVMBuildFMul(b, sc, cg_const_like(cg, sc, CG_LOG2E), "");
  LLVMValueRef n = cg_intrinsic(cg, "llvm.roundeven", LLVMTypeOf(sc), &t, 1);
  return LLVMBuildFMul(b, exp_reduced(cg, sc, n), pow2_or_zero(cg, LLVMBuildFSub(b, n, cg_splat(cg, m, W), "")), "");
}

// The superblock of keys [s0, s0 + full * W + tail): full blocks of W keys, then a tail
// block of tail < W keys (the last superblock only; its lanes past Nk score PAD_SCORE, so
// e = 0, and v's rows there are not read (bf16: their words are 0)).
static void fwd_super(Cg *cg, Attn *a, Fwd *f, Super *sp, LLVMValueRef s0, int64_t full, int tail) {
  LLVMBuilderRef b = cg->b;
  int W = cg->W;
  RowState *st = &f->st;
  int64_t blocks = full + (tail > 0);
  sp->s0 = s0;
  for (int r = 0; r < a->rows; r++)
    cg_set(cg, sp->smax[r], cg_splat(cg, cg_f32(cg, a->bf16 ? BF16_MIN_SCORE : PAD_SCORE), W));
  CgLoop bl;
  if (full) {
    cg_for_begin(cg, &bl, cg_i64(cg, 0), cg_i64(cg, full * W), cg_i64(cg, W), "scores");
    super_scores(cg, a, f, sp, bl.iv, W);
    cg_for_end(cg, &bl);
  }
  if (tail) super_scores(cg, a, f, sp, cg_i64(cg, full * W), tail);
  LLVMValueRef m[MAX_ROWS];
  for (int r = 0; r < a->rows; r++) {
    LLVMValueRef m_old = cg_get(cg, st->m[r]), sm = cg_reduce_max_nonan(cg, cg_get(cg, sp->smax[r])), corr;
    if (a->bf16) {  // k = max n = roundeven(max h log2 e): both monotone
      LLVMValueRef t = LLVMBuildFMul(b, sm, cg_f32(cg, CG_LOG2E), "");
      sm = cg_intrinsic(cg, "llvm.roundeven", cg->f32, &t, 1);
    }
    LLVMValueRef mx[2] = {m_old, sm};
    m[r] = cg_intrinsic(cg, "llvm.maxnum", cg->f32, mx, 2);
    LLVMValueRef dm = LLVMBuildFSub(b, m_old, m[r], "");
    corr = a->bf16 ? pow2_or_zero(cg, dm) : exp_neg(cg, dm);
    cg_set(cg, st->m[r], m[r]);
    cg_set(cg, st->l[r], LLVMBuildFMul(b, cg_get(cg, st->l[r]), cg_splat(cg, corr, W), ""));
    for (int c = 0; c < a->n_chunks; c++)
      cg_set(cg, st->acc[r][c], LLVMBuildFMul(b, cg_get(cg, st->acc[r][c]), cg_splat(cg, corr, a->lanes[c]), ""));
  }
  cg_for_begin(cg, &bl, cg_i64(cg, 0), cg_i64(cg, blocks * W), cg_i64(cg, W), "exps");
  for (int r = 0; r < a->rows; r++) {
    LLVMValueRef e = super_weights(cg, a, sp, r, bl.iv, m[r]);
    cg_set(cg, st->l[r], LLVMBuildFAdd(b, cg_get(cg, st->l[r]), e, ""));
    if (a->dropout) e = LLVMBuildFMul(b, e, keep_scale(cg, a, r, cg_add(cg, s0, bl.iv)), "");
    if (a->bf16)
      cg_store(cg, cg_bf16_lane_words(cg, e, NULL), cg_gep(cg, cg->i32, sp->pbuf, cg_add(cg, LLVMBuildUDiv(b, bl.iv, cg_i64(cg, 2), ""), cg_i64(cg, r * SUPER_KEYS / 2))));
    else
      cg_store(cg, e, cg_gep(cg, cg->f32, sp->pbuf, cg_add(cg, bl.iv, cg_i64(cg, r * SUPER_KEYS))));
  }
  cg_for_end(cg, &bl);
  // P.V: per key (bf16: key pair) t, acc[r][c] += pbuf[r][t] * v(t) chunk c
  int64_t steps = a->bf16 ? blocks * W / 2 : full * W + tail, row_len = a->bf16 ? SUPER_KEYS / 2 : SUPER_KEYS;
  cg_for_begin(cg, &bl, cg_i64(cg, 0), cg_i64(cg, steps), cg_i64(cg, 1), "values");
  LLVMValueRef vrow = a->bf16 ? cg_gep(cg, cg->i32, f->vw, cg_mul(cg, cg_add(cg, LLVMBuildUDiv(b, s0, cg_i64(cg, 2), ""), bl.iv), a->D))
                              : key_row(cg, a, a->v, cg_add(cg, s0, bl.iv));
  LLVMValueRef acc[MAX_ROWS][MAX_CHUNKS];
  for (int r = 0; r < a->rows; r++)
    for (int c = 0; c < a->n_chunks; c++) acc[r][c] = cg_get(cg, st->acc[r][c]);
  for (int c = 0; c < a->n_chunks; c++) {
    LLVMTypeRef et = a->bf16 ? cg->i32 : cg->f32;
    LLVMValueRef vv = cg_load(cg, et, cg_gep(cg, et, vrow, cg_i64(cg, a->off[c])), a->lanes[c]), bw[2];
    if (a->bf16) cg_gemm_bf16_prepare_b(cg, vv, bw);
    for (int r = 0; r < a->rows; r++) {
      LLVMValueRef w = cg_load(cg, et, cg_gep(cg, et, sp->pbuf, cg_add(cg, bl.iv, cg_i64(cg, r * row_len))), 1);
      acc[r][c] = a->bf16 ? cg_gemm_bf16_dot(cg, acc[r][c], w, bw) : cg_fma(cg, cg_splat(cg, w, a->lanes[c]), vv, acc[r][c]);
    }
  }
  for (int r = 0; r < a->rows; r++)
    for (int c = 0; c < a->n_chunks; c++) cg_set(cg, st->acc[r][c], acc[r][c]);
  cg_for_end(cg, &bl);
}

// All keys of the rows: whole superblocks in a loop, then the rest (with the tail block).
static void fwd_keys(Cg *cg, Attn *a, Fwd *f) {
  int W = cg->W;
  Super sp = {0};
  sp.sbuf = cg_var(cg, LLVMArrayType(cg->f32, (unsigned)(a->rows * SUPER_KEYS)), NULL);
  sp.pbuf = cg_var(cg, LLVMArrayType(cg->f32, (unsigned)(a->rows * SUPER_KEYS)), NULL);
  LLVMSetAlignment(sp.sbuf, 64);
  LLVMSetAlignment(sp.pbuf, 64);
  for (int r = 0; r < a->rows; r++) sp.smax[r] = cg_var(cg, cg_vec_t(cg, cg->f32, W), NULL);
  int64_t blocks = a->Nk / W, per = SUPER_KEYS / W, whole = blocks / per;
  int tail = (int)(a->Nk % W);
  if (whole) {
    CgLoop sl;
    cg_for_begin(cg, &sl, cg_i64(cg, 0), cg_i64(cg, whole * SUPER_KEYS), cg_i64(cg, SUPER_KEYS), "super");
    fwd_super(cg, a, f, &sp, sl.iv, per, 0);
    cg_for_end(cg, &sl);
  }
  if (blocks % per || tail) fwd_super(cg, a, f, &sp, cg_i64(cg, whole * SUPER_KEYS), blocks % per, tail);
}

// The pack kernel: work item = head (b, h); kt[(b*H + h)][j / W][d][j % W] = k(b, j, h*D + d)
// (each block of W keys a contiguous [D][W] panel), 0 for j in [Nk, nkp). bufs: kt, k.
static void emit_pack_kt(Cg *cg, const Attn *a, const char *name, int64_t nkp) {
  cg_kernel_begin(cg, name);
  LLVMValueRef kt = cg_buf(cg, 0), k = cg_buf(cg, 1);
  CgLoop hl;
  cg_for_begin(cg, &hl, cg->begin, cg->end, cg_i64(cg, 1), "head");
  LLVMValueRef h = LLVMBuildURem(cg->b, hl.iv, cg_i64(cg, a->H), "");
  LLVMValueRef bb = LLVMBuildUDiv(cg->b, hl.iv, cg_i64(cg, a->H), "");
  LLVMValueRef src = cg_gep(cg, cg->f32, k, cg_add(cg, cg_mul(cg, bb, a->Nk * a->HD), cg_mul(cg, h, a->D)));
  LLVMValueRef dst = cg_gep(cg, cg->f32, kt, cg_mul(cg, hl.iv, a->D * nkp));
  CgLoop jl;
  cg_for_begin(cg, &jl, cg_i64(cg, 0), cg_i64(cg, a->Nk), cg_i64(cg, 1), "key");
  LLVMValueRef row = cg_gep(cg, cg->f32, src, cg_mul(cg, jl.iv, a->HD));
  LLVMValueRef blk = LLVMBuildUDiv(cg->b, jl.iv, cg_i64(cg, cg->W), "");
  LLVMValueRef at = cg_add(cg, cg_mul(cg, blk, a->D * cg->W), LLVMBuildURem(cg->b, jl.iv, cg_i64(cg, cg->W), ""));
  for (int c = 0; c < a->n_chunks; c++) {
    int L = a->lanes[c];
    LLVMValueRef x = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, row, cg_i64(cg, a->off[c])), L);
    for (int e = 0; e < L; e++) {
      LLVMValueRef v = L > 1 ? LLVMBuildExtractElement(cg->b, x, cg_i32(cg, e), "") : x;
      cg_store(cg, v, cg_gep(cg, cg->f32, dst, cg_add(cg, at, cg_i64(cg, (a->off[c] + e) * cg->W))));
    }
  }
  cg_for_end(cg, &jl);
  for (int64_t d = 0; d < a->D && nkp > a->Nk; d++)
    for (int64_t j = a->Nk; j < nkp; j++)
      cg_store(cg, cg_f32(cg, 0.0), cg_gep(cg, cg->f32, dst, cg_i64(cg, j / cg->W * a->D * cg->W + d * cg->W + j % cg->W)));
  cg_for_end(cg, &hl);
  cg_kernel_end(cg);
}

// The fp32 pack kernel's name: a hash of what it reads and writes (not of the queries), so
// attentions that differ only in their query rows share it.
static bool kt_name(Cg *cg, const Attn *a, int64_t nkp, char *buf, size_t size) {
  int64_t v[7 + 2 * MAX_CHUNKS] = {cg->W, a->H, a->Nk, a->D, a->HD, nkp, a->n_chunks};
  int n = 7;
  for (int c = 0; c < a->n_chunks; c++) v[n++] = a->lanes[c], v[n++] = a->off[c];
  return cg_kernel_name_of(cg, "attention_kt", v, n, buf, size);
}

// The D floats at src as D2 words of two bf16 at dst[d2 * stride] (the last one's high half
// 0 for odd D).
static void row_words(Cg *cg, const Attn *a, LLVMValueRef src, LLVMValueRef dst, int64_t stride) {
  CgLoop dl;
  cg_for_begin(cg, &dl, cg_i64(cg, 0), cg_i64(cg, a->D / 2), cg_i64(cg, 1), "d2");
  LLVMValueRef d = cg_mul(cg, dl.iv, 2);
  LLVMValueRef lo = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, src, d), 1);
  LLVMValueRef hi = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, src, cg_add(cg, d, cg_i64(cg, 1))), 1);
  cg_store(cg, cg_bf16_words(cg, lo, hi), cg_gep(cg, cg->i32, dst, cg_mul(cg, dl.iv, stride)));
  cg_for_end(cg, &dl);
  if (a->D % 2)
    cg_store(cg, cg_bf16_words(cg, cg_load(cg, cg->f32, cg_gep(cg, cg->f32, src, cg_i64(cg, a->D - 1)), 1), cg_f32(cg, 0.0)),
             cg_gep(cg, cg->i32, dst, cg_i64(cg, (a->D2 - 1) * stride)));
}

// Words [o, o + L) of a row's D2 words (D even) from its floats at src: floats [2o, 2o + 2L)
// in one load, paired (cg_bf16_lane_words), as <L x i32>.
static LLVMValueRef row_word_piece(Cg *cg, LLVMValueRef src, int64_t o, int L) {
  return cg_bf16_lane_words(cg, cg_load(cg, cg->f32, cg_gep(cg, cg->f32, src, cg_i64(cg, 2 * o)), 2 * L), NULL);
}

// The pieces of a row of D2 words: W words, then powers of two down to 1.
static int next_piece(const Cg *cg, const Attn *a, int64_t o) {
  int L = cg->W;
  while (L > a->D2 - o) L /= 2;
  return L;
}

// The bf16 packing of head bh = (b, h) (bb = b, hoff = h D) of a [B, n, H*D] source src
// into words of two bf16 (cg_bf16_words; d within head h, 0 past D):
// key panel: dst[bh][j / W][d2][j % W] = (src(b, j, 2 d2), src(b, j, 2 d2 + 1)), 0 for j in [Nk, nkp).
// With D even, a block of W keys at a time: each key's words (row_word_piece), the W x W
// blocks transposed in registers, stored as W-word rows of the panel (scalar stores of one
// word each took ~9 us a head of VisualBERT's bf16 attention: 3 times its f32 pack).
static void key_block(Cg *cg, const Attn *a, LLVMValueRef kth, LLVMValueRef kvh, LLVMValueRef blk, int keys) {
  int W = cg->W;
  LLVMValueRef base = cg_gep(cg, cg->i32, kth, cg_mul(cg, blk, a->D2 * W));
  LLVMValueRef row0 = cg_gep(cg, cg->f32, kvh, cg_mul(cg, blk, W * a->HD));
  for (int64_t o = 0; o < a->D2;) {
    int L = next_piece(cg, a, o);
    LLVMValueRef v[64], widen[64];
    for (int l = 0; l < W; l++) widen[l] = cg_i32(cg, l < L ? l : L);  // L < W: lane L of the zeros
    for (int kk = 0; kk < W; kk++) {
      v[kk] = LLVMConstNull(cg_vec_t(cg, cg->i32, W));
      if (kk >= keys) continue;
      LLVMValueRef w = row_word_piece(cg, cg_gep(cg, cg->f32, row0, cg_i64(cg, kk * a->HD)), o, L);
      v[kk] = L == W ? w : LLVMBuildShuffleVector(cg->b, w, LLVMConstNull(LLVMTypeOf(w)), LLVMConstVector(widen, (unsigned)W), "");
    }
    cg_gemm_transpose(cg, v);
    for (int d = 0; d < L; d++) cg_store(cg, v[d], cg_gep(cg, cg->i32, base, cg_i64(cg, (o + d) * W)));
    o += L;
  }
}

static void pack_key_panel(Cg *cg, const Attn *a, LLVMValueRef bh, LLVMValueRef bb, LLVMValueRef hoff,
                           LLVMValueRef src, LLVMValueRef dst, int64_t nkp) {
  LLVMBuilderRef b = cg->b;
  int W = cg->W;
  LLVMValueRef kth = cg_gep(cg, cg->i32, dst, cg_mul(cg, bh, a->D2 * nkp));
  LLVMValueRef kvh = cg_gep(cg, cg->f32, src, cg_add(cg, cg_mul(cg, bb, a->Nk * a->HD), hoff));
  if (a->D % 2 == 0) {
    int64_t full = a->Nk / W;
    if (full) {
      CgLoop bl;
      cg_for_begin(cg, &bl, cg_i64(cg, 0), cg_i64(cg, full), cg_i64(cg, 1), "keys");
      key_block(cg, a, kth, kvh, bl.iv, W);
      cg_for_end(cg, &bl);
    }
    if (a->Nk % W) key_block(cg, a, kth, kvh, cg_i64(cg, full), (int)(a->Nk % W));  // and the zeros to nkp
    return;
  }
  for (int pad = 0; pad < 2; pad++) {  // odd D: keys [0, Nk) a word at a time, then the zeros of [Nk, nkp)
    if (pad && nkp == a->Nk) break;
    CgLoop jl;
    cg_for_begin(cg, &jl, cg_i64(cg, pad ? a->Nk : 0), cg_i64(cg, pad ? nkp : a->Nk), cg_i64(cg, 1), "key");
    LLVMValueRef at = cg_add(cg, cg_mul(cg, LLVMBuildUDiv(b, jl.iv, cg_i64(cg, W), ""), a->D2 * W),
                             LLVMBuildURem(b, jl.iv, cg_i64(cg, W), ""));
    if (!pad) row_words(cg, a, cg_gep(cg, cg->f32, kvh, cg_mul(cg, jl.iv, a->HD)), cg_gep(cg, cg->i32, kth, at), W);
    for (int64_t d2 = 0; pad && d2 < a->D2; d2++)
      cg_store(cg, cg_i32(cg, 0), cg_gep(cg, cg->i32, kth, cg_add(cg, at, cg_i64(cg, d2 * W))));
    cg_for_end(cg, &jl);
  }
}

// query rows: dst[bh][i][d2] = (src(b, i, 2 d2), src(b, i, 2 d2 + 1)), i < Nq (D even: a
// piece of words at a time).
static void pack_query_rows(Cg *cg, const Attn *a, LLVMValueRef bh, LLVMValueRef bb, LLVMValueRef hoff,
                            LLVMValueRef src, LLVMValueRef dst) {
  LLVMValueRef qh = cg_gep(cg, cg->f32, src, cg_add(cg, cg_mul(cg, bb, a->Nq * a->HD), hoff));
  LLVMValueRef qwh = cg_gep(cg, cg->i32, dst, cg_mul(cg, bh, a->Nq * a->D2));
  CgLoop il;
  cg_for_begin(cg, &il, cg_i64(cg, 0), cg_i64(cg, a->Nq), cg_i64(cg, 1), "query");
  LLVMValueRef row = cg_gep(cg, cg->f32, qh, cg_mul(cg, il.iv, a->HD));
  LLVMValueRef out = cg_gep(cg, cg->i32, qwh, cg_mul(cg, il.iv, a->D2));
  for (int64_t o = 0; a->D % 2 == 0 && o < a->D2;) {
    int L = next_piece(cg, a, o);
    cg_store(cg, row_word_piece(cg, row, o, L), cg_gep(cg, cg->i32, out, cg_i64(cg, o)));
    o += L;
  }
  if (a->D % 2) row_words(cg, a, row, out, 1);
  cg_for_end(cg, &il);
}

// key pairs: dst[bh][j2][d] = (src(b, 2 j2, d), src(b, 2 j2 + 1, d)), 0 past Nk.
static void pack_key_pairs(Cg *cg, const Attn *a, LLVMValueRef bh, LLVMValueRef bb, LLVMValueRef hoff,
                           LLVMValueRef src, LLVMValueRef dst, int64_t nkp) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef vh = cg_gep(cg, cg->f32, src, cg_add(cg, cg_mul(cg, bb, a->Nk * a->HD), hoff));
  LLVMValueRef vwh = cg_gep(cg, cg->i32, dst, cg_mul(cg, bh, nkp / 2 * a->D));
  CgLoop pl;
  cg_for_begin(cg, &pl, cg_i64(cg, 0), cg_i64(cg, nkp / 2), cg_i64(cg, 1), "pair");
  LLVMValueRef row[2], in[2];
  for (int e = 0; e < 2; e++) {
    LLVMValueRef j = cg_add(cg, cg_mul(cg, pl.iv, 2), cg_i64(cg, e));
    in[e] = LLVMBuildICmp(b, LLVMIntULT, j, cg_i64(cg, a->Nk), "");
    LLVMValueRef jc = LLVMBuildSelect(b, in[e], j, cg_i64(cg, a->Nk - 1), "");
    row[e] = cg_gep(cg, cg->f32, vh, cg_mul(cg, jc, a->HD));
  }
  LLVMValueRef at = cg_gep(cg, cg->i32, vwh, cg_mul(cg, pl.iv, a->D));
  for (int c = 0; c < a->n_chunks; c++) {
    int L = a->lanes[c];
    LLVMValueRef x[2];
    for (int e = 0; e < 2; e++) {
      LLVMValueRef ld = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, row[e], cg_i64(cg, a->off[c])), L);
      x[e] = LLVMBuildSelect(b, in[e], ld, LLVMConstNull(cg_vec_t(cg, cg->f32, L)), "");
    }
    cg_store(cg, cg_bf16_words(cg, x[0], x[1]), cg_gep(cg, cg->i32, at, cg_i64(cg, a->off[c])));
  }
  cg_for_end(cg, &pl);
}

// The bf16 pack kernels: work item = head (b, h). n_bufs buffers: the destinations, then
// their sources; kinds[i] says how source i is packed into destination i. The forward's:
// kt <- k (key panel), qw <- q (query rows), vw <- v (key pairs); the backward's adds
// vt <- v (key panel), kw <- k (key pairs), dow <- dout (query rows).
typedef enum { PACK_PANEL, PACK_ROWS, PACK_PAIRS } PackKind;
enum { PACK_MAX = 5 };
static void emit_pack_bf16(Cg *cg, const Attn *a, const char *name, int64_t nkp, int n, const PackKind *kinds) {
  LLVMBuilderRef b = cg->b;
  cg_kernel_begin(cg, name);
  LLVMValueRef buf[2 * PACK_MAX];
  assert(n <= PACK_MAX);
  for (int i = 0; i < 2 * n; i++) buf[i] = cg_buf(cg, i);
  CgLoop hl;
  cg_for_begin(cg, &hl, cg->begin, cg->end, cg_i64(cg, 1), "head");
  LLVMValueRef h = LLVMBuildURem(b, hl.iv, cg_i64(cg, a->H), "");
  LLVMValueRef bb = LLVMBuildUDiv(b, hl.iv, cg_i64(cg, a->H), "");
  LLVMValueRef hoff = cg_mul(cg, h, a->D);
  for (int i = 0; i < n; i++) {
    if (kinds[i] == PACK_PANEL) pack_key_panel(cg, a, hl.iv, bb, hoff, buf[n + i], buf[i], nkp);
    else if (kinds[i] == PACK_ROWS) pack_query_rows(cg, a, hl.iv, bb, hoff, buf[n + i], buf[i]);
    else pack_key_pairs(cg, a, hl.iv, bb, hoff, buf[n + i], buf[i], nkp);
  }
  cg_for_end(cg, &hl);
  cg_kernel_end(cg);
}

// Query rows per forward work item: RtTuning.attn_rows (KILN_ATTN_ROWS; clamped to 1 ..
// MAX_ROWS) or def; 4 was fastest at n = 120 and 512 with W = 16 and W = 8
// (bench/attn_bench.c).
static int tuned_rows(const Cg *cg, int def) {
  int r = cg->tuning.attn_rows ? cg->tuning.attn_rows : def;
  return r < 1 ? 1 : r > MAX_ROWS ? MAX_ROWS : r;
}

// ---------------------------------------------------------------------------------------
// attention(q, k, v[, mask]) -> out [B, Nq, H*D]. Steps: pack K^T (bufs: kt, k), then the
// attention (bufs: out, q, k, v, kt[, mask][, seed, streams]).
bool cg_lower_attention(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  Attn a = {0};
  if (!attn_init(&a, n, cg->W, cg->training))
    return diag_error(d, "%s \"%s\": head_dim %lld is too large for the attention kernel",
                      n->where, n->name, (long long)a.D);
  a.rows = tuned_rows(cg, FWD_ROWS);
  if (a.rows > a.Nq) a.rows = (int)a.Nq;
  int64_t n_blocks = (a.Nq + a.rows - 1) / a.rows;  // work items per head
  int64_t nkp = (a.Nk + cg->W - 1) / cg->W * cg->W;
  char name[96], pack[112];
  bool exists;
  // Read by a bf16 GEMM as its A: each output row of a head also as D / 2 words of two bf16,
  // while in L1 (the GEMM takes the copy instead of packing: cg_steps_words_of).
  bool words = cg->bf16_a && cg->bf16_a[n->id] && a.D % 2 == 0 && cg->W >= 2;  // chunks of >= 2 lanes
  name_of(cg, n, &a, words, name, sizeof name, &exists);
  bool kt_exists = false;  // the fp32 K^T kernel is shared with a pruned layer's attention
  if (a.bf16) snprintf(pack, sizeof pack, "%s_kt", name);
  else kt_exists = kt_name(cg, &a, nkp, pack, sizeof pack);
  if (!exists) {
    if (a.bf16) emit_pack_bf16(cg, &a, pack, nkp, 3, (const PackKind[]){PACK_PANEL, PACK_ROWS, PACK_PAIRS});
    else if (!kt_exists) emit_pack_kt(cg, &a, pack, nkp);
    cg_kernel_begin(cg, name);
    LLVMValueRef out = cg_buf(cg, 0);
    a.q = cg_buf(cg, 1), a.k = cg_buf(cg, 2), a.v = cg_buf(cg, 3);
    LLVMValueRef kt = cg_buf(cg, 4), qw = NULL, vw = NULL;
    int next = 5;
    if (a.bf16) qw = cg_buf(cg, next++), vw = cg_buf(cg, next++);
    if (a.has_mask) a.mask = cg_buf(cg, next++);
    if (a.dropout)  // the probabilities [B, H, Nq, Nk]
      a.key = cg_dropout_key(cg, cg_dropout_stream(cg, cg_buf(cg, next + 1), 0), cg_buf(cg, next),
                             a.B * a.H * a.Nq * a.Nk);
    Fwd f = {0};
    row_state_vars(cg, &a, &f.st, true);
    for (int p = 0; p < 2; p++)
      for (int r = 0; r < a.rows; r++) f.pn.sv[p][r] = cg_var(cg, cg_vec_t(cg, cg->f32, cg->W), NULL);
    CgLoop rl;
    cg_for_begin(cg, &rl, cg->begin, cg->end, cg_i64(cg, 1), "rows");  // (B, H, Nq / rows)
    LLVMValueRef i0 = cg_mul(cg, LLVMBuildURem(cg->b, rl.iv, cg_i64(cg, n_blocks), ""), a.rows);
    LLVMValueRef bh = LLVMBuildUDiv(cg->b, rl.iv, cg_i64(cg, n_blocks), "");
    LLVMValueRef h = LLVMBuildURem(cg->b, bh, cg_i64(cg, a.H), "");
    LLVMValueRef bb = LLVMBuildUDiv(cg->b, bh, cg_i64(cg, a.H), "");
    f.pn.bt = a.bf16 ? cg_gep(cg, cg->i32, kt, cg_mul(cg, bh, a.D2 * nkp)) : cg_gep(cg, cg->f32, kt, cg_mul(cg, bh, a.D * nkp));
    f.pn.aw = a.q;
    if (a.bf16) {
      f.pn.aw = cg_gep(cg, cg->i32, qw, cg_mul(cg, bh, a.Nq * a.D2));
      f.vw = cg_gep(cg, cg->i32, vw, cg_mul(cg, bh, nkp / 2 * a.D));
    }
    row_setup(cg, &a, bb, h, i0);
    for (int r = 0; r < a.rows; r++) {
      LLVMValueRef i = row_index(cg, &a, i0, r);
      f.qrow[r] = cg_add(cg, cg_mul(cg, cg_add(cg, cg_mul(cg, bb, a.Nq), i), a.HD), cg_mul(cg, h, a.D));
      LLVMValueRef qwrow = cg_mul(cg, i, a.D2);
      f.pn.arow[r] = a.bf16 ? qwrow : f.qrow[r];
    }
    row_state_init(cg, &a, &f.st, true);
    fwd_keys(cg, &a, &f);
    LLVMValueRef wbuf = words ? cg_buf(cg, next + 2 * a.dropout) : NULL;  // the last (cg_steps_add_words)
    for (int r = 0; r < a.rows; r++) {
      LLVMValueRef inv = LLVMBuildFDiv(cg->b, cg_f32(cg, 1.0), cg_reduce_add(cg, cg_get(cg, f.st.l[r])), "");
      LLVMValueRef wrow = words ? cg_gep(cg, cg->i32, wbuf, LLVMBuildUDiv(cg->b, f.qrow[r], cg_i64(cg, 2), "")) : NULL;
      LLVMValueRef o[MAX_CHUNKS];
      for (int c = 0; c < a.n_chunks; c++) {
        o[c] = LLVMBuildFMul(cg->b, cg_get(cg, f.st.acc[r][c]), cg_splat(cg, inv, a.lanes[c]), "");
        cg_store(cg, o[c], cg_gep(cg, cg->f32, out, cg_add(cg, f.qrow[r], cg_i64(cg, a.off[c]))));
      }
      // the words from the registers, two chunks of a width at a time (converting the stored
      // row back cost 3 times the GEMM's packing of it: loads spanning two stores)
      for (int c = 0; words && c < a.n_chunks;) {
        bool two = c + 1 < a.n_chunks && a.lanes[c + 1] == a.lanes[c];
        cg_store(cg, cg_bf16_lane_words(cg, o[c], two ? o[c + 1] : NULL), cg_gep(cg, cg->i32, wrow, cg_i64(cg, a.off[c] / 2)));
        c += two ? 2 : 1;
      }
    }
    cg_for_end(cg, &rl);
    cg_kernel_end(cg);
  }
  // scratch: kt (f32, or bf16 words), then with bf16 the q and v words
  CgArg kt = cg_arg_scratch(cg_steps_new_scratch(steps), (size_t)(a.B * a.H * (a.bf16 ? a.D2 : a.D) * nkp) * 4);
  CgArg qw = {0}, vw = {0};
  if (a.bf16) {
    qw = cg_arg_scratch(cg_steps_new_scratch(steps), (size_t)(a.B * a.H * a.Nq * a.D2) * 4);
    vw = cg_arg_scratch(cg_steps_new_scratch(steps), (size_t)(a.B * a.H * nkp / 2 * a.D) * 4);
  }
  CgStep *ps = cg_steps_add(steps, pack, a.B * a.H, n->id);
  ps->args[ps->n_args++] = kt;
  if (a.bf16) {
    ps->args[ps->n_args++] = qw;
    ps->args[ps->n_args++] = vw;
  }
  ps->args[ps->n_args++] = cg_arg_node(n->in[1]->id);
  if (a.bf16) {
    ps->args[ps->n_args++] = cg_arg_node(n->in[0]->id);
    ps->args[ps->n_args++] = cg_arg_node(n->in[2]->id);
  }
  CgStep *st = cg_steps_add(steps, name, a.B * a.H * n_blocks, n->id);
  st->args[st->n_args++] = cg_arg_node(n->id);
  for (int k = 0; k < 3; k++) st->args[st->n_args++] = cg_arg_node(n->in[k]->id);
  st->args[st->n_args++] = kt;
  if (a.bf16) {
    st->args[st->n_args++] = qw;
    st->args[st->n_args++] = vw;
  }
  for (int k = 3; k < n->n_in; k++) st->args[st->n_args++] = cg_arg_node(n->in[k]->id);
  if (a.dropout) {
    st->args[st->n_args++] = cg_arg_seed();
    cg_steps_add_stream(st, a.rng_hash);
  }
  if (words) cg_steps_add_words(steps, st, n->id, a.B * a.Nq, a.HD);
  return true;
}

// ---------------------------------------------------------------------------------------
// attention_grad(q, k, v, out, dout[, mask]) -> [dq | dk | dv] flat.
// bufs: grad, q, k, v, out, dout[, kt, qw, vt, kw, dow (bf16: the pack step's words)][, mask]
// [, seed, streams]. Query rows go `rows` at a time (then the remainder), so each
// load-add-store of a dk or dv row serves several queries.
typedef struct GradRows {
  RowState st;
  LLVMValueRef m[MAX_ROWS], inv_l[MAX_ROWS], Di[MAX_ROWS];  // max, 1 / sum, dout . out
  LLVMValueRef doc[MAX_ROWS][MAX_CHUNKS];  // dout row chunks
  LLVMValueRef dq[MAX_ROWS][MAX_CHUNKS];   // dq row accumulators (variables)
  LLVMValueRef dk, dv;                     // gradient buffers of k and v (k's layout)
  // bf16: S = Q K^T {kt, qw} and dP = dO V^T {vt, dow} from panels; this head's k words
  // [nkp / 2][D] (dQ = dS K); the rows' q and dO chunks as prepared words of row pairs
  // (2 p, 2 p + 1) (dK = dS^T Q, dV = Pd^T dO)
  Panel S, dP;
  LLVMValueRef kw;
  LLVMValueRef qb[(MAX_ROWS + 1) / 2][MAX_CHUNKS][2], dob[(MAX_ROWS + 1) / 2][MAX_CHUNKS][2];
} GradRows;

// The probabilities of row r from its scores s (W), with the row's max and 1 / sum.
static LLVMValueRef grad_probs(Cg *cg, const GradRows *g, int r, LLVMValueRef s) {
  LLVMBuilderRef b = cg->b;
  return LLVMBuildFMul(b, exp_neg(cg, LLVMBuildFSub(b, s, cg_splat(cg, g->m[r], cg->W), "")),
                       cg_splat(cg, g->inv_l[r], cg->W), "");
}

// dS = P * (dP - D_i) * scale of row r (dp = dout . v_j; with dropout dP = dp * keep, and
// *Pd = P * keep, else P).
static LLVMValueRef grad_dS(Cg *cg, const Attn *a, const GradRows *g, int r, LLVMValueRef jb, LLVMValueRef P,
                            LLVMValueRef dp, LLVMValueRef *Pd) {
  LLVMBuilderRef b = cg->b;
  int W = cg->W;
  *Pd = P;
  if (a->dropout) {
    LLVMValueRef ks = keep_scale(cg, a, r, jb);
    dp = LLVMBuildFMul(b, dp, ks, "");
    *Pd = LLVMBuildFMul(b, P, ks, "");
  }
  return LLVMBuildFMul(b, LLVMBuildFMul(b, P, LLVMBuildFSub(b, dp, cg_splat(cg, g->Di[r], W), ""), ""),
                       cg_splat(cg, cg_f32(cg, a->scale), W), "");
}

// bf16: the first sweep's block, its scores from the S panel.
static void online_block_bf16(Cg *cg, Attn *a, LLVMValueRef jb, int count, void *ctx) {
  GradRows *g = ctx;
  LLVMValueRef s[2][MAX_ROWS] = {{0}};
  panel_sums(cg, a, &g->S, jb, s);
  for (int r = 0; r < a->rows; r++)
    online_update(cg, &g->st, r, finish_scores(cg, a, r, LLVMBuildFAdd(cg->b, s[0][r], s[1][r], ""), jb, count));
}

// bf16: the second sweep's block. S and dP from the panels (pad lanes: P = 0, and dP = 0
// from the zeros of vt); dQ += dS K over key pairs (dS rounded to bf16 words); dK_j +=
// dS^T Q and dV_j += Pd^T dO over row pairs (words of the two rows' dS or Pd of key j
// against the prepared q or dO words of the pair).
static void grad_block_bf16(Cg *cg, Attn *a, LLVMValueRef jb, int count, void *ctx) {
  GradRows *g = ctx;
  LLVMBuilderRef b = cg->b;
  LLVMValueRef s[2][MAX_ROWS] = {{0}}, dp[2][MAX_ROWS] = {{0}};
  panel_sums(cg, a, &g->S, jb, s);
  panel_sums(cg, a, &g->dP, jb, dp);
  LLVMValueRef dS[MAX_ROWS], Pd[MAX_ROWS], words[MAX_ROWS];
  for (int r = 0; r < a->rows; r++) {
    LLVMValueRef P = grad_probs(cg, g, r, finish_scores(cg, a, r, LLVMBuildFAdd(b, s[0][r], s[1][r], ""), jb, count));
    dS[r] = grad_dS(cg, a, g, r, jb, P, LLVMBuildFAdd(b, dp[0][r], dp[1][r], ""), &Pd[r]);
    words[r] = cg_bf16_lane_words(cg, dS[r], NULL);
  }
  LLVMValueRef dq[MAX_ROWS][MAX_CHUNKS];
  for (int r = 0; r < a->rows; r++)
    for (int c = 0; c < a->n_chunks; c++) dq[r][c] = cg_get(cg, g->dq[r][c]);
  key_pairs_times_words(cg, a, words, g->kw, jb, count, dq);
  for (int r = 0; r < a->rows; r++)
    for (int c = 0; c < a->n_chunks; c++) cg_set(cg, g->dq[r][c], dq[r][c]);
  int pairs = (a->rows + 1) / 2;
  LLVMValueRef zero = cg_splat(cg, cg_f32(cg, 0.0), cg->W), dsw[MAX_ROWS], pdw[MAX_ROWS];
  for (int p = 0; p < pairs; p++) {
    bool two = 2 * p + 1 < a->rows;
    dsw[p] = cg_bf16_words(cg, dS[2 * p], two ? dS[2 * p + 1] : zero);
    pdw[p] = cg_bf16_words(cg, Pd[2 * p], two ? Pd[2 * p + 1] : zero);
  }
  for (int t = 0; t < count; t++) {
    LLVMValueRef j = cg_add(cg, jb, cg_i64(cg, t)), ds[MAX_ROWS], pd[MAX_ROWS];
    for (int p = 0; p < pairs; p++) {
      ds[p] = LLVMBuildExtractElement(b, dsw[p], cg_i32(cg, t), "");
      pd[p] = LLVMBuildExtractElement(b, pdw[p], cg_i32(cg, t), "");
    }
    LLVMValueRef dkrow = key_row(cg, a, g->dk, j), dvrow = key_row(cg, a, g->dv, j);
    for (int c = 0; c < a->n_chunks; c++) {
      LLVMValueRef o = cg_i64(cg, a->off[c]);
      LLVMValueRef pk = cg_gep(cg, cg->f32, dkrow, o), pv = cg_gep(cg, cg->f32, dvrow, o);
      LLVMValueRef dkv = cg_load(cg, cg->f32, pk, a->lanes[c]), dvv = cg_load(cg, cg->f32, pv, a->lanes[c]);
      for (int p = 0; p < pairs; p++) {
        dkv = cg_gemm_bf16_dot(cg, dkv, ds[p], g->qb[p][c]);
        dvv = cg_gemm_bf16_dot(cg, dvv, pd[p], g->dob[p][c]);
      }
      cg_store(cg, dkv, pk);
      cg_store(cg, dvv, pv);
    }
  }
}

static void grad_block(Cg *cg, Attn *a, LLVMValueRef jb, int count, void *ctx) {
  GradRows *g = ctx;
  LLVMBuilderRef b = cg->b;
  LLVMValueRef dS[MAX_ROWS], Pd[MAX_ROWS];
  for (int r = 0; r < a->rows; r++) {
    LLVMValueRef P = grad_probs(cg, g, r, scores(cg, a, r, jb, count));  // (W) probabilities
    LLVMValueRef dp = dots(cg, a, g->doc[r], a->v, jb, count);           // (W) dout . v_j
    dS[r] = grad_dS(cg, a, g, r, jb, P, dp, &Pd[r]);
  }
  LLVMValueRef dq[MAX_ROWS][MAX_CHUNKS];
  for (int r = 0; r < a->rows; r++)
    for (int c = 0; c < a->n_chunks; c++) dq[r][c] = cg_get(cg, g->dq[r][c]);
  for (int t = 0; t < count; t++) {
    LLVMValueRef j = cg_add(cg, jb, cg_i64(cg, t)), ds[MAX_ROWS], pd[MAX_ROWS];
    for (int r = 0; r < a->rows; r++) {
      ds[r] = LLVMBuildExtractElement(b, dS[r], cg_i32(cg, t), "");
      pd[r] = LLVMBuildExtractElement(b, Pd[r], cg_i32(cg, t), "");
    }
    LLVMValueRef krow = key_row(cg, a, a->k, j), dkrow = key_row(cg, a, g->dk, j), dvrow = key_row(cg, a, g->dv, j);
    for (int c = 0; c < a->n_chunks; c++) {
      int L = a->lanes[c];
      LLVMValueRef o = cg_i64(cg, a->off[c]);
      LLVMValueRef kk = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, krow, o), L);
      LLVMValueRef pk = cg_gep(cg, cg->f32, dkrow, o), pv = cg_gep(cg, cg->f32, dvrow, o);
      LLVMValueRef dkv = cg_load(cg, cg->f32, pk, L), dvv = cg_load(cg, cg->f32, pv, L);
      for (int r = 0; r < a->rows; r++) {
        dq[r][c] = cg_fma(cg, cg_splat(cg, ds[r], L), kk, dq[r][c]);
        dkv = cg_fma(cg, cg_splat(cg, ds[r], L), a->qc[r][c], dkv);
        dvv = cg_fma(cg, cg_splat(cg, pd[r], L), g->doc[r][c], dvv);
      }
      cg_store(cg, dkv, pk);
      cg_store(cg, dvv, pv);
    }
  }
  for (int r = 0; r < a->rows; r++)
    for (int c = 0; c < a->n_chunks; c++) cg_set(cg, g->dq[r][c], dq[r][c]);
}

// Query rows i0 .. i0 + a->rows - 1 of head (b, h): the rows' max and sum (first sweep),
// then dq of the rows and their terms of dk and dv (second sweep).
static void grad_rows(Cg *cg, Attn *a, GradRows *g, LLVMValueRef bb, LLVMValueRef h, LLVMValueRef i0,
                      LLVMValueRef out, LLVMValueRef dout, LLVMValueRef grad) {
  LLVMBuilderRef b = cg->b;
  row_setup(cg, a, bb, h, i0);
  for (int r = 0; a->bf16 && r < a->rows; r++)
    g->S.arow[r] = g->dP.arow[r] = cg_mul(cg, row_index(cg, a, i0, r), a->D2);
  row_state_init(cg, a, &g->st, false);
  if (a->bf16) for_key_blocks(cg, a, online_block_bf16, g);
  else for_key_blocks(cg, a, online_block, &g->st);
  LLVMValueRef qrow[MAX_ROWS];
  for (int r = 0; r < a->rows; r++) {
    qrow[r] = cg_add(cg, cg_mul(cg, cg_add(cg, cg_mul(cg, bb, a->Nq), cg_add(cg, i0, cg_i64(cg, r))), a->HD),
                     cg_mul(cg, h, a->D));
    g->m[r] = cg_get(cg, g->st.m[r]);
    g->inv_l[r] = LLVMBuildFDiv(b, cg_f32(cg, 1.0), cg_reduce_add(cg, cg_get(cg, g->st.l[r])), "");
    load_chunks(cg, a, cg_gep(cg, cg->f32, dout, qrow[r]), g->doc[r]);
    g->Di[r] = dot(cg, a, g->doc[r], cg_gep(cg, cg->f32, out, qrow[r]));  // dout_i . out_i
    for (int c = 0; c < a->n_chunks; c++)
      cg_set(cg, g->dq[r][c], cg_splat(cg, cg_f32(cg, 0.0), a->lanes[c]));
  }
  for (int p = 0; a->bf16 && p < (a->rows + 1) / 2; p++)
    for (int c = 0; c < a->n_chunks; c++) {
      bool two = 2 * p + 1 < a->rows;
      LLVMValueRef zero = cg_splat(cg, cg_f32(cg, 0.0), a->lanes[c]);
      cg_gemm_bf16_prepare_b(cg, cg_bf16_words(cg, a->qc[2 * p][c], two ? a->qc[2 * p + 1][c] : zero), g->qb[p][c]);
      cg_gemm_bf16_prepare_b(cg, cg_bf16_words(cg, g->doc[2 * p][c], two ? g->doc[2 * p + 1][c] : zero), g->dob[p][c]);
    }
  for_key_blocks(cg, a, a->bf16 ? grad_block_bf16 : grad_block, g);
  for (int r = 0; r < a->rows; r++)
    for (int c = 0; c < a->n_chunks; c++)
      cg_store(cg, cg_get(cg, g->dq[r][c]), cg_gep(cg, cg->f32, grad, cg_add(cg, qrow[r], cg_i64(cg, a->off[c]))));
}

bool cg_lower_attention_grad(Cg *cg, const IrNode *n, CgSteps *steps, Diag *d) {
  Attn a = {0};
  if (!attn_init(&a, n, cg->W, cg->training))
    return diag_error(d, "%s \"%s\": head_dim too large for the attention kernel", n->where, n->name);
  char name[96], pack[112];
  bool exists;
  name_of(cg, n, &a, false, name, sizeof name, &exists);
  int64_t nkp = (a.Nk + cg->W - 1) / cg->W * cg->W;
  snprintf(pack, sizeof pack, "%s_pk", name);
  // bf16 packing: kt <- k, qw <- q, vt <- v (kt's layout), kw <- k (vw's), dow <- dout (qw's)
  enum { KT, QW, VT, KW, DOW };
  static const PackKind kinds[PACK_MAX] = {PACK_PANEL, PACK_ROWS, PACK_PANEL, PACK_PAIRS, PACK_ROWS};
  static const int source[PACK_MAX] = {1, 0, 2, 1, 4};  // the node's input
  if (!exists) {
    if (a.bf16) emit_pack_bf16(cg, &a, pack, nkp, PACK_MAX, kinds);
    cg_kernel_begin(cg, name);
    LLVMBuilderRef b = cg->b;
    LLVMValueRef grad = cg_buf(cg, 0);
    a.q = cg_buf(cg, 1), a.k = cg_buf(cg, 2), a.v = cg_buf(cg, 3);
    LLVMValueRef out = cg_buf(cg, 4), dout = cg_buf(cg, 5), packed[PACK_MAX];
    int next = 6;
    for (int i = 0; a.bf16 && i < PACK_MAX; i++) packed[i] = cg_buf(cg, next++);
    if (a.has_mask) a.mask = cg_buf(cg, next++);
    if (a.dropout)  // the probabilities [B, H, Nq, Nk]
      a.key = cg_dropout_key(cg, cg_dropout_stream(cg, cg_buf(cg, next + 1), 0), cg_buf(cg, next),
                             a.B * a.H * a.Nq * a.Nk);
    int64_t nq = a.B * a.Nq * a.HD, nk = a.B * a.Nk * a.HD;
    GradRows g = {0};
    g.dk = cg_gep(cg, cg->f32, grad, cg_i64(cg, nq));
    g.dv = cg_gep(cg, cg->f32, grad, cg_i64(cg, nq + nk));
    // rows whose accumulators fit in about 16 vector registers
    int rows = a.n_chunks >= 16 ? 1 : 16 / a.n_chunks > GRAD_ROWS ? GRAD_ROWS : 16 / a.n_chunks;
    if (rows > a.Nq) rows = (int)a.Nq;
    a.rows = rows;
    row_state_vars(cg, &a, &g.st, false);
    for (int r = 0; r < rows; r++)
      for (int c = 0; c < a.n_chunks; c++) g.dq[r][c] = cg_var(cg, cg_vec_t(cg, cg->f32, a.lanes[c]), NULL);
    for (int p = 0; a.bf16 && p < 2; p++)
      for (int r = 0; r < rows; r++) g.S.sv[p][r] = g.dP.sv[p][r] = cg_var(cg, cg_vec_t(cg, cg->f32, cg->W), NULL);
    CgLoop hl;
    cg_for_begin(cg, &hl, cg->begin, cg->end, cg_i64(cg, 1), "head");  // (B, H)
    LLVMValueRef h = LLVMBuildURem(b, hl.iv, cg_i64(cg, a.H), "");
    LLVMValueRef bb = LLVMBuildUDiv(b, hl.iv, cg_i64(cg, a.H), "");
    a.kv_head = cg_add(cg, cg_mul(cg, bb, a.Nk * a.HD), cg_mul(cg, h, a.D));
    if (a.bf16) {  // this head's words
      g.S.bt = cg_gep(cg, cg->i32, packed[KT], cg_mul(cg, hl.iv, a.D2 * nkp));
      g.S.aw = cg_gep(cg, cg->i32, packed[QW], cg_mul(cg, hl.iv, a.Nq * a.D2));
      g.dP.bt = cg_gep(cg, cg->i32, packed[VT], cg_mul(cg, hl.iv, a.D2 * nkp));
      g.dP.aw = cg_gep(cg, cg->i32, packed[DOW], cg_mul(cg, hl.iv, a.Nq * a.D2));
      g.kw = cg_gep(cg, cg->i32, packed[KW], cg_mul(cg, hl.iv, nkp / 2 * a.D));
    }
    {  // dk, dv of this head = 0
      CgLoop zl;
      cg_for_begin(cg, &zl, cg_i64(cg, 0), cg_i64(cg, a.Nk), cg_i64(cg, 1), "zero");
      for (int c = 0; c < a.n_chunks; c++) {
        LLVMValueRef z = cg_splat(cg, cg_f32(cg, 0.0), a.lanes[c]);
        cg_store(cg, z, cg_gep(cg, cg->f32, key_row(cg, &a, g.dk, zl.iv), cg_i64(cg, a.off[c])));
        cg_store(cg, z, cg_gep(cg, cg->f32, key_row(cg, &a, g.dv, zl.iv), cg_i64(cg, a.off[c])));
      }
      cg_for_end(cg, &zl);
    }
    int64_t full = a.Nq / rows * rows;
    if (full > 0) {
      CgLoop il;
      cg_for_begin(cg, &il, cg_i64(cg, 0), cg_i64(cg, full), cg_i64(cg, rows), "queries");
      grad_rows(cg, &a, &g, bb, h, il.iv, out, dout, grad);
      cg_for_end(cg, &il);
    }
    if (a.Nq > full) {  // the remaining rows
      a.rows = (int)(a.Nq - full);
      grad_rows(cg, &a, &g, bb, h, cg_i64(cg, full), out, dout, grad);
    }
    cg_for_end(cg, &hl);
    cg_kernel_end(cg);
  }
  CgArg scratch[PACK_MAX];
  if (a.bf16) {
    size_t words[PACK_MAX] = {[KT] = (size_t)(a.D2 * nkp), [QW] = (size_t)(a.Nq * a.D2), [VT] = (size_t)(a.D2 * nkp),
                              [KW] = (size_t)(nkp / 2 * a.D), [DOW] = (size_t)(a.Nq * a.D2)};  // a head's
    CgStep *ps = cg_steps_add(steps, pack, a.B * a.H, n->id);
    for (int i = 0; i < PACK_MAX; i++)
      ps->args[ps->n_args++] = scratch[i] =
          cg_arg_scratch(cg_steps_new_scratch(steps), (size_t)(a.B * a.H) * words[i] * 4);
    for (int i = 0; i < PACK_MAX; i++) ps->args[ps->n_args++] = cg_arg_node(n->in[source[i]]->id);
  }
  CgStep *st = cg_steps_add(steps, name, a.B * a.H, n->id);
  st->args[st->n_args++] = cg_arg_node(n->id);
  for (int k = 0; k < 5; k++) st->args[st->n_args++] = cg_arg_node(n->in[k]->id);
  for (int i = 0; a.bf16 && i < PACK_MAX; i++) st->args[st->n_args++] = scratch[i];
  for (int k = 5; k < n->n_in; k++) st->args[st->n_args++] = cg_arg_node(n->in[k]->id);
  if (a.dropout) {
    st->args[st->n_args++] = cg_arg_seed();
    cg_steps_add_stream(st, a.rng_hash);
  }
  return true;
}
