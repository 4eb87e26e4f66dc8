// Pass fuse_attention: finds multi-head attention written out op by op, as VisualBERT's
// layer does it — head split (reshape [B,n,H,D] + permute 0,2,1,3) of q, k and v,
// matmul(qh, kh^T), optional affine scale, optional additive mask, softmax over the keys,
// optional dropout, matmul with vh, permute back and reshape to [B,n,H*D] — and replaces
// it with one attention node (ir/attention.c) when no intermediate has another user. The
// [B,H,n,n] scores and the four permute copies disappear. Runs before autodiff, so the
// backward uses attention's own gradient (recomputation, not stored scores).
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

// A match: the nodes the attention replaces, and what it takes.
typedef struct AttnMatch {
  IrNode *q, *k, *v, *mask, *drop;  // mask, drop may be NULL
  double scale;
  int64_t heads;
  IrNode *dead[16];
  int n_dead;
} AttnMatch;

static bool single_use(const IrNode *n, const bool *pinned) {
  return n->n_uses == 1 && !pinned[n->id];
}

static bool is_perm_0213(const IrNode *n) {
  if (n->op != IR_OP_PERMUTE) return false;  // only a permute has the attribute
  const IrAttr *p = ir_attr(n, "perm");
  return p->n == 4 && p->ints[0] == 0 && p->ints[1] == 2 &&
         p->ints[2] == 1 && p->ints[3] == 3;
}

// x [B,n,H*D] -> reshape [B,n,H,D] -> permute(0,2,1,3): returns x (NULL if not the pattern).
static IrNode *head_split(AttnMatch *m, IrNode *n, const bool *pinned) {
  if (!is_perm_0213(n) || !single_use(n, pinned)) return NULL;
  IrNode *r = n->in[0];
  if (r->op != IR_OP_RESHAPE || !single_use(r, pinned)) return NULL;
  IrNode *x = r->in[0];
  const IrShape *s = &x->shape, *t = &r->shape;
  if (s->rank != 3 || t->rank != 4 || t->dim[0] != s->dim[0] || t->dim[1] != s->dim[1] ||
      t->dim[2] * t->dim[3] != s->dim[2] || x->dtype != DT_F32)
    return NULL;
  if (m->heads && m->heads != t->dim[2]) return NULL;
  m->heads = t->dim[2];
  m->dead[m->n_dead++] = n;
  m->dead[m->n_dead++] = r;
  return x;
}

// out: reshape(permute(matmul(P, vh), 0,2,1,3), [B, n, H*D]).
static bool match(IrNode *out, const bool *pinned, AttnMatch *m) {
  memset(m, 0, sizeof *m);
  m->scale = 1;
  if (out->op != IR_OP_RESHAPE || out->shape.rank != 3) return false;
  IrNode *c4 = out->in[0];
  if (!is_perm_0213(c4) || !single_use(c4, pinned)) return false;
  IrNode *ctx = c4->in[0];
  if (ctx->op != IR_OP_MATMUL || !single_use(ctx, pinned) || ir_attr_int(ctx, "transpose_a") ||
      ir_attr_int(ctx, "transpose_b"))
    return false;
  m->dead[m->n_dead++] = c4;
  m->dead[m->n_dead++] = ctx;
  IrNode *p = ctx->in[0];
  if (p->op == IR_OP_DROPOUT) {
    if (!single_use(p, pinned)) return false;
    m->drop = p;
    m->dead[m->n_dead++] = p;
    p = p->in[0];
  }
  if (p->op != IR_OP_SOFTMAX || !single_use(p, pinned) || p->shape.rank != 4) return false;
  int64_t axis = ir_attr_int(p, "axis");
  if (axis != -1 && axis != 3) return false;
  m->dead[m->n_dead++] = p;
  IrNode *x = p->in[0];
  const IrShape *s4 = &p->shape;  // [B, H, Nq, Nk]
  if (x->op == IR_OP_ADD) {
    if (!single_use(x, pinned)) return false;
    int chain = x->in[0]->op == IR_OP_MATMUL || x->in[0]->op == IR_OP_AFFINE ? 0 : 1;
    IrNode *mask = x->in[1 - chain];
    if (!ir_shape_eq(&x->in[chain]->shape, s4) || mask->dtype != DT_F32 || mask->shape.rank > 4)
      return false;
    m->mask = mask;
    m->dead[m->n_dead++] = x;
    x = x->in[chain];
  }
  if (x->op == IR_OP_AFFINE) {
    if (!single_use(x, pinned) || ir_attr_float(x, "shift") != 0) return false;
    m->scale = ir_attr_float(x, "scale");
    m->dead[m->n_dead++] = x;
    x = x->in[0];
  }
  if (x->op != IR_OP_MATMUL || !single_use(x, pinned) || ir_attr_int(x, "transpose_a") ||
      !ir_attr_int(x, "transpose_b"))
    return false;
  m->dead[m->n_dead++] = x;
  if (!(m->q = head_split(m, x->in[0], pinned)) || !(m->k = head_split(m, x->in[1], pinned)) ||
      !(m->v = head_split(m, ctx->in[1], pinned)))
    return false;
  // The attention op's layout: q [B,Nq,HD], k = v [B,Nk,HD], out like q.
  return ir_shape_eq(&m->k->shape, &m->v->shape) && m->k->shape.dim[0] == m->q->shape.dim[0] &&
         m->k->shape.dim[2] == m->q->shape.dim[2] && ir_shape_eq(&out->shape, &m->q->shape) &&
         m->q != m->k && m->q != m->v && m->k != m->v;
}

// Nodes whose value depends on something autodiff differentiates (a parameter, or an f32
// input when gradients of inputs are wanted). A mask among them keeps its attention
// unfused: the fused op has no gradient with respect to its mask.
static bool *differentiated(const IrGraph *g, const PassOptions *o) {
  bool *v = calloc((size_t)g->n_nodes + 1, 1);
  for (int i = 0; v && i < g->n_nodes; i++) {
    const IrNode *n = g->nodes[i];
    v[i] = n->dtype == DT_F32 &&
           (n->op == IR_OP_PARAM || (o->wrt_inputs && n->op == IR_OP_INPUT));
    for (int k = 0; k < n->n_in && !v[i]; k++) v[i] = n->dtype == DT_F32 && v[n->in[k]->id];
  }
  return v;
}

// The reshape node `out` becomes the attention node (its name, so its users are unchanged).
static void rewrite(IrGraph *g, IrNode *out, const AttnMatch *m) {
  IrNode *in[4] = {m->q, m->k, m->v, m->mask};
  int n_in = m->mask ? 4 : 3;
  out->op = IR_OP_ATTENTION;
  out->n_in = n_in;
  out->in = arena_alloc(&g->arena, (size_t)n_in * sizeof *out->in);
  memcpy(out->in, in, (size_t)n_in * sizeof *in);
  memset(out->attr, 0, sizeof out->attr);
  const IrAttrSpec *spec = ir_ops[IR_OP_ATTENTION].attrs;
  for (int i = 0; spec[i].name; i++) {
    out->attr[i].i = (int64_t)spec[i].def;
    out->attr[i].f = spec[i].def;
  }
  ir_set_int(out, "heads", m->heads);
  ir_set_float(out, "scale", m->scale);
  if (m->drop) {
    ir_set_float(out, "p", ir_attr_float(m->drop, "p"));
    ir_set_int(out, "rng_hash", (int64_t)ir_rng_name_hash(m->drop->name));
  }
  out->where = arena_printf(&g->arena, "%s (fused attention)", out->where);
}

bool pass_fuse_attention(IrGraph *g, const PassOptions *o, Diag *d) {
  int nn = g->n_nodes;
  bool *pinned = calloc((size_t)nn + 1, 1), *dead = calloc((size_t)nn + 1, 1);
  bool *diff = o->loss ? differentiated(g, o) : calloc((size_t)nn + 1, 1);
  if (!pinned || !dead || !diff) {
    free(pinned), free(dead), free(diff);
    return diag_error(d, "out of memory");
  }
  for (int i = 0; i < g->n_outputs; i++) pinned[g->outputs[i]->id] = true;
  for (int i = 0; i < g->n_losses; i++) pinned[g->losses[i].node->id] = true;
  int fused = 0;
  for (int i = 0; i < nn; i++) {
    IrNode *n = g->nodes[i];
    AttnMatch m;
    if (!match(n, pinned, &m) || (m.mask && diff[m.mask->id])) continue;
    bool fresh = true;  // no node claimed twice
    for (int k = 0; k < m.n_dead; k++) fresh = fresh && !dead[m.dead[k]->id];
    if (!fresh) continue;
    for (int k = 0; k < m.n_dead; k++) dead[m.dead[k]->id] = true;
    rewrite(g, n, &m);
    fused++;
  }
  if (fused) ir_graph_remove(g, dead);
  free(pinned), free(dead), free(diff);
  return !fused || ir_graph_finish(g, d);
}
