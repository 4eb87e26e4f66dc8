// Reference kernels for the neural-network ops: softmax, log_softmax, layernorm and the
// losses cross_entropy and kl_div. Numerically stable forms (subtract the max) in double;
// the oracle the JIT is held to.
#include <assert.h>
#include <math.h>

#include "ir/ops_impl.h"

// The shape viewed as [outer, len, inner] around axis (negative axis counts from the end).
static void split_at_axis(const IrShape *s, int64_t axis, int64_t *outer, int64_t *len,
                          int64_t *inner) {
  if (axis < 0) axis += s->rank;
  assert(axis >= 0 && axis < s->rank);
  *outer = *inner = 1;
  for (int k = 0; k < axis; k++) *outer *= s->dim[k];
  for (int k = (int)axis + 1; k < s->rank; k++) *inner *= s->dim[k];
  *len = s->dim[axis];
}

// The largest of len values `stride` apart (-inf if none).
static double max_of(const double *x, int64_t len, int64_t stride) {
  double max = -INFINITY;
  for (int64_t i = 0; i < len; i++)
    if (x[i * stride] > max) max = x[i * stride];
  return max;
}

// ---------------------------------------------------------------------------------------
// softmax(x) = exp(x - max) / sum(exp(x - max)) along axis;
// log_softmax(x) = (x - max) - log(sum(exp(x - max))).
static bool softmax_along_axis(const IrNode *n, double *out, const double *x, bool take_log) {
  int64_t outer, len, inner;
  split_at_axis(&n->shape, ir_attr_int(n, "axis"), &outer, &len, &inner);
  // x, out: (outer, len, inner); one vector of len values, inner apart, per (o, r).
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t r = 0; r < inner; r++) {
      const double *xv = x + o * len * inner + r;
      double *ov = out + o * len * inner + r;
      double max = max_of(xv, len, inner), sum = 0;
      for (int64_t i = 0; i < len; i++) {
        ov[i * inner] = exp(xv[i * inner] - max);
        sum += ov[i * inner];
      }
      for (int64_t i = 0; i < len; i++)
        ov[i * inner] = take_log ? (xv[i * inner] - max) - log(sum) : ov[i * inner] / sum;
    }
  }
  return true;
}

bool ir_ref_softmax(const IrNode *n, double *out, const double *const *in,
                    const IrEvalMode *mode, Diag *d) {
  return softmax_along_axis(n, out, in[0], false);
}

bool ir_ref_log_softmax(const IrNode *n, double *out, const double *const *in,
                        const IrEvalMode *mode, Diag *d) {
  return softmax_along_axis(n, out, in[0], true);
}

// ---------------------------------------------------------------------------------------
// layernorm(x [..., H], weight [H], bias [H]) over the last axis, biased variance:
//   (x - mean) / sqrt(var + eps) * weight + bias
bool ir_ref_layernorm(const IrNode *n, double *out, const double *const *in,
                      const IrEvalMode *mode, Diag *d) {
  const IrShape *s = &n->shape;
  assert(s->rank >= 1);
  int64_t H = s->dim[s->rank - 1], rows = H ? ir_numel(s) / H : 0;
  assert(ir_numel(&n->in[1]->shape) == H && ir_numel(&n->in[2]->shape) == H);
  double eps = ir_attr_float(n, "eps");
  const double *w = in[1], *b = in[2];  // (H), (H)
  for (int64_t r = 0; r < rows; r++) {  // (rows, H)
    const double *x = in[0] + r * H;
    double *y = out + r * H;
    double mean = 0, var = 0;
    for (int64_t h = 0; h < H; h++) mean += x[h];
    mean /= (double)H;
    for (int64_t h = 0; h < H; h++) var += (x[h] - mean) * (x[h] - mean);
    var /= (double)H;
    double denom = sqrt(var + eps);
    for (int64_t h = 0; h < H; h++) y[h] = (x[h] - mean) / denom * w[h] + b[h];
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Losses: scalar outputs.

// cross_entropy(logits [..., C], labels [...][, denominator []]) = mean over positions whose
// label is not ignore_index of -log_softmax(logits)[label]; 0 if every label is ignored.
// With a denominator (a trainer's global count of labels, passes/loss_denominator.c) the
// sum is divided by it instead of this batch's count.
bool ir_ref_cross_entropy(const IrNode *n, double *out, const double *const *in,
                          const IrEvalMode *mode, Diag *d) {
  const IrShape *sl = &n->in[0]->shape;
  assert(n->shape.rank == 0 && sl->rank >= 1);
  int64_t C = sl->dim[sl->rank - 1], positions = ir_numel(&n->in[1]->shape);
  assert(positions * C == ir_numel(sl));
  double ignore = (double)ir_attr_int(n, "ignore_index");
  double total = 0;
  int64_t counted = 0;
  for (int64_t p = 0; p < positions; p++) {  // (positions, C)
    double label = in[1][p];
    assert(label == trunc(label) && "integer tensors hold whole values");
    if (label == ignore) continue;
    if (label < 0 || label >= (double)C)
      return diag_error(d, "cross_entropy: label %.0f out of range [0, %lld) at element %lld",
                        label, (long long)C, (long long)p);
    const double *row = in[0] + p * C;  // (C): -log_softmax(row)[label]
    double max = max_of(row, C, 1), sum = 0;
    for (int64_t c = 0; c < C; c++) sum += exp(row[c] - max);
    total += log(sum) - (row[(int64_t)label] - max);
    counted++;
  }
  if (n->n_in == 3 && !(in[2][0] > 0))
    return diag_error(d, "cross_entropy: the denominator is %g; it must be positive", in[2][0]);
  out[0] = !counted ? 0.0 : n->n_in == 3 ? total / in[2][0] : total / (double)counted;
  return true;
}

// kl_div(log_probs, target) = sum(target * (log(target) - log_probs)) / shape[0]
// (PyTorch KLDivLoss, reduction="batchmean"); a zero target contributes 0. A target is a
// distribution's entry: a negative or NaN one is a data error (codegen/lower_loss.c says the same).
bool ir_ref_kl_div(const IrNode *n, double *out, const double *const *in,
                   const IrEvalMode *mode, Diag *d) {
  const IrShape *s = &n->in[0]->shape;
  assert(n->shape.rank == 0 && s->rank >= 1);
  assert(ir_numel(s) == ir_numel(&n->in[1]->shape));
  int64_t total = ir_numel(s);
  double sum = 0;
  for (int64_t j = 0; j < total; j++) {
    double t = in[1][j];
    if (!(t >= 0))
      return diag_error(d, "kl_div: target element %lld is %g; a target must be a probability, "
                        ">= 0", (long long)j, t);
    if (t > 0) sum += t * (log(t) - in[0][j]);
  }
  out[0] = sum / (double)s->dim[0];
  return true;
}
