// Graph building: adding nodes, finding them by name, and finishing a graph (topological
// order, cycle detection, use counts, shape inference in order).
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops_impl.h"

// ---------------------------------------------------------------------------------------
// Name map: open addressing over arena-owned names.
struct IrNameMap {
  int cap, n;
  IrNode **slot;
};

static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static void map_put(IrNameMap *m, IrNode *node);

static void map_grow(IrNameMap *m) {
  IrNameMap old = *m;
  m->cap = old.cap ? old.cap * 2 : 256;
  m->n = 0;
  m->slot = calloc((size_t)m->cap, sizeof *m->slot);
  assert(m->slot);
  for (int i = 0; i < old.cap; i++)
    if (old.slot[i]) map_put(m, old.slot[i]);
  free(old.slot);
}

static void map_put(IrNameMap *m, IrNode *node) {
  if (2 * (m->n + 1) > m->cap) map_grow(m);
  uint64_t i = hash_str(node->name) & (uint64_t)(m->cap - 1);
  while (m->slot[i]) i = (i + 1) & (uint64_t)(m->cap - 1);
  m->slot[i] = node;
  m->n++;
}

static IrNode *map_get(const IrNameMap *m, const char *name) {
  if (!m->cap) return NULL;
  uint64_t i = hash_str(name) & (uint64_t)(m->cap - 1);
  for (; m->slot[i]; i = (i + 1) & (uint64_t)(m->cap - 1))
    if (strcmp(m->slot[i]->name, name) == 0) return m->slot[i];
  return NULL;
}

// ---------------------------------------------------------------------------------------
void ir_graph_init(IrGraph *g, const char *file) {
  memset(g, 0, sizeof *g);
  g->file = arena_strdup(&g->arena, file ? file : "<graph>");
  g->names = arena_alloc(&g->arena, sizeof *g->names);
}

void ir_graph_free(IrGraph *g) {
  if (g->names) free(g->names->slot);
  free(g->nodes);
  arena_free(&g->arena);
  memset(g, 0, sizeof *g);
}

IrNode *ir_graph_add(IrGraph *g, IrOpKind op, const char *name, const char *where) {
  assert(!ir_graph_find(g, name));
  if (g->n_nodes == g->cap_nodes) {
    g->cap_nodes = g->cap_nodes ? 2 * g->cap_nodes : 256;
    g->nodes = realloc(g->nodes, (size_t)g->cap_nodes * sizeof *g->nodes);
    assert(g->nodes);
  }
  IrNode *n = arena_alloc(&g->arena, sizeof *n);
  n->id = g->n_nodes;
  n->op = op;
  n->name = arena_strdup(&g->arena, name);
  n->where = arena_strdup(&g->arena, where ? where : g->file);
  n->dtype = DT_F32;
  const IrAttrSpec *spec = ir_ops[op].attrs;
  for (int i = 0; spec[i].name; i++) {
    n->attr[i].i = (int64_t)spec[i].def;
    n->attr[i].f = spec[i].def;
  }
  g->nodes[g->n_nodes++] = n;
  map_put(g->names, n);
  return n;
}

IrNode *ir_graph_find(const IrGraph *g, const char *name) { return map_get(g->names, name); }

double ir_graph_config(const IrGraph *g, const char *name, double fallback) {
  for (int i = 0; i < g->n_config; i++)
    if (!strcmp(g->config[i].name, name)) return g->config[i].value;
  return fallback;
}

void ir_graph_remove(IrGraph *g, const bool *remove) {
  int k = 0;
  for (int i = 0; i < g->n_nodes; i++)
    if (!remove[i]) g->nodes[k++] = g->nodes[i];
  g->n_nodes = k;
  free(g->names->slot);  // the name map has no deletion: rebuilt from the survivors
  memset(g->names, 0, sizeof *g->names);
  for (int i = 0; i < k; i++) {
    g->nodes[i]->id = i;
    map_put(g->names, g->nodes[i]);
  }
}

// Linear probing: remove the slot, then move back every later entry of the run that its
// hash allows to sit in the hole (backward-shift deletion, no tombstones).
void ir_graph_forget(IrGraph *g, const IrNode *n) {
  IrNameMap *m = g->names;
  if (!m->cap) return;
  uint64_t mask = (uint64_t)(m->cap - 1), i = hash_str(n->name) & mask;
  while (m->slot[i] && m->slot[i] != n) i = (i + 1) & mask;
  if (!m->slot[i]) return;
  m->slot[i] = NULL;
  m->n--;
  for (uint64_t j = (i + 1) & mask; m->slot[j]; j = (j + 1) & mask) {
    uint64_t h = hash_str(m->slot[j]->name) & mask;  // home of the entry at j
    bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
    if (movable) {
      m->slot[i] = m->slot[j];
      m->slot[j] = NULL;
      i = j;
    }
  }
}

// Depth-first topological sort with an explicit stack (model files can make very deep
// graphs); a grey node met again is a cycle, reported with its path.
enum { WHITE, GREY, BLACK };

static bool report_cycle(IrNode **stack, int depth, IrNode *n, Diag *d) {
  int start = depth - 1;
  while (start > 0 && stack[start] != n) start--;
  char path[1024] = "";
  size_t len = 0;
  for (int i = start; i < depth && len < sizeof path - 64; i++)
    len += (size_t)snprintf(path + len, sizeof path - len, "\"%s\" -> ", stack[i]->name);
  snprintf(path + len, sizeof path - len, "\"%s\"", n->name);
  return diag_error(d, "%s \"%s\": the graph has a cycle: %s", n->where, n->name, path);
}

static bool visit(IrNode *root, char *color, IrNode **order, int *k, IrNode **stack, int *next,
                  Diag *d) {
  if (color[root->id] != WHITE) return true;
  int depth = 0;
  stack[depth] = root;
  next[depth++] = 0;
  color[root->id] = GREY;
  while (depth > 0) {
    IrNode *n = stack[depth - 1];
    if (next[depth - 1] < n->n_in) {
      IrNode *m = n->in[next[depth - 1]++];
      if (color[m->id] == GREY) return report_cycle(stack, depth, m, d);
      if (color[m->id] == WHITE) {
        color[m->id] = GREY;
        stack[depth] = m;
        next[depth++] = 0;
      }
    } else {
      color[n->id] = BLACK;
      order[(*k)++] = n;
      depth--;
    }
  }
  return true;
}

// A tensor's element count must fit comfortably in int64 (and its buffers in memory
// sizes), so that nothing downstream overflows computing it.
static bool check_numel(const IrNode *n, Diag *d) {
  int64_t numel = 1;
  for (int i = 0; i < n->shape.rank; i++) {
    if (n->shape.dim[i] > IR_MAX_NUMEL / numel) {
      char s[160];
      return diag_error(d, "shape %s has more than 2^48 elements",
                        ir_shape_str(&n->shape, s, sizeof s));
    }
    numel *= n->shape.dim[i];
  }
  return true;
}

bool ir_graph_finish(IrGraph *g, Diag *d) {
  int nn = g->n_nodes;
  char *color = calloc((size_t)nn, 1);
  IrNode **order = malloc((size_t)nn * sizeof *order);
  IrNode **stack = malloc(((size_t)nn + 1) * sizeof *stack);
  int *next = malloc(((size_t)nn + 1) * sizeof *next);
  int k = 0;
  bool ok = true;
  for (int i = 0; i < nn && ok; i++) ok = visit(g->nodes[i], color, order, &k, stack, next, d);
  if (ok) {
    assert(k == nn);
    memcpy(g->nodes, order, (size_t)nn * sizeof *order);
    for (int i = 0; i < nn; i++) {
      g->nodes[i]->id = i;
      g->nodes[i]->n_uses = 0;
    }
    for (int i = 0; i < nn; i++)
      for (int j = 0; j < g->nodes[i]->n_in; j++) g->nodes[i]->in[j]->n_uses++;
    for (int i = 0; i < nn && ok; i++) {
      IrNode *n = g->nodes[i];
      if (!ir_ops[n->op].shape(n, d) || !check_numel(n, d))
        ok = diag_prefix(d, "%s \"%s\": %s: ", n->where, n->name, ir_ops[n->op].name);
    }
  }
  free(color);
  free(order);
  free(stack);
  free(next);
  return ok;
}
