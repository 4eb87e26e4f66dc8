// Reference kernels that move or combine whole tensors: matmul, reshape, permute, concat,
// slice, gather and the reductions (sum, mean, max). Plain index arithmetic in double,
// row-major and contiguous; the oracle the JIT is held to.
#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops_impl.h"

// Row-major multi-index of flat position j in shape s.
static void unravel(const IrShape *s, int64_t j, int64_t *idx) {
  for (int d = s->rank - 1; d >= 0; d--) {
    idx[d] = j % s->dim[d];
    j /= s->dim[d];
  }
}

// Row-major strides of shape s.
static void strides_of(const IrShape *s, int64_t *stride) {
  int64_t step = 1;
  for (int d = s->rank - 1; d >= 0; d--) {
    stride[d] = step;
    step *= s->dim[d];
  }
}


static int normalise_axis(int64_t axis, int rank) {
  if (axis < 0) axis += rank;
  assert(axis >= 0 && axis < rank);
  return (int)axis;
}

// The first `rank` dims of s.
static IrShape leading_dims(const IrShape *s, int rank) {
  assert(rank >= 0 && rank <= s->rank);
  IrShape t = {.rank = rank};
  for (int k = 0; k < rank; k++) t.dim[k] = s->dim[k];
  return t;
}

// ---------------------------------------------------------------------------------------
// Matmul with int8=true (the precision pass's; codegen/cg_gemm_int8.c does the same): the operands
// rounded to f32, A quantised per row and B per column (dt_int8_*), the int8 products
// summed exactly (int64; the JIT's int32 cannot overflow at K < 2^17), and the JIT's f32
// epilogue ((float)sum · scale_a) · scale_b.

// max |x| of n floats at stride s, NaN if one is NaN (as llvm.maximum in the JIT).
static float maxabs_f32(const double *x, int64_t n, int64_t s) {
  float m = 0.0f;
  for (int64_t k = 0; k < n; k++) {
    float v = fabsf((float)x[k * s]);
    if (v > m || v != v) m = m != m ? m : v;
  }
  return m;
}

static void quant_f32(const double *x, int64_t n, int64_t s, float *scale, int8_t *q) {
  float m = maxabs_f32(x, n, s), inv = dt_int8_inv(m);
  *scale = dt_int8_scale(m);
  for (int64_t k = 0; k < n; k++) q[k] = (int8_t)dt_int8_quant((float)x[k * s], inv);
}

static bool matmul_int8(const double *a, const double *b, double *c, int64_t M, int64_t N,
                        int64_t K, bool ta, bool tb) {
  int8_t *qa = malloc((size_t)(M * K) + 1), *qb = malloc((size_t)(N * K) + 1);
  float *sa = malloc((size_t)M * sizeof *sa + 1), *sb = malloc((size_t)N * sizeof *sb + 1);
  bool ok = qa && qb && sa && sb;
  for (int64_t i = 0; ok && i < M; i++)
    quant_f32(ta ? a + i : a + i * K, K, ta ? M : 1, &sa[i], qa + i * K);
  for (int64_t j = 0; ok && j < N; j++)
    quant_f32(tb ? b + j * K : b + j, K, tb ? 1 : N, &sb[j], qb + j * K);
  for (int64_t i = 0; ok && i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      int64_t sum = 0;
      for (int64_t k = 0; k < K; k++) sum += (int64_t)qa[i * K + k] * qb[j * K + k];
      c[i * N + j] = (double)((float)sum * sa[i] * sb[j]);
    }
  free(qa), free(qb), free(sa), free(sb);
  return ok;
}

// Matmul: a [..., M, K] (stored [..., K, M] if transpose_a) times b [..., K, N] (stored
// [..., N, K] if transpose_b); batch dims broadcast to the output's.
bool ir_ref_matmul(const IrNode *n, double *out, const double *const *in,
                   const IrEvalMode *mode, Diag *d) {
  const IrShape *sa = &n->in[0]->shape, *sb = &n->in[1]->shape, *so = &n->shape;
  assert(sa->rank >= 2 && sb->rank >= 2 && so->rank >= 2);
  bool ta = ir_attr_int(n, "transpose_a") != 0, tb = ir_attr_int(n, "transpose_b") != 0;
  bool bf16 = ir_attr_int(n, "bf16") != 0;  // operands rounded to f32, then to bf16
  bool int8 = ir_attr_int(n, "int8") != 0;
  int64_t M = so->dim[so->rank - 2], N = so->dim[so->rank - 1];
  int64_t K = ta ? sa->dim[sa->rank - 2] : sa->dim[sa->rank - 1];
  assert((ta ? sa->dim[sa->rank - 1] : sa->dim[sa->rank - 2]) == M);
  assert((tb ? sb->dim[sb->rank - 1] : sb->dim[sb->rank - 2]) == K);
  assert((tb ? sb->dim[sb->rank - 2] : sb->dim[sb->rank - 1]) == N);

  // Batch dims: out's, and each operand's matrix index for a given out batch index.
  IrShape batch_o = leading_dims(so, so->rank - 2);
  IrShape batch_a = leading_dims(sa, sa->rank - 2), batch_b = leading_dims(sb, sb->rank - 2);
  int64_t stride_a[IR_MAX_RANK], stride_b[IR_MAX_RANK], idx[IR_MAX_RANK];
  ir_broadcast_strides(&batch_a, &batch_o, stride_a);
  ir_broadcast_strides(&batch_b, &batch_o, stride_b);

  int64_t n_batch = ir_numel(&batch_o);
  for (int64_t bi = 0; bi < n_batch; bi++) {  // (batch...)
    unravel(&batch_o, bi, idx);
    int64_t mat_a = 0, mat_b = 0;
    for (int k = 0; k < batch_o.rank; k++) {
      mat_a += idx[k] * stride_a[k];
      mat_b += idx[k] * stride_b[k];
    }
    const double *a = in[0] + mat_a * M * K;  // (M, K) or (K, M)
    const double *b = in[1] + mat_b * K * N;  // (K, N) or (N, K)
    double *c = out + bi * M * N;             // (M, N)
    if (int8) {
      if (!matmul_int8(a, b, c, M, N, K, ta, tb)) return diag_error(d, "out of memory");
      continue;
    }
    for (int64_t i = 0; i < M; i++) {
      for (int64_t j = 0; j < N; j++) {
        double acc = 0;
        for (int64_t k = 0; k < K; k++) {
          double aik = ta ? a[k * M + i] : a[i * K + k];
          double bkj = tb ? b[j * K + k] : b[k * N + j];
          if (bf16) aik = dt_round_bf16((float)aik), bkj = dt_round_bf16((float)bkj);
          acc += aik * bkj;
        }
        c[i * N + j] = acc;
      }
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Layout ops.

bool ir_ref_reshape(const IrNode *n, double *out, const double *const *in,
                    const IrEvalMode *mode, Diag *d) {
  int64_t total = ir_numel(&n->shape);
  assert(total == ir_numel(&n->in[0]->shape));
  memcpy(out, in[0], (size_t)total * sizeof *out);
  return true;
}

// out.shape[i] = in.shape[perm[i]]; out[idx] = in[idx placed at perm].
bool ir_ref_permute(const IrNode *n, double *out, const double *const *in,
                    const IrEvalMode *mode, Diag *d) {
  const IrShape *si = &n->in[0]->shape, *so = &n->shape;
  const IrAttr *perm = ir_attr(n, "perm");
  assert(perm->n == so->rank && si->rank == so->rank);
  int64_t in_stride[IR_MAX_RANK], step[IR_MAX_RANK], idx[IR_MAX_RANK];
  strides_of(si, in_stride);
  for (int i = 0; i < so->rank; i++) {
    int p = normalise_axis(perm->ints[i], si->rank);
    assert(so->dim[i] == si->dim[p]);
    step[i] = in_stride[p];  // moving along out dim i moves along in dim perm[i]
  }
  int64_t total = ir_numel(so);
  for (int64_t j = 0; j < total; j++) {  // out: n->shape
    unravel(so, j, idx);
    int64_t src = 0;
    for (int i = 0; i < so->rank; i++) src += idx[i] * step[i];
    out[j] = in[0][src];
  }
  return true;
}

// All inputs joined along axis. Viewed as [outer, len_k, inner]: each outer row of the
// output is the rows of the inputs one after another.
bool ir_ref_concat(const IrNode *n, double *out, const double *const *in,
                   const IrEvalMode *mode, Diag *d) {
  const IrShape *so = &n->shape;
  int axis = normalise_axis(ir_attr_int(n, "axis"), so->rank);
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < axis; k++) outer *= so->dim[k];
  for (int k = axis + 1; k < so->rank; k++) inner *= so->dim[k];
  int64_t row = so->dim[axis] * inner;  // one outer row of the output
  int64_t at = 0;                       // where input t's part starts within a row
  for (int t = 0; t < n->n_in; t++) {
    int64_t part = n->in[t]->shape.dim[axis] * inner;  // (len_t, inner)
    for (int64_t o = 0; o < outer; o++)
      memcpy(out + o * row + at, in[t] + o * part, (size_t)part * sizeof *out);
    at += part;
  }
  assert(at == row);
  return true;
}

// Elements start <= i < end along axis (negative start/end count from the end).
bool ir_ref_slice(const IrNode *n, double *out, const double *const *in,
                  const IrEvalMode *mode, Diag *d) {
  const IrShape *si = &n->in[0]->shape, *so = &n->shape;
  int axis = normalise_axis(ir_attr_int(n, "axis"), si->rank);
  int64_t dim = si->dim[axis];
  int64_t start = ir_attr_int(n, "start"), end = ir_attr_int(n, "end");
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  int64_t len = so->dim[axis];
  assert(start >= 0 && end <= dim && end - start == len);
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < axis; k++) outer *= si->dim[k];
  for (int k = axis + 1; k < si->rank; k++) inner *= si->dim[k];
  for (int64_t o = 0; o < outer; o++)  // out: (outer, len, inner) from in: (outer, dim, inner)
    memcpy(out + o * len * inner, in[0] + (o * dim + start) * inner,
           (size_t)(len * inner) * sizeof *out);
  return true;
}

// ---------------------------------------------------------------------------------------
// Gather (TensorFlow semantics with batch_dims):
//   out.shape = data.shape[:axis] + indices.shape[batch_dims:] + data.shape[axis+1:]
//   out[o(:axis), q, r] = data[o(:axis), indices[o(:batch_dims), q], r]
// The first batch_dims dims of data and indices are shared. Embedding: gather(table, ids).
bool ir_ref_gather(const IrNode *n, double *out, const double *const *in,
                   const IrEvalMode *mode, Diag *d) {
  const IrShape *sd = &n->in[0]->shape, *si = &n->in[1]->shape, *so = &n->shape;
  int axis = normalise_axis(ir_attr_int(n, "axis"), sd->rank);
  int64_t bd64 = ir_attr_int(n, "batch_dims");
  int bd = (int)(bd64 < 0 ? bd64 + sd->rank : bd64);
  assert(bd >= 0 && bd <= axis && bd <= si->rank);
  int n_q = si->rank - bd;  // index dims that replace data's axis
  assert(so->rank == axis + n_q + (sd->rank - axis - 1));

  // Every index must name a row of data along axis.
  int64_t rows = sd->dim[axis], n_idx = ir_numel(si);
  for (int64_t e = 0; e < n_idx; e++) {
    double v = in[1][e];
    assert(v == trunc(v) && "integer tensors hold whole values");
    if (v < 0 || v >= (double)rows)
      return diag_error(d, "gather: index %.0f out of range [0, %lld) at element %lld", v,
                        (long long)rows, (long long)e);
  }

  int64_t d_stride[IR_MAX_RANK], i_stride[IR_MAX_RANK], o_idx[IR_MAX_RANK];
  strides_of(sd, d_stride);
  strides_of(si, i_stride);
  int64_t total = ir_numel(so);
  for (int64_t j = 0; j < total; j++) {  // out: n->shape
    unravel(so, j, o_idx);
    // Position in indices: the shared batch dims, then the q dims.
    int64_t ie = 0;
    for (int k = 0; k < bd; k++) ie += o_idx[k] * i_stride[k];
    for (int k = bd; k < si->rank; k++) ie += o_idx[axis + (k - bd)] * i_stride[k];
    int64_t row = (int64_t)in[1][ie];
    // Position in data: out's leading dims, the row, then out's trailing dims.
    int64_t de = row * d_stride[axis];
    for (int k = 0; k < axis; k++) de += o_idx[k] * d_stride[k];
    for (int k = axis + 1; k < sd->rank; k++)
      de += o_idx[axis + n_q + (k - axis - 1)] * d_stride[k];
    out[j] = in[0][de];
  }
  return true;
}

// scatter_add, gather's transpose: out (data's shape, zeros) += updates row by row,
//   out[o(:axis), indices[o(:batch_dims), q], r] += updates[o(:axis), q, r]
// in the order of updates' elements (repeated indices add up).
bool ir_ref_scatter_add(const IrNode *n, double *out, const double *const *in,
                        const IrEvalMode *mode, Diag *d) {
  const IrShape *su = &n->in[0]->shape, *si = &n->in[1]->shape, *so = &n->shape;
  int bd = (int)ir_attr_int(n, "batch_dims");
  int n_q = si->rank - bd;
  int axis = normalise_axis(ir_attr_int(n, "axis"), so->rank);
  int64_t rows = so->dim[axis], n_idx = ir_numel(si);
  for (int64_t e = 0; e < n_idx; e++) {
    double v = in[1][e];
    assert(v == trunc(v) && "integer tensors hold whole values");
    if (v < 0 || v >= (double)rows)
      return diag_error(d, "scatter_add: index %.0f out of range [0, %lld) at element %lld", v,
                        (long long)rows, (long long)e);
  }
  int64_t o_stride[IR_MAX_RANK], i_stride[IR_MAX_RANK], u_idx[IR_MAX_RANK];
  strides_of(so, o_stride);
  strides_of(si, i_stride);
  int64_t total_out = ir_numel(so), total = ir_numel(su);
  for (int64_t j = 0; j < total_out; j++) out[j] = 0;
  for (int64_t j = 0; j < total; j++) {  // updates: su
    unravel(su, j, u_idx);
    int64_t ie = 0;
    for (int k = 0; k < bd; k++) ie += u_idx[k] * i_stride[k];
    for (int k = bd; k < si->rank; k++) ie += u_idx[axis + (k - bd)] * i_stride[k];
    int64_t oe = (int64_t)in[1][ie] * o_stride[axis];
    for (int k = 0; k < axis; k++) oe += u_idx[k] * o_stride[k];
    for (int k = axis + 1; k < so->rank; k++) oe += u_idx[axis + n_q + (k - axis - 1)] * o_stride[k];
    out[oe] += in[0][j];
  }
  (void)mode;
  return true;
}

// ---------------------------------------------------------------------------------------
// Reductions over attr "axes" (empty: all dims). With or without keepdims the output holds
// the kept dims in order, so an input element's output position is its index in the kept
// dims, row-major.
typedef enum { REDUCE_SUM, REDUCE_MEAN, REDUCE_MAX } ReduceKind;

static bool reduce(const IrNode *n, double *out, const double *in, ReduceKind kind) {
  const IrShape *si = &n->in[0]->shape;
  const IrAttr *axes = ir_attr(n, "axes");
  bool reduced[IR_MAX_RANK] = {false};
  for (int k = 0; k < si->rank; k++) reduced[k] = axes->n == 0;
  for (int a = 0; a < axes->n; a++) {
    int ax = normalise_axis(axes->ints[a], si->rank);
    assert(!reduced[ax] && "axis listed twice");
    reduced[ax] = true;
  }
  // out_stride[k]: step in the output per step along input dim k (0 if reduced).
  int64_t out_stride[IR_MAX_RANK], step = 1, count = 1;
  for (int k = si->rank - 1; k >= 0; k--) {
    out_stride[k] = reduced[k] ? 0 : step;
    if (reduced[k]) count *= si->dim[k];
    else step *= si->dim[k];
  }
  int64_t n_out = ir_numel(&n->shape);
  assert(n_out == step);

  for (int64_t j = 0; j < n_out; j++) out[j] = kind == REDUCE_MAX ? -INFINITY : 0.0;
  int64_t idx[IR_MAX_RANK], n_in = ir_numel(si);
  for (int64_t e = 0; e < n_in; e++) {  // in: n->in[0]->shape
    unravel(si, e, idx);
    int64_t j = 0;
    for (int k = 0; k < si->rank; k++) j += idx[k] * out_stride[k];
    if (kind == REDUCE_MAX) {
      if (isnan(in[e]) || in[e] > out[j]) out[j] = in[e];  // NaN, once in, stays
    } else {
      out[j] += in[e];
    }
  }
  if (kind == REDUCE_MEAN)
    for (int64_t j = 0; j < n_out; j++) out[j] /= (double)count;
  return true;
}

bool ir_ref_reduce_sum(const IrNode *n, double *out, const double *const *in,
                       const IrEvalMode *mode, Diag *d) {
  return reduce(n, out, in[0], REDUCE_SUM);
}

bool ir_ref_reduce_mean(const IrNode *n, double *out, const double *const *in,
                        const IrEvalMode *mode, Diag *d) {
  return reduce(n, out, in[0], REDUCE_MEAN);
}

bool ir_ref_reduce_max(const IrNode *n, double *out, const double *const *in,
                       const IrEvalMode *mode, Diag *d) {
  return reduce(n, out, in[0], REDUCE_MAX);
}
