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

// The ready nodes, best first: the largest net_freed, then the most recent input, then the
// lowest id. Scores change only when a buffer's last users come near, so entries are
// pushed again on a change and stale ones (an older version) skipped when popped: each
// step costs O(log n) plus the ready readers of the buffers it touched, where rescanning
// the ready list made the pass quadratic (100,000 nodes took minutes).
typedef struct Entry {
  int64_t score;
  int recent, id, version;
} Entry;

static bool before(const Entry *a, const Entry *b) {
  if (a->score != b->score) return a->score > b->score;
  if (a->recent != b->recent) return a->recent > b->recent;
  return a->id < b->id;
}

typedef struct Heap {
  Entry *v;
  int n, cap;
} Heap;

static bool heap_push(Heap *h, Entry e) {
  if (h->n == h->cap) {
    int cap = h->cap * 2 + 64;
    Entry *v = realloc(h->v, (size_t)cap * sizeof *v);
    if (!v) return false;
    h->v = v, h->cap = cap;
  }
  int i = h->n++;
  while (i > 0 && before(&e, &h->v[(i - 1) / 2])) h->v[i] = h->v[(i - 1) / 2], i = (i - 1) / 2;
  h->v[i] = e;
  return true;
}

static Entry heap_pop(Heap *h) {
  Entry top = h->v[0], last = h->v[--h->n];
  int i = 0;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c])) c++;
    if (!before(&h->v[c], &last)) break;
    h->v[i] = h->v[c], i = c;
  }
  if (h->n) h->v[i] = last;
  return top;
}

// Adjacency in one allocation: for each id, the ids in list[start[id] .. start[id + 1]).
typedef struct Lists {
  int *start, *list;
} Lists;

bool pass_schedule(IrGraph *g, const PassOptions *o, Diag *d) {
  (void)o;
  int nn = g->n_nodes;
  Sched s;
  sched_init(&s, g);
  sched_reset_users(&s);
  int *waiting = calloc((size_t)nn + 1, sizeof *waiting);  // inputs not yet scheduled
  int *pos = malloc(((size_t)nn + 1) * sizeof *pos);        // place in the new order
  int *version = calloc((size_t)nn + 1, sizeof *version);   // of a ready node's live entry; -1: not ready
  int64_t *score = calloc((size_t)nn + 1, sizeof *score);
  int *recent = calloc((size_t)nn + 1, sizeof *recent);
  int *most = calloc((size_t)nn + 1, sizeof *most);  // per buffer: the most inputs one reader takes from it
  IrNode **order = malloc(((size_t)nn + 1) * sizeof *order);
  // consumers: the distinct nodes reading each node; readers: those reading each buffer.
  Lists cons = {calloc((size_t)nn + 2, sizeof(int)), NULL}, rd = {calloc((size_t)nn + 2, sizeof(int)), NULL};
  int64_t edges = 0;
  for (int i = 0; i < nn; i++) edges += g->nodes[i]->n_in;
  cons.list = malloc(((size_t)edges + 1) * sizeof(int));
  rd.list = malloc(((size_t)edges + 1) * sizeof(int));
  Heap heap = {0};
  bool ok = waiting && pos && version && score && recent && most && order && cons.start && cons.list && rd.start && rd.list;
  for (int pass = 0; ok && pass < 2; pass++) {  // count, then fill (start[] as cursors)
    for (int i = 0; i < nn; i++) {
      const IrNode *n = g->nodes[i];
      for (int k = 0; k < n->n_in; k++) {
        bool dup = false, rdup = false;
        for (int j = 0; j < k; j++) {
          dup |= n->in[j] == n->in[k];
          rdup |= s.root[n->in[j]->id] == s.root[n->in[k]->id];
        }
        int c = n->in[k]->id, r = s.root[c];
        if (!dup) {
          if (pass == 0) cons.start[c + 1]++, waiting[i]++;
          else cons.list[cons.start[c]++] = i;
        }
        if (!rdup) {
          if (pass == 0) rd.start[r + 1]++;
          else rd.list[rd.start[r]++] = i;
          int uses = 0;
          for (int j = 0; j < n->n_in; j++) uses += s.root[n->in[j]->id] == r;
          if (uses > most[r]) most[r] = uses;
        }
      }
    }
    if (pass == 0)
      for (int i = 0; i < nn; i++) cons.start[i + 1] += cons.start[i], rd.start[i + 1] += rd.start[i];
  }
  // After filling, start[i] is where i's list ends: shift back so that i's list begins there.
  if (ok) {
    memmove(cons.start + 1, cons.start, (size_t)nn * sizeof(int));
    memmove(rd.start + 1, rd.start, (size_t)nn * sizeof(int));
    cons.start[0] = rd.start[0] = 0;
  }
  for (int i = 0; ok && i < nn; i++) {
    version[i] = -1;
    if (!waiting[i]) {
      version[i] = 0, score[i] = net_freed(&s, g->nodes[i]), recent[i] = -1;
      ok = heap_push(&heap, (Entry){score[i], -1, i, 0});
    }
  }
  int done = 0;
  int64_t live = 0, peak = 0;
  while (ok && heap.n) {
    Entry e = heap_pop(&heap);
    if (version[e.id] != e.version) continue;  // stale, or already run
    int id = e.id;
    version[id] = -1;
    pos[id] = done;
    order[done++] = g->nodes[id];
    sched_run(&s, g->nodes[id], &live, &peak);
    const IrNode *n = g->nodes[id];
    for (int k = 0; ok && k < n->n_in; k++) {  // ready readers of the buffers it read: rescore
      int r = s.root[n->in[k]->id];
      // A reader's score changes when the uses left reach its own (net_freed).
      if (!s.bytes[r] || s.pinned[r] || s.users[r] > most[r]) continue;
      for (int j = rd.start[r]; ok && j < rd.start[r + 1]; j++) {
        int c = rd.list[j];
        if (version[c] < 0) continue;
        int64_t sc = net_freed(&s, g->nodes[c]);
        if (sc != score[c]) score[c] = sc, ok = heap_push(&heap, (Entry){sc, recent[c], c, ++version[c]});
      }
    }
    for (int j = cons.start[id]; ok && j < cons.start[id + 1]; j++) {
      int c = cons.list[j];
      if (--waiting[c]) continue;
      const IrNode *cn = g->nodes[c];
      recent[c] = -1;
      for (int k = 0; k < cn->n_in; k++)
        if (pos[cn->in[k]->id] > recent[c]) recent[c] = pos[cn->in[k]->id];
      version[c] = 0, score[c] = net_freed(&s, cn);
      ok = heap_push(&heap, (Entry){score[c], recent[c], c, 0});
    }
  }
  bool all = ok && done == nn;
  if (all && peak < order_peak(&s, g->nodes, nn)) {  // only a better order replaces the file's
    memcpy(g->nodes, order, (size_t)nn * sizeof *order);
    all = ir_graph_finish(g, d);
  }
  free(cons.start);
  free(cons.list);
  free(rd.start);
  free(rd.list);
  free(heap.v);
  free(waiting);
  free(pos);
  free(version);
  free(score);
  free(recent);
  free(most);
  free(order);
  sched_free(&s);
  if (!ok) return diag_error(d, "schedule: out of memory for %d nodes", nn);
  return all || d->set || diag_error(d, "schedule: the graph has a cycle (compiler bug)");
}
