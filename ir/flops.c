// FLOPs rules: the op table's cost column (ir_count_flops sums it over a graph). 2·M·N·K
// per matmul (the cost that matters), one per output element for elementwise ops, a few
// per element for normalisations; sources and data movement count zero.
#include "ir/ops_impl.h"

static double out_elems(const IrNode *n) { return (double)ir_numel(&n->shape); }

double ir_flops_zero(const IrNode *n) {
  (void)n;
  return 0;
}

double ir_flops_out(const IrNode *n) { return out_elems(n); }

// softmax, log_softmax, layernorm: max/mean, subtract, exp/variance, sum, scale.
double ir_flops_norm(const IrNode *n) { return 5.0 * out_elems(n); }

// Reductions and losses: about two per input element.
double ir_flops_reduce(const IrNode *n) { return 2.0 * (double)ir_numel(&n->in[0]->shape); }

double ir_flops_matmul(const IrNode *n) {
  const IrShape *a = &n->in[0]->shape;
  int64_t k = ir_attr_int(n, "transpose_a") ? a->dim[a->rank - 2] : a->dim[a->rank - 1];
  return 2.0 * out_elems(n) * (double)k;
}

// Q.K^T and P.V (4 per head_dim and score) and the softmax (5 per score).
static double attention_forward(const IrNode *n, double *scores) {
  const IrShape *q = &n->in[0]->shape, *k = &n->in[1]->shape;
  double qk = (double)q->dim[0] * (double)q->dim[1] * (double)k->dim[1];  // per head
  *scores = qk * (double)ir_attr_int(n, "heads");
  return 4.0 * qk * (double)q->dim[2] + 5.0 * *scores;
}

double ir_flops_attention(const IrNode *n) {
  double scores;
  return attention_forward(n, &scores);
}

// The forward again (the probabilities are recomputed), twice the GEMMs, the softmax'.
double ir_flops_attention_grad(const IrNode *n) {
  double scores, f = attention_forward(n, &scores);
  return 2.0 * f + 5.0 * scores;
}

// What its body computes.
double ir_flops_fused(const IrNode *n) {
  double total = 0;
  for (int i = 0; i < n->body->n; i++) {
    const IrNode *x = n->body->nodes[i];
    total += ir_ops[x->op].flops(x);
  }
  return total;
}
