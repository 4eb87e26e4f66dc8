// Recomputation (activation checkpointing, as torch.utils.checkpoint), PassOptions.recompute:
// the backward reads no value computed inside an instance of a repeated block call (an
// encoder layer: `"repeat"` in the model file, docs/training.md) except the values the
// forward itself reads outside the instance (its outputs, the next layer's input). Every
// other value of the instance the backward reads is computed again from the instance's
// inputs by clones of its forward nodes, which the graph's order puts just before the
// backward's first use; the forward's own values then die inside the forward. Runs after
// fuse and schedule, so the graph is fused and ordered exactly as without it, and a clone
// runs its original's kernel on the same inputs: the same bits.
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

// ---------------------------------------------------------------------------------------
// Block instances from the places the frontend records: a node that block B's call made
// is at "<B's place> (from <the call's place> VAR=K)" for the K-th instance of a repeated
// call (")" alone without repeat), and the call's place carries its own callers the same
// way: "b (from c1 (from c2) i=3)"; passes may append notes ("(gradient)"). The clause
// " (from c1 (from c2) i=3)" names the instance; every node it made, directly or through
// nested calls, and every node a pass made for one of them, contains it.

const char *pass_recompute_instance(const char *where, size_t *len) {
  static const char from[] = " (from ";
  const char *best = NULL;
  for (const char *p = strstr(where, from); p; p = strstr(p + 1, from)) {
    const char *q = p + 1;  // its '(' and the matching ')'
    int depth = 0;
    for (; *q; q++) {
      depth += (*q == '(') - (*q == ')');
      if (!depth) break;
    }
    if (!*q) return best;  // unbalanced: not a place the frontend wrote
    const char *e = q;     // " VAR=K)": a repeated call's instance
    while (e > p && e[-1] >= '0' && e[-1] <= '9') e--;
    if (e == q || e[-1] != '=') continue;
    const char *v = e - 1;
    while (v > p && v[-1] != ' ' && v[-1] != '(' && v[-1] != ')') v--;
    if (v == e - 1 || v[-1] != ' ') continue;
    best = p;  // later clauses are outer calls: the outermost repeated call wins
    *len = (size_t)(q + 1 - p);
  }
  return best;
}

// ---------------------------------------------------------------------------------------
// The pass.

typedef struct Recompute {
  IrGraph *g;
  const char **inst;  // per node id: its instance clause (forward nodes only), or NULL
  size_t *inst_len;
  bool *forward;      // the loss depends on it
  bool *kept;         // in an instance, but the backward reads the original
  IrNode **clone;     // per node id: its recomputation, once made
} Recompute;

static bool same_instance(const Recompute *r, const IrNode *a, const IrNode *b) {
  const char *x = r->inst[a->id], *y = r->inst[b->id];
  return x && y && r->inst_len[a->id] == r->inst_len[b->id] && !memcmp(x, y, r->inst_len[a->id]);
}

// A node whose random stream is keyed by its own name (a dropout's mask, an attention
// without the rng_hash of the dropout it replaced) gives another stream under another
// name: kept. Fused bodies keep their nodes' names, so their masks come out the same.
static bool keyed_by_name(const IrNode *n) {
  if (!(ir_ops[n->op].flags & IR_FLAG_RANDOM)) return false;
  return !(n->op == IR_OP_ATTENTION && (ir_attr_int(n, "rng_hash") || ir_attr_float(n, "p") == 0));
}

static IrNode *clone_of(Recompute *r, IrNode *x) {
  if (r->clone[x->id]) return r->clone[x->id];
  IrGraph *g = r->g;
  IrNode *c = ir_graph_add(g, x->op, arena_printf(&g->arena, "recompute:%s", x->name),
                           arena_printf(&g->arena, "%s (recomputed)", x->where));
  c->dtype = x->dtype;
  c->shape = x->shape;
  memcpy(c->attr, x->attr, sizeof c->attr);
  c->body = x->body;
  c->n_in = x->n_in;
  c->in = arena_alloc(&g->arena, (size_t)(x->n_in + 1) * sizeof *c->in);
  r->clone[x->id] = c;
  for (int k = 0; k < x->n_in; k++) {
    IrNode *y = x->in[k];
    c->in[k] = same_instance(r, x, y) && !r->kept[y->id] ? clone_of(r, y) : y;
  }
  return c;
}

bool pass_recompute(IrGraph *g, const PassOptions *o, Diag *d) {
  if (!o->recompute_layers || !o->loss) return true;
  const IrNode *loss = NULL;
  for (int i = 0; i < g->n_losses; i++)
    if (!strcmp(g->losses[i].name, o->loss)) loss = g->losses[i].node;
  if (!loss) return true;  // autodiff reported it
  int nn = g->n_nodes;
  Recompute r = {g, calloc((size_t)nn + 1, sizeof(char *)), calloc((size_t)nn + 1, sizeof(size_t)),
                 calloc((size_t)nn + 1, 1), calloc((size_t)nn + 1, 1), calloc((size_t)nn + 1, sizeof(IrNode *))};
  bool ok = r.inst && r.inst_len && r.forward && r.kept && r.clone;
  if (ok) {
    r.forward[loss->id] = true;
    for (int i = loss->id; i >= 0; i--)
      if (r.forward[i])
        for (int k = 0; k < g->nodes[i]->n_in; k++) r.forward[g->nodes[i]->in[k]->id] = true;
    for (int i = 0; i < nn; i++) {
      const IrNode *n = g->nodes[i];
      if (n->op != IR_OP_INPUT && n->op != IR_OP_PARAM) r.inst[i] = pass_recompute_instance(n->where, &r.inst_len[i]);
    }
    // Kept: what the forward reads outside the instance, what the caller reads, and
    // what is keyed by its name.
    for (int i = 0; i < nn; i++) {
      IrNode *n = g->nodes[i];
      if (r.forward[i] && r.inst[i] && (ir_is_root(g, n) || keyed_by_name(n))) r.kept[i] = true;
      for (int k = 0; k < n->n_in; k++) {
        const IrNode *x = n->in[k];
        if (r.inst[x->id] && r.forward[i] && !same_instance(&r, n, x)) r.kept[x->id] = true;
      }
    }
    // The backward reads clones.
    for (int i = 0; i < nn; i++) {
      IrNode *n = g->nodes[i];
      if (r.forward[i]) continue;
      for (int k = 0; k < n->n_in; k++) {
        IrNode *x = n->in[k];
        if (r.forward[x->id] && r.inst[x->id] && !r.kept[x->id]) n->in[k] = clone_of(&r, x);
      }
    }
    // The order: the forward's nodes, then the backward's, as scheduled; but the nodes of an
    // instance's backward that read nothing of the gradient flowing into it (the scheduler
    // may have run such nodes early: a LayerNorm's statistics) and the clones come last,
    // where ir_graph_finish (a depth-first order over g->nodes) puts each just before its
    // first reader.
    bool *anchored = calloc((size_t)nn + 1, 1);
    IrNode **order = malloc((size_t)nn * sizeof *order);
    ok = anchored && order;
    for (int i = 0; ok && i < nn; i++) {
      const IrNode *n = g->nodes[i];
      anchored[i] = !r.forward[i] && !r.inst[i];
      for (int k = 0; k < n->n_in && !r.forward[i] && !anchored[i]; k++) {
        const IrNode *x = n->in[k];
        anchored[i] = x->id < nn && !r.forward[x->id] && (anchored[x->id] || !same_instance(&r, n, x));
      }
    }
    int at = 0;
    for (int pass = 0; ok && pass < 3; pass++)
      for (int i = 0; i < nn; i++)
        if ((pass == 0 && r.forward[i]) || (pass == 1 && anchored[i]) || (pass == 2 && !r.forward[i] && !anchored[i]))
          order[at++] = g->nodes[i];
    if (ok) memcpy(g->nodes, order, (size_t)nn * sizeof *order);  // the clones stay after them
    free(anchored);
    free(order);
  }
  free(r.inst);
  free(r.inst_len);
  free(r.forward);
  free(r.kept);
  free(r.clone);
  if (!ok) return diag_error(d, "recompute: out of memory for %d nodes", nn);
  return ir_graph_finish(g, d);
}
