// The fusion pass: groups nodes that one kernel can compute and replaces each group by a
// node of op `fused` whose body holds the group's ordinary nodes (see ir.h). Runs after
// autodiff, on forward and backward graphs alike. Three rules, in this order:
//   gemm:      matmul -> [affine scale] -> [add bias (N)] -> [gelu] -> [add residual]: the
//              GEMM's register-tile epilogue (codegen/cg_gemm.c). Not gelu_grad(this, x) of
//              the backward: in the epilogue each vector's gelu'(x) (an erf and an exp) runs
//              as one dependent chain beside the live accumulators, and the GEMM took 1.45x
//              its time without it; as a kernel of its own the chains overlap (VisualBERT-base
//              pre-training step, thread CPU time: 20.5 -> 12.4 + 1.6 ms a layer);
//   reduction: softmax / log_softmax over the last axis, layernorm, or reduce_sum / mean /
//              max over the last axis, with the elementwise ops that produce its (row)
//              input: residual add + dropout + layernorm, scale + mask + softmax, and the
//              row sums of the backward (softmax', layernorm'); softmax / log_softmax /
//              layernorm also with an elementwise epilogue (the probabilities' dropout,
//              cross-entropy's backward softmax - one_hot);
//   loop:      DAGs of elementwise and broadcast ops of one output shape: one loop kernel.
// A producer joins a group only when every consumer is in the group and it is no output,
// loss or gradient; the group's root becomes the fused node in place (same name, same
// pointer), so consumers, outputs and losses need no rewiring.
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

#define FUSE_MAX_PARAMS 12  // inputs of a fused node (the plan's buffer table has room)

// The epilogue rule_gemm chose, in graph nodes; build_body records it as an IrGemmEpilogue
// in param indices.
typedef struct GemmPick {
  IrNode *matmul;
  double scale;
  IrNode *bias;  // or NULL
  bool gelu;
  IrGemmResidual residual;
  IrNode *r;     // R, or NULL
} GemmPick;

typedef struct Fuse {
  IrGraph *g;
  int nn;
  int *group;       // per node: the id of its group's root, or -1
  int **users;      // per node: its consumers (with repeats)
  int *n_users;
  bool *pinned;     // outputs, losses, gradients: may be a root, never absorbed
  bool *named;      // dropouts a dropout_grad names, fused nodes: in no group
  GemmPick *gemm;   // per gemm group's root: the epilogue rule_gemm chose
  // After the rules: each root's members in id order, list[start[root] .. start[root + 1]),
  // so that building a body costs its size, not the graph's; map: original id -> clone
  // while one body is built (NULL elsewhere).
  int *start, *list;
  IrNode **map;
  IrNode **work, **added;  // grow's worklist and the nodes it added (n each)
} Fuse;

static bool is_fusible_ew(const Fuse *f, const IrNode *n) {
  if (f->named[n->id] || !ir_op_is_elementwise(n->op)) return false;
  if (n->dtype != DT_F32 || n->n_in == 0) return false;
  return true;
}

// Every consumer of n is in group `root`.
static bool used_only_by(const Fuse *f, const IrNode *n, int root) {
  if (f->pinned[n->id] || f->named[n->id] || f->n_users[n->id] == 0) return false;
  for (int k = 0; k < f->n_users[n->id]; k++)
    if (f->group[f->users[n->id][k]] != root) return false;
  return true;
}

// Grows group `root` backwards from the inputs of its members: an elementwise producer of
// shape `shape` whose every use is in the group joins, until nothing more does. From
// `start` only input `seed_in` is followed (reductions: the row input; -1: all); members
// after `start` (a reduction's epilogue) are not followed.
static int grow(Fuse *f, IrNode *root, IrNode *start, const IrShape *shape, int seed_in) {
  // A worklist from start: whether an input may join depends only on the group growing
  // (its users all in it), so the closure is the same in any order, and each member is
  // looked at once instead of rescanning every node below start until nothing changes.
  // The nodes added are left in f->added[0 .. returned count).
  int added = 0, top = 0;
  f->work[top++] = start;
  while (top) {
    IrNode *m = f->work[--top];
    for (int k = 0; k < m->n_in; k++) {
      if (m == start && seed_in >= 0 && k != seed_in) continue;
      IrNode *p = m->in[k];
      if (f->group[p->id] >= 0 || !is_fusible_ew(f, p) || !ir_shape_eq(&p->shape, shape)) continue;
      if (m->op == IR_OP_DROPOUT_GRAD && k == 1) continue;  // named, not read
      if (!used_only_by(f, p, root->id)) continue;
      f->group[p->id] = root->id;
      f->added[added++] = p;
      f->work[top++] = p;
    }
  }
  return added;
}

static IrNode *sole_user(const Fuse *f, const IrNode *n) {
  if (f->pinned[n->id] || f->n_users[n->id] != 1) return NULL;
  IrNode *u = f->g->nodes[f->users[n->id][0]];
  return f->group[u->id] < 0 && u->dtype == DT_F32 && ir_shape_eq(&u->shape, &n->shape) ? u : NULL;
}

static IrNode *other_input(const IrNode *u, const IrNode *n) {
  if (u->n_in != 2 || u->in[0] == u->in[1]) return NULL;
  return u->in[0] == n ? u->in[1] : u->in[1] == n ? u->in[0] : NULL;
}

static void rule_gemm(Fuse *f, IrNode *mm) {
  const IrShape *s = &mm->shape;
  if (mm->dtype != DT_F32 || s->rank < 2 || f->group[mm->id] >= 0 || f->named[mm->id]) return;
  int64_t N = s->dim[s->rank - 1];
  GemmPick pick = {.matmul = mm, .scale = 1.0, .residual = IR_GEMM_RESIDUAL_NONE};
  IrNode *chain[4], *cur = mm, *u;
  int n = 0, stage = 0;  // stages in epilogue order: 0 scale, 1 bias, 2 gelu, 3 residual
  while (stage < 4 && (u = sole_user(f, cur)) && !f->named[u->id]) {
    IrNode *o = other_input(u, cur);
    if (stage <= 0 && u->op == IR_OP_AFFINE && ir_attr_float(u, "shift") == 0) {
      stage = 1;
      pick.scale = ir_attr_float(u, "scale");
    } else if (stage <= 1 && u->op == IR_OP_ADD && o && o->dtype == DT_F32 && o->shape.rank >= 1 &&
               ir_numel(&o->shape) == N && o->shape.dim[o->shape.rank - 1] == N &&
               o->shape.rank <= s->rank) {
      stage = 2;
      pick.bias = o;
    } else if (stage <= 2 && u->op == IR_OP_GELU) {
      stage = 3;
      pick.gelu = true;
    } else if (stage <= 3 && u->op == IR_OP_ADD && o && o->dtype == DT_F32 &&
               ir_shape_eq(&o->shape, s) && f->group[o->id] < 0) {
      stage = 4;
      pick.residual = IR_GEMM_RESIDUAL_ADD;
      pick.r = o;
    } else {
      break;
    }
    chain[n++] = cur = u;
  }
  if (n == 0) return;
  IrNode *root = chain[n - 1];
  f->gemm[root->id] = pick;
  f->group[root->id] = root->id;
  f->group[mm->id] = root->id;
  for (int i = 0; i < n - 1; i++) f->group[chain[i]->id] = root->id;
}

// Rule reduction: a row op over the last axis and the elementwise ops producing its input.
static bool is_row_op(const IrNode *n) {
  if (n->dtype != DT_F32) return false;
  if (n->op == IR_OP_REDUCE_SUM || n->op == IR_OP_REDUCE_MEAN || n->op == IR_OP_REDUCE_MAX) {
    const IrAttr *axes = ir_attr(n, "axes");  // exactly the last axis of the input
    int r = n->in[0]->shape.rank;
    return r >= 1 && axes->n == 1 && (axes->ints[0] == -1 || axes->ints[0] == r - 1);
  }
  if (n->shape.rank < 1) return false;
  if (n->op == IR_OP_LAYERNORM) return true;
  if (n->op != IR_OP_SOFTMAX && n->op != IR_OP_LOG_SOFTMAX) return false;
  int64_t axis = ir_attr_int(n, "axis");
  return axis == -1 || axis == n->shape.rank - 1;
}

// The epilogue: elementwise ops after a softmax / log_softmax / layernorm, each the sole
// user of the one before, of the row op's shape (the probabilities' dropout in inference;
// cross-entropy's backward, softmax - one_hot, scaled). Their other inputs stay params.
// After a row reduce (one value per row) only ops of one input that need no element index
// (not dropout): the layernorm backward's rsqrt(var + eps).
static int epilogue(Fuse *f, IrNode *r, IrNode **chain, int max) {
  bool reduce = r->op == IR_OP_REDUCE_SUM || r->op == IR_OP_REDUCE_MEAN || r->op == IR_OP_REDUCE_MAX;
  if (r->op != IR_OP_SOFTMAX && r->op != IR_OP_LOG_SOFTMAX && r->op != IR_OP_LAYERNORM && !reduce)
    return 0;
  int n = 0;
  IrNode *cur = r, *u;
  while (n < max && (u = sole_user(f, cur)) && is_fusible_ew(f, u) && ir_shape_eq(&u->shape, &r->shape)) {
    if (u->op == IR_OP_DROPOUT_GRAD && u->in[0] != cur) break;  // names cur: not an operand
    if (reduce && (u->n_in != 1 || u->op == IR_OP_DROPOUT || u->op == IR_OP_DROPOUT_GRAD)) break;
    chain[n++] = cur = u;
  }
  return n;
}

static void rule_reduction(Fuse *f, IrNode *r) {
  if (f->group[r->id] >= 0 || f->named[r->id] || !is_row_op(r)) return;
  IrNode *epi[8];
  int ne = epilogue(f, r, epi, 8);
  IrNode *root = ne ? epi[ne - 1] : r;
  f->group[r->id] = root->id;
  for (int i = 0; i < ne; i++) f->group[epi[i]->id] = root->id;
  int na = grow(f, root, r, &r->in[0]->shape, 0);
  bool ok = na + ne > 0;
  for (int k = 1; k < r->n_in; k++) ok &= f->group[r->in[k]->id] != root->id;  // weights: params
  if (!ok) {  // undone: r, its epilogue and what grow added
    f->group[r->id] = -1;
    for (int i = 0; i < ne; i++) f->group[epi[i]->id] = -1;
    for (int i = 0; i < na; i++) f->group[f->added[i]->id] = -1;
  }
}

static void rule_loop(Fuse *f, IrNode *r) {
  if (f->group[r->id] >= 0 || !is_fusible_ew(f, r)) return;
  f->group[r->id] = r->id;
  if (!grow(f, r, r, &r->shape, -1)) f->group[r->id] = -1;
}

// ---------------------------------------------------------------------------------------
// Building the fused node of group `root`: params for the distinct outside inputs, clones
// of the members (in topological order) as the body. Fails (leaves the group unfused) when
// it would need more than FUSE_MAX_PARAMS inputs.
static IrNode *clone(IrGraph *g, const IrNode *n) {
  IrNode *c = arena_alloc(&g->arena, sizeof *c);
  *c = *n;
  return c;
}

typedef struct Pending {
  IrNode *root;
  IrBody *body;
  IrNode **in;
  int kind;
} Pending;

static bool build_body(Fuse *f, IrNode *root, int kind, Pending *out) {
  IrGraph *g = f->g;
  const int *mem = f->list + f->start[root->id];
  int nm = f->start[root->id + 1] - f->start[root->id];
  IrNode *outer[FUSE_MAX_PARAMS];
  IrNode **map = f->map;
  IrBody *b = arena_alloc(&g->arena, sizeof *b);
  b->params = arena_alloc(&g->arena, FUSE_MAX_PARAMS * sizeof *b->params);
  b->nodes = arena_alloc(&g->arena, (size_t)nm * sizeof *b->nodes);
  bool ok = true;
  for (int j = 0; j < nm && ok; j++) {
    IrNode *m = g->nodes[mem[j]];
    for (int k = 0; k < m->n_in && ok; k++) {
      IrNode *p = m->in[k];
      if (f->group[p->id] == root->id || map[p->id]) continue;
      if (b->n_params == FUSE_MAX_PARAMS) {
        ok = false;
        break;
      }
      IrNode *c = clone(g, p);
      c->n_in = 0;
      c->in = NULL;
      c->body = NULL;
      c->n_uses = 0;
      c->id = b->n_params;
      outer[b->n_params] = p;
      b->params[b->n_params++] = map[p->id] = c;
    }
  }
  for (int j = 0; j < nm && ok; j++) {
    IrNode *m = g->nodes[mem[j]], *c = clone(g, m);
    c->in = arena_alloc(&g->arena, (size_t)(m->n_in + 1) * sizeof *c->in);
    for (int k = 0; k < m->n_in; k++) c->in[k] = map[m->in[k]->id];
    c->id = b->n;
    c->n_uses = 0;
    b->nodes[b->n++] = map[m->id] = c;
  }
  if (ok && kind == IR_FUSED_GEMM) {  // the epilogue, in body and param indices
    const GemmPick *pk = &f->gemm[root->id];
    IrGemmEpilogue *e = arena_alloc(&g->arena, sizeof *e);
    *e = (IrGemmEpilogue){.matmul = map[pk->matmul->id]->id,
                          .scale = pk->scale,
                          .bias = pk->bias ? map[pk->bias->id]->id : -1,
                          .gelu = pk->gelu,
                          .residual = pk->residual,
                          .residual_param = pk->r ? map[pk->r->id]->id : -1};
    b->gemm = e;
  }
  if (ok) {
    out->root = root;
    out->body = b;
    out->kind = kind;
    out->in = arena_alloc(&g->arena, (size_t)(b->n_params + 1) * sizeof *out->in);
    memcpy(out->in, outer, (size_t)b->n_params * sizeof *outer);
  }
  for (int k = 0; k < b->n_params; k++) map[outer[k]->id] = NULL;  // clean for the next body
  for (int j = 0; j < nm; j++) map[mem[j]] = NULL;
  return ok;
}

static void make_fused(const Pending *p) {
  IrNode *r = p->root;
  r->op = IR_OP_FUSED;
  memset(r->attr, 0, sizeof r->attr);
  r->attr[0].i = p->kind;
  r->attr[0].set = true;
  r->n_in = p->body->n_params;
  r->in = p->in;
  r->body = p->body;
}

// ---------------------------------------------------------------------------------------
static bool fuse_graph(IrGraph *g, Diag *d) {
  Fuse f = {.g = g, .nn = g->n_nodes};
  int nn = f.nn;
  f.group = malloc((size_t)nn * sizeof *f.group);
  f.n_users = calloc((size_t)nn, sizeof *f.n_users);
  f.users = calloc((size_t)nn, sizeof *f.users);
  f.pinned = calloc((size_t)nn, sizeof *f.pinned);
  f.named = calloc((size_t)nn, sizeof *f.named);
  f.gemm = calloc((size_t)nn + 1, sizeof *f.gemm);
  int *kind = calloc((size_t)nn, sizeof *kind);
  f.work = malloc(((size_t)nn + 1) * sizeof *f.work);
  f.added = malloc(((size_t)nn + 1) * sizeof *f.added);
  for (int i = 0; i < nn; i++) {
    f.group[i] = -1;
    f.users[i] = malloc((size_t)(g->nodes[i]->n_uses + 1) * sizeof **f.users);
  }
  for (int i = 0; i < nn; i++) {
    IrNode *n = g->nodes[i];
    for (int k = 0; k < n->n_in; k++) f.users[n->in[k]->id][f.n_users[n->in[k]->id]++] = i;
    if (n->op == IR_OP_DROPOUT_GRAD) f.named[n->in[1]->id] = true;
    if (n->op == IR_OP_FUSED) f.named[i] = true;  // already fused: left alone
  }
  for (int i = 0; i < g->n_outputs; i++) f.pinned[g->outputs[i]->id] = true;
  for (int i = 0; i < g->n_losses; i++) f.pinned[g->losses[i].node->id] = true;
  for (int i = 0; i < g->n_grads; i++) f.pinned[g->grads[i].grad->id] = true;

  for (int i = 0; i < nn; i++)
    if (g->nodes[i]->op == IR_OP_MATMUL) rule_gemm(&f, g->nodes[i]);
  for (int i = nn - 1; i >= 0; i--) rule_reduction(&f, g->nodes[i]);
  for (int i = nn - 1; i >= 0; i--) rule_loop(&f, g->nodes[i]);
  // Members of each group (those before their root), in id order.
  f.start = calloc((size_t)nn + 2, sizeof *f.start);
  f.list = malloc(((size_t)nn + 1) * sizeof *f.list);
  f.map = calloc((size_t)nn + 1, sizeof *f.map);
  for (int i = 0; i < nn; i++)
    if (f.group[i] >= i) f.start[f.group[i] + 2]++;
  for (int i = 0; i < nn; i++) f.start[i + 2] += f.start[i + 1];
  for (int i = 0; i < nn; i++)
    if (f.group[i] >= i) f.list[f.start[f.group[i] + 1]++] = i;  // start[r + 1] ends as r's end
  for (int i = 0; i < nn; i++) {
    if (f.group[i] != i) continue;
    kind[i] = IR_FUSED_LOOP;
    for (int j = f.start[i]; j < f.start[i + 1]; j++) {
      if (is_row_op(g->nodes[f.list[j]])) kind[i] = IR_FUSED_REDUCTION;
      if (g->nodes[f.list[j]]->op == IR_OP_MATMUL) kind[i] = IR_FUSED_GEMM;
    }
  }

  // Bodies are cloned from the graph as it was; then the roots change in place.
  Pending *pend = calloc((size_t)nn + 1, sizeof *pend);
  int np = 0;
  for (int i = 0; i < nn; i++) {
    if (f.group[i] != i) continue;
    if (build_body(&f, g->nodes[i], kind[i], &pend[np])) {
      np++;
    } else {  // too many inputs: the group stays as it was
      for (int j = f.start[i]; j < f.start[i + 1]; j++) f.group[f.list[j]] = -1;
    }
  }
  for (int k = 0; k < np; k++) make_fused(&pend[k]);
  int m = 0;
  for (int i = 0; i < nn; i++) {
    IrNode *n = g->nodes[i];
    if (f.group[i] >= 0 && f.group[i] != i) {  // now inside a body
      ir_graph_forget(g, n);
      continue;
    }
    n->id = m;
    g->nodes[m++] = n;
  }
  g->n_nodes = m;
  for (int i = 0; i < nn; i++) free(f.users[i]);
  free(f.users);
  free(f.n_users);
  free(f.group);
  free(f.pinned);
  free(f.named);
  free(f.gemm);
  free(f.start);
  free(f.list);
  free(f.map);
  free(f.work);
  free(f.added);
  free(kind);
  free(pend);
  return ir_graph_finish(g, d);
}

bool pass_fuse(IrGraph *g, const PassOptions *o, Diag *d) {
  (void)o;
  return fuse_graph(g, d);
}
