// Scheduling: picks the order the nodes run in (codegen emits steps in node order) so that
// the peak of live intermediate bytes stays low — a greedy list scheduler in the manner of
// XLA's and TVM's memory-aware ones: among the nodes whose inputs are done, run the one that
// frees the most bytes net of what it allocates (ties: the one continuing the most recent
// chain, then file order). Parameters and inputs do not count (they live throughout), a
// view (reshape) shares its input's buffer, outputs, losses and gradients live to the end. The
// new order is kept only if its peak is no worse than the order the graph came in.
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

typedef struct Sched {
  const IrGraph *g;
  int *root;       // node id -> id of the buffer it lives in (chains of views resolved)
  int64_t *bytes;  // per buffer (0: not an intermediate)
  bool *pinned;    // per buffer: read after the run
  int *users;      // per buffer: uses not yet scheduled (views pass theirs through)
} Sched;

static void sched_init(Sched *s, const IrGraph *g) {
  int nn = g->n_nodes;
  s->g = g;
  s->root = malloc(((size_t)nn + 1) * sizeof *s->root);
  s->bytes = calloc((size_t)nn + 1, sizeof *s->bytes);
  s->pinned = calloc((size_t)nn + 1, sizeof *s->pinned);
  s->users = calloc((size_t)nn + 1, sizeof *s->users);
  for (int i = 0; i < nn; i++) {
    const IrNode *n = g->nodes[i];
    s->root[i] = ir_op_is_view(n->op) ? s->root[n->in[0]->id] : i;
    bool source = n->op == IR_OP_INPUT || n->op == IR_OP_PARAM;
    if (!ir_op_is_view(n->op) && !source) s->bytes[i] = ir_numel(&n->shape) * (int64_t)dt_size(n->dtype);
  }
  for (int i = 0; i < nn; i++)
    if (ir_is_root(g, g->nodes[i])) s->pinned[s->root[i]] = true;
}

static void sched_reset_users(Sched *s) {
  const IrGraph *g = s->g;
  memset(s->users, 0, (size_t)g->n_nodes * sizeof *s->users);
  for (int i = 0; i < g->n_nodes; i++)
    if (!ir_op_is_view(g->nodes[i]->op))
      for (int k = 0; k < g->nodes[i]->n_in; k++) s->users[s->root[g->nodes[i]->in[k]->id]]++;
}

static void sched_free(Sched *s) {
  free(s->root);
  free(s->bytes);
  free(s->pinned);
  free(s->users);
}

// Bytes node n frees when it runs (inputs it is the last user of) minus those it allocates.
static int64_t net_freed(const Sched *s, const IrNode *n) {
  if (ir_op_is_view(n->op)) return 0;
  int64_t freed = -s->bytes[n->id];
  for (int k = 0; k < n->n_in; k++) {
    int r = s->root[n->in[k]->id];
    bool seen = false;  // an input used twice counts once
    for (int j = 0; j < k; j++) seen |= s->root[n->in[j]->id] == r;
    int uses = 0;
    for (int j = 0; j < n->n_in; j++) uses += s->root[n->in[j]->id] == r;
    if (!seen && !s->pinned[r] && s->users[r] == uses) freed += s->bytes[r];
  }
  return freed;
}

// Runs node n: allocates its buffer, releases inputs it was the last user of.
static void sched_run(Sched *s, const IrNode *n, int64_t *live, int64_t *peak) {
  if (ir_op_is_view(n->op)) return;
  *live += s->bytes[n->id];
  if (*live > *peak) *peak = *live;
  for (int k = 0; k < n->n_in; k++) {
    int r = s->root[n->in[k]->id];
    if (--s->users[r] == 0 && !s->pinned[r]) *live -= s->bytes[r];
  }
  if (s->users[n->id] == 0 && !s->pinned[n->id]) *live -= s->bytes[n->id];  // never read
}

static int64_t order_peak(Sched *s, IrNode *const *order, int nn) {
  sched_reset_users(s);
  int64_t live = 0, peak = 0;
  for (int i = 0; i < nn; i++) sched_run(s, order[i], &live, &peak);
  return peak;
}

int64_t pass_schedule_peak(const IrGraph *g) {
  Sched s;
  sched_init(&s, g);
  int64_t peak = order_peak(&s, g->nodes, g->n_nodes);
  sched_free(&s);
  return peak;
}

bool pass_schedule(IrGraph *g, const PassOptions *o, Diag *d) {
  (void)o;
  int nn = g->n_nodes;
  Sched s;
  sched_init(&s, g);
  sched_reset_users(&s);
  int *waiting = calloc((size_t)nn + 1, sizeof *waiting);  // inputs not yet scheduled
  int *pos = malloc(((size_t)nn + 1) * sizeof *pos);        // place in the new order
  int *ready = malloc(((size_t)nn + 1) * sizeof *ready);
  IrNode **order = malloc(((size_t)nn + 1) * sizeof *order);
  int **consumers = calloc((size_t)nn + 1, sizeof *consumers);
  int *n_cons = calloc((size_t)nn + 1, sizeof *n_cons);
  for (int i = 0; i < nn; i++)
    for (int k = 0; k < g->nodes[i]->n_in; k++) n_cons[g->nodes[i]->in[k]->id]++;
  for (int i = 0; i < nn; i++) consumers[i] = malloc(((size_t)n_cons[i] + 1) * sizeof **consumers), n_cons[i] = 0;
  for (int i = 0; i < nn; i++) {
    const IrNode *n = g->nodes[i];
    for (int k = 0; k < n->n_in; k++) {
      bool dup = false;
      for (int j = 0; j < k; j++) dup |= n->in[j] == n->in[k];
      if (dup) continue;
      waiting[i]++;
      consumers[n->in[k]->id][n_cons[n->in[k]->id]++] = i;
    }
  }
  int n_ready = 0, done = 0;
  for (int i = 0; i < nn; i++)
    if (!waiting[i]) ready[n_ready++] = i;
  int64_t live = 0, peak = 0;
  while (n_ready) {
    int best = 0;
    int64_t best_score = 0;
    int best_recent = -1;
    for (int r = 0; r < n_ready; r++) {
      const IrNode *n = g->nodes[ready[r]];
      int64_t score = net_freed(&s, n);
      int recent = -1;
      for (int k = 0; k < n->n_in; k++)
        if (pos[n->in[k]->id] > recent) recent = pos[n->in[k]->id];
      bool better = r == 0 || score > best_score ||
                    (score == best_score && (recent > best_recent ||
                                             (recent == best_recent && ready[r] < ready[best])));
      if (better) best = r, best_score = score, best_recent = recent;
    }
    int id = ready[best];
    ready[best] = ready[--n_ready];
    pos[id] = done;
    order[done++] = g->nodes[id];
    sched_run(&s, g->nodes[id], &live, &peak);
    for (int c = 0; c < n_cons[id]; c++)
      if (--waiting[consumers[id][c]] == 0) ready[n_ready++] = consumers[id][c];
  }
  bool ok = done == nn;
  if (ok && peak < order_peak(&s, g->nodes, nn)) {  // only a better order replaces the file's
    memcpy(g->nodes, order, (size_t)nn * sizeof *order);
    ok = ir_graph_finish(g, d);
  }
  for (int i = 0; i < nn; i++) free(consumers[i]);
  free(consumers);
  free(n_cons);
  free(waiting);
  free(pos);
  free(ready);
  free(order);
  sched_free(&s);
  return ok || diag_error(d, "schedule: the graph has a cycle (compiler bug)");
}
