// Algebraic simplification: replaces nodes by cheaper equals — identities (x*1, x+0, x-0,
// x/1, affine(x,1,0), neg(neg x)), affine of affine, x*c and x±c as affine (exact: x*1 and
// +0 round nothing), reshape of reshape and
// to the same shape, permute of permute (composed, or gone when the identity), constant
// folding of full tensors through elementwise ops, reductions and data movement, dropout
// with p=0 and every dropout in inference, a slice that is exactly one part of a concat. Autodiff emits many of these (seeds of ones,
// scale factors, zeros). Floating-point rules only on f32 (integers keep their semantics).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

typedef struct Simplify {
  IrGraph *g;
  IrBuilder b;
  const PassOptions *o;
} Simplify;

static bool const_of(const IrNode *n, double *v) {
  if (n->op != IR_OP_FULL) return false;
  *v = ir_attr_float(n, "value");
  return true;
}

static bool is_const(const IrNode *n, double v) {
  double c;
  return const_of(n, &c) && c == v;
}

// x stands for n only if it has n's shape and dtype (no broadcasting hidden in n).
static bool same_as(const IrNode *x, const IrNode *n) {
  return x->dtype == n->dtype && ir_shape_eq(&x->shape, &n->shape);
}

static IrNode *full_like(Simplify *s, const IrNode *n, double v) {
  return ir_build_full(&s->b, &n->shape, v, n->dtype);
}

// affine(x, sc, sh), merged with x when x is an affine itself; x when the identity.
static IrNode *make_affine(Simplify *s, IrNode *x, double sc, double sh) {
  if (x->op == IR_OP_AFFINE) {  // sc (s1 y + t1) + sh
    double s1 = ir_attr_float(x, "scale"), t1 = ir_attr_float(x, "shift");
    x = x->in[0];
    sh = t1 * sc + sh;
    sc = s1 * sc;
  }
  return sc == 1 && sh == 0 ? x : ir_build_affine(&s->b, x, sc, sh);
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

// f(c) for a unary f32 op on a constant; false when not folded.
static bool fold_unary(const IrNode *n, double c, double *r) {
  switch (n->op) {
    case IR_OP_NEG: *r = -c; return true;
    case IR_OP_EXP: *r = exp(c); return true;
    case IR_OP_LOG: *r = log(c); return true;
    case IR_OP_SQRT: *r = sqrt(c); return true;
    case IR_OP_RSQRT: *r = 1.0 / sqrt(c); return true;
    case IR_OP_TANH: *r = tanh(c); return true;
    case IR_OP_ERF: *r = erf(c); return true;
    case IR_OP_RELU: *r = c > 0 ? c : 0.0; return true;
    case IR_OP_SIGMOID: *r = sigmoid(c); return true;
    case IR_OP_AFFINE: *r = ir_attr_float(n, "scale") * c + ir_attr_float(n, "shift"); return true;
    default: return false;
  }
}

static bool fold_binary(IrOpKind op, double a, double b, double *r) {
  switch (op) {
    case IR_OP_ADD: *r = a + b; return true;
    case IR_OP_SUB: *r = a - b; return true;
    case IR_OP_MUL: *r = a * b; return true;
    case IR_OP_DIV: *r = a / b; return true;
    case IR_OP_MAXIMUM: *r = a > b ? a : b; return true;
    case IR_OP_MINIMUM: *r = a < b ? a : b; return true;
    default: return false;
  }
}

static IrNode *simplify_arith(Simplify *s, IrNode *n) {
  IrNode *x = n->in[0], *y = n->n_in > 1 ? n->in[1] : NULL;
  double a, c;
  if (n->n_in == 1 && const_of(x, &a) && fold_unary(n, a, &c)) return full_like(s, n, c);
  if (y && const_of(x, &a) && const_of(y, &c) && fold_binary(n->op, a, c, &a)) return full_like(s, n, a);
  switch (n->op) {
    case IR_OP_ADD:
      if (is_const(y, 0) && same_as(x, n)) return x;
      if (is_const(x, 0) && same_as(y, n)) return y;
      if (const_of(y, &c) && same_as(x, n)) return make_affine(s, x, 1.0, c);
      if (const_of(x, &c) && same_as(y, n)) return make_affine(s, y, 1.0, c);
      return NULL;
    case IR_OP_SUB:
      if (is_const(y, 0) && same_as(x, n)) return x;
      if (const_of(y, &c) && same_as(x, n)) return make_affine(s, x, 1.0, -c);
      return NULL;
    case IR_OP_DIV:
      return is_const(y, 1) && same_as(x, n) ? x : NULL;
    case IR_OP_MUL:
      if (is_const(y, 1) && same_as(x, n)) return x;
      if (is_const(x, 1) && same_as(y, n)) return y;
      if (const_of(y, &c) && same_as(x, n)) return make_affine(s, x, c, 0.0);
      if (const_of(x, &c) && same_as(y, n)) return make_affine(s, y, c, 0.0);
      return NULL;
    case IR_OP_NEG:
      return x->op == IR_OP_NEG ? x->in[0] : NULL;
    case IR_OP_AFFINE: {
      double sc = ir_attr_float(n, "scale"), sh = ir_attr_float(n, "shift");
      if (sc == 1 && sh == 0) return x;
      return x->op == IR_OP_AFFINE ? make_affine(s, x, sc, sh) : NULL;
    }
    default:
      return NULL;
  }
}

static bool is_identity(const int64_t *perm, int rank) {
  for (int i = 0; i < rank; i++)
    if (perm[i] != i) return false;
  return true;
}

static IrNode *simplify_data(Simplify *s, IrNode *n, bool root) {
  IrNode *x = n->in[0];
  double c = 0;
  bool folds = const_of(x, &c);
  switch (n->op) {
    case IR_OP_RESHAPE:
      if (folds) return full_like(s, n, c);
      if (ir_shape_eq(&x->shape, &n->shape) && !root) return x;
      if (x->op == IR_OP_RESHAPE) return ir_build_reshape(&s->b, x->in[0], &n->shape);
      return NULL;
    case IR_OP_PERMUTE: {
      const IrAttr *p = ir_attr(n, "perm");
      if (folds) return full_like(s, n, c);
      if (is_identity(p->ints, p->n)) return x;
      if (x->op != IR_OP_PERMUTE) return NULL;
      const IrAttr *p1 = ir_attr(x, "perm");
      int64_t q[IR_MAX_RANK];
      for (int i = 0; i < p->n; i++) q[i] = p1->ints[p->ints[i]];  // out[i] = y[p1[p[i]]]
      return is_identity(q, p->n) ? x->in[0] : ir_build_permute(&s->b, x->in[0], q);
    }
    case IR_OP_SLICE:
      if (x->op == IR_OP_CONCAT && !folds) {  // the slice is exactly one of the parts
        int64_t axis = ir_attr_int(n, "axis"), cat = ir_attr_int(x, "axis"), at = 0;
        int r = x->shape.rank;
        if ((axis < 0 ? axis + r : axis) != (cat < 0 ? cat + r : cat)) return NULL;
        if (axis < 0) axis += r;
        for (int k = 0; k < x->n_in; k++) {
          int64_t len = x->in[k]->shape.dim[axis];
          if (same_as(x->in[k], n) && ir_attr_int(n, "start") == at && ir_attr_int(n, "end") == at + len)
            return x->in[k];
          at += len;
        }
        return NULL;
      }
      /* fall through */
    case IR_OP_REDUCE_MEAN:
    case IR_OP_REDUCE_MAX:
      return folds && n->dtype == DT_F32 ? full_like(s, n, c) : NULL;
    case IR_OP_REDUCE_SUM:
      return folds && n->dtype == DT_F32
                 ? full_like(s, n, c * (double)(ir_numel(&x->shape) / (ir_numel(&n->shape) ? ir_numel(&n->shape) : 1)))
                 : NULL;
    case IR_OP_CONCAT: {
      double v;
      for (int k = 0; k < n->n_in; k++)
        if (!const_of(n->in[k], &v) || v != c || !folds) return NULL;
      return full_like(s, n, c);
    }
    default:
      return NULL;
  }
}

// Dropout is the identity in inference and with p = 0.
static bool inert_dropout(const Simplify *s, const IrNode *n) {
  return n->op == IR_OP_DROPOUT && ((!s->o->loss && !s->o->training) || ir_attr_float(n, "p") == 0);
}

static IrNode *simplify_node(Simplify *s, IrNode *n, bool root) {
  switch (n->op) {
    case IR_OP_DROPOUT:
      return inert_dropout(s, n) ? n->in[0] : NULL;
    case IR_OP_RESHAPE:
    case IR_OP_PERMUTE:
    case IR_OP_SLICE:
    case IR_OP_REDUCE_SUM:
    case IR_OP_REDUCE_MEAN:
    case IR_OP_REDUCE_MAX:
    case IR_OP_CONCAT:
      return simplify_data(s, n, root);
    default:
      return ir_op_is_elementwise(n->op) && n->dtype == DT_F32 && n->n_in &&
                     n->in[0]->dtype == DT_F32 && (n->n_in < 2 || n->in[1]->dtype == DT_F32)
                 ? simplify_arith(s, n)
                 : NULL;
  }
}

bool pass_simplify(IrGraph *g, const PassOptions *o, Diag *d) {
  int nn = g->n_nodes, changed = 0;
  IrNode **repl = calloc((size_t)nn + 1, sizeof *repl);
  bool *root = calloc((size_t)nn + 1, sizeof *root);
  for (int i = 0; i < g->n_outputs; i++) root[g->outputs[i]->id] = true;
  Simplify s = {.g = g, .o = o};
  for (int i = 0; i < nn; i++) {  // topological order: inputs are simplified first
    IrNode *n = g->nodes[i];
    if (n->op == IR_OP_DROPOUT_GRAD && inert_dropout(&s, n->in[1])) {  // before in[1] is replaced
      repl[i] = ir_rewrite_resolve(repl, nn, n->in[0]);
      changed++;
      continue;
    }
    ir_rewrite_inputs(repl, nn, n);
    if (ir_ops[n->op].flags & IR_FLAG_SOURCE) continue;
    ir_builder_init(&s.b, g, arena_printf(&g->arena, "simplify:%s", n->name), n->where);
    IrNode *r = simplify_node(&s, n, root[i]);
    if (r && r != n && r->id >= nn) {  // a node built here: n becomes it (keeping its name)
      n->op = r->op;
      n->n_in = r->n_in;
      n->in = r->in;
      memcpy(n->attr, r->attr, sizeof n->attr);
      changed++;
    } else if (r && r != n) {
      repl[i] = r;
      changed++;
    }
  }
  if (changed) ir_rewrite_apply(g, repl, nn);
  free(repl);
  free(root);
  return !changed || ir_remove_dead(g, d) >= 0;
}
