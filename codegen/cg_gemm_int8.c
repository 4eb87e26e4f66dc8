// The int8 GEMM (CgGemm.int8, set from matmul's int8 attribute by the precision pass): the
// packed GEMM of codegen/cg_gemm.c over words of four int8 and int32 accumulators.
//   Quantisation (runtime/dtype.h's rule, in f32 like the reference): a row of A (per row,
//     dynamic, at every run) and a column of B (per output channel, when the weights are
//     packed: once) of largest |x| m get scale m / 127 and q(x) = clamp(roundeven(x ·
//     (127 / m)), -127, 127).
//   A is packed by a step of its own: row i becomes K4 = ceil(K / 4) words of four unsigned
//     bytes q + 128 (k = 4 k4 .. 4 k4 + 3, byte 128 = q 0 past K), then its f32 scale.
//     vpdpbusd multiplies unsigned by signed bytes, hence the offset; its cost is removed
//     by a per-column compensation: sum_k (qa + 128) qb = sum_k qa qb + 128 sum_k qb.
//   B panels hold K4 rows of nr words of four signed bytes, then a row of the nr columns'
//     compensations 128 · sum_k qb (i32) and a row of their f32 scales; (K4 + 2) · nr words.
//   The microkernel steps k4 (cg_gemm.c's loops, tiles and work split over a GEMM of K4
//     "k"): the accumulators are i32 lanes in the f32 vectors' registers (bitcasts; partial
//     sums between K blocks are stored in C as i32 bits). Each step is vpdpbusd
//     (llvm.x86.avx512.vpdpbusd.512 with AVX512_VNNI at 16 lanes; .256 with AVX_VNNI or
//     AVX512_VNNI + VL at 8 lanes); elsewhere each byte is widened to i32 and four exact i32
//     multiply-adds give the same sums. Integer sums are exact (|sum| < 255 · 127 · K fits i32
//     for K < 66000), so both paths give the same bits.
//   The epilogue first turns the sums into f32: ((float)(acc - comp_j) · scale_a(i)) ·
//     scale_b(j), then cg_gemm.c's (scale, bias, GELU, residual). The last K block's a and
//     bp end where the row's scale and the panel's compensation row start.
#include <assert.h>
#include <string.h>

#include "codegen/lower.h"
#include "codegen/lower_rows.h"

// ---------------------------------------------------------------------------------------
// Quantisation (as dt_int8_*).

// max(m, |x|) lane-wise, NaN propagating (llvm.maximum).
static LLVMValueRef max_abs(Cg *cg, LLVMValueRef m, LLVMValueRef x) {
  LLVMValueRef ax = cg_intrinsic(cg, "llvm.fabs", LLVMTypeOf(x), &x, 1);
  LLVMValueRef args[2] = {m, ax};
  return cg_intrinsic(cg, "llvm.maximum", LLVMTypeOf(x), args, 2);
}

// 127 / m (0 unless m > 0) and m / 127, f32 scalars.
static void scales(Cg *cg, LLVMValueRef m, LLVMValueRef *inv, LLVMValueRef *scale) {
  LLVMValueRef pos = LLVMBuildFCmp(cg->b, LLVMRealOGT, m, cg_f32(cg, 0.0), "");
  *inv = LLVMBuildSelect(cg->b, pos, LLVMBuildFDiv(cg->b, cg_f32(cg, 127.0), m, ""), cg_f32(cg, 0.0),
                         "inv");
  *scale = LLVMBuildFDiv(cg->b, m, cg_f32(cg, 127.0), "scale");
}

// q(x) as i32 lanes (x scalar or vector, inv of x's shape).
static LLVMValueRef quant(Cg *cg, LLVMValueRef x, LLVMValueRef inv) {
  LLVMValueRef t = LLVMBuildFMul(cg->b, x, inv, "");
  t = cg_intrinsic(cg, "llvm.roundeven", LLVMTypeOf(t), &t, 1);
  LLVMValueRef ord = LLVMBuildFCmp(cg->b, LLVMRealORD, t, t, "");
  t = LLVMBuildSelect(cg->b, ord, t, cg_const_like(cg, t, 0.0), "");
  LLVMValueRef lo[2] = {t, cg_const_like(cg, t, 127.0)};
  t = cg_intrinsic(cg, "llvm.minnum", LLVMTypeOf(t), lo, 2);
  LLVMValueRef hi[2] = {t, cg_const_like(cg, t, -127.0)};
  t = cg_intrinsic(cg, "llvm.maxnum", LLVMTypeOf(t), hi, 2);
  LLVMTypeRef ity = LLVMGetTypeKind(LLVMTypeOf(t)) == LLVMVectorTypeKind
                        ? LLVMVectorType(cg->i32, LLVMGetVectorSize(LLVMTypeOf(t)))
                        : cg->i32;
  return LLVMBuildFPToSI(cg->b, t, ity, "q");
}

static LLVMValueRef mul_c(Cg *cg, LLVMValueRef x, int64_t c) {
  return c == 1 ? x : LLVMBuildMul(cg->b, x, cg_i64(cg, c), "");
}

static LLVMValueRef lane_mask(Cg *cg, int n, int lanes) {
  LLVMValueRef m[64];
  for (int l = 0; l < n; l++) m[l] = LLVMConstInt(cg->i1, l < lanes, 0);
  return LLVMConstVector(m, (unsigned)n);
}

static LLVMValueRef masked(Cg *cg, const char *name, LLVMTypeRef vty, LLVMValueRef *args, int n) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMTypeRef over[2] = {vty, cg->ptr};
  return LLVMBuildCall2(cg->b, LLVMIntrinsicGetType(cg->ctx, id, over, 2),
                        LLVMGetIntrinsicDeclaration(cg->mod, id, over, 2), args, (unsigned)n, "");
}

// W floats of a contiguous row from element k0 (`valid` of them; 0 past).
static LLVMValueRef load_block(Cg *cg, LLVMValueRef src, LLVMValueRef k0, int valid) {
  LLVMValueRef p = cg_gep(cg, cg->f32, src, k0);
  if (valid == cg->W) return cg_load(cg, cg->f32, p, cg->W);
  LLVMValueRef args[4] = {p, cg_i32(cg, 4), lane_mask(cg, cg->W, valid), LLVMConstNull(cg->vf)};
  return masked(cg, "llvm.masked.load", cg->vf, args, 4);
}

// ---------------------------------------------------------------------------------------
// Packing A: work item = one row (batch item bi, row i) -> K4 words + its scale.

// Bytes [k0, k0 + W) of the packed row from q (<W x i32>): q + 128, `bytes` of them stored.
static void store_bytes(Cg *cg, LLVMValueRef q, LLVMValueRef dst, LLVMValueRef k0, int bytes) {
  LLVMTypeRef v8 = LLVMVectorType(cg->i8, (unsigned)cg->W);
  LLVMValueRef u = LLVMBuildTrunc(cg->b, LLVMBuildAdd(cg->b, q, cg_const_int_like(cg, q, 128), ""), v8, "u8");
  LLVMValueRef p = cg_gep(cg, cg->i8, dst, k0);
  if (bytes == cg->W) {
    LLVMValueRef st = LLVMBuildStore(cg->b, u, p);
    LLVMSetAlignment(st, 1);
    return;
  }
  LLVMValueRef args[4] = {u, p, cg_i32(cg, 1), lane_mask(cg, cg->W, bytes)};
  masked(cg, "llvm.masked.store", v8, args, 4);
}

static void emit_pack_a_row(Cg *cg, const CgGemm *g, LLVMValueRef src, LLVMValueRef row, int rows) {
  assert(rows == 1);  // one row a work item
  int64_t K4 = (g->K + 3) / 4, K = g->K;
  int W = cg->W;
  LLVMValueRef inv, scale;
  LLVMValueRef m0 = g->a_cs == 1 ? LLVMConstNull(cg->vf) : cg_f32(cg, 0.0);
  int64_t full = g->a_cs == 1 ? K / W : 0;
  int tail = (int)(K - full * W);  // a_cs == 1: the last block's valid floats
  // Pass 1: m = max |A(i, k)| (per lane, then across the lanes).
  LLVMValueRef mv = cg_var(cg, LLVMTypeOf(m0), m0);
  {
    int64_t n = g->a_cs == 1 ? full * W : K, step = g->a_cs == 1 ? W : 1;
    if (n) {
      CgLoop k;
      cg_for_begin(cg, &k, cg_i64(cg, 0), cg_i64(cg, n), cg_i64(cg, step), "kmax");
      LLVMValueRef x = g->a_cs == 1 ? load_block(cg, src, k.iv, W)
                                    : cg_load(cg, cg->f32, cg_gep(cg, cg->f32, src, mul_c(cg, k.iv, g->a_cs)), 1);
      cg_set(cg, mv, max_abs(cg, cg_get(cg, mv), x));
      cg_for_end(cg, &k);
    }
  }
  LLVMValueRef m = cg_get(cg, mv);
  if (g->a_cs == 1 && tail) m = max_abs(cg, m, load_block(cg, src, cg_i64(cg, full * W), tail));
  if (g->a_cs == 1) m = cg_reduce_max(cg, m);
  scales(cg, m, &inv, &scale);
  // Pass 2: the bytes.
  LLVMValueRef dst = row;  // as bytes
  if (g->a_cs == 1) {
    LLVMValueRef vinv = cg_splat(cg, inv, W);
    if (full) {
      CgLoop k;
      cg_for_begin(cg, &k, cg_i64(cg, 0), cg_i64(cg, full * W), cg_i64(cg, W), "kq");
      store_bytes(cg, quant(cg, load_block(cg, src, k.iv, W), vinv), dst, k.iv, W);
      cg_for_end(cg, &k);
    }
    for (int64_t k0 = full * W; k0 < 4 * K4; k0 += W) {  // the tail and the padding (q = 0)
      int valid = (int)(K - k0 < 0 ? 0 : K - k0 < W ? K - k0 : W);
      int bytes = (int)(4 * K4 - k0 < W ? 4 * K4 - k0 : W);
      LLVMValueRef x = valid ? load_block(cg, src, cg_i64(cg, k0), valid) : LLVMConstNull(cg->vf);
      store_bytes(cg, quant(cg, x, vinv), dst, cg_i64(cg, k0), bytes);
    }
  } else {
    CgLoop k;
    cg_for_begin(cg, &k, cg_i64(cg, 0), cg_i64(cg, K), cg_i64(cg, 1), "kq");
    LLVMValueRef x = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, src, mul_c(cg, k.iv, g->a_cs)), 1);
    LLVMValueRef q = quant(cg, x, inv);
    cg_store(cg, LLVMBuildTrunc(cg->b, LLVMBuildAdd(cg->b, q, cg_i32(cg, 128), ""), cg->i8, ""),
             cg_gep(cg, cg->i8, dst, k.iv));
    cg_for_end(cg, &k);
    for (int64_t k0 = K; k0 < 4 * K4; k0++)
      cg_store(cg, LLVMConstInt(cg->i8, 128, 0), cg_gep(cg, cg->i8, dst, cg_i64(cg, k0)));
  }
  cg_store(cg, scale, cg_gep(cg, cg->i32, row, cg_i64(cg, K4)));
}

bool cg_gemm_int8_pack_a(Cg *cg, const CgGemm *g, const char *name, CgArg *a, int node,
                         CgSteps *steps, CgGemm *w) {
  assert(g->int8);
  int64_t K4 = (g->K + 3) / 4;
  cg_gemm_pack_a_step(cg, g, name, K4, K4 + 1, 1, emit_pack_a_row, a, node, steps, w, NULL);
  return true;
}

// ---------------------------------------------------------------------------------------
// Packing B: one panel ((K4 + 2) × nr words) from B at src (k = 0, column 0 of the panel),
// column by column (weights are packed once): zeros, then each column's max, its bytes, its
// compensation and scale.

void cg_gemm_int8_pack_panel(Cg *cg, const CgGemm *g, int64_t k_elems, int nr, LLVMValueRef src,
                             LLVMValueRef dst, int cols) {
  int64_t K4 = g->K;
  LLVMBuildMemSet(cg->b, dst, LLVMConstInt(cg->i8, 0, 0), cg_i64(cg, (K4 + 2) * nr * 4), 4);
  if (k_elems == 0) return;
  CgLoop j;
  cg_for_begin(cg, &j, cg_i64(cg, 0), cg_i64(cg, cols), cg_i64(cg, 1), "j");
  LLVMValueRef col = cg_gep(cg, cg->f32, src, mul_c(cg, j.iv, g->b_cs));
  // m = max_k |B(k, j)|
  LLVMValueRef mv = cg_var(cg, cg->f32, cg_f32(cg, 0.0));
  CgLoop k;
  cg_for_begin(cg, &k, cg_i64(cg, 0), cg_i64(cg, k_elems), cg_i64(cg, 1), "kmax");
  LLVMValueRef x = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, col, mul_c(cg, k.iv, g->b_rs)), 1);
  cg_set(cg, mv, max_abs(cg, cg_get(cg, mv), x));
  cg_for_end(cg, &k);
  LLVMValueRef inv, scale;
  scales(cg, cg_get(cg, mv), &inv, &scale);
  // the bytes, and their sum
  LLVMValueRef sum = cg_var(cg, cg->i32, cg_i32(cg, 0));
  cg_for_begin(cg, &k, cg_i64(cg, 0), cg_i64(cg, k_elems), cg_i64(cg, 1), "kq");
  x = cg_load(cg, cg->f32, cg_gep(cg, cg->f32, col, mul_c(cg, k.iv, g->b_rs)), 1);
  LLVMValueRef q = quant(cg, x, inv);
  LLVMValueRef k4 = LLVMBuildLShr(cg->b, k.iv, cg_i64(cg, 2), ""),
               kb = LLVMBuildAnd(cg->b, k.iv, cg_i64(cg, 3), "");
  LLVMValueRef word = LLVMBuildAdd(cg->b, mul_c(cg, k4, nr), j.iv, "");
  LLVMValueRef byte = LLVMBuildAdd(cg->b, mul_c(cg, word, 4), kb, "");
  cg_store(cg, LLVMBuildTrunc(cg->b, q, cg->i8, ""), cg_gep(cg, cg->i8, dst, byte));
  cg_set(cg, sum, LLVMBuildAdd(cg->b, cg_get(cg, sum), q, ""));
  cg_for_end(cg, &k);
  LLVMValueRef comp = LLVMBuildMul(cg->b, cg_get(cg, sum), cg_i32(cg, 128), "comp");
  cg_store(cg, comp, cg_gep(cg, cg->i32, dst, LLVMBuildAdd(cg->b, j.iv, cg_i64(cg, K4 * nr), "")));
  cg_store(cg, scale, cg_gep(cg, cg->f32, dst, LLVMBuildAdd(cg->b, j.iv, cg_i64(cg, (K4 + 1) * nr), "")));
  cg_for_end(cg, &j);
}

// ---------------------------------------------------------------------------------------
// The microkernel's k4 step.

// vpdpbusd at this vector width: its intrinsic's name, or NULL.
static const char *native(const Cg *cg) {
  bool vnni512 = cg_feature_on(cg->features, "avx512vnni");
  if (cg->W == 16 && vnni512) return "llvm.x86.avx512.vpdpbusd.512";
  if (cg->W == 8 && (cg_feature_on(cg->features, "avxvnni") ||
                     (vnni512 && cg_feature_on(cg->features, "avx512vl"))))
    return "llvm.x86.avx512.vpdpbusd.256";
  return NULL;
}

void cg_gemm_int8_prepare_b(Cg *cg, LLVMValueRef words, LLVMValueRef b[4]) {
  if (native(cg)) {
    b[0] = words, b[1] = b[2] = b[3] = NULL;
    return;
  }
  for (int s = 0; s < 4; s++)  // byte s, sign-extended
    b[s] = LLVMBuildAShr(cg->b, LLVMBuildShl(cg->b, words, cg_const_int_like(cg, words, 24 - 8 * s), ""),
                         cg_const_int_like(cg, words, 24), "b.s8");
}

LLVMValueRef cg_gemm_int8_dot(Cg *cg, LLVMValueRef acc, LLVMValueRef aword, const LLVMValueRef b[4]) {
  LLVMTypeRef vi = LLVMVectorType(cg->i32, (unsigned)cg->W);
  LLVMValueRef acci = LLVMBuildBitCast(cg->b, acc, vi, "acc.i32"), sum;
  const char *name = native(cg);
  if (name) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, NULL, 0);
    LLVMTypeRef pt[3];
    LLVMGetParamTypes(fty, pt);
    LLVMValueRef args[3] = {LLVMBuildBitCast(cg->b, acci, pt[0], ""),
                            LLVMBuildBitCast(cg->b, cg_splat(cg, aword, cg->W), pt[1], "a.u8"),
                            LLVMBuildBitCast(cg->b, b[0], pt[2], "b.s8")};
    sum = LLVMBuildBitCast(cg->b,
                           LLVMBuildCall2(cg->b, fty, LLVMGetIntrinsicDeclaration(cg->mod, id, NULL, 0),
                                          args, 3, "dp"),
                           vi, "");
  } else {
    sum = acci;
    for (int s = 0; s < 4; s++) {
      LLVMValueRef as = LLVMBuildAnd(cg->b, LLVMBuildLShr(cg->b, aword, cg_i32(cg, 8 * s), ""),
                                     cg_i32(cg, 255), "a.u8");
      sum = LLVMBuildAdd(cg->b, sum, LLVMBuildMul(cg->b, cg_splat(cg, as, cg->W), b[s], ""), "");
    }
  }
  return LLVMBuildBitCast(cg->b, sum, cg->vf, "acc");
}

LLVMValueRef cg_gemm_int8_dequant(Cg *cg, LLVMValueRef acc, LLVMValueRef comp, LLVMValueRef scale_a,
                                  LLVMValueRef scale_b) {
  LLVMTypeRef vi = LLVMVectorType(cg->i32, (unsigned)cg->W);
  LLVMValueRef s = LLVMBuildSub(cg->b, LLVMBuildBitCast(cg->b, acc, vi, ""), comp, "isum");
  LLVMValueRef x = LLVMBuildSIToFP(cg->b, s, cg->vf, "");
  x = LLVMBuildFMul(cg->b, x, cg_splat(cg, scale_a, cg->W), "");
  return LLVMBuildFMul(cg->b, x, scale_b, "dequant");
}
