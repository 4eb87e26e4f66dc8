// Lifetimes of a program's buffers (see memory.h): every value and scratch buffer becomes
// one interval over the step order; elementwise steps may write over an input of the same
// shape and dtype that dies there (the kernel reads element i before it writes element i);
// the planner in passes/memplan.c turns the intervals into arena offsets. A training
// step's updates go over the parameters and state they replace (plan_updates).
#include <stdlib.h>
#include <string.h>

#include "codegen/memory.h"

int cg_memory_root(const IrGraph *g, int id) {
  while (ir_op_is_view(g->nodes[id]->op)) id = g->nodes[id]->in[0]->id;
  return id;
}

static bool separate(const IrNode *n) { return n->op == IR_OP_INPUT || n->op == IR_OP_PARAM; }

// Step s may write node n's value over input buffer `root` (arg node `arg`): an elementwise
// kernel, n's only step, the input read at the same index (same shape) and the same dtype.
static bool in_place_ok(const IrGraph *g, const CgStep *st, int steps_of_node, int arg) {
  const IrNode *n = g->nodes[st->node], *a = g->nodes[arg];
  return ir_op_is_elementwise(n->op) && steps_of_node == 1 &&
         st->n_args > 0 && st->args[0].kind == CG_ARG_NODE && st->args[0].id == n->id &&
         a->dtype == n->dtype && ir_shape_eq(&a->shape, &n->shape);
}

int cg_memory_home(const CgMemory *m, const IrGraph *g, int id) {
  int r = cg_memory_root(g, id);
  return m->in_place_of && m->in_place_of[r] >= 0 ? m->in_place_of[r] : r;
}

// What plan_updates needs to know of each root buffer, from one pass over the steps: the
// step that computes it (and how many do), whether a `once` step reads it, and the last
// other step that reads it.
typedef struct {
  int writer, n_writers, last_read;
  bool read_once;
} RootUse;

static RootUse *root_uses(const IrGraph *g, const CgSteps *steps) {
  RootUse *ru = malloc((size_t)g->n_nodes * sizeof *ru);
  if (!ru) return NULL;
  for (int i = 0; i < g->n_nodes; i++) ru[i] = (RootUse){.writer = -1, .last_read = -1};
  for (int s = 0; s < steps->n; s++) {
    const CgStep *st = &steps->v[s];
    ru[st->node].writer = s;
    ru[st->node].n_writers++;
    for (int a = 0; a < st->n_args; a++) {
      if (st->args[a].kind != CG_ARG_NODE) continue;
      RootUse *r = &ru[cg_memory_root(g, st->args[a].id)];
      if (st->once) r->read_once = true;
      else r->last_read = s;
    }
  }
  return ru;
}

// Update u (an optimiser output, the root node of its value) may be written over old, the
// parameter or state input it replaces: u is computed by one elementwise step w (a loop
// kernel reads element i before writing element i) of old's dtype and shape, no `once`
// step reads u, and every other step that reads old runs before w. All updates read the
// global gradient norm, so they come after the backward that reads the parameters.
static bool update_in_place_ok(const IrGraph *g, const bool *need, const CgSteps *steps, const RootUse *ru,
                               const IrNode *old, const IrNode *u) {
  if (old == u || (old->op != IR_OP_PARAM && old->op != IR_OP_INPUT) || separate(u) || !need[old->id] ||
      !need[u->id] || old->dtype != u->dtype || !ir_shape_eq(&old->shape, &u->shape))
    return false;
  bool loop = ir_op_is_elementwise(u->op) || (u->op == IR_OP_FUSED && ir_attr_int(u, "kind") == IR_FUSED_LOOP);
  const RootUse *w = &ru[u->id];
  if (!loop || w->n_writers != 1 || ru[u->id].read_once) return false;
  const CgStep *st = &steps->v[w->writer];
  if (st->once || !st->n_args || st->args[0].kind != CG_ARG_NODE || st->args[0].id != u->id) return false;
  return ru[old->id].last_read <= w->writer;
}

static bool plan_updates(const IrGraph *g, const bool *need, const CgSteps *steps, int *in_place_of) {
  const IrTrainStep *ts = g->train;
  if (!ts || !ts->n_updates) return true;
  RootUse *ru = root_uses(g, steps);
  if (!ru) return false;
  for (int k = 0; k < ts->n_updates; k++) {
    const IrUpdate *up = &ts->updates[k];
    const IrNode *old[3] = {up->param, up->state[0], up->state[1]};
    int out[3] = {up->new_value, up->new_state[0], up->new_state[1]};
    for (int j = 0; j < 3; j++) {
      if (!old[j] || out[j] < 0) continue;
      const IrNode *u = g->nodes[cg_memory_root(g, g->outputs[out[j]]->id)];
      if (in_place_of[u->id] < 0 && update_in_place_ok(g, need, steps, ru, old[j], u)) in_place_of[u->id] = old[j]->id;
    }
  }
  free(ru);
  return true;
}

bool cg_memory_plan(const IrGraph *g, const bool *need, const bool *want, const CgSteps *steps,
                    CgMemory *m, Diag *d) {
  memset(m, 0, sizeof *m);
  int nn = g->n_nodes, ns = steps->n_scratch, n = nn + ns;  // intervals: nodes, then scratch
  MemInterval *v = calloc((size_t)n + 1, sizeof *v);
  size_t *off = calloc((size_t)n + 1, sizeof *off);
  int *n_steps_of = calloc((size_t)nn + 1, sizeof *n_steps_of);
  m->node_offset = malloc(((size_t)nn + 1) * sizeof *m->node_offset);
  m->node_bytes = calloc((size_t)nn + 1, sizeof *m->node_bytes);
  m->scratch_offset = malloc(((size_t)ns + 1) * sizeof *m->scratch_offset);
  m->scratch_bytes = calloc((size_t)ns + 1, sizeof *m->scratch_bytes);
  m->in_place_of = malloc(((size_t)nn + 1) * sizeof *m->in_place_of);
  if (!v || !off || !n_steps_of || !m->node_offset || !m->node_bytes || !m->scratch_offset ||
      !m->scratch_bytes || !m->in_place_of)
    goto oom;
  for (int i = 0; i < n; i++) v[i] = (MemInterval){0, -1, -1, false, -1};
  for (int i = 0; i < nn; i++) m->in_place_of[i] = -1;
  if (!plan_updates(g, need, steps, m->in_place_of)) goto oom;
  for (int i = 0; i < nn; i++) {
    const IrNode *nd = g->nodes[i];
    m->node_offset[i] = CG_NO_OFFSET;
    if (!need[i]) continue;
    m->node_bytes[i] = (size_t)ir_numel(&nd->shape) * dt_size(nd->dtype);
    if (!ir_op_is_view(nd->op) && !separate(nd) && m->in_place_of[i] < 0)
      v[i].bytes = m->node_bytes[i] ? m->node_bytes[i] : 1;
  }
  for (int s = 0; s < steps->n; s++) {
    const CgStep *st = &steps->v[s];
    n_steps_of[st->node]++;
    for (int a = 0; a < st->n_args; a++) {
      const CgArg *arg = &st->args[a];
      int k = arg->kind == CG_ARG_NODE      ? cg_memory_root(g, arg->id)
              : arg->kind == CG_ARG_SCRATCH ? nn + arg->id
                                            : -1;
      if (k < 0) continue;
      if (arg->kind == CG_ARG_SCRATCH && arg->bytes > v[k].bytes) v[k].bytes = arg->bytes;
      if (v[k].first < 0) v[k].first = s;
      v[k].last = s;
      if (st->once) v[k].pinned = true;  // run at bind time, read by every run after
    }
  }
  for (int i = 0; i < nn; i++) {
    if (!need[i] || (want && !want[i])) continue;
    v[cg_memory_root(g, i)].pinned = true;  // the caller reads it after the run
  }
  for (int i = 0; i < n; i++)
    if (v[i].bytes && v[i].first < 0) v[i].pinned = true, v[i].first = v[i].last = 0;
  // In place: the first input of an elementwise step that dies there and fits.
  for (int s = 0; s < steps->n; s++) {
    const CgStep *st = &steps->v[s];
    int out = st->node;
    if (!v[out].bytes || v[out].first != s) continue;
    for (int a = 1; a < st->n_args && v[out].may_share_with < 0; a++) {
      if (st->args[a].kind != CG_ARG_NODE) continue;
      int r = cg_memory_root(g, st->args[a].id);
      if (r != out && v[r].bytes && v[r].last == s && !v[r].pinned &&
          in_place_ok(g, st, n_steps_of[out], st->args[a].id))
        v[out].may_share_with = r;
    }
  }
  pass_memplan_place(v, n, off, &m->stats);
  for (int i = 0; i < nn; i++)
    if (v[i].bytes) m->node_offset[i] = off[i];
  for (int k = 0; k < ns; k++) {
    m->scratch_offset[k] = off[nn + k];
    m->scratch_bytes[k] = v[nn + k].bytes;
  }
  free(v);
  free(off);
  free(n_steps_of);
  return true;
oom:
  free(v), free(off), free(n_steps_of);
  cg_memory_free(m);
  return diag_error(d, "out of memory planning buffers");
}

void cg_memory_free(CgMemory *m) {
  free(m->node_offset);
  free(m->node_bytes);
  free(m->scratch_offset);
  free(m->scratch_bytes);
  free(m->in_place_of);
  memset(m, 0, sizeof *m);
}
