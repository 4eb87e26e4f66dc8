// Pass rowprune (inference only): computes only the rows that something reads. When every
// reader of a tensor takes some of its rows — a slice, or a gather with batch_dims, along
// the second-to-last axis (VisualBERT's pooler reads row 0 of the last layer's output and
// the VQA head one row per example) — the row-wise ops before it (the op table's rows
// column: linear layers, adds, GELU, LayerNorm, the attention's queries) run on those rows
// only. The selection moves up to the tensors something else reads whole, where it is
// taken once (the parts side by side along the row axis), the ops in between compute
// [..., K, F] instead of [..., N, F], and each reader takes its part of the result. Kernels
// compute each row on its own, so the values are the same bit for bit.
//
// A moved gather keeps its node, name and indices but gathers the row numbers (an iota):
// an index out of range is reported as before, by the same node at the same element, and
// the gathers of rows read its checked result. Training graphs are left alone: gradients
// need every row.
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

// The rows of one tensor that its readers take: those readers (slices and gathers, in graph
// order), whose parts are laid side by side in that order, `rows` in all.
typedef struct Sel {
  int n;
  IrNode **parts;
  int64_t rows;
} Sel;

// A selection taken of a tensor the pruned ops read (cached: taken once per tensor).
typedef struct Taken {
  IrNode *of;
  const Sel *sel;
  IrNode *node;
} Taken;

typedef struct Prune {
  IrGraph *g;
  int nn;                 // nodes before the pass
  int *use_start, *uses;  // consumers of node i: uses[use_start[i] .. use_start[i+1])
  Sel **sel;              // the rows of node i that are read (NULL: all)
  bool *pruned;           // node i is recomputed on sel[i]'s rows only
  IrNode **clone;         // ... as this node
  Taken *taken;
  int n_taken, cap_taken;
  IrNode **fixups;        // gathers of rows built with a selector's indices: read its result
  IrNode **fixup_of;
  int n_fixups, cap_fixups;
} Prune;

static int norm_axis(int64_t axis, int rank) { return (int)(axis < 0 ? axis + rank : axis); }

// Does x depend on node y (a path of inputs from x back to y)?
static bool depends_on(const IrNode *x, const IrNode *y, bool *seen) {
  if (x == y) return true;
  if (x->id < y->id || seen[x->id]) return false;  // topological order: y is before x
  seen[x->id] = true;
  for (int k = 0; k < x->n_in; k++)
    if (depends_on(x->in[k], y, seen)) return true;
  return false;
}

// c reads rows of x along x's row axis (rank - 2): a slice there, or a gather there whose
// batch dims are all the dims before it, of one or one list of rows per batch entry, with
// indices that do not depend on x. Returns the rows it takes, or 0.
static int64_t selector_rows(const Prune *p, const IrNode *c, const IrNode *x) {
  int r = x->shape.rank;
  if (r < 2 || c->in[0] != x || ir_is_root(p->g, c)) return 0;
  if (c->op == IR_OP_SLICE && norm_axis(ir_attr_int(c, "axis"), r) == r - 2)
    return ir_attr_int(c, "end") - ir_attr_int(c, "start");
  if (c->op != IR_OP_GATHER || norm_axis(ir_attr_int(c, "axis"), r) != r - 2 ||
      ir_attr_int(c, "batch_dims") != r - 2)
    return 0;
  const IrNode *idx = c->in[1];
  if (idx->shape.rank != r - 2 && idx->shape.rank != r - 1) return 0;
  bool *seen = calloc((size_t)p->nn + 1, sizeof *seen);
  bool dep = depends_on(idx, x, seen);
  free(seen);
  if (dep) return 0;
  return idx->shape.rank == r - 2 ? 1 : idx->shape.dim[r - 2];
}

// The rows of x that are read, from its consumers (already decided: they come later):
// its own selection when all its readers are selectors, the one selection of its consumers
// when all of them are pruned and read x's rows, else NULL (all rows).
static Sel *decide(Prune *p, IrNode *x) {
  int r = x->shape.rank, b = p->use_start[x->id], e = p->use_start[x->id + 1];
  if (r < 2 || b == e || ir_is_root(p->g, x)) return NULL;
  Sel *from = NULL;
  int n_sel = 0;
  int64_t rows = 0;
  for (int u = b; u < e; u++) {
    IrNode *c = p->g->nodes[p->uses[u]];
    int64_t k = selector_rows(p, c, x);
    if (k > 0) {
      if (u == b || p->uses[u] != p->uses[u - 1]) n_sel++, rows += k;
      continue;
    }
    if (!p->pruned[c->id]) return NULL;
    unsigned mask = ir_row_inputs(c);
    for (int i = 0; i < c->n_in; i++)
      if (c->in[i] == x && !(mask & (1u << i))) return NULL;  // read whole
    if (from && from != p->sel[c->id]) return NULL;
    from = p->sel[c->id];
  }
  if (from) return n_sel ? NULL : from;
  if (rows >= x->shape.dim[r - 2]) return NULL;  // nothing to save
  Sel *s = arena_alloc(&p->g->arena, sizeof *s);
  s->parts = arena_alloc(&p->g->arena, (size_t)n_sel * sizeof *s->parts);
  s->n = 0;
  s->rows = rows;
  for (int u = b; u < e; u++)
    if (u == b || p->uses[u] != p->uses[u - 1]) s->parts[s->n++] = p->g->nodes[p->uses[u]];
  return s;
}

static void *grow(void *a, int *cap, int need, size_t size) {
  if (need <= *cap) return a;
  *cap = *cap ? 2 * *cap : 8;
  return realloc(a, (size_t)*cap * size);
}

static IrNode *build_gather(IrBuilder *b, IrNode *data, IrNode *idx, const IrNode *like) {
  IrNode *n = ir_build(b, IR_OP_GATHER, 2, (IrNode *[]){data, idx});
  ir_set_int(n, "axis", ir_attr_int(like, "axis"));
  ir_set_int(n, "batch_dims", ir_attr_int(like, "batch_dims"));
  return ir_build_done(b, n);
}

// sel's rows of x, [..., sel->rows, F]: each reader's part, side by side.
static IrNode *take(Prune *p, IrNode *x, const Sel *sel) {
  for (int i = 0; i < p->n_taken; i++)
    if (p->taken[i].of == x && p->taken[i].sel == sel) return p->taken[i].node;
  int r = x->shape.rank;
  IrBuilder b;
  ir_builder_init(&b, p->g, arena_printf(&p->g->arena, "%s:rows", x->name), x->where);
  IrNode **parts = malloc((size_t)sel->n * sizeof *parts);
  for (int i = 0; i < sel->n; i++) {
    IrNode *c = sel->parts[i];
    if (c->op == IR_OP_SLICE) {
      parts[i] = ir_build_slice(&b, x, r - 2, ir_attr_int(c, "start"), ir_attr_int(c, "end"));
      continue;
    }
    // Built with the selector's own indices, then pointed at its checked result.
    IrNode *gx = build_gather(&b, x, c->in[1], c);
    p->fixups = grow(p->fixups, &p->cap_fixups, p->n_fixups + 1, sizeof *p->fixups);
    p->fixup_of = realloc(p->fixup_of, (size_t)p->cap_fixups * sizeof *p->fixup_of);
    p->fixups[p->n_fixups] = gx;
    p->fixup_of[p->n_fixups++] = c;
    IrShape s = x->shape;
    s.dim[r - 2] = c->in[1]->shape.rank == r - 2 ? 1 : c->in[1]->shape.dim[r - 2];
    parts[i] = ir_build_reshape(&b, gx, &s);
  }
  IrNode *t = ir_build_concat(&b, sel->n, parts, r - 2);
  free(parts);
  p->taken = grow(p->taken, &p->cap_taken, p->n_taken + 1, sizeof *p->taken);
  p->taken[p->n_taken++] = (Taken){x, sel, t};
  return t;
}

// x's clone on sel's rows: the same op and attributes, the row inputs replaced by theirs.
static IrNode *clone(Prune *p, IrNode *x) {
  const Sel *sel = p->sel[x->id];
  unsigned mask = ir_row_inputs(x);
  IrNode *in[16];
  for (int k = 0; k < x->n_in; k++) {
    IrNode *y = x->in[k];
    in[k] = !(mask & (1u << k)) ? y : p->pruned[y->id] ? p->clone[y->id] : take(p, y, sel);
  }
  IrBuilder b;
  ir_builder_init(&b, p->g, arena_printf(&p->g->arena, "%s:rows", x->name), x->where);
  IrNode *c = ir_build(&b, x->op, x->n_in, in);
  memcpy(c->attr, x->attr, sizeof c->attr);
  return ir_build_done(&b, c);
}

// Each reader of the rows of x (pruned: x' = clone[x]) gets its part of x'.
static void give_parts(Prune *p, IrNode *x, IrNode **repl) {
  const Sel *sel = p->sel[x->id];
  IrNode *xs = p->clone[x->id];
  int r = x->shape.rank;
  int64_t at = 0;
  for (int i = 0; i < sel->n; i++) {
    IrNode *c = sel->parts[i];
    int64_t k = selector_rows(p, c, x);
    IrBuilder b;
    ir_builder_init(&b, p->g, arena_printf(&p->g->arena, "%s:rows", c->name), c->where);
    IrNode *part = k == sel->rows ? xs : ir_build_slice(&b, xs, r - 2, at, at + k);
    repl[c->id] = ir_build_reshape(&b, part, &c->shape);
    at += k;
  }
}

// Points each moved gather at its selector, which now gathers row numbers: its indices
// checked against the same dim, the same node reporting a bad one.
static void check_indices(Prune *p) {
  bool *done = calloc((size_t)p->nn + 1, sizeof *done);
  for (int i = 0; i < p->n_fixups; i++) {
    IrNode *c = p->fixup_of[i];
    if (!done[c->id]) {
      done[c->id] = true;
      IrShape s = c->in[0]->shape;
      int r = s.rank;
      s.rank = r - 1;  // [batch dims, rows]
      IrBuilder b;
      ir_builder_init(&b, p->g, arena_printf(&p->g->arena, "%s:row_numbers", c->name), c->where);
      c->in[0] = ir_build_iota(&b, &s, r - 2, c->in[1]->dtype);
    }
    p->fixups[i]->in[1] = c;
  }
  free(done);
}

bool pass_rowprune(IrGraph *g, const PassOptions *o, Diag *d) {
  if (o->loss || o->training || g->n_grads) return true;
  Prune p = {.g = g, .nn = g->n_nodes};
  int nn = p.nn;
  p.use_start = calloc((size_t)nn + 2, sizeof *p.use_start);
  p.sel = calloc((size_t)nn + 1, sizeof *p.sel);
  p.pruned = calloc((size_t)nn + 1, sizeof *p.pruned);
  p.clone = calloc((size_t)nn + 1, sizeof *p.clone);
  int n_edges = 0;
  for (int i = 0; i < nn; i++)
    for (int k = 0; k < g->nodes[i]->n_in; k++) p.use_start[g->nodes[i]->in[k]->id + 1]++, n_edges++;
  for (int i = 0; i < nn; i++) p.use_start[i + 1] += p.use_start[i];
  p.uses = malloc((size_t)(n_edges + 1) * sizeof *p.uses);
  int *fill = calloc((size_t)nn + 1, sizeof *fill);
  for (int i = 0; i < nn; i++)  // in order: each node's consumers ascending
    for (int k = 0; k < g->nodes[i]->n_in; k++) {
      int y = g->nodes[i]->in[k]->id;
      p.uses[p.use_start[y] + fill[y]++] = i;
    }
  free(fill);

  int n_pruned = 0;
  for (int i = nn - 1; i >= 0; i--) {
    IrNode *x = g->nodes[i];
    p.sel[i] = decide(&p, x);
    p.pruned[i] = p.sel[i] && x->n_in <= 16 && ir_row_inputs(x) != 0;
    n_pruned += p.pruned[i];
  }
  bool ok = true;
  if (n_pruned) {
    for (int i = 0; i < nn; i++)
      if (p.pruned[i]) p.clone[i] = clone(&p, g->nodes[i]);
    IrNode **repl = calloc((size_t)nn + 1, sizeof *repl);
    for (int i = 0; i < nn; i++)  // the pruned tensors whose readers take rows
      if (p.pruned[i] && p.sel[i]->parts[0]->in[0] == g->nodes[i]) give_parts(&p, g->nodes[i], repl);
    ir_rewrite_apply(g, repl, nn);
    free(repl);
    check_indices(&p);
    ok = ir_remove_dead(g, d) >= 0;
  }
  free(p.use_start);
  free(p.uses);
  free(p.sel);
  free(p.pruned);
  free(p.clone);
  free(p.taken);
  free(p.fixups);
  free(p.fixup_of);
  return ok;
}
