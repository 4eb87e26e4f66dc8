// Reference kernels for sources and elementwise ops: full, iota, cast, the broadcasting
// binary ops, the unary maths, affine, dropout and its gradient, plus the dropout stream
// (ir_rng_*).
// Plain loops in double; the oracle the JIT is held to, so clarity and exactness first.
#include <assert.h>
#include <math.h>
#include <string.h>

#include "ir/ops_impl.h"

// Integer tensors hold whole values; only the IR's dtypes (f32, i32, i64) reach here.
static bool is_int_dtype(DType t) {
  assert(t == DT_F32 || t == DT_F64 || t == DT_I32 || t == DT_I64);
  return t == DT_I32 || t == DT_I64;
}

// Row-major multi-index of flat position j in shape s.
static void unravel(const IrShape *s, int64_t j, int64_t *idx) {
  for (int d = s->rank - 1; d >= 0; d--) {
    idx[d] = j % s->dim[d];
    j /= s->dim[d];
  }
}

// ---------------------------------------------------------------------------------------
// Sources.

// Inputs and parameters are filled by the caller; there is nothing to compute.
bool ir_ref_source(const IrNode *n, double *out, const double *const *in,
                   const IrEvalMode *mode, Diag *d) {
  return true;
}

bool ir_ref_full(const IrNode *n, double *out, const double *const *in,
                 const IrEvalMode *mode, Diag *d) {
  double v = ir_attr_float(n, "value");
  if (is_int_dtype(n->dtype)) v = trunc(v);
  int64_t total = ir_numel(&n->shape);
  for (int64_t j = 0; j < total; j++) out[j] = v;
  return true;
}

bool ir_ref_iota(const IrNode *n, double *out, const double *const *in,
                 const IrEvalMode *mode, Diag *d) {
  int rank = n->shape.rank;
  int64_t axis = ir_attr_int(n, "axis");
  if (axis < 0) axis += rank;
  assert(axis >= 0 && axis < rank);
  // View the shape as [outer, len, inner] around axis: out[o, i, r] = i.
  int64_t outer = 1, inner = 1, len = n->shape.dim[axis];
  for (int k = 0; k < axis; k++) outer *= n->shape.dim[k];
  for (int k = (int)axis + 1; k < rank; k++) inner *= n->shape.dim[k];
  for (int64_t o = 0; o < outer; o++)          // (outer,
    for (int64_t i = 0; i < len; i++)          //  len,
      for (int64_t r = 0; r < inner; r++)      //  inner)
        out[(o * len + i) * inner + r] = (double)i;
  return true;
}

// ---------------------------------------------------------------------------------------
// Cast: float to int truncates toward zero, to f32 rounds to the nearest float. The only
// kernel that rounds to f32; every other kernel computes in double.
bool ir_ref_cast(const IrNode *n, double *out, const double *const *in,
                 const IrEvalMode *mode, Diag *d) {
  int64_t total = ir_numel(&n->shape);
  for (int64_t j = 0; j < total; j++) {
    double x = in[0][j];
    switch (n->dtype) {
      case DT_F32: out[j] = (double)(float)x; break;
      case DT_F64: out[j] = x; break;
      case DT_I32:
      case DT_I64: out[j] = trunc(x); break;
      default: assert(0 && "cast to a dtype the IR does not have"); out[j] = x;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Binary ops with NumPy broadcasting: in[0] and in[1] are aligned to n->shape by their
// trailing dims; a missing or size-1 dim repeats (stride 0).

typedef double (*BinaryFn)(double a, double b);

static bool map_binary(const IrNode *n, double *out, const double *const *in, BinaryFn f) {
  assert(n->n_in == 2);
  const IrShape *s = &n->shape;
  int64_t sa[IR_MAX_RANK], sb[IR_MAX_RANK], idx[IR_MAX_RANK];
  ir_broadcast_strides(&n->in[0]->shape, s, sa);
  ir_broadcast_strides(&n->in[1]->shape, s, sb);
  int64_t total = ir_numel(s);
  for (int64_t j = 0; j < total; j++) {  // out: n->shape
    unravel(s, j, idx);
    int64_t ja = 0, jb = 0;
    for (int k = 0; k < s->rank; k++) {
      ja += idx[k] * sa[k];
      jb += idx[k] * sb[k];
    }
    out[j] = f(in[0][ja], in[1][jb]);
  }
  return true;
}

static double add_fn(double a, double b) { return a + b; }
static double sub_fn(double a, double b) { return a - b; }
static double mul_fn(double a, double b) { return a * b; }
static double div_fn(double a, double b) { return a / b; }
// NaN propagates, as in NumPy and PyTorch.
static double maximum_fn(double a, double b) { return isnan(a) ? a : (a >= b ? a : b); }
static double minimum_fn(double a, double b) { return isnan(a) ? a : (a <= b ? a : b); }
// dy * gelu'(x), gelu'(x) = Phi(x) + x phi(x).
static double gelu_grad_fn(double dy, double x) {
  return dy * (0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI));
}

#define BINARY_KERNEL(name)                                                          \
  bool ir_ref_##name(const IrNode *n, double *out, const double *const *in,         \
                     const IrEvalMode *mode, Diag *d) {                              \
    return map_binary(n, out, in, name##_fn);                                        \
  }
BINARY_KERNEL(add)
BINARY_KERNEL(sub)
BINARY_KERNEL(mul)
BINARY_KERNEL(div)
BINARY_KERNEL(maximum)
BINARY_KERNEL(minimum)
BINARY_KERNEL(gelu_grad)
#undef BINARY_KERNEL

// ---------------------------------------------------------------------------------------
// Unary ops: out[j] = f(in[0][j]), same shape.
typedef double (*UnaryFn)(double x);

static bool map_unary(const IrNode *n, double *out, const double *const *in, UnaryFn f) {
  assert(n->n_in == 1);
  int64_t total = ir_numel(&n->shape);
  for (int64_t j = 0; j < total; j++) out[j] = f(in[0][j]);
  return true;
}

static double neg_fn(double x) { return -x; }
static double exp_fn(double x) { return exp(x); }
static double log_fn(double x) { return log(x); }
static double sqrt_fn(double x) { return sqrt(x); }
static double rsqrt_fn(double x) { return 1.0 / sqrt(x); }
static double tanh_fn(double x) { return tanh(x); }
static double erf_fn(double x) { return erf(x); }
static double gelu_fn(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double relu_fn(double x) { return x < 0 ? 0.0 : x; }  // NaN stays NaN
static double sigmoid_fn(double x) { return 1.0 / (1.0 + exp(-x)); }
static double step_fn(double x) { return x > 0 ? 1.0 : 0.0; }  // NaN gives 0
static double silu_fn(double x) { return x * sigmoid_fn(x); }

#define UNARY_KERNEL(name)                                                           \
  bool ir_ref_##name(const IrNode *n, double *out, const double *const *in,         \
                     const IrEvalMode *mode, Diag *d) {                              \
    return map_unary(n, out, in, name##_fn);                                         \
  }
UNARY_KERNEL(neg)
UNARY_KERNEL(exp)
UNARY_KERNEL(log)
UNARY_KERNEL(sqrt)
UNARY_KERNEL(rsqrt)
UNARY_KERNEL(tanh)
UNARY_KERNEL(erf)
UNARY_KERNEL(gelu)
UNARY_KERNEL(relu)
UNARY_KERNEL(sigmoid)
UNARY_KERNEL(step)
UNARY_KERNEL(silu)
#undef UNARY_KERNEL

bool ir_ref_affine(const IrNode *n, double *out, const double *const *in,
                   const IrEvalMode *mode, Diag *d) {
  double scale = ir_attr_float(n, "scale"), shift = ir_attr_float(n, "shift");
  int64_t total = ir_numel(&n->shape);
  for (int64_t j = 0; j < total; j++) out[j] = in[0][j] * scale + shift;
  return true;
}

// ---------------------------------------------------------------------------------------
// Dropout: element j (flat index) is kept iff uniform(key(seed, name), j) >= p; kept
// values are scaled by 1 / (1 - p), dropped ones are 0. The identity unless training.
// `fwd` is the dropout node whose mask applies (n itself, or the node dropout_grad names).
static void apply_dropout(const IrNode *fwd, double *out, const double *x, const IrEvalMode *mode) {
  double p = ir_attr_float(fwd, "p");
  assert(p >= 0 && p <= 1);
  int64_t total = ir_numel(&fwd->shape);
  if (!mode->training || p == 0) {
    memcpy(out, x, (size_t)total * sizeof *out);
    return;
  }
  uint64_t key = ir_rng_key(mode->seed, fwd->name);
  double scale = 1.0 / (1.0 - p);  // inf when p == 1, but then nothing is kept
  for (int64_t j = 0; j < total; j++)
    out[j] = ir_rng_uniform(key, (uint64_t)j) >= p ? x[j] * scale : 0.0;
}

bool ir_ref_dropout(const IrNode *n, double *out, const double *const *in,
                    const IrEvalMode *mode, Diag *d) {
  apply_dropout(n, out, in[0], mode);
  return true;
}

// dropout_grad(dy, y): dy through the mask of dropout node y (drawn again from y's name).
bool ir_ref_dropout_grad(const IrNode *n, double *out, const double *const *in,
                         const IrEvalMode *mode, Diag *d) {
  assert(n->in[1]->op == IR_OP_DROPOUT);
  apply_dropout(n->in[1], out, in[0], mode);
  return true;
}

// ---------------------------------------------------------------------------------------
// The dropout stream. splitmix64's finaliser (Steele, Lea, Flood 2014) as the mixing
// function; output `counter` of a key is the splitmix64 sequence started at that key, so
// any element can be drawn directly, in any order, on any thread.
#define GOLDEN_GAMMA 0x9E3779B97F4A7C15ull

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// FNV-1a of the name, mixed with the seed. Split in two so the JIT can hash the name when
// it compiles and mix in the seed (a run-time value) in the kernel, as mix64 below.
uint64_t ir_rng_name_hash(const char *name) {
  assert(name);
  uint64_t h = 0xCBF29CE484222325ull;  // FNV offset basis
  for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
    h ^= *c;
    h *= 0x100000001B3ull;  // FNV prime
  }
  return h;
}

uint64_t ir_rng_key_of(uint64_t seed, uint64_t name_hash) {
  return mix64(name_hash ^ mix64(seed + GOLDEN_GAMMA));
}

uint64_t ir_rng_key(uint64_t seed, const char *name) {
  return ir_rng_key_of(seed, ir_rng_name_hash(name));
}

// The top 53 bits of the mixed value, as a double in [0, 1).
double ir_rng_uniform(uint64_t key, uint64_t counter) {
  uint64_t z = mix64(key + (counter + 1) * GOLDEN_GAMMA);
  return (double)(z >> 11) * 0x1.0p-53;
}
