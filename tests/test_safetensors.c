// Tests for runtime/dtype.c and runtime/safetensors.c: bf16/f16 bit patterns and rounding,
// which conversions dt_convert accepts and refuses, write/read round trips, and a catalogue
// of corrupt files that st_read must reject with a message naming the file and the problem.
#include <check.h>
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/dtype.h"
#include "runtime/safetensors.h"
#include "runtime/text.h"
#include "tests/check_run.h"

// --- fixtures: one fresh temporary directory per test ----------------------------------

static char g_dir[4096];

static void make_dir(void) {
  const char *base = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/kiln_st_XXXXXX", base && *base ? base : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void remove_dir(void) {
  DIR *dir = opendir(g_dir);
  if (!dir) return;
  struct dirent *e;
  char p[8192];
  while ((e = readdir(dir))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
    if (remove(p) != 0) rmdir(p);
  }
  closedir(dir);
  rmdir(g_dir);
}

static int count_dir_entries(void) {
  DIR *dir = opendir(g_dir);
  ck_assert_ptr_nonnull(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dir)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(dir);
  return n;
}

// Returns g_dir/name in a static buffer.
static const char *in_dir(const char *name) {
  static char p[8192];
  snprintf(p, sizeof p, "%s/%s", g_dir, name);
  return p;
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
  FILE *fp = fopen(path, "wb");
  ck_assert_ptr_nonnull(fp);
  ck_assert_uint_eq(fwrite(bytes, 1, n, fp), n);
  ck_assert_int_eq(fclose(fp), 0);
}

// Writes [u64 LE hlen][json][ndata bytes of 0x00]. hlen is normally strlen(json).
static const char *write_raw(const char *name, uint64_t hlen, const char *json, size_t ndata) {
  const char *path = in_dir(name);
  size_t jlen = strlen(json), total = 8 + jlen + ndata;
  unsigned char *buf = calloc(total, 1);
  ck_assert_ptr_nonnull(buf);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(buf + 8, json, jlen);
  write_bytes(path, buf, total);
  free(buf);
  return path;
}

static const char *write_header(const char *name, const char *json, size_t ndata) {
  return write_raw(name, strlen(json), json, ndata);
}

// st_read (and st_open, which reads the header alike) must fail, leave the StFile zeroed,
// and say both the file name and `problem`.
#define EXPECT_CORRUPT(file_path, file_name, problem)                                     \
  do {                                                                                    \
    EXPECT_CORRUPT_WITH(st_read, file_path, file_name, problem);                          \
    EXPECT_CORRUPT_WITH(st_open, file_path, file_name, problem);                          \
  } while (0)
#define EXPECT_CORRUPT_WITH(reader, file_path, file_name, problem)                             \
  do {                                                                                    \
    Diag d_ = {0};                                                                        \
    StFile f_;                                                                            \
    memset(&f_, 0xab, sizeof f_);                                                         \
    ck_assert_msg(!reader((file_path), &f_, &d_), #reader " accepted %s", (file_name));   \
    ck_assert(d_.set);                                                                    \
    ck_assert_msg(strstr(d_.msg, (file_name)), "message lacks the file name: %s", d_.msg); \
    ck_assert_msg(strstr(d_.msg, (problem)), "message lacks \"%s\": %s", (problem),       \
                  d_.msg);                                                                \
    ck_assert(f_.n == 0 && !f_.tensors && !f_.buffer && !f_.path && !f_.fp);             \
    st_free(&f_);                                                                         \
  } while (0)

// --- dtype names ----------------------------------------------------------------------

START_TEST(test_dtype_names_and_sizes) {
  static const char *names[] = {"f32", "f64", "i32", "i64", "bf16", "f16", "u8", "bool"};
  static const char *st_names[] = {"F32", "F64", "I32", "I64", "BF16", "F16", "U8", "BOOL"};
  static const size_t sizes[] = {4, 8, 4, 8, 2, 2, 1, 1};
  for (int t = 0; t < DT_COUNT; t++) {
    ck_assert_str_eq(dt_name((DType)t), names[t]);
    ck_assert_str_eq(dt_st_name((DType)t), st_names[t]);
    ck_assert_uint_eq(dt_size((DType)t), sizes[t]);
    DType p;
    ck_assert(dt_parse(names[t], &p) && p == (DType)t);
    ck_assert(dt_parse(st_names[t], &p) && p == (DType)t);
  }
  DType p;
  ck_assert(!dt_parse("F8_E4M3", &p));
  ck_assert(!dt_parse("", &p));
  ck_assert(!dt_parse("Float32", &p));
  ck_assert(dt_is_float(DT_BF16) && dt_is_float(DT_F64) && !dt_is_float(DT_I64) &&
            !dt_is_float(DT_BOOL));
}
END_TEST

// --- bf16 / f16 -----------------------------------------------------------------------

static uint16_t bits_of(DType t, double v) {
  uint16_t h;
  dt_store(t, &h, 0, v);
  return h;
}

static double value_of(DType t, uint16_t h) { return dt_load(t, &h, 0); }

START_TEST(test_bf16_known_bit_patterns) {
  ck_assert_uint_eq(bits_of(DT_BF16, 1.0), 0x3F80);
  ck_assert_uint_eq(bits_of(DT_BF16, -2.5), 0xC020);
  ck_assert_uint_eq(bits_of(DT_BF16, 0.0), 0x0000);
  ck_assert_uint_eq(bits_of(DT_BF16, -0.0), 0x8000);
  ck_assert_uint_eq(bits_of(DT_BF16, INFINITY), 0x7F80);
  ck_assert_uint_eq(bits_of(DT_BF16, -INFINITY), 0xFF80);
  ck_assert(isnan(value_of(DT_BF16, bits_of(DT_BF16, NAN))));
  ck_assert_double_eq(value_of(DT_BF16, 0x3F80), 1.0);
  ck_assert_double_eq(value_of(DT_BF16, 0xC020), -2.5);
  ck_assert_double_eq(value_of(DT_BF16, 0x7F7F), 0x1.FEp127);  // largest finite
  ck_assert_double_eq(value_of(DT_BF16, 0x0001), 0x1p-133);    // smallest subnormal
  ck_assert(isinf(value_of(DT_BF16, 0xFF80)) && value_of(DT_BF16, 0xFF80) < 0);
}
END_TEST

START_TEST(test_bf16_rounds_to_nearest_even) {
  // 1 + 2^-8 is halfway between 1 (0x3F80, even) and 1 + 2^-7 (0x3F81): to even.
  ck_assert_uint_eq(bits_of(DT_BF16, 1.0 + 0x1p-8), 0x3F80);
  // 1 + 3*2^-8 is halfway between 0x3F81 (odd) and 0x3F82: to even, i.e. up.
  ck_assert_uint_eq(bits_of(DT_BF16, 1.0 + 3 * 0x1p-8), 0x3F82);
  ck_assert_uint_eq(bits_of(DT_BF16, 1.0 + 0x1p-8 + 0x1p-20), 0x3F81);  // above the tie
  // Directly from f64, not via f32: 1 + 2^-8 + 2^-30 would round to the tie in f32, then
  // to 0x3F80; the correct result is 0x3F81.
  ck_assert_uint_eq(bits_of(DT_BF16, 1.0 + 0x1p-8 + 0x1p-30), 0x3F81);
  ck_assert_uint_eq(bits_of(DT_BF16, -(1.0 + 3 * 0x1p-8)), 0xBF82);
  ck_assert_uint_eq(bits_of(DT_BF16, 1e39), 0x7F80);  // overflow: inf
  ck_assert_uint_eq(bits_of(DT_BF16, 0x1p-134), 0x0000);  // half the smallest subnormal: even
  ck_assert_uint_eq(bits_of(DT_BF16, 0x1.8p-133), 0x0002);  // 1.5 subnormal ulps: to 2
}
END_TEST

START_TEST(test_f16_known_bit_patterns) {
  ck_assert_uint_eq(bits_of(DT_F16, 1.0), 0x3C00);
  ck_assert_uint_eq(bits_of(DT_F16, -2.5), 0xC100);
  ck_assert_uint_eq(bits_of(DT_F16, 65504.0), 0x7BFF);  // largest finite
  ck_assert_uint_eq(bits_of(DT_F16, 0x1p-14), 0x0400);  // smallest normal
  ck_assert_uint_eq(bits_of(DT_F16, 0x1p-24), 0x0001);  // smallest subnormal
  ck_assert_uint_eq(bits_of(DT_F16, 1023 * 0x1p-24), 0x03FF);  // largest subnormal
  ck_assert_uint_eq(bits_of(DT_F16, -0.0), 0x8000);
  ck_assert_uint_eq(bits_of(DT_F16, INFINITY), 0x7C00);
  ck_assert_uint_eq(bits_of(DT_F16, -INFINITY), 0xFC00);
  uint16_t nan = bits_of(DT_F16, NAN);
  ck_assert((nan & 0x7C00) == 0x7C00 && (nan & 0x03FF) != 0);

  ck_assert_double_eq(value_of(DT_F16, 0x3C00), 1.0);
  ck_assert_double_eq(value_of(DT_F16, 0xC100), -2.5);
  ck_assert_double_eq(value_of(DT_F16, 0x7BFF), 65504.0);
  ck_assert_double_eq(value_of(DT_F16, 0x0001), 0x1p-24);
  ck_assert_double_eq(value_of(DT_F16, 0x03FF), 1023 * 0x1p-24);
  ck_assert_double_eq(value_of(DT_F16, 0x0400), 0x1p-14);
  ck_assert(isinf(value_of(DT_F16, 0x7C00)) && value_of(DT_F16, 0x7C00) > 0);
  ck_assert(isinf(value_of(DT_F16, 0xFC00)) && value_of(DT_F16, 0xFC00) < 0);
  ck_assert(isnan(value_of(DT_F16, 0x7E00)));
  ck_assert(signbit(value_of(DT_F16, 0x8000)) && value_of(DT_F16, 0x8000) == 0);

  // Every f16 pattern survives load then store.
  for (uint32_t h = 0; h <= 0xFFFF; h++) {
    double v = value_of(DT_F16, (uint16_t)h);
    if (isnan(v)) continue;
    ck_assert_uint_eq(bits_of(DT_F16, v), h);
  }
}
END_TEST

START_TEST(test_f16_rounds_to_nearest_even) {
  ck_assert_uint_eq(bits_of(DT_F16, 1.0 + 0x1p-11), 0x3C00);      // tie, to even (down)
  ck_assert_uint_eq(bits_of(DT_F16, 1.0 + 3 * 0x1p-11), 0x3C02);  // tie, to even (up)
  ck_assert_uint_eq(bits_of(DT_F16, 1.0 + 0x1p-11 + 0x1p-30), 0x3C01);
  ck_assert_uint_eq(bits_of(DT_F16, 65519.0), 0x7BFF);  // below the tie with 65536
  ck_assert_uint_eq(bits_of(DT_F16, 65520.0), 0x7C00);  // tie, to even: inf
  ck_assert_uint_eq(bits_of(DT_F16, 1e6), 0x7C00);
  ck_assert_uint_eq(bits_of(DT_F16, 0x1p-25), 0x0000);      // tie between 0 and 1 ulp
  ck_assert_uint_eq(bits_of(DT_F16, 0x1.8p-24), 0x0002);    // tie between 1 and 2 ulps
  ck_assert_uint_eq(bits_of(DT_F16, 0x1.2p-24), 0x0001);
  ck_assert_uint_eq(bits_of(DT_F16, 1023.5 * 0x1p-24), 0x0400);  // carries into normal
  ck_assert_uint_eq(bits_of(DT_F16, 1e-10), 0x0000);
  ck_assert_uint_eq(bits_of(DT_F16, -1e-10), 0x8000);
}
END_TEST

// Every pair of neighbouring positive finite values (subnormals included): the midpoint
// goes to the even pattern, anything off the midpoint to the nearer one.
static void check_all_midpoints(DType t, uint16_t largest_finite) {
  for (uint32_t h = 0; h < largest_finite; h++) {
    double lo = value_of(t, (uint16_t)h), hi = value_of(t, (uint16_t)(h + 1));
    double mid = lo + (hi - lo) / 2;  // exact in double
    ck_assert_uint_eq(bits_of(t, lo), h);
    ck_assert_uint_eq(bits_of(t, mid), h % 2 ? h + 1 : h);
    ck_assert_uint_eq(bits_of(t, nextafter(mid, 0)), h);
    ck_assert_uint_eq(bits_of(t, nextafter(mid, INFINITY)), h + 1);
    ck_assert_uint_eq(bits_of(t, -mid), 0x8000 | (h % 2 ? h + 1 : h));
  }
}

START_TEST(test_f16_and_bf16_round_every_midpoint_to_even) {
  check_all_midpoints(DT_F16, 0x7BFF);
  check_all_midpoints(DT_BF16, 0x7F7F);
}
END_TEST

START_TEST(test_dt_load_reads_unaligned_elements) {
  unsigned char buf[1 + 3 * 8];
  double v[3] = {1.5, -2.25, 1e300};
  memcpy(buf + 1, v, sizeof v);
  ck_assert_double_eq(dt_load(DT_F64, buf + 1, 2), 1e300);
  dt_store(DT_F64, buf + 1, 1, 4.0);
  ck_assert_double_eq(dt_load(DT_F64, buf + 1, 1), 4.0);
  int64_t big = INT64_C(-9007199254740992);
  memcpy(buf + 1, &big, sizeof big);
  ck_assert_double_eq(dt_load(DT_I64, buf + 1, 0), -0x1p53);
}
END_TEST

// --- dt_convert -----------------------------------------------------------------------

#define EXPECT_REFUSED(d, ...)                                                    \
  do {                                                                            \
    const char *needles_[] = {__VA_ARGS__};                                       \
    ck_assert((d).set);                                                           \
    for (size_t k_ = 0; k_ < sizeof needles_ / sizeof needles_[0]; k_++)          \
      ck_assert_msg(strstr((d).msg, needles_[k_]), "message lacks \"%s\": %s",    \
                    needles_[k_], (d).msg);                                       \
  } while (0)

START_TEST(test_convert_refuses_fraction_to_int) {
  float src[8] = {0, 1, 2, 3, 4, 5, 6, 3.5f};
  int64_t dst[8];
  Diag d = {0};
  ck_assert(!dt_convert(DT_F32, src, DT_I64, dst, 8, "input_ids", &d));
  ck_assert_str_eq(d.msg, "tensor \"input_ids\": value 3.5 at element 7 is not a whole number; "
                          "cannot convert f32 to i64");
}
END_TEST

START_TEST(test_convert_refuses_inexact_int_to_float) {
  int64_t src[2] = {16777216, 16777217};  // 2^24 fits f32, 2^24 + 1 does not
  float dst[2];
  Diag d = {0};
  ck_assert(!dt_convert(DT_I64, src, DT_F32, dst, 2, "pos", &d));
  ck_assert_str_eq(d.msg, "tensor \"pos\": value 16777217 at element 1 cannot be represented "
                          "exactly in f32; cannot convert i64 to f32");

  int64_t big[1] = {(INT64_C(1) << 53) + 1};
  double dd[1];
  Diag d2 = {0};
  ck_assert(!dt_convert(DT_I64, big, DT_F64, dd, 1, "x", &d2));
  EXPECT_REFUSED(d2, "9007199254740993", "cannot be represented exactly in f64");

  int32_t i[2] = {2048, 2049};  // f16 has 11 significant bits
  uint16_t h[2];
  Diag d3 = {0};
  ck_assert(!dt_convert(DT_I32, i, DT_F16, h, 2, "x", &d3));
  EXPECT_REFUSED(d3, "2049", "element 1", "f16");

  int32_t over[1] = {65536};  // a power of two, but past f16's range
  Diag d4 = {0};
  ck_assert(!dt_convert(DT_I32, over, DT_F16, h, 1, "x", &d4));
  EXPECT_REFUSED(d4, "65536", "f16");

  int32_t b[2] = {256, 257};  // bf16 has 8 significant bits
  Diag d5 = {0};
  ck_assert(!dt_convert(DT_I32, b, DT_BF16, h, 2, "x", &d5));
  EXPECT_REFUSED(d5, "257", "bf16");
}
END_TEST

START_TEST(test_convert_refuses_out_of_range_int) {
  int64_t src[3] = {1, INT32_MAX, INT64_C(3000000000)};
  int32_t dst[3];
  Diag d = {0};
  ck_assert(!dt_convert(DT_I64, src, DT_I32, dst, 3, "ids", &d));
  EXPECT_REFUSED(d, "tensor \"ids\"", "3000000000", "element 2", "out of range for i32",
                 "i64 to i32");

  int64_t neg[1] = {-1};
  unsigned char u[1];
  Diag d2 = {0};
  ck_assert(!dt_convert(DT_I64, neg, DT_U8, u, 1, "x", &d2));
  EXPECT_REFUSED(d2, "-1", "out of range for u8");

  int32_t two[1] = {2};
  Diag d3 = {0};
  ck_assert(!dt_convert(DT_I32, two, DT_BOOL, u, 1, "mask", &d3));
  EXPECT_REFUSED(d3, "value 2", "out of range for bool");

  double f[2] = {-2147483648.0, 2147483648.0};
  int32_t i[2];
  Diag d4 = {0};
  ck_assert(!dt_convert(DT_F64, f, DT_I32, i, 2, "x", &d4));
  EXPECT_REFUSED(d4, "2147483648", "element 1", "out of range for i32");

  double f63[1] = {0x1p63};
  int64_t l[1];
  Diag d5 = {0};
  ck_assert(!dt_convert(DT_F64, f63, DT_I64, l, 1, "x", &d5));
  EXPECT_REFUSED(d5, "out of range for i64");
}
END_TEST

START_TEST(test_convert_refuses_non_finite_and_overflow) {
  float nan[1] = {NAN};
  int32_t i[1];
  Diag d = {0};
  ck_assert(!dt_convert(DT_F32, nan, DT_I32, i, 1, "x", &d));
  EXPECT_REFUSED(d, "value nan", "not finite");

  double big[2] = {1.0, 70000.0};
  uint16_t h[2];
  Diag d2 = {0};
  ck_assert(!dt_convert(DT_F64, big, DT_F16, h, 2, "w", &d2));
  EXPECT_REFUSED(d2, "tensor \"w\"", "value 70000 at element 1", "too large for f16",
                 "f64 to f16");

  double huge[1] = {1e39};
  float f[1];
  Diag d3 = {0};
  ck_assert(!dt_convert(DT_F64, huge, DT_F32, f, 1, "w", &d3));
  EXPECT_REFUSED(d3, "1e+39", "too large for f32");

  // Just above FLT_MAX but below the rounding midpoint: rounds down to FLT_MAX. The
  // midpoint itself rounds to even, which is the next power of two: infinity.
  double edge[2] = {(double)FLT_MAX + 0x1p102, (double)FLT_MAX + 0x1p103};
  ck_assert(dt_convert(DT_F64, edge, DT_F32, f, 1, "w", NULL) && f[0] == FLT_MAX);
  Diag d3b = {0};
  ck_assert(!dt_convert(DT_F64, edge + 1, DT_F32, f, 1, "w", &d3b));
  EXPECT_REFUSED(d3b, "too large for f32");

  Diag d4 = {0};
  ck_assert(!dt_convert(DT_F64, huge, DT_BF16, h, 1, NULL, &d4));
  ck_assert_str_eq(d4.msg, "value 1e+39 at element 0 is too large for bf16; "
                           "cannot convert f64 to bf16");
}
END_TEST

START_TEST(test_convert_accepts_meaning_preserving) {
  // Integers to floats, exactly.
  int64_t ints[5] = {0, 1, -5, 16777216, INT64_MIN};
  float f[5];
  ck_assert(dt_convert(DT_I64, ints, DT_F32, f, 5, "x", NULL));
  ck_assert(f[2] == -5.0f && f[3] == 16777216.0f && f[4] == -0x1p63f);
  int64_t p53[1] = {INT64_C(1) << 53};
  double dd[1];
  ck_assert(dt_convert(DT_I64, p53, DT_F64, dd, 1, "x", NULL) && dd[0] == 0x1p53);

  // Whole floats in range to integers.
  float whole[4] = {1, -2, 3e9f, -0.0f};
  int64_t l[4];
  ck_assert(dt_convert(DT_F32, whole, DT_I64, l, 4, "x", NULL));
  ck_assert(l[0] == 1 && l[1] == -2 && l[2] == 3000000000 && l[3] == 0);
  double edges[2] = {-2147483648.0, 2147483647.0};
  int32_t i[2];
  ck_assert(dt_convert(DT_F64, edges, DT_I32, i, 2, "x", NULL));
  ck_assert(i[0] == INT32_MIN && i[1] == INT32_MAX);
  double m63[1] = {-0x1p63};
  ck_assert(dt_convert(DT_F64, m63, DT_I64, l, 1, "x", NULL) && l[0] == INT64_MIN);

  // Integers in range to narrower integers; bool and u8 widen.
  int64_t small[3] = {INT32_MIN, 0, INT32_MAX};
  ck_assert(dt_convert(DT_I64, small, DT_I32, i, 2, "x", NULL) && i[0] == INT32_MIN);
  unsigned char bools[3] = {0, 1, 1}, u8[3] = {0, 200, 255};
  float bf[3];
  ck_assert(dt_convert(DT_BOOL, bools, DT_F32, bf, 3, "m", NULL) && bf[1] == 1.0f);
  ck_assert(dt_convert(DT_U8, u8, DT_I64, l, 3, "x", NULL) && l[2] == 255);
  ck_assert(dt_convert(DT_U8, (unsigned char[]){0, 1}, DT_BOOL, bools, 2, "x", NULL));

  // Floats round: f64 to f32/f16/bf16, and f32 to bf16; inf and nan carry over.
  double fine[4] = {0.1, 1e-10, INFINITY, NAN};
  float f32[4];
  ck_assert(dt_convert(DT_F64, fine, DT_F32, f32, 4, "x", NULL));
  ck_assert(f32[0] == 0.1f && f32[1] == 1e-10f && isinf(f32[2]) && isnan(f32[3]));
  uint16_t h[4];
  ck_assert(dt_convert(DT_F64, fine, DT_F16, h, 4, "x", NULL));
  ck_assert(h[1] == 0 && h[2] == 0x7C00);  // 1e-10 underflows to 0: rounding, allowed
  double back[4];
  ck_assert(dt_convert(DT_F16, h, DT_F64, back, 4, "x", NULL) && isnan(back[3]));
  float one_tie[1] = {1.0f + 0x1p-8f};
  ck_assert(dt_convert(DT_F32, one_tie, DT_BF16, h, 1, "x", NULL) && h[0] == 0x3F80);
  double tricky[1] = {1.0 + 0x1p-8 + 0x1p-30};
  ck_assert(dt_convert(DT_F64, tricky, DT_BF16, h, 1, "x", NULL) && h[0] == 0x3F81);

  // Same type is a copy, bit for bit (NaN payloads included).
  uint32_t raw[2] = {0x7FC01234u, 0x3F800000u}, copy[2];
  ck_assert(dt_convert(DT_F32, raw, DT_F32, copy, 2, "x", NULL));
  ck_assert(!memcmp(raw, copy, sizeof raw));
  ck_assert(dt_convert(DT_F32, NULL, DT_I64, NULL, 0, "x", NULL));
}
END_TEST

// --- round trips ----------------------------------------------------------------------

START_TEST(test_round_trip_every_dtype_scalar_and_empty) {
  float f32[3] = {1.5f, -2.0f, INFINITY};
  double f64[2] = {0.1, -1e300};
  int32_t i32[4] = {INT32_MIN, -1, 0, INT32_MAX};
  int64_t i64[2] = {INT64_MIN, INT64_MAX};
  uint16_t bf16[2] = {0x3F80, 0xC020}, f16[3] = {0x3C00, 0x7BFF, 0x0001};
  unsigned char u8[5] = {0, 1, 127, 128, 255}, bools[3] = {1, 0, 1};
  float scalar = 42.0f;
  StTensor ts[] = {
    {.name = "f32", .dtype = DT_F32, .rank = 1, .shape = {3}, .nbytes = 12, .data = f32},
    {.name = "f64", .dtype = DT_F64, .rank = 2, .shape = {1, 2}, .nbytes = 16, .data = f64},
    {.name = "i32", .dtype = DT_I32, .rank = 2, .shape = {2, 2}, .nbytes = 16, .data = i32},
    {.name = "i64", .dtype = DT_I64, .rank = 1, .shape = {2}, .nbytes = 16, .data = i64},
    {.name = "bf16", .dtype = DT_BF16, .rank = 1, .shape = {2}, .nbytes = 4, .data = bf16},
    {.name = "f16", .dtype = DT_F16, .rank = 3, .shape = {1, 3, 1}, .nbytes = 6, .data = f16},
    {.name = "u8", .dtype = DT_U8, .rank = 1, .shape = {5}, .nbytes = 5, .data = u8},
    {.name = "bool", .dtype = DT_BOOL, .rank = 1, .shape = {3}, .nbytes = 3, .data = bools},
    {.name = "scalar", .dtype = DT_F32, .rank = 0, .nbytes = 4, .data = &scalar},
    {.name = "empty", .dtype = DT_I64, .rank = 2, .shape = {0, 3}, .nbytes = 0, .data = NULL},
    {.name = "we\"ird\\name\n\t/\xc3\xa9", .dtype = DT_U8, .rank = 1, .shape = {1},
     .nbytes = 1, .data = u8},
  };
  int n = (int)(sizeof ts / sizeof ts[0]);
  const char *path = in_dir("all.safetensors");
  Diag d = {0};
  ck_assert_msg(st_write(path, ts, n, &d), "%s", d.msg);
  ck_assert_int_eq(count_dir_entries(), 1);  // no temporary file left behind

  StFile f;
  ck_assert_msg(st_read(path, &f, &d), "%s", d.msg);
  ck_assert_int_eq(f.n, n);
  ck_assert_str_eq(f.path, path);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = hlen << 8 | ((unsigned char *)f.buffer)[i];
  ck_assert_uint_eq((8 + hlen) % 8, 0);  // data starts 8-byte aligned
  const char *prev_end = (const char *)f.buffer + 8 + hlen;
  for (int i = 0; i < n; i++) {
    const StTensor *t = &f.tensors[i];
    ck_assert_str_eq(t->name, ts[i].name);  // header order kept
    ck_assert_int_eq(t->dtype, ts[i].dtype);
    ck_assert_int_eq(t->rank, ts[i].rank);
    for (int k = 0; k < t->rank; k++) ck_assert_int_eq(t->shape[k], ts[i].shape[k]);
    ck_assert_uint_eq(t->nbytes, ts[i].nbytes);
    ck_assert_ptr_eq(t->data, prev_end);  // contiguous, in order
    prev_end += t->nbytes;
    if (t->nbytes) ck_assert(!memcmp(t->data, ts[i].data, t->nbytes));
    ck_assert_ptr_eq(st_find(&f, ts[i].name), t);
  }
  ck_assert_ptr_eq(prev_end, (const char *)f.buffer + f.size);
  ck_assert_int_eq(st_numel(st_find(&f, "scalar")), 1);
  ck_assert_int_eq(st_numel(st_find(&f, "empty")), 0);
  ck_assert_double_eq(dt_load(DT_F32, st_find(&f, "scalar")->data, 0), 42.0);
  ck_assert_double_eq(dt_load(DT_F16, st_find(&f, "f16")->data, 1), 65504.0);
  ck_assert_ptr_null(st_find(&f, "missing"));
  st_free(&f);
  ck_assert(f.n == 0 && !f.tensors && !f.buffer && !f.path && f.size == 0);
  st_free(&f);  // twice is safe: the struct is zeroed

  // Overwriting an existing file replaces it.
  ck_assert_msg(st_write(path, ts + 8, 1, &d), "%s", d.msg);
  ck_assert_msg(st_read(path, &f, &d), "%s", d.msg);
  ck_assert_int_eq(f.n, 1);
  ck_assert_str_eq(f.tensors[0].name, "scalar");
  st_free(&f);
  ck_assert_int_eq(count_dir_entries(), 1);
}
END_TEST

START_TEST(test_round_trip_no_tensors) {
  const char *path = in_dir("none.safetensors");
  Diag d = {0};
  ck_assert_msg(st_write(path, NULL, 0, &d), "%s", d.msg);
  StFile f;
  ck_assert_msg(st_read(path, &f, &d), "%s", d.msg);
  ck_assert_int_eq(f.n, 0);
  ck_assert_uint_eq(f.size, 16);  // length + "{}" padded to 8 bytes
  st_free(&f);
}
END_TEST

START_TEST(test_reads_unpadded_header_metadata_and_unaligned_data) {
  // As another writer might produce it: no padding, so the f64 data is misaligned.
  const char *json = "{\"__metadata__\":{\"format\":\"pt\"},"
                     "\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                     "\"b\":{\"shape\":[],\"data_offsets\":[16,18],\"dtype\":\"BF16\"}}  \n";
  size_t jlen = strlen(json);
  unsigned char buf[512];
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)jlen >> (8 * i));
  memcpy(buf + 8, json, jlen);
  double w[2] = {3.25, -7.5};
  uint16_t b = 0xC020;
  memcpy(buf + 8 + jlen, w, sizeof w);
  memcpy(buf + 8 + jlen + 16, &b, 2);
  const char *path = in_dir("hf.safetensors");
  write_bytes(path, buf, 8 + jlen + 18);

  StFile f;
  Diag d = {0};
  ck_assert_msg(st_read(path, &f, &d), "%s", d.msg);
  ck_assert_int_eq(f.n, 2);
  const StTensor *tw = st_find(&f, "w"), *tb = st_find(&f, "b");
  ck_assert(tw && tb && tb->rank == 0 && tb->dtype == DT_BF16);
  ck_assert_double_eq(dt_load(DT_F64, tw->data, 1), -7.5);
  ck_assert_double_eq(dt_load(DT_BF16, tb->data, 0), -2.5);
  st_free(&f);
}
END_TEST

START_TEST(test_read_memory_borrows_the_image_and_names_it_in_errors) {
  // An image in memory (weights embedded in an executable) reads like the file: the tensors
  // point into the caller's bytes, nothing is copied or freed, and errors name the image.
  const char *json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  size_t jlen = strlen(json);
  unsigned char img[256];
  for (int i = 0; i < 8; i++) img[i] = (unsigned char)((uint64_t)jlen >> (8 * i));
  memcpy(img + 8, json, jlen);
  float w[2] = {1.5f, -2.0f};
  memcpy(img + 8 + jlen, w, sizeof w);
  StFile f;
  Diag d = {0};
  ck_assert_msg(st_read_memory("embedded weights", img, 8 + jlen + 8, &f, &d), "%s", d.msg);
  const StTensor *t = st_find(&f, "w");
  ck_assert(t && t->data == img + 8 + jlen && !f.buffer);
  ck_assert_double_eq(dt_load(DT_F32, t->data, 1), -2.0);
  ck_assert_str_eq(f.path, "embedded weights");
  st_free(&f);
  float first;
  memcpy(&first, img + 8 + jlen, sizeof first);  // unaligned: the header has no padding
  ck_assert_float_eq(first, 1.5f);               // still the caller's bytes
  ck_assert(!st_read_memory("embedded weights", img, 8 + jlen + 4, &f, &d));
  ck_assert_msg(strstr(d.msg, "embedded weights") && strstr(d.msg, "\"w\""), "%s", d.msg);
}
END_TEST

START_TEST(test_write_rejects_bad_tensors_and_cleans_up) {
  float x[4] = {0};
  StTensor dup[2] = {
    {.name = "x", .dtype = DT_F32, .rank = 1, .shape = {4}, .nbytes = 16, .data = x},
    {.name = "x", .dtype = DT_F32, .rank = 1, .shape = {4}, .nbytes = 16, .data = x},
  };
  const char *path = in_dir("out.safetensors");
  Diag d = {0};
  ck_assert(!st_write(path, dup, 2, &d));
  EXPECT_REFUSED(d, "out.safetensors", "duplicate tensor name \"x\"");

  StTensor wrong = {.name = "x", .dtype = DT_F32, .rank = 2, .shape = {2, 2}, .nbytes = 12,
                    .data = x};
  Diag d2 = {0};
  ck_assert(!st_write(path, &wrong, 1, &d2));
  EXPECT_REFUSED(d2, "out.safetensors", "tensor \"x\"", "nbytes is 12 but F32 [2,2] needs 16");

  StTensor meta = {.name = "__metadata__", .dtype = DT_U8, .rank = 0, .nbytes = 1, .data = x};
  Diag d3 = {0};
  ck_assert(!st_write(path, &meta, 1, &d3));
  EXPECT_REFUSED(d3, "__metadata__");
  ck_assert_int_eq(count_dir_entries(), 0);

  // The target is a directory, a symlink, a FIFO: refused before a temporary is made, the
  // target left as it was (a FIFO without a reader is not opened, so nothing blocks).
  ck_assert_int_eq(mkdir(path, 0755), 0);
  Diag d4 = {0};
  ck_assert(!st_write(path, dup, 1, &d4));
  EXPECT_REFUSED(d4, "out.safetensors: is a directory", "regular file");
  ck_assert_int_eq(count_dir_entries(), 1);
  char link[8192], fifo[8192];  // (in_dir's buffer is reused)
  snprintf(link, sizeof link, "%s", in_dir("link.safetensors"));
  snprintf(fifo, sizeof fifo, "%s", in_dir("fifo.safetensors"));
  ck_assert_int_eq(symlink("out.safetensors", link), 0);
  Diag d6 = {0};
  ck_assert(!st_write(link, dup, 1, &d6));
  EXPECT_REFUSED(d6, "link.safetensors: is a symbolic link");
  struct stat sb;
  ck_assert(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode));
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  Diag d7 = {0};
  ck_assert(!st_write(fifo, dup, 1, &d7));
  EXPECT_REFUSED(d7, "fifo.safetensors: is a FIFO");
  ck_assert(lstat(fifo, &sb) == 0 && S_ISFIFO(sb.st_mode));
  ck_assert_int_eq(count_dir_entries(), 3);
  ck_assert_int_eq(remove(link), 0);
  ck_assert_int_eq(remove(fifo), 0);

  Diag d5 = {0};
  ck_assert(!st_write(in_dir("no/such/dir/w.safetensors"), dup, 1, &d5));
  EXPECT_REFUSED(d5, "w.safetensors", "create");
}
END_TEST

// --- corrupt files --------------------------------------------------------------------

#define T_OK "\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]"

START_TEST(test_rejects_missing_file) {
  Diag d = {0};
  StFile f;
  ck_assert(!st_read(in_dir("absent.safetensors"), &f, &d));
  EXPECT_REFUSED(d, "absent.safetensors", "cannot open");
  ck_assert(f.n == 0 && !f.buffer);
}
END_TEST

START_TEST(test_rejects_truncated_file) {
  write_bytes(in_dir("short.safetensors"), "\x10\x00\x00", 3);
  EXPECT_CORRUPT(in_dir("short.safetensors"), "short.safetensors", "too short");
  write_bytes(in_dir("empty.safetensors"), "", 0);
  EXPECT_CORRUPT(in_dir("empty.safetensors"), "empty.safetensors", "is 0 bytes, too short");
}
END_TEST

START_TEST(test_rejects_zero_header_length) {
  EXPECT_CORRUPT(write_raw("zero.safetensors", 0, "{}", 0), "zero.safetensors",
                 "header length is 0");
}
END_TEST

START_TEST(test_rejects_header_length_past_end) {
  EXPECT_CORRUPT(write_raw("past.safetensors", 40, "{}", 0), "past.safetensors",
                 "header length 40 runs past the end of the file (10 bytes)");
}
END_TEST

START_TEST(test_rejects_huge_header_length) {
  EXPECT_CORRUPT(write_raw("huge.safetensors", UINT64_C(1) << 40, "{}", 0), "huge.safetensors",
                 "exceeds the 100 MB limit");
  EXPECT_CORRUPT(write_raw("max.safetensors", UINT64_MAX, "{}", 0), "max.safetensors",
                 "exceeds the 100 MB limit");
}
END_TEST

START_TEST(test_rejects_invalid_json) {
  EXPECT_CORRUPT(write_header("json.safetensors", "{\"x\":{" T_OK "}", 16), "json.safetensors",
                 "not valid JSON");
  EXPECT_CORRUPT(write_header("trail.safetensors", "{}x", 0), "trail.safetensors",
                 "stray bytes after the JSON object");
  write_bytes(in_dir("nul.safetensors"), "\x03\0\0\0\0\0\0\0{}\0", 11);
  EXPECT_CORRUPT(in_dir("nul.safetensors"), "nul.safetensors", "stray bytes");
}
END_TEST

START_TEST(test_rejects_header_not_object) {
  EXPECT_CORRUPT(write_header("arr.safetensors", "[1,2]", 0), "arr.safetensors",
                 "header is an array, must be a JSON object");
  EXPECT_CORRUPT(write_header("entry.safetensors", "{\"x\":[1]}", 0), "entry.safetensors",
                 "tensor \"x\": entry is an array, must be an object");
}
END_TEST

START_TEST(test_rejects_missing_fields) {
  EXPECT_CORRUPT(write_header("nodt.safetensors",
                              "{\"x\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
                 "nodt.safetensors", "tensor \"x\": missing \"dtype\"");
  EXPECT_CORRUPT(write_header("nosh.safetensors",
                              "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8),
                 "nosh.safetensors", "tensor \"x\": missing \"shape\"");
  EXPECT_CORRUPT(write_header("nooff.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2]}}",
                              8),
                 "nooff.safetensors", "tensor \"x\": missing \"data_offsets\"");
}
END_TEST

START_TEST(test_rejects_unknown_dtype) {
  EXPECT_CORRUPT(write_header("q4.safetensors",
                              "{\"x\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                              8),
                 "q4.safetensors", "tensor \"x\": unknown dtype \"Q4\"");
  EXPECT_CORRUPT(write_header("lower.safetensors",
                              "{\"x\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                              8),
                 "lower.safetensors", "unknown dtype \"f32\"");
  EXPECT_CORRUPT(write_header("num.safetensors",
                              "{\"x\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8),
                 "num.safetensors", "dtype is a number, must be a string");
}
END_TEST

START_TEST(test_rejects_bad_shape) {
  EXPECT_CORRUPT(write_header("neg.safetensors",
                              "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,-1],"
                              "\"data_offsets\":[0,8]}}", 8),
                 "neg.safetensors", "tensor \"x\": shape[1] is -1, must be a non-negative");
  EXPECT_CORRUPT(write_header("frac.safetensors",
                              "{\"x\":{\"dtype\":\"F32\",\"shape\":[2.5],"
                              "\"data_offsets\":[0,8]}}", 8),
                 "frac.safetensors", "shape[0] is 2.5");
  EXPECT_CORRUPT(write_header("str.safetensors",
                              "{\"x\":{\"dtype\":\"F32\",\"shape\":\"2\","
                              "\"data_offsets\":[0,8]}}", 8),
                 "str.safetensors", "shape is a string, must be an array");
  EXPECT_CORRUPT(write_header("rank.safetensors",
                              "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                              "\"data_offsets\":[0,4]}}", 4),
                 "rank.safetensors", "rank 9; kiln supports at most 8");
  EXPECT_CORRUPT(write_header("ovf.safetensors",
                              "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                              "\"data_offsets\":[0,4]}}", 4),
                 "ovf.safetensors", "too many elements");
}
END_TEST

START_TEST(test_rejects_unknown_and_duplicate_keys) {
  EXPECT_CORRUPT(write_header("key.safetensors", "{\"x\":{" T_OK ",\"offset\":3}}", 16),
                 "key.safetensors", "tensor \"x\": unknown key \"offset\"");
  EXPECT_CORRUPT(write_header("dkey.safetensors", "{\"x\":{" T_OK ",\"dtype\":\"F32\"}}", 16),
                 "dkey.safetensors", "tensor \"x\": duplicate key \"dtype\"");
}
END_TEST

START_TEST(test_rejects_offsets_past_end) {
  EXPECT_CORRUPT(write_header("end.safetensors", "{\"x\":{" T_OK "}}", 12), "end.safetensors",
                 "tensor \"x\": data_offsets [0, 16] run past the end of the data (12 bytes)");
}
END_TEST

START_TEST(test_rejects_bad_offsets) {
  EXPECT_CORRUPT(write_header("one.safetensors",
                              "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}",
                              8),
                 "one.safetensors", "data_offsets must be an array of two integers");
  EXPECT_CORRUPT(write_header("negoff.safetensors",
                              "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],"
                              "\"data_offsets\":[-1,0]}}", 8),
                 "negoff.safetensors", "data_offsets[0] is -1");
}
END_TEST

START_TEST(test_rejects_begin_after_end) {
  EXPECT_CORRUPT(write_header("order.safetensors",
                              "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],"
                              "\"data_offsets\":[8,4]}}", 8),
                 "order.safetensors", "tensor \"x\": data_offsets [8, 4]: begin 8 > end 4");
}
END_TEST

START_TEST(test_rejects_size_mismatch) {
  EXPECT_CORRUPT(write_header("w.safetensors",
                              "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                              "\"data_offsets\":[0,12]}}", 16),
                 "w.safetensors",
                 "w.safetensors: tensor \"x\": data_offsets [0, 12] hold 12 bytes but F32 [2,2] "
                 "needs 16");
}
END_TEST

START_TEST(test_rejects_overlapping_offsets) {
  EXPECT_CORRUPT(write_header("lap.safetensors",
                              "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                              "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                              24),
                 "lap.safetensors", "tensors \"a\" [0, 16] and \"b\" [8, 24] overlap");
  // Listed out of order, and overlapping a tensor that is not the previous one by start.
  EXPECT_CORRUPT(write_header("lap2.safetensors",
                              "{\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
                              "\"a\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[0,10]},"
                              "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[8,10]}}",
                              10),
                 "lap2.safetensors", "overlap");
  // Empty tensors overlap nothing.
  const char *ok = write_header("empty_ok.safetensors",
                                "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
                                "\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                                8);
  StFile f;
  Diag d = {0};
  ck_assert_msg(st_read(ok, &f, &d), "%s", d.msg);
  st_free(&f);
}
END_TEST

START_TEST(test_rejects_duplicate_name) {
  EXPECT_CORRUPT(write_header("dup.safetensors",
                              "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                              "\"y\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]},"
                              "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
                              3),
                 "dup.safetensors", "duplicate tensor name \"x\"");
}
END_TEST

START_TEST(test_rejects_bad_metadata) {
  EXPECT_CORRUPT(write_header("meta.safetensors", "{\"__metadata__\":[\"a\"]}", 0),
                 "meta.safetensors", "\"__metadata__\" must be an object of strings, not an array");
  EXPECT_CORRUPT(write_header("meta2.safetensors", "{\"__metadata__\":{\"step\":3}}", 0),
                 "meta2.safetensors", "value of \"step\" is a number, must be a string");
  EXPECT_CORRUPT(write_header("meta3.safetensors",
                              "{\"__metadata__\":{},\"__metadata__\":{}}", 0),
                 "meta3.safetensors", "duplicate \"__metadata__\"");
}
END_TEST

START_TEST(test_rejects_bool_data_other_than_0_or_1) {
  const char *header = "{\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}";
  char file[128];
  snprintf(file, sizeof file, "%s\x01\x02", header);  // the data: true, then 2
  const char *path = write_raw("bool.safetensors", strlen(header), file, 0);
  EXPECT_CORRUPT_WITH(st_read, path, "bool.safetensors", "tensor \"m\": BOOL value 2 at element 1 is not 0 or 1");
  StFile f;  // st_open reads the data when it is loaded, and checks it then
  Diag d = {0};
  ck_assert_msg(st_open(path, &f, &d), "%s", d.msg);
  unsigned char b[2];
  ck_assert(!st_load(&f, &f.tensors[0], b, &d));
  ck_assert_msg(strstr(d.msg, "bool.safetensors: tensor \"m\": BOOL value 2 at element 1 is not 0 or 1"), "%s", d.msg);
  st_free(&f);
}
END_TEST

// st_open reads the header; st_load reads each tensor's bytes as st_read holds them, and a
// file that shrinks while open is an error naming the tensor, not a crash (nothing is mapped).
START_TEST(test_open_loads_tensor_by_tensor_and_survives_truncation) {
  float a[5] = {1, 2, 3, 4, 5};
  int64_t b[3] = {-1, 7, INT64_MAX};
  StTensor ts[] = {{.name = "a", .dtype = DT_F32, .rank = 1, .shape = {5}, .nbytes = sizeof a, .data = a},
                   {.name = "b", .dtype = DT_I64, .rank = 1, .shape = {3}, .nbytes = sizeof b, .data = b}};
  const char *path = in_dir("open.safetensors");
  Diag d = {0};
  ck_assert_msg(st_write(path, ts, 2, &d), "%s", d.msg);
  StFile r, o;
  ck_assert_msg(st_read(path, &r, &d) && st_open(path, &o, &d), "%s", d.msg);
  ck_assert_int_eq(o.n, 2);
  ck_assert_uint_eq(o.size, r.size);
  for (int i = 0; i < 2; i++) {
    ck_assert_ptr_null(o.tensors[i].data);
    ck_assert_str_eq(o.tensors[i].name, r.tensors[i].name);
    ck_assert_uint_eq(o.tensors[i].nbytes, r.tensors[i].nbytes);
    unsigned char buf[64];
    ck_assert_msg(st_load(&o, &o.tensors[i], buf, &d), "%s", d.msg);
    ck_assert(!memcmp(buf, r.tensors[i].data, r.tensors[i].nbytes));
  }
  ck_assert_int_eq(truncate(path, (off_t)(o.size - 4)), 0);  // under the open file
  unsigned char buf[64];
  ck_assert(!st_load(&o, &o.tensors[1], buf, &d));
  ck_assert_msg(strstr(d.msg, "open.safetensors: tensor \"b\": the file shrank while it was open (20 of 24 bytes "
                              "read)"), "%s", d.msg);
  st_free(&r);
  st_free(&o);
}
END_TEST

// --- names: UTF-8, and no NUL --------------------------------------------------------

START_TEST(test_utf8_validator_accepts_utf8_and_refuses_the_rest) {
  static const char *valid[] = {"", "visual_embeds", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                "\xf4\x8f\xbf\xbf" /* U+10FFFF */};
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
    ck_assert_msg(rt_utf8_valid(valid[i], strlen(valid[i]), NULL), "refused valid[%zu]", i);
  static const struct { const char *s; size_t bad; } invalid[] = {
    {"ab\xff", 2},              // never in UTF-8
    {"a\x80", 1},               // a continuation byte alone
    {"\xc0\xaf", 0},           // overlong '/'
    {"\xe0\x80\xaf", 0},      // overlong, 3 bytes
    {"\xed\xa0\x80", 0},      // U+D800, a surrogate
    {"\xf4\x90\x80\x80", 0},  // U+110000
    {"x\xe2\x82", 1},          // cut short
  };
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    size_t bad = 99;
    ck_assert_msg(!rt_utf8_valid(invalid[i].s, strlen(invalid[i].s), &bad), "accepted invalid[%zu]", i);
    ck_assert_uint_eq(bad, invalid[i].bad);
  }
}
END_TEST

START_TEST(test_json_find_nul_finds_escapes_in_strings_and_zero_bytes) {
  const char *a = "{\"x\\u0000y\": 1}";
  ck_assert_int_eq(rt_json_find_nul(a, strlen(a)), 3);
  const char *b = "{\"x\\\\u0000y\": 1}";  // an escaped backslash, then the text u0000
  ck_assert_int_eq(rt_json_find_nul(b, strlen(b)), -1);
  const char *c = "{\"x\\\"\\u0000\": 1}";  // after an escaped quote, still in the string
  ck_assert_int_eq(rt_json_find_nul(c, strlen(c)), 5);
  const char *e = "{\"x\\u0001\": 1}";
  ck_assert_int_eq(rt_json_find_nul(e, strlen(e)), -1);
  ck_assert_int_eq(rt_json_find_nul("{\"x\0\": 1}", 8), 3);
  ck_assert_int_eq(rt_json_find_nul("{}\0", 3), -1);  // not in a string: the parser's to refuse
}
END_TEST

START_TEST(test_write_refuses_names_that_are_not_utf8) {
  float x[1] = {0};
  StTensor t = {.name = "w\xff", .dtype = DT_F32, .rank = 1, .shape = {1}, .nbytes = 4, .data = x};
  Diag d = {0};
  ck_assert(!st_write(in_dir("out.safetensors"), &t, 1, &d));
  EXPECT_REFUSED(d, "out.safetensors", "tensor name \"w...\" is not valid UTF-8", "0xff at offset 1");
  ck_assert_int_eq(count_dir_entries(), 0);
}
END_TEST

START_TEST(test_rejects_nul_and_invalid_utf8_in_names) {
  // cJSON reads "x\u0000y" as "x": a file of "x\u0000y" must not pass for one of "x".
  const char *p = write_header("nul.safetensors", "{\"x\\u0000y\":{" T_OK "}}", 16);
  EXPECT_CORRUPT(p, "nul.safetensors", "header byte 3: a NUL character");
  p = write_header("utf8.safetensors", "{\"x\xffy\":{" T_OK "}}", 16);
  EXPECT_CORRUPT(p, "utf8.safetensors", "tensor name \"x...\" is not valid UTF-8");
}
END_TEST

// --- the suite ------------------------------------------------------------------------

static Suite *safetensors_suite(void) {
  Suite *s = suite_create("safetensors");
  TCase *dt = tcase_create("dtype");
  tcase_add_test(dt, test_dtype_names_and_sizes);
  tcase_add_test(dt, test_bf16_known_bit_patterns);
  tcase_add_test(dt, test_bf16_rounds_to_nearest_even);
  tcase_add_test(dt, test_f16_known_bit_patterns);
  tcase_add_test(dt, test_f16_rounds_to_nearest_even);
  tcase_add_test(dt, test_f16_and_bf16_round_every_midpoint_to_even);
  tcase_add_test(dt, test_dt_load_reads_unaligned_elements);
  tcase_add_test(dt, test_convert_refuses_fraction_to_int);
  tcase_add_test(dt, test_convert_refuses_inexact_int_to_float);
  tcase_add_test(dt, test_convert_refuses_out_of_range_int);
  tcase_add_test(dt, test_convert_refuses_non_finite_and_overflow);
  tcase_add_test(dt, test_convert_accepts_meaning_preserving);
  suite_add_tcase(s, dt);

  TCase *io = tcase_create("files");
  tcase_add_checked_fixture(io, make_dir, remove_dir);
  tcase_add_test(io, test_round_trip_every_dtype_scalar_and_empty);
  tcase_add_test(io, test_round_trip_no_tensors);
  tcase_add_test(io, test_reads_unpadded_header_metadata_and_unaligned_data);
  tcase_add_test(io, test_write_rejects_bad_tensors_and_cleans_up);
  tcase_add_test(io, test_read_memory_borrows_the_image_and_names_it_in_errors);
  tcase_add_test(io, test_rejects_missing_file);
  tcase_add_test(io, test_rejects_truncated_file);
  tcase_add_test(io, test_rejects_zero_header_length);
  tcase_add_test(io, test_rejects_header_length_past_end);
  tcase_add_test(io, test_rejects_huge_header_length);
  tcase_add_test(io, test_rejects_invalid_json);
  tcase_add_test(io, test_rejects_header_not_object);
  tcase_add_test(io, test_rejects_missing_fields);
  tcase_add_test(io, test_rejects_unknown_dtype);
  tcase_add_test(io, test_rejects_bad_shape);
  tcase_add_test(io, test_rejects_unknown_and_duplicate_keys);
  tcase_add_test(io, test_rejects_offsets_past_end);
  tcase_add_test(io, test_rejects_bad_offsets);
  tcase_add_test(io, test_rejects_begin_after_end);
  tcase_add_test(io, test_rejects_size_mismatch);
  tcase_add_test(io, test_rejects_overlapping_offsets);
  tcase_add_test(io, test_rejects_duplicate_name);
  tcase_add_test(io, test_rejects_bad_metadata);
  tcase_add_test(io, test_rejects_bool_data_other_than_0_or_1);
  tcase_add_test(io, test_open_loads_tensor_by_tensor_and_survives_truncation);
  tcase_add_test(io, test_write_refuses_names_that_are_not_utf8);
  tcase_add_test(io, test_rejects_nul_and_invalid_utf8_in_names);
  tcase_add_test(dt, test_utf8_validator_accepts_utf8_and_refuses_the_rest);
  tcase_add_test(dt, test_json_find_nul_finds_escapes_in_strings_and_zero_bytes);
  suite_add_tcase(s, io);
  return s;
}

int main(void) { return check_run(safetensors_suite()); }
