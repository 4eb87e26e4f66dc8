// Rows rules: the op table's row-wise column (IrRowsFn in ir/ir.h). Each says which inputs
// carry a node's rows (index i of the second-to-last axis), or 0 when the node, with these
// shapes and attributes, is not row-wise. passes/rowprune.c reads it to compute only the
// rows that something reads.
#include "ir/ops_impl.h"

// x has out's rank and out's dims but the last: its row i is out's row i.
static bool rows_match(const IrShape *x, const IrShape *out) {
  if (x->rank != out->rank || out->rank < 2) return false;
  for (int k = 0; k < out->rank - 1; k++)
    if (x->dim[k] != out->dim[k]) return false;
  return true;
}

// x, broadcast to out (dims aligned at the end), is the same in every row.
static bool rows_broadcast(const IrShape *x) { return x->rank < 2 || x->dim[x->rank - 2] == 1; }

// Elementwise and broadcasting ops (dropout: in inference, the identity), and layernorm (over
// the last axis; weight and bias are [hidden]): an input broadcast along the rows is read
// whole, any other must match the output's rows.
unsigned ir_rows_broadcast(const IrNode *n) {
  if (n->shape.rank < 2 || n->shape.dim[n->shape.rank - 2] == 1) return 0;
  unsigned mask = 0;
  for (int k = 0; k < n->n_in; k++) {
    if (rows_broadcast(&n->in[k]->shape)) continue;
    if (!rows_match(&n->in[k]->shape, &n->shape)) return 0;
    mask |= 1u << k;
  }
  return mask;
}

// [..., M, K] x [..., K, N]: row i of the product is row i of A times all of B (not when A
// is transposed, or broadcast over the batch dims).
unsigned ir_rows_matmul(const IrNode *n) {
  if (ir_attr_int(n, "transpose_a") || !rows_match(&n->in[0]->shape, &n->shape)) return 0;
  return 1u;
}

// Query row i reads row i of q and all of k and v, and of the mask when that is broadcast
// over the queries (VisualBERT's [batch, 1, 1, n_k]; in inference: no dropout).
unsigned ir_rows_attention(const IrNode *n) {
  if (!rows_match(&n->in[0]->shape, &n->shape)) return 0;
  if (n->n_in > 3 && !rows_broadcast(&n->in[3]->shape)) return 0;
  return 1u;
}
