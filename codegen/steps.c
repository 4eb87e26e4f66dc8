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

const CgArg *cg_steps_words_of(const CgSteps *s, int node) {
  for (int i = 0; i < s->n_words; i++)
    if (s->words[i].node == node) return &s->words[i].copy;
  return NULL;
}

void cg_steps_free(CgSteps *s) {
  free(s->v);
  free(s->words);
  *s = (CgSteps){0};
}

void cg_steps_add_words(CgSteps *s, CgStep *st, int node, int64_t rows, int64_t cols) {
  CgArg copy = cg_arg_scratch(cg_steps_new_scratch(s), (size_t)(rows * (cols / 2)) * sizeof(int32_t));
  st->args[st->n_args++] = copy;
  s->words = realloc(s->words, ((size_t)s->n_words + 1) * sizeof *s->words);
  if (!s->words) abort();
  s->words[s->n_words++] = (CgWords){node, copy};
}

void cg_steps_add_stream(CgStep *st, uint64_t stream) {
  st->streams[0] = stream;
  st->n_streams = 1;
  st->args[st->n_args++] = (CgArg){CG_ARG_STREAMS, 0, 0};
}
