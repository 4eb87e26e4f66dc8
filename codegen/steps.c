// Plan steps as lowerings produce them (see lower.h).
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "codegen/lower.h"

CgStep *cg_steps_add(CgSteps *s, const char *fn, int64_t work, int node) {
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    s->v = realloc(s->v, (size_t)s->cap * sizeof *s->v);
    if (!s->v) abort();
  }
  CgStep *st = &s->v[s->n++];
  memset(st, 0, sizeof *st);
  snprintf(st->fn, sizeof st->fn, "%s", fn);
  st->work = work;
  st->node = node;
  return st;
}

CgStep *cg_steps_add_node(CgSteps *s, const char *fn, int64_t work, const IrNode *n, bool status) {
  CgStep *st = cg_steps_add(s, fn, work, n->id);
  st->args[st->n_args++] = cg_arg_node(n->id);
  for (int k = 0; k < n->n_in; k++) st->args[st->n_args++] = cg_arg_node(n->in[k]->id);
  if (status) st->args[st->n_args++] = cg_arg_status();
  return st;
}

int cg_steps_new_scratch(CgSteps *s) { return s->n_scratch++; }

void cg_steps_add_stream(CgStep *st, uint64_t stream) {
  st->streams[0] = stream;
  st->n_streams = 1;
  st->args[st->n_args++] = (CgArg){CG_ARG_STREAMS, 0, 0};
}
