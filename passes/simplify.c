// Algebraic simplification: replaces nodes by cheaper equals — identities (x*1, x+0, x-0,
// x/1, affine(x,1,0), neg(neg x)), affine of affine, x*c and x±c as affine (exact: x*1 and
// +0 round nothing), reshape of reshape and to the same shape, permute of permute
// (composed, or gone when the identity), constant folding of any op whose inputs are full
// tensors through its reference kernel, dropout with p=0 and every dropout in inference, a
// slice that is exactly one part of a concat. Autodiff emits many of these (seeds of ones,
// scale factors, zeros). Floating-point rules only on f32 (integers keep their semantics).
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

// ---------------------------------------------------------------------------------------
// Constant folding through the reference kernels: a node whose inputs are all `full`
// tensors is computed by its op's reference (ir_eval_node, in double as the evaluator does)
// and becomes a `full` of the result when every element comes out the same. Elementwise
// and broadcast ops, and injective ops of one input, are evaluated on one element (any
// size); other ops on their real shapes up to FOLD_MAX_ELEMS elements. What the reference
// refuses (an integer that does not fit, an index out of range) is left to run time, so
// the error is the one a run reports; ops that draw the dropout stream are never folded.
#define FOLD_MAX_IN 8
#define FOLD_MAX_ELEMS ((int64_t)1 << 20)

static const IrEvalMode fold_mode = {.training = false};

// All count values bitwise equal (so NaN results compare equal too).
static bool uniform(const double *v, int64_t count) {
  for (int64_t j = 1; j < count; j++)
    if (memcmp(&v[j], &v[0], sizeof *v) != 0) return false;
  return true;
}

// n on real shapes, inputs filled with c[k]; true with *r when the result is uniform.
static bool fold_in_full(const IrNode *n, const double *c, double *r) {
  int64_t total = ir_numel(&n->shape), count[FOLD_MAX_IN];
  for (int k = 0; k < n->n_in; k++) total += count[k] = ir_numel(&n->in[k]->shape);
  if (total > FOLD_MAX_ELEMS) return false;
  double *buf = malloc((size_t)(total + n->n_in + 1) * sizeof *buf), *at = buf;
  const double *in[FOLD_MAX_IN];
  if (!buf) return false;
  for (int k = 0; k < n->n_in; k++) {
    for (int64_t j = 0; j < count[k]; j++) at[j] = c[k];
    in[k] = at;
    at += count[k] ? count[k] : 1;
  }
  int64_t out_count = ir_numel(&n->shape);
  bool ok = ir_eval_node(n, at, in, &fold_mode, NULL) && out_count > 0 && uniform(at, out_count);
  if (ok) *r = at[0];
  free(buf);
  return ok;
}

static IrNode *fold_constant(Simplify *s, IrNode *n) {
  const IrOpInfo *op = &ir_ops[n->op];
  if ((op->flags & (IR_FLAG_SOURCE | IR_FLAG_RANDOM)) || n->n_in > FOLD_MAX_IN) return NULL;
  IrNode one_in[FOLD_MAX_IN], *one_in_p[FOLD_MAX_IN];
  double c[FOLD_MAX_IN], r;
  const double *cp[FOLD_MAX_IN];
  for (int k = 0; k < n->n_in; k++) {  // each input's value, as its full kernel makes it
    if (n->in[k]->op != IR_OP_FULL) return NULL;
    one_in[k] = *n->in[k];
    one_in[k].shape.rank = 0;
    if (!ir_eval_node(&one_in[k], &c[k], NULL, &fold_mode, NULL)) return NULL;
    one_in_p[k] = &one_in[k];
    cp[k] = &c[k];
  }
  if (ir_op_is_elementwise(n->op)) {  // one element of the result
    IrNode one = *n;
    one.shape.rank = 0;
    one.in = one_in_p;
    if (!ir_eval_node(&one, &r, cp, &fold_mode, NULL)) return NULL;
  } else if (op->pattern == IR_PATTERN_INJECTIVE && n->n_in == 1 && n->dtype == n->in[0]->dtype) {
    r = c[0];  // every output element is an input element
  } else if (!fold_in_full(n, c, &r)) {
    return NULL;
  }
  return full_like(s, n, r);
}

static IrNode *simplify_arith(Simplify *s, IrNode *n) {
  IrNode *x = n->in[0], *y = n->n_in > 1 ? n->in[1] : NULL;
  double c;
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
  switch (n->op) {
    case IR_OP_RESHAPE:
      if (ir_shape_eq(&x->shape, &n->shape) && !root) return x;
      if (x->op == IR_OP_RESHAPE) return ir_build_reshape(&s->b, x->in[0], &n->shape);
      return NULL;
    case IR_OP_PERMUTE: {
      const IrAttr *p = ir_attr(n, "perm");
      if (is_identity(p->ints, p->n)) return x;
      if (x->op != IR_OP_PERMUTE) return NULL;
      const IrAttr *p1 = ir_attr(x, "perm");
      int64_t q[IR_MAX_RANK];
      for (int i = 0; i < p->n; i++) q[i] = p1->ints[p->ints[i]];  // out[i] = y[p1[p[i]]]
      return is_identity(q, p->n) ? x->in[0] : ir_build_permute(&s->b, x->in[0], q);
    }
    case IR_OP_SLICE:
      if (x->op == IR_OP_CONCAT) {  // the slice is exactly one of the parts
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
      }
      return NULL;
    default:
      return NULL;
  }
}

// Dropout is the identity in inference and with p = 0.
static bool inert_dropout(const Simplify *s, const IrNode *n) {
  return n->op == IR_OP_DROPOUT && ((!s->o->loss && !s->o->training) || ir_attr_float(n, "p") == 0);
}

static IrNode *simplify_node(Simplify *s, IrNode *n, bool root) {
  IrNode *folded = fold_constant(s, n);
  if (folded) return folded;
  switch (n->op) {
    case IR_OP_DROPOUT:
      return inert_dropout(s, n) ? n->in[0] : NULL;
    case IR_OP_RESHAPE:
    case IR_OP_PERMUTE:
    case IR_OP_SLICE:
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
