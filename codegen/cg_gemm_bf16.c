// The bf16 GEMM (CgGemm.bf16, set from matmul's bf16 attribute by the precision pass): the
// packed GEMM of codegen/cg_gemm.c over words of two bf16 instead of floats.
//   A is packed by a step of its own before the compute step: row i of batch item b becomes
//     K2 = ceil(K / 2) words, word k2 = bf16(A(i, 2 k2)) | bf16(A(i, 2 k2 + 1)) << 16 (0 past K);
//   B panels hold, for each k2, nr words (bf16(B(2 k2, j)), bf16(B(2 k2 + 1, j))) (0 past K
//     and N), packed once for weights like the f32 panels;
//   the microkernel steps k2 (cg_gemm.c's k loop, tiles, epilogue and work split unchanged
//     over a GEMM of K2 "k"): per vector of 16 f32 accumulators, vdpbf16ps
//     (llvm.x86.avx512bf16.dpbf16ps.512) adds a(2l+1)·b(2l+1), then a(2l)·b(2l), where the
//     target has AVX512_BF16 at 16 lanes; elsewhere the words are widened to f32 (a bf16 is
//     the top half of an f32: a shift, or a mask) and two llvm.fma add the odd product, then
//     the even one. A product of two bf16 is exact in f32, so both round once per add, in
//     the same order: the two paths give the same bits (vdpbf16ps also flushes subnormal
//     operands and results to zero, which the fallback does not; docs/precision.md).
// Rounding f32 -> bf16 is to nearest, ties to even (dt_round_bf16, the reference's too).
#include <assert.h>
#include <string.h>

#include "codegen/lower.h"

// ---------------------------------------------------------------------------------------
// Conversions.

// The bf16 bits (in the low 16 bits of each i32 lane) of x (f32 scalar or vector), rounded
// to nearest even; NaN stays a quiet NaN. As dt_round_bf16.
static LLVMValueRef to_bf16_bits(Cg *cg, LLVMValueRef x) {
  LLVMTypeRef ty = LLVMTypeOf(x);
  LLVMTypeRef ity = LLVMGetTypeKind(ty) == LLVMVectorTypeKind
                        ? LLVMVectorType(cg->i32, LLVMGetVectorSize(ty))
                        : cg->i32;
  LLVMValueRef bits = LLVMBuildBitCast(cg->b, x, ity, "bits");
  LLVMValueRef odd = LLVMBuildAnd(cg->b, LLVMBuildLShr(cg->b, bits, cg_const_int_like(cg, bits, 16), ""),
                                  cg_const_int_like(cg, bits, 1), "");
  LLVMValueRef rounded =
      LLVMBuildAdd(cg->b, bits, LLVMBuildAdd(cg->b, odd, cg_const_int_like(cg, bits, 0x7fff), ""), "");
  LLVMValueRef nan = LLVMBuildFCmp(cg->b, LLVMRealUNO, x, x, "nan");
  LLVMValueRef quiet = LLVMBuildOr(cg->b, bits, cg_const_int_like(cg, bits, 0x00400000), "");
  return LLVMBuildLShr(cg->b, LLVMBuildSelect(cg->b, nan, quiet, rounded, ""),
                       cg_const_int_like(cg, bits, 16), "bf16");
}

// The word of two bf16: lo in bits 0..15, hi in bits 16..31 (from to_bf16_bits).
static LLVMValueRef pair_word(Cg *cg, LLVMValueRef lo, LLVMValueRef hi) {
  return LLVMBuildOr(cg->b, lo, LLVMBuildShl(cg->b, hi, cg_const_int_like(cg, hi, 16), ""), "word");
}

// The <n / 2 x i32> words of lane pairs (2 t, 2 t + 1) of the <n x i32> bf16 bits (from
// to_bf16_bits): truncated to 16 bits each and read two at a time, which on the
// little-endian x86 is pair_word's (one vpmovdw a 16 lanes, where pairing even and odd
// lanes took two shuffles a word vector, and split 16-lane vectors in two).
static LLVMValueRef words_of_bits(Cg *cg, LLVMValueRef bits) {
  unsigned n = LLVMGetVectorSize(LLVMTypeOf(bits));
  LLVMValueRef h = LLVMBuildTrunc(cg->b, bits, LLVMVectorType(LLVMInt16TypeInContext(cg->ctx), n), "");
  return LLVMBuildBitCast(cg->b, h, LLVMVectorType(cg->i32, n / 2), "words");
}

// ---------------------------------------------------------------------------------------
// Packing A: work item = one row (batch item bi, row i) of A -> K2 words.

static LLVMValueRef load_f32(Cg *cg, LLVMValueRef base, LLVMValueRef idx) {
  return cg_load(cg, cg->f32, cg_gep(cg, cg->f32, base, idx), 1);
}

static LLVMValueRef mul_c(Cg *cg, LLVMValueRef x, int64_t c) {
  return c == 1 ? x : LLVMBuildMul(cg->b, x, cg_i64(cg, c), "");
}

// The <W x i32> words of the 2W floats at p (`valid` of them, zeros past): one <2W x float>
// load (masked when valid < 2W), even and odd lanes paired.
static LLVMValueRef words_of_floats(Cg *cg, LLVMValueRef p, int valid) {
  int W = cg->W;
  LLVMTypeRef v2 = LLVMVectorType(cg->f32, (unsigned)(2 * W));
  LLVMValueRef x;
  if (valid == 2 * W) {
    x = LLVMBuildLoad2(cg->b, v2, p, "x");
    LLVMSetAlignment(x, 4);
  } else {
    LLVMValueRef m[128];
    for (int l = 0; l < 2 * W; l++) m[l] = LLVMConstInt(cg->i1, l < valid, 0);
    LLVMValueRef args[4] = {p, cg_i32(cg, 4), LLVMConstVector(m, (unsigned)(2 * W)),
                            LLVMConstNull(v2)};
    unsigned id = LLVMLookupIntrinsicID("llvm.masked.load", 16);
    LLVMTypeRef over[2] = {v2, cg->ptr};
    x = LLVMBuildCall2(cg->b, LLVMIntrinsicGetType(cg->ctx, id, over, 2),
                       LLVMGetIntrinsicDeclaration(cg->mod, id, over, 2), args, 4, "x");
  }
  return words_of_bits(cg, to_bf16_bits(cg, x));
}

// Words [blk·W, blk·W + ceil(valid / 2)) of a row from its floats [2W·blk, 2W·blk + valid)
// (a_cs == 1).
static void pack_a_block(Cg *cg, LLVMValueRef src, LLVMValueRef dst, LLVMValueRef blk, int valid) {
  int W = cg->W;
  LLVMValueRef word = words_of_floats(cg, cg_gep(cg, cg->f32, src, mul_c(cg, blk, 2 * W)), valid);
  LLVMValueRef q = cg_gep(cg, cg->i32, dst, mul_c(cg, blk, W));
  if (valid == 2 * W) {
    LLVMValueRef st = LLVMBuildStore(cg->b, word, q);
    LLVMSetAlignment(st, 4);
    return;
  }
  for (int l = 0; l < (valid + 1) / 2; l++)
    cg_store(cg, LLVMBuildExtractElement(cg->b, word, cg_i32(cg, l), ""),
             cg_gep(cg, cg->i32, q, cg_i64(cg, l)));
}

// Row src of A into dst (K2 words; cg_gemm_pack_a_step runs the rows, n = 1). Contiguous
// rows (a_cs == 1) convert 2W floats at a time (masked at the end of the row); other strides
// (but a_rs == 1, emit_pack_a_cols) one pair at a time.
void cg_gemm_bf16_row_words(Cg *cg, LLVMValueRef src, LLVMValueRef dst, int64_t n) {
  int W = cg->W;
  int64_t full = n / (2 * W);
  int valid = (int)(n - full * 2 * W);
  if (full) {
    CgLoop kb;
    cg_for_begin(cg, &kb, cg_i64(cg, 0), cg_i64(cg, full), cg_i64(cg, 1), "kb");
    pack_a_block(cg, src, dst, kb.iv, 2 * W);
    cg_for_end(cg, &kb);
  }
  if (valid) pack_a_block(cg, src, dst, cg_i64(cg, full), valid);
}

static void emit_pack_a_row(Cg *cg, const CgGemm *g, LLVMValueRef src, LLVMValueRef dst, int n) {
  assert(n == 1);
  int64_t K2 = (g->K + 1) / 2;
  if (g->a_cs == 1) {
    cg_gemm_bf16_row_words(cg, src, dst, g->K);
  } else {
    CgLoop k2;
    cg_for_begin(cg, &k2, cg_i64(cg, 0), cg_i64(cg, g->K / 2), cg_i64(cg, 1), "k2");
    LLVMValueRef k = mul_c(cg, k2.iv, 2);
    LLVMValueRef lo = load_f32(cg, src, mul_c(cg, k, g->a_cs));
    LLVMValueRef hi = load_f32(cg, src, mul_c(cg, LLVMBuildAdd(cg->b, k, cg_i64(cg, 1), ""), g->a_cs));
    cg_store(cg, pair_word(cg, to_bf16_bits(cg, lo), to_bf16_bits(cg, hi)),
             cg_gep(cg, cg->i32, dst, k2.iv));
    cg_for_end(cg, &k2);
    if (g->K % 2) {
      LLVMValueRef last = load_f32(cg, src, cg_i64(cg, (g->K - 1) * g->a_cs));
      cg_store(cg, to_bf16_bits(cg, last), cg_gep(cg, cg->i32, dst, cg_i64(cg, K2 - 1)));
    }
  }
}

// Words [k2, k2 + cnt) (cnt <= W) of the n <= W rows from src = &A(i, 0) when A's columns
// are contiguous (a_rs == 1: A = X^T of a row-major X, the weight gradient's dY^T or X^T):
// word t of every row at once from two vector loads of A's columns 2(k2 + t) and
// 2(k2 + t) + 1 (masked to n rows; past K zero), then a W × W transpose gives each row its
// cnt words. The same words as emit_pack_a_row, with whole cache lines read.
static void pack_a_cols_block(Cg *cg, const CgGemm *g, LLVMValueRef src, LLVMValueRef dst,
                              int n, LLVMValueRef k2, int cnt, int64_t k2_const) {
  int W = cg->W;
  LLVMValueRef v[64];
  for (int t = 0; t < W; t++) {
    if (t >= cnt) {
      v[t] = LLVMConstNull(LLVMVectorType(cg->i32, (unsigned)W));
      continue;
    }
    LLVMValueRef k = mul_c(cg, LLVMBuildAdd(cg->b, k2, cg_i64(cg, t), ""), 2);
    LLVMValueRef lo = cg_gemm_load_lanes(cg, cg_gep(cg, cg->f32, src, mul_c(cg, k, g->a_cs)), n);
    bool has_hi = k2_const < 0 || 2 * (k2_const + t) + 1 < g->K;  // (full blocks: always)
    LLVMValueRef hi = has_hi ? cg_gemm_load_lanes(cg, cg_gep(cg, cg->f32, src,
                                   mul_c(cg, LLVMBuildAdd(cg->b, k, cg_i64(cg, 1), ""), g->a_cs)), n)
                             : LLVMConstNull(cg->vf);
    v[t] = cg_bf16_words(cg, lo, hi);
  }
  cg_gemm_transpose(cg, v);
  int64_t K2 = (g->K + 1) / 2;
  for (int l = 0; l < n; l++) {
    LLVMValueRef q = cg_gep(cg, cg->i32, dst, LLVMBuildAdd(cg->b, k2, cg_i64(cg, l * K2), ""));
    if (cnt == W) {
      LLVMValueRef st = LLVMBuildStore(cg->b, v[l], q);
      LLVMSetAlignment(st, 4);
    } else {
      for (int t = 0; t < cnt; t++)
        cg_store(cg, LLVMBuildExtractElement(cg->b, v[l], cg_i32(cg, t), ""),
                 cg_gep(cg, cg->i32, q, cg_i64(cg, t)));
    }
  }
}

// The n rows from src into dst (rows of K2 words): W words a block, then the tail words.
static void emit_pack_a_cols(Cg *cg, const CgGemm *g, LLVMValueRef src, LLVMValueRef dst, int n) {
  int W = cg->W;
  int64_t K2 = (g->K + 1) / 2, full = g->K / 2 / W;  // full blocks: pairs only
  if (full) {
    CgLoop kb;
    cg_for_begin(cg, &kb, cg_i64(cg, 0), cg_i64(cg, full * W), cg_i64(cg, W), "k2b");
    pack_a_cols_block(cg, g, src, dst, n, kb.iv, W, -1);
    cg_for_end(cg, &kb);
  }
  if (K2 > full * W)
    pack_a_cols_block(cg, g, src, dst, n, cg_i64(cg, full * W), (int)(K2 - full * W), full * W);
}

bool cg_gemm_bf16_pack_a(Cg *cg, const CgGemm *g, const char *name, CgArg *a, int node,
                         CgSteps *steps, CgGemm *w) {
  assert(g->bf16);
  int64_t K2 = (g->K + 1) / 2;
  // A another GEMM's result (2-D, rows contiguous) whose words that GEMM wrote already.
  const CgArg *ready = a->kind == CG_ARG_NODE && g->nbatch == 0 && g->a_cs == 1 && g->a_rs == g->K
                           ? cg_steps_words_of(steps, a->id)
                           : NULL;
  if (g->a_rs == 1 && g->a_cs != 1)
    cg_gemm_pack_a_step(cg, g, name, K2, K2, cg->W, emit_pack_a_cols, a, node, steps, w, NULL);
  else
    cg_gemm_pack_a_step(cg, g, name, K2, K2, 1, emit_pack_a_row, a, node, steps, w, ready);
  return true;
}

// ---------------------------------------------------------------------------------------
// Packing B: one panel (K2 × nr words) from B at src (k2 = 0, column 0 of the panel).
// Rows of B contiguous (b_cs == 1: the backward's dX = dY.W and dW = dY^T.X, whose B is an
// activation or a weight packed every training step): W columns at a time, the vectors of
// rows 2 k2 and 2 k2 + 1 rounded and paired; columns contiguous (b_rs == 1: W^T of the
// forward, packed once in inference and every step in training): 2W floats of a column to
// W words, W columns transposed in registers (pack_panel_transposed); other strides and the
// columns past the last full vector element by element. The same words either way.

// Panel rows [k2, k2 + cnt) (cnt <= W words, 2 cnt floats or `valid` at K's end) of the
// columns [j0, j0 + W) (`ncols` of them columns of B, the rest zeros) when B's columns are
// contiguous (b_rs == 1: W^T of a row-major weight W, the forward's B): per column the
// words of its floats along k (words_of_floats), then a W × W transpose into panel rows.
static void pack_panel_t_block(Cg *cg, const CgGemm *g, int nr, LLVMValueRef src,
                               LLVMValueRef dst, LLVMValueRef k2, int cnt, int valid,
                               LLVMValueRef j0, int ncols) {
  int W = cg->W;
  LLVMValueRef v[64], s = cg_gep(cg, cg->f32, src, mul_c(cg, k2, 2));
  for (int jj = 0; jj < W; jj++) {
    if (jj >= ncols) {
      v[jj] = LLVMConstNull(LLVMVectorType(cg->i32, (unsigned)W));
      continue;
    }
    LLVMValueRef col = mul_c(cg, LLVMBuildAdd(cg->b, j0, cg_i64(cg, jj), ""), g->b_cs);
    v[jj] = words_of_floats(cg, cg_gep(cg, cg->f32, s, col), valid);
  }
  cg_gemm_transpose(cg, v);
  for (int t = 0; t < cnt; t++) {
    LLVMValueRef row = mul_c(cg, LLVMBuildAdd(cg->b, k2, cg_i64(cg, t), ""), nr);
    LLVMValueRef st = LLVMBuildStore(cg->b, v[t], cg_gep(cg, cg->i32, dst, LLVMBuildAdd(cg->b, row, j0, "")));
    LLVMSetAlignment(st, 4);
  }
}

// Panel rows [k2, k2 + cnt) of every W-column block of the panel (zeros past `cols`).
static void pack_panel_t_rows(Cg *cg, const CgGemm *g, int nr, LLVMValueRef src, LLVMValueRef dst,
                              int cols, LLVMValueRef k2, int cnt, int valid) {
  int W = cg->W, full = cols / W;
  if (full) {
    CgLoop jb;
    cg_for_begin(cg, &jb, cg_i64(cg, 0), cg_i64(cg, (int64_t)full * W), cg_i64(cg, W), "jb");
    pack_panel_t_block(cg, g, nr, src, dst, k2, cnt, valid, jb.iv, W);
    cg_for_end(cg, &jb);
  }
  for (int jb = full * W; jb < nr; jb += W)
    pack_panel_t_block(cg, g, nr, src, dst, k2, cnt, valid, cg_i64(cg, jb), cols - jb < 0 ? 0 : cols - jb);
}

static void pack_panel_transposed(Cg *cg, const CgGemm *g, int64_t k_elems, int nr,
                                  LLVMValueRef src, LLVMValueRef dst, int cols) {
  int W = cg->W;
  int64_t full = k_elems / (2 * W);  // blocks of W words from 2W floats
  if (full) {
    CgLoop kb;
    cg_for_begin(cg, &kb, cg_i64(cg, 0), cg_i64(cg, full * W), cg_i64(cg, W), "k2b");
    pack_panel_t_rows(cg, g, nr, src, dst, cols, kb.iv, W, 2 * W);
    cg_for_end(cg, &kb);
  }
  int valid = (int)(k_elems - full * 2 * W);
  if (valid) pack_panel_t_rows(cg, g, nr, src, dst, cols, cg_i64(cg, full * W), (valid + 1) / 2, valid);
}

void cg_gemm_bf16_pack_panel(Cg *cg, const CgGemm *g, int64_t k_elems, int nr, LLVMValueRef src,
                             LLVMValueRef dst, int cols) {
  if (g->b_rs == 1 && g->b_cs != 1 && nr % cg->W == 0) {
    pack_panel_transposed(cg, g, k_elems, nr, src, dst, cols);
    return;
  }
  int vec_cols = g->b_cs == 1 ? cols / cg->W * cg->W : 0;  // columns packed as vectors
  CgLoop k2;
  cg_for_begin(cg, &k2, cg_i64(cg, 0), cg_i64(cg, g->K), cg_i64(cg, 1), "k2");
  LLVMValueRef k = mul_c(cg, k2.iv, 2), k1 = LLVMBuildAdd(cg->b, k, cg_i64(cg, 1), "");
  LLVMValueRef row0 = cg_gep(cg, cg->f32, src, mul_c(cg, k, g->b_rs));
  LLVMValueRef has1 = LLVMBuildICmp(cg->b, LLVMIntSLT, k1, cg_i64(cg, k_elems), "");
  // B(2k2 + 1, ·): row k1, or (past K) row k again with its value dropped below.
  LLVMValueRef row1 = cg_gep(cg, cg->f32, src,
                             mul_c(cg, LLVMBuildSelect(cg->b, has1, k1, k, ""), g->b_rs));
  LLVMValueRef t = cg_gep(cg, cg->i32, dst, mul_c(cg, k2.iv, nr));
  for (int jj = 0; jj < vec_cols; jj += cg->W) {
    LLVMValueRef lo = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, row0, cg_i64(cg, jj)), cg->W);
    LLVMValueRef hi = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, row1, cg_i64(cg, jj)), cg->W);
    LLVMValueRef word = cg_bf16_words(cg, lo, hi);
    word = LLVMBuildSelect(cg->b, has1, word, LLVMBuildAnd(cg->b, word, cg_const_int_like(cg, word, 0xffff), ""), "");
    cg_store(cg, word, cg_gep(cg, cg->i32, t, cg_i64(cg, jj)));
  }
  for (int jj = vec_cols; jj < nr; jj++) {
    LLVMValueRef word = cg_i32(cg, 0);
    if (jj < cols) {
      LLVMValueRef lo = to_bf16_bits(cg, cg_load(cg, cg->f32, cg_gep(cg, cg->f32, row0, cg_i64(cg, jj * g->b_cs)), 1));
      LLVMValueRef hi = to_bf16_bits(cg, cg_load(cg, cg->f32, cg_gep(cg, cg->f32, row1, cg_i64(cg, jj * g->b_cs)), 1));
      hi = LLVMBuildSelect(cg->b, has1, hi, cg_i32(cg, 0), "");
      word = pair_word(cg, lo, hi);
    }
    cg_store(cg, word, cg_gep(cg, cg->i32, t, cg_i64(cg, jj)));
  }
  cg_for_end(cg, &k2);
}

// ---------------------------------------------------------------------------------------
// The microkernel's k2 step.

// The lanes of a value: a vector's size, 1 for a scalar.
static int lanes_of(LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  return LLVMGetTypeKind(t) == LLVMVectorTypeKind ? (int)LLVMGetVectorSize(t) : 1;
}

// vdpbf16ps: 16 lanes of a target with 16-lane vectors that turns avx512bf16 on.
static bool native(const Cg *cg, int lanes) {
  return cg->W == 16 && lanes == 16 && cg_feature_on(cg->features, "avx512bf16");
}

LLVMValueRef cg_bf16_words(Cg *cg, LLVMValueRef lo, LLVMValueRef hi) {
  return pair_word(cg, to_bf16_bits(cg, lo), to_bf16_bits(cg, hi));
}

LLVMValueRef cg_bf16_lane_words(Cg *cg, LLVMValueRef x, LLVMValueRef y) {
  if (y) {  // z = x y
    int n = (int)LLVMGetVectorSize(LLVMTypeOf(x)) * 2;
    LLVMValueRef m[128];
    for (int t = 0; t < n; t++) m[t] = cg_i32(cg, t);
    x = LLVMBuildShuffleVector(cg->b, x, y, LLVMConstVector(m, (unsigned)n), "");
  }
  return words_of_bits(cg, to_bf16_bits(cg, x));
}

void cg_gemm_bf16_prepare_b(Cg *cg, LLVMValueRef words, LLVMValueRef b[2]) {
  int lanes = lanes_of(words);
  if (native(cg, lanes)) {
    b[0] = LLVMBuildBitCast(cg->b, words, LLVMVectorType(LLVMBFloatTypeInContext(cg->ctx), 32), "b");
    b[1] = NULL;
    return;
  }
  LLVMTypeRef ft = cg_vec_t(cg, cg->f32, lanes);
  LLVMValueRef hi = LLVMBuildAnd(cg->b, words, cg_const_int_like(cg, words, (int64_t)0xffff0000u), "");
  LLVMValueRef lo = LLVMBuildShl(cg->b, words, cg_const_int_like(cg, words, 16), "");
  b[0] = LLVMBuildBitCast(cg->b, hi, ft, "b.hi");
  b[1] = LLVMBuildBitCast(cg->b, lo, ft, "b.lo");
}

LLVMValueRef cg_gemm_bf16_dot(Cg *cg, LLVMValueRef acc, LLVMValueRef aword, const LLVMValueRef b[2]) {
  int lanes = lanes_of(acc);
  if (native(cg, lanes)) {
    const char *name = "llvm.x86.avx512bf16.dpbf16ps.512";
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef bf = LLVMVectorType(LLVMBFloatTypeInContext(cg->ctx), 32);
    LLVMValueRef a = LLVMBuildBitCast(cg->b, cg_splat(cg, aword, 16), bf, "a");
    LLVMValueRef args[3] = {acc, b[0], a};  // a last: a broadcast load folds into the instruction
    return LLVMBuildCall2(cg->b, LLVMIntrinsicGetType(cg->ctx, id, NULL, 0),
                          LLVMGetIntrinsicDeclaration(cg->mod, id, NULL, 0), args, 3, "dp");
  }
  LLVMValueRef hi = LLVMBuildAnd(cg->b, aword, cg_i32(cg, (int32_t)0xffff0000u), "");
  LLVMValueRef lo = LLVMBuildShl(cg->b, aword, cg_i32(cg, 16), "");
  LLVMValueRef ahi = cg_splat(cg, LLVMBuildBitCast(cg->b, hi, cg->f32, ""), lanes);
  LLVMValueRef alo = cg_splat(cg, LLVMBuildBitCast(cg->b, lo, cg->f32, ""), lanes);
  return cg_fma(cg, alo, b[1], cg_fma(cg, ahi, b[0], acc));  // odd product first, as vdpbf16ps
}
