// Element types: sizes and names, loading/storing one element as a double (bf16 and f16
// encoded by hand, rounding to nearest even), and dt_convert, which refuses any conversion
// that would change a value's meaning and names the first offending element.
#include "runtime/dtype.h"

#include <assert.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- the table -------------------------------------------------------------------------

static const struct {
  const char *name;     // model-file spelling
  const char *st_name;  // safetensors spelling
  size_t size;
  bool is_float;
} dt_info[] = {
  [DT_F32] = {"f32", "F32", 4, true},   [DT_F64] = {"f64", "F64", 8, true},
  [DT_I32] = {"i32", "I32", 4, false},  [DT_I64] = {"i64", "I64", 8, false},
  [DT_BF16] = {"bf16", "BF16", 2, true}, [DT_F16] = {"f16", "F16", 2, true},
  [DT_U8] = {"u8", "U8", 1, false},     [DT_BOOL] = {"bool", "BOOL", 1, false},
};
_Static_assert(sizeof dt_info / sizeof dt_info[0] == DT_COUNT, "dt_info must cover every DType");

static void dt_check(DType t) {
  assert((unsigned)t < DT_COUNT && dt_info[t].name && "invalid DType");
  (void)t;
}

size_t dt_size(DType t) { dt_check(t); return dt_info[t].size; }
const char *dt_name(DType t) { dt_check(t); return dt_info[t].name; }
const char *dt_st_name(DType t) { dt_check(t); return dt_info[t].st_name; }
bool dt_is_float(DType t) { dt_check(t); return dt_info[t].is_float; }

bool dt_parse(const char *s, DType *out) {
  if (!s) return false;
  for (int t = 0; t < DT_COUNT; t++) {
    if (strcmp(s, dt_info[t].name) == 0 || strcmp(s, dt_info[t].st_name) == 0) {
      *out = (DType)t;
      return true;
    }
  }
  return false;
}

// --- small IEEE formats (f16, bf16) by hand --------------------------------------------

// A binary floating-point format narrower than double: explicit mantissa bits, exponent bits.
typedef struct SmallFloat { int mbits, ebits; } SmallFloat;
static const SmallFloat SF_F16 = {10, 5}, SF_BF16 = {7, 8}, SF_F32 = {23, 8};

static double sf_decode(SmallFloat f, uint32_t bits) {
  uint32_t emask = (1u << f.ebits) - 1;
  uint32_t e = bits >> f.mbits & emask;
  uint32_t m = bits & ((1u << f.mbits) - 1);
  int bias = (1 << (f.ebits - 1)) - 1;
  double v;
  if (e == emask) v = m ? NAN : INFINITY;
  else if (e == 0) v = ldexp(m, 1 - bias - f.mbits);  // subnormal: m * 2^(emin - mbits)
  else v = ldexp(m | 1u << f.mbits, (int)e - bias - f.mbits);
  return copysign(v, bits >> (f.mbits + f.ebits) & 1 ? -1.0 : 1.0);
}

// Rounds q >= 0 (below 2^53) to an integer, ties to even, whatever the FPU rounding mode.
static double round_half_even(double q) {
  double fl = floor(q), diff = q - fl;  // exact: q and fl share an exponent range
  if (diff > 0.5 || (diff == 0.5 && fmod(fl, 2.0) != 0.0)) fl += 1.0;
  return fl;
}

// Encodes v directly from double (no detour through f32, which would round twice).
// NaN becomes a quiet NaN of the same sign; values past the largest finite become inf.
static uint32_t sf_encode(SmallFloat f, double v) {
  uint32_t sign = signbit(v) ? 1u << (f.mbits + f.ebits) : 0;
  uint32_t inf = ((1u << f.ebits) - 1) << f.mbits;
  if (isnan(v)) return sign | inf | 1u << (f.mbits - 1);
  double a = fabs(v);
  if (isinf(a)) return sign | inf;
  if (a == 0) return sign;
  int bias = (1 << (f.ebits - 1)) - 1, emin = 1 - bias, e;
  frexp(a, &e);
  e -= 1;  // a in [2^e, 2^(e+1))
  if (e > bias) return sign | inf;
  if (e < emin) {
    // Subnormal: a multiple of 2^(emin - mbits). A carry to 2^mbits yields the smallest
    // normal, whose bit pattern is exactly that integer.
    return sign | (uint32_t)round_half_even(ldexp(a, f.mbits - emin));
  }
  // m in [2^mbits, 2^(mbits+1)]; a carry out of the mantissa bumps the exponent field.
  uint32_t m = (uint32_t)round_half_even(ldexp(a, f.mbits - e));
  uint32_t bits = ((uint32_t)(e + bias) << f.mbits) + (m - (1u << f.mbits));
  return sign | (bits >= inf ? inf : bits);
}

float dt_int8_scale(float maxabs) { return maxabs / 127.0f; }

float dt_int8_inv(float maxabs) { return maxabs > 0.0f ? 127.0f / maxabs : 0.0f; }

int dt_int8_quant(float x, float inv) {
  float q = rintf(x * inv);  // the default rounding mode: to nearest, ties to even
  return q >= 127.0f ? 127 : q <= -127.0f ? -127 : q == q ? (int)q : 0;
}

float dt_round_bf16(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    bits |= 0x00400000u;  // NaN: quiet, its top mantissa bits kept
  } else {
    bits += 0x7fffu + (bits >> 16 & 1u);  // the carry rounds up; ties go to the even one
  }
  bits &= 0xffff0000u;
  memcpy(&x, &bits, sizeof x);
  return x;
}

// --- one element -----------------------------------------------------------------------
// Buffers come from files at arbitrary offsets, so every access goes through memcpy.

double dt_load(DType t, const void *p, size_t i) {
  const unsigned char *b = (const unsigned char *)p + i * dt_size(t);
  switch (t) {
  case DT_F32: { float x; memcpy(&x, b, sizeof x); return x; }
  case DT_F64: { double x; memcpy(&x, b, sizeof x); return x; }
  case DT_I32: { int32_t x; memcpy(&x, b, sizeof x); return x; }
  case DT_I64: { int64_t x; memcpy(&x, b, sizeof x); return (double)x; }  // exact to 2^53
  case DT_BF16: { uint16_t x; memcpy(&x, b, sizeof x); return sf_decode(SF_BF16, x); }
  case DT_F16: { uint16_t x; memcpy(&x, b, sizeof x); return sf_decode(SF_F16, x); }
  case DT_U8: return b[0];
  case DT_BOOL: return b[0] != 0;
  case DT_COUNT: break;
  }
  assert(0 && "invalid DType");
  return 0;
}

// Floats round to nearest even. Integers truncate toward zero like a C cast; the value must
// be in range (an invariant: dt_convert checks before storing). Bool stores v != 0.
void dt_store(DType t, void *p, size_t i, double v) {
  unsigned char *b = (unsigned char *)p + i * dt_size(t);
  switch (t) {
  case DT_F32: {
    float x;
    if (fabs(v) <= FLT_MAX || !isfinite(v)) {
      x = (float)v;
    } else {  // out of float's range: a C cast would be undefined, so round by hand
      uint32_t bits = sf_encode(SF_F32, v);
      memcpy(&x, &bits, sizeof x);
    }
    memcpy(b, &x, sizeof x);
    return;
  }
  case DT_F64: memcpy(b, &v, sizeof v); return;
  case DT_I32: {
    assert(v > INT32_MIN - 1.0 && v < INT32_MAX + 1.0);
    int32_t x = (int32_t)v;
    memcpy(b, &x, sizeof x);
    return;
  }
  case DT_I64: {
    assert(v >= -0x1p63 && v < 0x1p63);
    int64_t x = (int64_t)v;
    memcpy(b, &x, sizeof x);
    return;
  }
  case DT_BF16: { uint16_t x = (uint16_t)sf_encode(SF_BF16, v); memcpy(b, &x, sizeof x); return; }
  case DT_F16: { uint16_t x = (uint16_t)sf_encode(SF_F16, v); memcpy(b, &x, sizeof x); return; }
  case DT_U8: assert(v > -1.0 && v < 256.0); b[0] = (unsigned char)v; return;
  case DT_BOOL: b[0] = v != 0; return;
  case DT_COUNT: break;
  }
  assert(0 && "invalid DType");
}

// --- integers without a detour through double (i64 has more bits than a double) --------

static int64_t load_int(DType t, const void *p, size_t i) {
  const unsigned char *b = (const unsigned char *)p + i * dt_size(t);
  switch (t) {
  case DT_I32: { int32_t x; memcpy(&x, b, sizeof x); return x; }
  case DT_I64: { int64_t x; memcpy(&x, b, sizeof x); return x; }
  case DT_U8: return b[0];
  case DT_BOOL: return b[0] != 0;
  default: assert(0 && "not an integer DType"); return 0;
  }
}

static void store_int(DType t, void *p, size_t i, int64_t x) {
  unsigned char *b = (unsigned char *)p + i * dt_size(t);
  switch (t) {
  case DT_I32: { int32_t y = (int32_t)x; memcpy(b, &y, sizeof y); return; }
  case DT_I64: memcpy(b, &x, sizeof x); return;
  case DT_U8: case DT_BOOL: b[0] = (unsigned char)x; return;
  default: assert(0 && "not an integer DType");
  }
}

static void int_range(DType t, int64_t *lo, int64_t *hi) {
  *lo = *hi = 0;
  switch (t) {
  case DT_I32: *lo = INT32_MIN; *hi = INT32_MAX; return;
  case DT_I64: *lo = INT64_MIN; *hi = INT64_MAX; return;
  case DT_U8: *lo = 0; *hi = 255; return;
  case DT_BOOL: *lo = 0; *hi = 1; return;
  default: assert(0 && "not an integer DType");
  }
}

// True when x is exactly a value of float type t: its significant bits fit the mantissa
// (and for f16, it is within the finite range; f32/bf16/f64 cover every int64).
static bool int_fits_float(int64_t x, DType t) {
  uint64_t u = x < 0 ? 0 - (uint64_t)x : (uint64_t)x;
  if (t == DT_F16 && u > 65504) return false;
  while (u && !(u & 1)) u >>= 1;
  int precision = t == DT_F64 ? 53 : t == DT_F32 ? 24 : t == DT_F16 ? 11 : 8;
  return u < (uint64_t)1 << precision;
}

// --- dt_convert ------------------------------------------------------------------------

// The shortest decimal that reads back as v in type t ("3.5", not "3.5000000000000000");
// whole numbers in full ("70000", not "7e+04").
static void format_float(char *buf, size_t cap, DType t, double v) {
  if (isnan(v)) { snprintf(buf, cap, "nan"); return; }
  if (isinf(v)) { snprintf(buf, cap, v < 0 ? "-inf" : "inf"); return; }
  if (v == trunc(v) && fabs(v) < 1e16) { snprintf(buf, cap, "%.0f", v); return; }  // "70000"
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, v);
    unsigned char tmp[8];
    dt_store(t, tmp, 0, strtod(buf, NULL));
    if (dt_load(t, tmp, 0) == v) return;
  }
}

static bool refuse(Diag *d, const char *what, DType st, DType dt, size_t i, const char *value,
                   const char *problem) {
  return diag_error(d, "%s%s%svalue %s at element %zu %s; cannot convert %s to %s",
                    what ? "tensor \"" : "", what ? what : "", what ? "\": " : "", value, i,
                    problem, dt_name(st), dt_name(dt));
}

// Rules (see dtype.h): same type copies; int -> int needs the value in range; int -> float
// needs it exactly representable; float -> int needs it finite, whole and in range; float ->
// float rounds to nearest even (any width, not only from f64), but a finite value must not
// become infinite. NaN and inf carry over between float types. On refusal dst is partly
// written.
bool dt_convert(DType st, const void *src, DType dt, void *dst, size_t n, const char *what,
                Diag *d) {
  dt_check(st);
  dt_check(dt);
  assert(n == 0 || (src && dst));
  if (st == dt) {
    if (n) memcpy(dst, src, n * dt_size(st));
    return true;
  }
  char value[64], problem[96];
  for (size_t i = 0; i < n; i++) {
    if (!dt_is_float(st)) {
      int64_t x = load_int(st, src, i);
      snprintf(value, sizeof value, "%" PRId64, x);
      if (dt_is_float(dt)) {
        if (!int_fits_float(x, dt)) {
          snprintf(problem, sizeof problem, "cannot be represented exactly in %s", dt_name(dt));
          return refuse(d, what, st, dt, i, value, problem);
        }
        dt_store(dt, dst, i, (double)x);  // exact: x has at most 53 significant bits
      } else {
        int64_t lo, hi;
        int_range(dt, &lo, &hi);
        if (x < lo || x > hi) {
          snprintf(problem, sizeof problem, "is out of range for %s", dt_name(dt));
          return refuse(d, what, st, dt, i, value, problem);
        }
        store_int(dt, dst, i, x);
      }
      continue;
    }
    double v = dt_load(st, src, i);
    if (dt_is_float(dt)) {
      dt_store(dt, dst, i, v);
      if (isfinite(v) && !isfinite(dt_load(dt, dst, i))) {
        format_float(value, sizeof value, st, v);
        snprintf(problem, sizeof problem, "is too large for %s", dt_name(dt));
        return refuse(d, what, st, dt, i, value, problem);
      }
      continue;
    }
    int64_t lo, hi;
    int_range(dt, &lo, &hi);
    if (!isfinite(v) || v != trunc(v)) {
      snprintf(problem, sizeof problem, "%s",
               isfinite(v) ? "is not a whole number" : "is not finite");
    } else if (v < (double)lo || v >= (double)hi + 1.0) {
      // (double)hi + 1 is exact for every integer type (2^63 for i64), and v is whole.
      snprintf(problem, sizeof problem, "is out of range for %s", dt_name(dt));
    } else {
      store_int(dt, dst, i, (int64_t)v);
      continue;
    }
    format_float(value, sizeof value, st, v);
    return refuse(d, what, st, dt, i, value, problem);
  }
  return true;
}
