// Vector math emitted inline as LLVM IR: exp, log, erf, tanh, exact GELU and sigmoid over
// any f32 scalar or <n x float> vector, built from FMA polynomials, bit operations and
// selects (no per-lane branches, no libm calls). tests/test_cg_math.c holds them to libm.
//
// Accuracy, measured over all 2^32 inputs (vector form at 16 and 8 lanes, scalar form)
// against libm in double rounded to f32: at most 1 ulp for every function, i.e. every
// result is the correctly rounded f32 or a neighbour of it. Share of inputs 1 ulp off:
// exp 0.42%, log 0.31%, erf 0.69%, tanh 0.12%, gelu 0.085%, sigmoid 0.019%. That includes
// the edges, which come out of the same formulas (no flush of subnormals anywhere):
//   exp      +inf from 88.7228 up, subnormal results down to 0 below -103.97; NaN passes.
//   log      subnormal inputs; log(+-0) = -inf, log(x < 0) = NaN, log(+inf) = +inf.
//   erf      +-1 exactly for large |x|; erf(-0) = -0; subnormal x.
//   tanh     +-1 exactly for large |x|; tiny and subnormal x give x; tanh(-0) = -0.
//   gelu     x < 0 through erfc (no 1 + erf cancellation): the 1 ulp holds down to the
//            subnormal results and -0 below -14.5; GELU(x) = x for large x, +inf at +inf.
//   sigmoid  subnormal results below -87.3, 0 below -103.97, 1 for large x.
//
// Polynomial coefficients are minimax (relative error) fits with the coefficients rounded
// to f32 one at a time and the rest refitted; each table says what it approximates. Where
// a rounding in the middle of a formula would cost a result its last bit (the 1 + p of an
// exp multiplied into something, a sum that cancels, a denominator), its error is carried
// as a second float (FMA-exact products, Fast2Sum) into the last operation.
#include <math.h>

#include "codegen/cg.h"

// ---------------------------------------------------------------------------------------
// IR helpers: every value is a float (or i32) scalar or vector of the shape of the input.

static LLVMValueRef k(Cg *cg, LLVMValueRef like, double v) {
  return cg_const_like(cg, like, v);
}
static LLVMValueRef ki(Cg *cg, LLVMValueRef like, int64_t v) {
  return cg_const_int_like(cg, like, v);
}

static LLVMTypeRef int_type_like(Cg *cg, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  return LLVMGetTypeKind(t) == LLVMVectorTypeKind ? LLVMVectorType(cg->i32, LLVMGetVectorSize(t))
                                                  : cg->i32;
}

static LLVMValueRef add(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFAdd(cg->b, a, b, "");
}
static LLVMValueRef sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFSub(cg->b, a, b, "");
}
static LLVMValueRef mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFMul(cg->b, a, b, "");
}
static LLVMValueRef math_fdiv(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFDiv(cg->b, a, b, "");
}
static LLVMValueRef neg(Cg *cg, LLVMValueRef a) { return LLVMBuildFNeg(cg->b, a, ""); }
static LLVMValueRef sel(Cg *cg, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(cg->b, c, a, b, "");
}
static LLVMValueRef cmp(Cg *cg, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFCmp(cg->b, p, a, b, "");
}

static LLVMValueRef unary(Cg *cg, const char *name, LLVMValueRef x) {
  return cg_intrinsic(cg, name, LLVMTypeOf(x), &x, 1);
}
static LLVMValueRef binary(Cg *cg, const char *name, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef args[2] = {a, b};
  return cg_intrinsic(cg, name, LLVMTypeOf(a), args, 2);
}
static LLVMValueRef fabs_(Cg *cg, LLVMValueRef x) { return unary(cg, "llvm.fabs", x); }
// minnum/maxnum return the other operand when one is NaN.
static LLVMValueRef fmin_(Cg *cg, LLVMValueRef x, double v) {
  return binary(cg, "llvm.minnum", x, k(cg, x, v));
}
static LLVMValueRef fmax_(Cg *cg, LLVMValueRef x, double v) {
  return binary(cg, "llvm.maxnum", x, k(cg, x, v));
}
static LLVMValueRef copysign_(Cg *cg, LLVMValueRef mag, LLVMValueRef sgn) {
  return binary(cg, "llvm.copysign", mag, sgn);
}
static LLVMValueRef is_nan(Cg *cg, LLVMValueRef x) { return cmp(cg, LLVMRealUNO, x, x); }

// c[0] + x c[1] + ... + x^(n-1) c[n-1], Horner with FMA.
static LLVMValueRef poly(Cg *cg, LLVMValueRef x, const float *c, int n) {
  LLVMValueRef acc = k(cg, x, c[n - 1]);
  for (int i = n - 2; i >= 0; i--) acc = cg_fma(cg, acc, x, k(cg, x, c[i]));
  return acc;
}
#define POLY(cg, x, table) poly(cg, x, table, (int)(sizeof table / sizeof table[0]))

// The same for a table {c0 hi, c0 lo, c1, c2, ...} whose constant term is a two-float sum,
// keeping the rounding error of the last step: c0 + x q1(x) = *hi + *err (to first order).
// The result must stay within a factor 2 of c0 so that c0 hi - *hi is exact.
static void poly2(Cg *cg, LLVMValueRef x, const float *c, int n, LLVMValueRef *hi,
                  LLVMValueRef *err, LLVMValueRef *q1) {
  LLVMValueRef c0 = k(cg, x, c[0]);
  *q1 = poly(cg, x, c + 2, n - 2);
  *hi = cg_fma(cg, x, *q1, c0);
  *err = add(cg, cg_fma(cg, x, *q1, sub(cg, c0, *hi)), k(cg, x, c[1]));
}
#define POLY2(cg, x, table, hi, err, q1) \
  poly2(cg, x, table, (int)(sizeof table / sizeof table[0]), hi, err, q1)

// 2^n for integer lanes n in [-126, 127], as float.
static LLVMValueRef pow2i(Cg *cg, LLVMValueRef n, LLVMValueRef like) {
  LLVMValueRef e = LLVMBuildAdd(cg->b, n, ki(cg, like, 127), "");
  e = LLVMBuildShl(cg->b, e, ki(cg, like, 23), "");
  return LLVMBuildBitCast(cg->b, e, LLVMTypeOf(like), "");
}

// x*x = hi + lo exactly (FMA), for the exp(-x^2) factors of erfc.
static void square2(Cg *cg, LLVMValueRef x, LLVMValueRef *hi, LLVMValueRef *lo) {
  *hi = mul(cg, x, x);
  *lo = cg_fma(cg, x, x, neg(cg, *hi));
}

// ---------------------------------------------------------------------------------------
// exp core. h + l = n ln2 + r + c with n = roundeven(h / ln2), |r| <= ln2/2 and c the part
// of the reduced argument below r's last bit (ln2 in two parts, the first with 15
// significant bits so n*C1 is exact); e^(r + c) = (1 + r + q)(1 + c) with
// q = r^2 P(r). Callers that multiply e^x into something fold the 1 + ... into that
// product, so the exp costs no rounding of its own.

// (e^r - 1 - r) / r^2 on [-ln2/2, ln2/2]; relative error of e^r 2^-31.2.
const float cg_exp_poly[CG_EXP_POLY_N] = {0x1p-1f, 0x1.55553cp-3f, 0x1.5554f2p-5f, 0x1.113736p-7f,
                              0x1.6d40f8p-10f, 0x1.6b6026p-13f};

typedef struct ExpParts {
  LLVMValueRef r, q, c;  // e^(h + l) / 2^n = (1 + r + q)(1 + c), |q| < |r| / 5, |c| < 2^-18
  LLVMValueRef p;        // r + q, rounded
  LLVMValueRef n1, n2;   // n = n1 + n2 (i32 lanes), each in [-126, 127]
  LLVMValueRef s1, s2;   // 2^n1, 2^n2
} ExpParts;

// e^(h + l) for h in [-170, 170] (no NaN), l tiny (|l| <= ulp(h)) or NULL. Two scale
// factors keep 2^n representable: multiplying by s1 then s2 overflows to inf and
// underflows gradually through the subnormals with one rounding.
static ExpParts exp_parts(Cg *cg, LLVMValueRef h, LLVMValueRef l) {
  ExpParts e;
  LLVMValueRef n = unary(cg, "llvm.roundeven", mul(cg, h, k(cg, h, CG_LOG2E)));
  LLVMValueRef r1 = cg_fma(cg, n, k(cg, h, -CG_LN2_HI), h);  // exact
  e.r = cg_fma(cg, n, k(cg, h, -CG_LN2_LO), r1);
  e.c = cg_fma(cg, n, k(cg, h, -CG_LN2_LO), sub(cg, r1, e.r));
  if (l) e.c = add(cg, e.c, l);
  e.q = mul(cg, mul(cg, e.r, e.r), POLY(cg, e.r, cg_exp_poly));
  e.p = add(cg, e.r, e.q);
  LLVMValueRef ni = LLVMBuildFPToSI(cg->b, n, int_type_like(cg, h), "");
  e.n1 = LLVMBuildAShr(cg->b, ni, ki(cg, h, 1), "");
  e.n2 = LLVMBuildSub(cg->b, ni, e.n1, "");
  e.s1 = pow2i(cg, e.n1, h);
  e.s2 = pow2i(cg, e.n2, h);
  return e;
}

// (y + y_err) e^(h + l), y_err a correction below y's last bit or NULL, with a single
// rounding before the (exact, or overflowing, or gradually underflowing) scaling.
static LLVMValueRef mul_exp(Cg *cg, LLVMValueRef y, LLVMValueRef y_err, ExpParts e) {
  LLVMValueRef t = cg_fma(cg, e.c, cg_fma(cg, e.p, y, y), y_err ? y_err : k(cg, y, 0.0));
  t = cg_fma(cg, e.q, y, t);
  t = add(cg, y, cg_fma(cg, e.r, y, t));
  return mul(cg, mul(cg, t, e.s1), e.s2);
}

LLVMValueRef cg_exp(Cg *cg, LLVMValueRef x) {
  // e^x overflows above 88.7228 and is below half the least subnormal under -103.97.
  LLVMValueRef h = fmin_(cg, fmax_(cg, x, -104.0), 88.8);
  ExpParts e = exp_parts(cg, h, NULL);
  return sel(cg, is_nan(cg, x), x, mul_exp(cg, k(cg, x, 1.0), NULL, e));
}

// ---------------------------------------------------------------------------------------
// log. x = 2^e m with m in [sqrt2/2, sqrt2) (subnormals scaled by 2^23 first), f = m - 1,
// log(1 + f) = f - f^2/2 + f^3 P(f), plus e ln2 in two parts (Cephes' arrangement).

// (log(1+f) - f + f^2/2) / f^3 on [sqrt2/2 - 1, sqrt2 - 1]; relative error of log 2^-29.3.
static const float log_p[] = {0x1.555548p-2f, -0x1.00007p-2f, 0x1.99a542p-3f,
                              -0x1.552f1p-3f, 0x1.2303p-3f,   -0x1.01046ep-3f,
                              0x1.effbbap-4f, -0x1.bf260ep-4f, 0x1.b55d0cp-5f};
static const double LOG_C1 = 0x1.63p-1, LOG_C2 = -0x1.bd0106p-13;  // ln2 = C1 + C2

LLVMValueRef cg_log(Cg *cg, LLVMValueRef x) {
  LLVMTypeRef it = int_type_like(cg, x);
  LLVMValueRef tiny = cmp(cg, LLVMRealOLT, x, k(cg, x, 0x1p-126));
  LLVMValueRef xs = sel(cg, tiny, mul(cg, x, k(cg, x, 0x1p23)), x);
  LLVMValueRef ix = LLVMBuildBitCast(cg->b, xs, it, "");
  // ix - bits(sqrt2/2): the exponent field is e, the mantissa m / (sqrt2/2) - 1 ...
  LLVMValueRef d = LLVMBuildSub(cg->b, ix, ki(cg, x, 0x3f3504f3), "");
  LLVMValueRef ei = LLVMBuildAShr(cg->b, d, ki(cg, x, 23), "");
  ei = LLVMBuildAdd(cg->b, ei, sel(cg, tiny, ki(cg, x, -23), ki(cg, x, 0)), "");
  // ... and adding bits(sqrt2/2) back to the mantissa bits gives m in [sqrt2/2, sqrt2).
  LLVMValueRef mi = LLVMBuildAdd(cg->b, LLVMBuildAnd(cg->b, d, ki(cg, x, 0x7fffff), ""),
                                 ki(cg, x, 0x3f3504f3), "");
  LLVMValueRef m = LLVMBuildBitCast(cg->b, mi, LLVMTypeOf(x), "");
  LLVMValueRef e = LLVMBuildSIToFP(cg->b, ei, LLVMTypeOf(x), "");
  LLVMValueRef f = sub(cg, m, k(cg, x, 1.0));  // exact
  LLVMValueRef z = mul(cg, f, f);
  LLVMValueRef y = cg_fma(cg, mul(cg, f, z), POLY(cg, f, log_p), mul(cg, z, k(cg, x, -0.5)));
  y = cg_fma(cg, e, k(cg, x, LOG_C2), y);
  LLVMValueRef r = cg_fma(cg, e, k(cg, x, LOG_C1), add(cg, f, y));
  // log(+-0) = -inf, log(x < 0) = NaN, log(+inf) = +inf, log(NaN) = NaN.
  r = sel(cg, cmp(cg, LLVMRealOLT, x, k(cg, x, 0.0)), k(cg, x, NAN), r);
  r = sel(cg, cmp(cg, LLVMRealOEQ, x, k(cg, x, 0.0)), k(cg, x, -INFINITY), r);
  return sel(cg, cmp(cg, LLVMRealUGE, x, k(cg, x, INFINITY)), x, r);
}

// ---------------------------------------------------------------------------------------
// erf. |x| < 0.875: erf(x) = x + x R(x^2). Else erf(|x|) = 1 - erfc(|x|) with
// erfc(u) = e^(-u^2) g(u), u^2 split exactly (FMA) before the exp and g(u) = e^(u^2) erfc(u)
// a polynomial in u - 2.4375 over [0.875, 4]; erfc(4) < 2^-25, so clamping u to 4 gives
// exactly 1 beyond.

// erf(x)/x - 1 as a polynomial in x^2 on [0, 0.875^2]; relative error of erf 2^-30.1.
static const float erf_r[] = {0x1.06eba8p-3f,  -0x1.81274p-2f,  0x1.ce2d5cp-4f, -0x1.b7ff9p-6f,
                              0x1.54318ep-8f, -0x1.a4d10ep-11f, 0x1.4a0074p-14f};
// e^(u^2) erfc(u) as a polynomial in u - 2.4375 on [0.875, 4]; relative error 2^-25.1.
static const float erfc_g[] = {0x1.b97394p-3f,  -0x1.3db066p-4f,  0x1.b22472p-6f, -0x1.1b637ep-7f,
                               0x1.631bd6p-9f,  -0x1.ac46fep-11f, 0x1.f3c308p-13f, -0x1.201512p-14f,
                               0x1.3d7812p-16f, -0x1.1917e4p-18f, 0x1.1da876p-20f, -0x1.2770f6p-21f,
                               0x1.2fb6d6p-23f};

LLVMValueRef cg_erf(Cg *cg, LLVMValueRef x) {
  LLVMValueRef a = fabs_(cg, x);
  LLVMValueRef small = cg_fma(cg, x, POLY(cg, mul(cg, x, x), erf_r), x);
  LLVMValueRef u = fmin_(cg, a, 4.0);  // NaN lanes take the small path below
  LLVMValueRef hi, lo;
  square2(cg, u, &hi, &lo);
  ExpParts e = exp_parts(cg, neg(cg, hi), neg(cg, lo));
  LLVMValueRef g = POLY(cg, sub(cg, u, k(cg, x, 2.4375)), erfc_g);
  LLVMValueRef erfc = mul_exp(cg, g, NULL, e);
  LLVMValueRef tail = copysign_(cg, sub(cg, k(cg, x, 1.0), erfc), x);
  return sel(cg, cmp(cg, LLVMRealULT, a, k(cg, x, 0.875)), small, tail);
}

// ---------------------------------------------------------------------------------------
// tanh. |x| < 0.625: x + x^3 P(x^2). Else tanh|x| = (E - 1)/(E + 1), E = e^(2|x|) =
// (1 + p) 2^n, whose numerator and denominator are each one FMA (2^n +- 1 is exact);
// |x| is clamped to 10, past which tanh rounds to 1.

// (tanh(x)/x - 1) / x^2 as a polynomial in x^2 on [0, 0.625^2]; relative error 2^-32.4.
static const float tanh_p[] = {-0x1.555554p-2f, 0x1.11107ap-3f, -0x1.b9f188p-5f,
                               0x1.63a55p-6f,   -0x1.0c5edp-7f, 0x1.1a2816p-9f};

LLVMValueRef cg_tanh(Cg *cg, LLVMValueRef x) {
  // On |x|, the sign copied back last (so tanh(-0) = -0).
  LLVMValueRef a = fabs_(cg, x);
  LLVMValueRef z = mul(cg, a, a);
  LLVMValueRef small = cg_fma(cg, mul(cg, a, z), POLY(cg, z, tanh_p), a);
  LLVMValueRef a2 = mul(cg, fmin_(cg, a, 10.0), k(cg, x, 2.0));
  ExpParts e = exp_parts(cg, a2, NULL);
  LLVMValueRef s = mul(cg, e.s1, e.s2);  // 2^n, n in [1, 29]
  // From |x| = 4 (n = 12; 2^n + 1 stops being exact at n = 24) 1 - 2/(E + 1) is better.
  LLVMValueRef far = cmp(cg, LLVMRealOGE, a, k(cg, x, 4.0));
  LLVMValueRef num = sel(cg, far, k(cg, x, 2.0), cg_fma(cg, s, e.p, sub(cg, s, k(cg, x, 1.0))));
  LLVMValueRef den = cg_fma(cg, s, e.p, add(cg, s, k(cg, x, 1.0)));
  LLVMValueRef q = math_fdiv(cg, num, den);
  LLVMValueRef large = sel(cg, far, sub(cg, k(cg, x, 1.0), q), q);
  LLVMValueRef r = sel(cg, cmp(cg, LLVMRealULT, a, k(cg, x, 0.625)), small, large);  // NaN: small
  return copysign_(cg, r, x);
}

// ---------------------------------------------------------------------------------------
// GELU(x) = x/2 (1 + erf(x/sqrt2)) = x Phi(x), in terms of x itself (no rounded x/sqrt2):
// |x| < 1.25: x (1/2 + x Q(x^2)) with erf(x/sqrt2)/2 = x Q(x^2).
// |x| >= 1.25: with T(a) = a/2 erfc(a/sqrt2) = e^(-a^2/2) H(a), a = |x| (a^2/2 split
// exactly), GELU(x) = -T(a) for x < 0 (no cancellation: the erfc form) and x - T(a) for
// x > 0. H is a polynomial in a - 2.375 on [1.25, 3.5) and in 1/a^2 on [3.5, 14.5];
// beyond 14.5 GELU(-a) is below half the least subnormal, so a is clamped there.

// erf(x/sqrt2) / (2x) as a polynomial in x^2 on [0, 1.25^2], constant in two parts;
// relative error 2^-31.9.
static const float gelu_q[] = {0x1.988454p-2f,   -0x1.885a9ap-27f, -0x1.105836p-4f,
                               0x1.46cfc8p-7f,   -0x1.373186p-10f, 0x1.e27926p-14f,
                               -0x1.2fe9e2p-17f, 0x1.fee4fap-22f};
// e^(a^2/2) a/2 erfc(a/sqrt2) in a - 2.375 on [1.25, 3.5], constant in two parts;
// relative error 2^-29.5.
static const float gelu_h_mid[] = {0x1.661f34p-2f,   0x1.b64abep-28f, 0x1.f199cp-6f,
                                   -0x1.aed6b8p-7f,  0x1.390a6cp-8f,  -0x1.956cd2p-10f,
                                   0x1.e1c912p-12f,  -0x1.0b714ap-13f, 0x1.189124p-15f,
                                   -0x1.11d9f4p-17f, 0x1.fcc9b8p-20f, -0x1.25140ap-21f,
                                   0x1.1bef0ap-23f};
// The same in s = 1/a^2 on [3.5, 14.5]; relative error 2^-29.2.
static const float gelu_h_far[] = {0x1.988452p-2f,  -0x1.06de9cp-30f, -0x1.988226p-2f,
                                   0x1.320c74p+0f,  -0x1.782608p+2f,  0x1.270a48p+5f,
                                   -0x1.c68e0ap+7f, 0x1.0059ap+10f,   -0x1.1c626p+11f};

// x (1/2 + x Q(x^2)) for |x| < 1.25, carrying the rounding errors of x^2, of Q's last
// Horner step, of x Q and of 1/2 + x Q into one correction, so the final FMA is the only
// full rounding: near x = -1.25 the sum cancels to a fifth of 1/2 and would amplify them.
static LLVMValueRef gelu_central(Cg *cg, LLVMValueRef x) {
  LLVMValueRef z, z_lo, q, q_err, q1, half = k(cg, x, 0.5);
  square2(cg, x, &z, &z_lo);
  POLY2(cg, z, gelu_q, &q, &q_err, &q1);
  q_err = cg_fma(cg, q1, z_lo, q_err);  // Q(z + z_lo) ~ Q(z) + Q'(z) z_lo, Q' ~ q1
  LLVMValueRef xq = mul(cg, x, q);
  LLVMValueRef xq_err = cg_fma(cg, x, q, neg(cg, xq));
  LLVMValueRef v = add(cg, half, xq);
  LLVMValueRef v_err = add(cg, sub(cg, half, v), xq);  // Fast2Sum: |xq| < 1/2
  v_err = add(cg, v_err, cg_fma(cg, x, q_err, xq_err));
  return cg_fma(cg, x, v, mul(cg, x, v_err));
}

LLVMValueRef cg_gelu_central(Cg *cg, LLVMValueRef x) { return gelu_central(cg, x); }

// The same comparison as cg_gelu's select, so a branch on it gives the same bits.
static LLVMValueRef gelu_is_central(Cg *cg, LLVMValueRef x) {
  return cmp(cg, LLVMRealULT, fabs_(cg, x), k(cg, x, CG_GELU_CENTRAL));  // NaN too
}

LLVMValueRef cg_gelu_all_central(Cg *cg, LLVMValueRef x) {
  LLVMValueRef c = gelu_is_central(cg, x);
  if (LLVMGetTypeKind(LLVMTypeOf(c)) != LLVMVectorTypeKind) return c;
  return cg_intrinsic(cg, "llvm.vector.reduce.and", LLVMTypeOf(c), &c, 1);
}

LLVMValueRef cg_gelu(Cg *cg, LLVMValueRef x) {
  LLVMValueRef a = fabs_(cg, x);
  LLVMValueRef ac = fmin_(cg, a, 14.5);
  LLVMValueRef hi, lo, h_mid, e_mid, h_far, e_far, unused;
  square2(cg, ac, &hi, &lo);
  POLY2(cg, sub(cg, ac, k(cg, x, 2.375)), gelu_h_mid, &h_mid, &e_mid, &unused);
  POLY2(cg, math_fdiv(cg, k(cg, x, 1.0), hi), gelu_h_far, &h_far, &e_far, &unused);
  LLVMValueRef mid = cmp(cg, LLVMRealOLT, ac, k(cg, x, 3.5));
  LLVMValueRef h = sel(cg, mid, h_mid, h_far), h_err = sel(cg, mid, e_mid, e_far);
  ExpParts e = exp_parts(cg, mul(cg, hi, k(cg, x, -0.5)), mul(cg, lo, k(cg, x, -0.5)));
  LLVMValueRef t = mul_exp(cg, h, h_err, e);
  LLVMValueRef tail = sel(cg, cmp(cg, LLVMRealOLT, x, k(cg, x, 0.0)), neg(cg, t), sub(cg, x, t));
  return sel(cg, gelu_is_central(cg, x), gelu_central(cg, x), tail);
}

// ---------------------------------------------------------------------------------------
// sigmoid(x) = 1/(1 + e^-x), e^-x = (1 + r + q)(1 + c) 2^n. The denominator is kept as a
// two-float sum (its rounding would otherwise cost a full ulp where it sits just above a
// power of 2 and the quotient just below one) and divided by with an FMA correction step:
// |x| < 16 (|n| <= 23, so 1 + 2^n is exact): 1 + 2^n (1 + p);
// x <= -16: 2^-n / (1 + p + 2^-n), whose scaling by 2^-n underflows gradually;
// x >= 16: 1 - e^-x.

// 1 / (hi + lo) for |lo| << |hi|, with a single rounding to first order.
static LLVMValueRef recip2(Cg *cg, LLVMValueRef hi, LLVMValueRef lo) {
  LLVMValueRef one = k(cg, hi, 1.0);
  LLVMValueRef q = math_fdiv(cg, one, hi);
  LLVMValueRef rem = cg_fma(cg, neg(cg, q), hi, one);  // exact
  rem = cg_fma(cg, neg(cg, q), lo, rem);
  return cg_fma(cg, q, rem, q);
}

LLVMValueRef cg_sigmoid(Cg *cg, LLVMValueRef x) {
  LLVMValueRef one = k(cg, x, 1.0);
  LLVMValueRef a = fabs_(cg, x);
  ExpParts e = exp_parts(cg, fmin_(cg, fmax_(cg, neg(cg, x), -104.0), 104.0), NULL);
  // e^-x 2^-n - 1 - p = p_err + c (1 + p): what the rounded p leaves out.
  LLVMValueRef p_err = add(cg, sub(cg, e.r, e.p), e.q);  // Fast2Sum: |q| < |r|
  LLVMValueRef tail = cg_fma(cg, e.c, add(cg, one, e.p), p_err);
  // |x| < 16: 1 + s (1 + p) = den + den_lo.
  LLVMValueRef s = mul(cg, e.s1, e.s2);
  LLVMValueRef one_s = add(cg, one, s);  // exact
  LLVMValueRef den = cg_fma(cg, s, e.p, one_s);
  LLVMValueRef den_lo = cg_fma(cg, s, tail, cg_fma(cg, s, e.p, sub(cg, one_s, den)));
  // x <= -16: 1 + p + 2^-n = w + w_lo.
  LLVMValueRef inv1 = pow2i(cg, LLVMBuildNeg(cg->b, e.n1, ""), x);
  LLVMValueRef inv2 = pow2i(cg, LLVMBuildNeg(cg->b, e.n2, ""), x);
  LLVMValueRef w = add(cg, one, e.p);
  LLVMValueRef w_lo = add(cg, add(cg, sub(cg, one, w), e.p), add(cg, mul(cg, inv1, inv2), tail));
  LLVMValueRef near = cmp(cg, LLVMRealOLT, a, k(cg, x, 16.0));
  LLVMValueRef q = recip2(cg, sel(cg, near, den, w), sel(cg, near, den_lo, w_lo));
  LLVMValueRef far_neg = mul(cg, mul(cg, q, inv1), inv2);
  LLVMValueRef far_pos = sub(cg, one, mul_exp(cg, one, NULL, e));
  LLVMValueRef far = sel(cg, cmp(cg, LLVMRealOGT, x, k(cg, x, 0.0)), far_pos, far_neg);
  LLVMValueRef r = sel(cg, near, q, far);
  return sel(cg, is_nan(cg, x), x, r);
}

// gelu'(x) = Phi(x) + x phi(x) = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi).
LLVMValueRef cg_gelu_grad(Cg *cg, LLVMValueRef x) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef e = cg_erf(cg, LLVMBuildFMul(b, x, cg_const_like(cg, x, M_SQRT1_2), ""));
  LLVMValueRef cdf = cg_fma(cg, e, cg_const_like(cg, x, 0.5), cg_const_like(cg, x, 0.5));
  LLVMValueRef sq = LLVMBuildFMul(b, LLVMBuildFMul(b, x, x, ""), cg_const_like(cg, x, -0.5), "");
  LLVMValueRef pdf = LLVMBuildFMul(b, cg_exp(cg, sq), cg_const_like(cg, x, 1.0 / sqrt(2.0 * M_PI)), "");
  return cg_fma(cg, x, pdf, cdf);
}
