// The fused attention op and its backward: shape rules, reference kernels (plain loops in
// double, the oracle the JIT is held to) and the gradient rule. attention(q, k, v[, mask])
// is softmax(scale * Q_h K_h^T + mask) (dropout) V_h per head h, with q, k, v in the
// [batch, n, heads * head_dim] layout of the projections (the head split is a stride).
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops_impl.h"

#define SHAPE(s) ir_shape_str((s), (char[160]){0}, 160)

// ---------------------------------------------------------------------------------------
// Sizes and the dropout key shared by the kernels.

typedef struct AttnDims {
  int64_t B, H, Nq, Nk, D;           // batch, heads, queries, keys, head_dim
  int64_t mstride[4];                // mask element strides over [B, H, Nq, Nk] (0: broadcast)
  bool has_mask;
} AttnDims;

// The dropout stream's name hash: the rng_hash attribute (set by fuse_attention to the
// hash of the dropout node it replaced), or the hash of the node's own name when 0.
uint64_t ir_attention_rng_hash(const IrNode *n) {
  int64_t h = ir_attr_int(n, "rng_hash");
  return h ? (uint64_t)h : ir_rng_name_hash(n->name);
}

// mask: shape aligned to the trailing dims of [B, H, Nq, Nk]; size-1 dims broadcast.
static bool mask_strides(const IrShape *m, const int64_t *full, int64_t *stride, Diag *d) {
  if (m->rank > 4) return diag_error(d, "mask %s has rank > 4", SHAPE(m));
  int64_t step = 1;
  for (int k = 3; k >= 0; k--) {
    int mk = k - (4 - m->rank);
    stride[k] = 0;
    if (mk < 0) continue;
    if (m->dim[mk] != 1 && m->dim[mk] != full[k])
      return diag_error(d, "mask %s does not broadcast to [batch, heads, queries, keys] = "
                        "[%lld,%lld,%lld,%lld]", SHAPE(m), (long long)full[0],
                        (long long)full[1], (long long)full[2], (long long)full[3]);
    if (m->dim[mk] != 1) stride[k] = step;
    step *= m->dim[mk];
  }
  return true;
}

// q [B, Nq, H*D], k [B, Nk, H*D], v [B, Nk, H*D], mask (optional) at index mask_at.
static bool attn_dims(const IrNode *n, int mask_at, AttnDims *a, Diag *d) {
  const char *names[3] = {"q", "k", "v"};
  for (int i = 0; i < n->n_in; i++)
    if (n->in[i]->dtype != DT_F32)
      return diag_error(d, "input %d \"%s\" is %s; attention takes f32", i, n->in[i]->name,
                        dt_name(n->in[i]->dtype));
  for (int i = 0; i < 3; i++)
    if (n->in[i]->shape.rank != 3)
      return diag_error(d, "%s \"%s\" is %s but must be [batch, n, heads * head_dim]", names[i],
                        n->in[i]->name, SHAPE(&n->in[i]->shape));
  const IrShape *q = &n->in[0]->shape, *k = &n->in[1]->shape, *v = &n->in[2]->shape;
  if (k->dim[0] != q->dim[0] || v->dim[0] != q->dim[0] || k->dim[2] != q->dim[2] ||
      !ir_shape_eq(k, v))
    return diag_error(d, "q %s, k %s and v %s must be [batch, n_q, hidden], [batch, n_k, "
                      "hidden], [batch, n_k, hidden]", SHAPE(q), SHAPE(k), SHAPE(v));
  int64_t heads = ir_attr_int(n, "heads");
  if (heads < 1 || q->dim[2] % heads != 0)
    return diag_error(d, "heads is %lld; it must be positive and divide the hidden size %lld",
                      (long long)heads, (long long)q->dim[2]);
  double p = ir_attr_float(n, "p");
  if (!(p >= 0 && p < 1)) return diag_error(d, "p is %g; it must be in [0, 1)", p);
  *a = (AttnDims){q->dim[0], heads, q->dim[1], k->dim[1], q->dim[2] / heads, {0}, false};
  a->has_mask = mask_at < n->n_in;
  int64_t full[4] = {a->B, a->H, a->Nq, a->Nk};
  if (a->has_mask && !mask_strides(&n->in[mask_at]->shape, full, a->mstride, d))
    return false;
  return true;
}

bool ir_shape_attention(IrNode *n, Diag *d) {
  AttnDims a;
  if (!attn_dims(n, 3, &a, d)) return false;
  n->dtype = DT_F32;
  n->shape = n->in[0]->shape;  // [B, Nq, H*D]
  return true;
}

// attention_grad(q, k, v, out, dout[, mask]): out and dout of out's shape; the result packs
// dq, dk, dv flat, one after the other.
bool ir_shape_attention_grad(IrNode *n, Diag *d) {
  AttnDims a;
  if (!attn_dims(n, 5, &a, d)) return false;
  for (int i = 3; i <= 4; i++)
    if (!ir_shape_eq(&n->in[i]->shape, &n->in[0]->shape))
      return diag_error(d, "%s \"%s\" is %s but must have q's shape %s", i == 3 ? "out" : "dout",
                        n->in[i]->name, SHAPE(&n->in[i]->shape), SHAPE(&n->in[0]->shape));
  n->dtype = DT_F32;
  n->shape.rank = 1;
  n->shape.dim[0] = ir_numel(&n->in[0]->shape) + 2 * ir_numel(&n->in[1]->shape);
  return true;
}

// ---------------------------------------------------------------------------------------
// Reference kernels. Element (b, h, i, j) of the probabilities is number
// ((b * H + h) * Nq + i) * Nk + j of the dropout stream, as for a dropout node on the
// unfused [B, H, Nq, Nk] probabilities.

static int64_t qkv_at(const AttnDims *a, int64_t b, int64_t row, int64_t n_rows, int64_t h) {
  return ((b * n_rows + row) * a->H + h) * a->D;  // [B, n, H, D] -> offset of (b, row, h, 0)
}

// An operand of a bf16 product: rounded to f32, then to bf16 (as the GEMM's packing).
static double bf16_of(double x) { return dt_round_bf16((float)x); }

// P[i, j] (Nq x Nk) of head (b, h): softmax over j of scale * q_i . k_j + mask. With bf16
// (the attention's bf16 attribute) q and k are rounded to bf16 and P is not normalised:
// P[i, j] = exp(s_ij - K_i ln 2) with K_i = ceil(max_j s_ij / ln 2), and sum[i] = sum_j
// P[i, j]. (A power of two apart from the kernel's values, whose running maximum is a
// multiple of ln 2 too: the bf16 roundings of P agree whichever K the kernel had reached.)
static void probs(const AttnDims *a, const IrNode *n, const double *q, const double *k,
                  const double *mask, int64_t b, int64_t h, bool bf16, double *P, double *sum) {
  double scale = ir_attr_float(n, "scale");
  for (int64_t i = 0; i < a->Nq; i++) {
    double *row = P + i * a->Nk, mx = -INFINITY, total = 0;
    const double *qi = q + qkv_at(a, b, i, a->Nq, h);
    for (int64_t j = 0; j < a->Nk; j++) {
      const double *kj = k + qkv_at(a, b, j, a->Nk, h);
      double s = 0;
      for (int64_t e = 0; e < a->D; e++) s += bf16 ? bf16_of(qi[e]) * bf16_of(kj[e]) : qi[e] * kj[e];
      s *= scale;
      if (a->has_mask)
        s += mask[b * a->mstride[0] + h * a->mstride[1] + i * a->mstride[2] + j * a->mstride[3]];
      row[j] = s;
      mx = s > mx ? s : mx;
    }
    if (bf16) mx = ceil(mx / M_LN2) * M_LN2;
    for (int64_t j = 0; j < a->Nk; j++) total += row[j] = exp(row[j] - mx);
    if (bf16) sum[i] = total;
    for (int64_t j = 0; j < a->Nk && !bf16; j++) row[j] /= total;
  }
}

// M[i, j] of head (b, h): 1 / (1 - p) where the dropout keeps the element, else 0 (all 1
// outside training).
static void drop_mask(const AttnDims *a, const IrNode *n, const IrEvalMode *mode, int64_t b,
                      int64_t h, double *M) {
  double p = ir_attr_float(n, "p");
  int64_t count = a->Nq * a->Nk;
  bool on = mode->training && p > 0;
  uint64_t key = on ? ir_rng_key_of(mode->seed, ir_attention_rng_hash(n)) : 0;
  uint64_t base = (uint64_t)((b * a->H + h) * count);
  for (int64_t e = 0; e < count; e++)
    M[e] = !on ? 1.0 : ir_rng_uniform(key, base + (uint64_t)e) >= p ? 1.0 / (1.0 - p) : 0.0;
}

bool ir_ref_attention(const IrNode *n, double *out, const double *const *in,
                      const IrEvalMode *mode, Diag *d) {
  AttnDims a;
  bool ok = attn_dims(n, 3, &a, d);
  assert(ok);
  // bf16: the weights P * M rounded to f32 then bf16 (M as the kernel's f32 1 / (1 - p)),
  // times v rounded to bf16, summed, over the f32-graph sum of P
  bool bf16 = ir_attr_int(n, "bf16") != 0;
  double *P = malloc((size_t)(a.Nq * a.Nk) * sizeof *P), *M = malloc((size_t)(a.Nq * a.Nk) * sizeof *M);
  double *sum = malloc((size_t)a.Nq * sizeof *sum);
  assert(P && M && sum);
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t h = 0; h < a.H; h++) {
      probs(&a, n, in[0], in[1], a.has_mask ? in[3] : NULL, b, h, bf16, P, sum);  // (Nq, Nk)
      drop_mask(&a, n, mode, b, h, M);
      for (int64_t i = 0; i < a.Nq; i++) {
        double *o = out + qkv_at(&a, b, i, a.Nq, h);  // (D)
        for (int64_t e = 0; e < a.D; e++) o[e] = 0;
        for (int64_t j = 0; j < a.Nk; j++) {
          double w = P[i * a.Nk + j] * M[i * a.Nk + j];
          if (bf16) w = bf16_of((float)P[i * a.Nk + j] * (double)(float)M[i * a.Nk + j]);
          const double *vj = in[2] + qkv_at(&a, b, j, a.Nk, h);
          for (int64_t e = 0; e < a.D; e++) o[e] += w * (bf16 ? bf16_of(vj[e]) : vj[e]);
        }
        for (int64_t e = 0; e < a.D && bf16; e++) o[e] /= sum[i];
      }
    }
  free(P);
  free(M);
  free(sum);
  return true;
}

// With Pd = P * M (the dropped probabilities), O = Pd V:
//   dV = Pd^T dO;  dP = (dO V^T) * M;  dS = P * (dP - rowsum(P * dP));
//   dQ = scale dS K;  dK = scale dS^T Q.
// rowsum(P * dP) is computed as rowsum(dO * O) from the input out (equal when out = Pd V;
// the kernel does the same, and so the gradient after a bf16 forward, whose out is Pd V
// with rounded operands, is the same function of out in both).
// bf16 (the node's bf16 attribute): the five products take operands rounded to f32 then
// bf16, as the kernel's: S from bf16 q, k (the forward's probs), dP from bf16 dO, v; dV from
// bf16(Pd) (P and M as f32, their f32 product rounded), bf16 dO; dQ and dK from bf16(dS)
// (dS = P (dP - D_i) scale, rounded to f32 then bf16) and bf16 k, q. P, D_i = rowsum(dO * O)
// and dS itself stay unrounded.
bool ir_ref_attention_grad(const IrNode *n, double *out, const double *const *in,
                           const IrEvalMode *mode, Diag *d) {
  AttnDims a;
  bool ok = attn_dims(n, 5, &a, d);
  assert(ok);
  double scale = ir_attr_float(n, "scale");
  bool bf16 = ir_attr_int(n, "bf16") != 0;
  const double *q = in[0], *k = in[1], *v = in[2], *dout = in[4];
  int64_t nq = ir_numel(&n->in[0]->shape), nk = ir_numel(&n->in[1]->shape);
  double *dq = out, *dk = out + nq, *dv = out + nq + nk;
  memset(out, 0, (size_t)(nq + 2 * nk) * sizeof *out);
  size_t nn = (size_t)(a.Nq * a.Nk);
  double *P = malloc(nn * sizeof *P), *M = malloc(nn * sizeof *M), *dS = malloc(nn * sizeof *dS);
  double *sum = malloc((size_t)a.Nq * sizeof *sum);
  assert(P && M && dS && sum);
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t h = 0; h < a.H; h++) {
      probs(&a, n, q, k, a.has_mask ? in[5] : NULL, b, h, bf16, P, sum);
      for (int64_t e = 0; bf16 && e < (int64_t)nn; e++) P[e] /= sum[e / a.Nk];
      drop_mask(&a, n, mode, b, h, M);
      for (int64_t i = 0; i < a.Nq; i++) {
        const double *doi = dout + qkv_at(&a, b, i, a.Nq, h), *oi = in[3] + qkv_at(&a, b, i, a.Nq, h);
        double rowsum = 0;
        for (int64_t e = 0; e < a.D; e++) rowsum += doi[e] * oi[e];
        for (int64_t j = 0; j < a.Nk; j++) {
          const double *vj = v + qkv_at(&a, b, j, a.Nk, h);
          double *dvj = dv + qkv_at(&a, b, j, a.Nk, h);
          double dp = 0, pd = P[i * a.Nk + j] * M[i * a.Nk + j];
          if (bf16) pd = bf16_of((float)P[i * a.Nk + j] * (double)(float)M[i * a.Nk + j]);
          for (int64_t e = 0; e < a.D; e++) {
            double x = bf16 ? bf16_of(doi[e]) : doi[e];
            dp += x * (bf16 ? bf16_of(vj[e]) : vj[e]);
            dvj[e] += pd * x;
          }
          dS[i * a.Nk + j] = dp * M[i * a.Nk + j];
        }
        for (int64_t j = 0; j < a.Nk; j++)
          dS[i * a.Nk + j] = P[i * a.Nk + j] * (dS[i * a.Nk + j] - rowsum) * scale;
      }
      for (int64_t i = 0; i < a.Nq; i++)
        for (int64_t j = 0; j < a.Nk; j++) {
          double s = bf16 ? bf16_of(dS[i * a.Nk + j]) : dS[i * a.Nk + j];
          const double *qi = q + qkv_at(&a, b, i, a.Nq, h), *kj = k + qkv_at(&a, b, j, a.Nk, h);
          double *dqi = dq + qkv_at(&a, b, i, a.Nq, h), *dkj = dk + qkv_at(&a, b, j, a.Nk, h);
          for (int64_t e = 0; e < a.D; e++) {
            dqi[e] += s * (bf16 ? bf16_of(kj[e]) : kj[e]);
            dkj[e] += s * (bf16 ? bf16_of(qi[e]) : qi[e]);
          }
        }
    }
  free(P);
  free(M);
  free(dS);
  free(sum);
  return true;
}

// ---------------------------------------------------------------------------------------
// Gradient rule: one attention_grad node recomputes the probabilities from q and k (it
// never keeps the [B, H, Nq, Nk] scores); dq, dk, dv are slices of its packed result.
// The mask gets no gradient here: fuse_attention leaves attention whose mask depends on
// something differentiated unfused.
bool ir_grad_attention(IrBuilder *b, IrNode *n, IrNode *dy, const bool *need, IrNode **dx,
                       Diag *d) {
  if (n->n_in > 3 && need[3])
    return diag_error(d, "%s \"%s\": attention has no gradient with respect to its mask \"%s\" "
                      "(leave the attention unfused: --disable-pass fuse_attention)",
                      n->where, n->name, n->in[3]->name);
  IrNode *in[6] = {n->in[0], n->in[1], n->in[2], n, dy, n->n_in > 3 ? n->in[3] : NULL};
  IrNode *g = ir_build(b, IR_OP_ATTENTION_GRAD, n->n_in > 3 ? 6 : 5, in);
  ir_set_int(g, "heads", ir_attr_int(n, "heads"));
  ir_set_float(g, "scale", ir_attr_float(n, "scale"));
  ir_set_float(g, "p", ir_attr_float(n, "p"));
  ir_set_int(g, "rng_hash", (int64_t)ir_attention_rng_hash(n));
  ir_set_int(g, "bf16", ir_attr_int(n, "bf16"));
  ir_build_done(b, g);
  int64_t start = 0;
  for (int k = 0; k < 3; k++) {
    int64_t len = ir_numel(&n->in[k]->shape);
    if (need[k])
      dx[k] = ir_build_reshape(b, ir_build_slice(b, g, 0, start, start + len), &n->in[k]->shape);
    start += len;
  }
  return true;
}

// Second derivatives through attention are not built: the rule says so by name (kiln's
// losses need first derivatives only; an unfused graph has them all).
bool ir_grad_attention_grad(IrBuilder *b, IrNode *n, IrNode *dy, const bool *need, IrNode **dx,
                            Diag *d) {
  return diag_error(d, "%s \"%s\": attention_grad has no gradient (second derivatives of "
                    "fused attention are not supported; --disable-pass fuse_attention)",
                    n->where, n->name);
}
