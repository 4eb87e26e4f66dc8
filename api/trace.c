// Traces of compiled programs (`kiln bench --trace`, `kiln train --trace`): kiln_trace makes
// later runs record what each thread did in each step (runtime/trace.h), and
// kiln_trace_write writes that as Chrome trace-event JSON, which Perfetto and
// chrome://tracing open: a track per thread, a span per step named by its op and node, the
// barrier wait after it, and a counter of the arena bytes the plan holds live at each step.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api/model_impl.h"
#include "runtime/files.h"
#include "runtime/text.h"

bool kiln_trace(KilnModel *m, RtTrace *t, Diag *d) {
  if (!kiln_is_jit(m)) return diag_error(d, "traces need the JIT backend");
  m->trace = t;
  return true;
}

// live[s]: bytes of the arena's buffers whose lifetime (first to last step that touches them;
// to the end for the outputs, which the caller reads) covers step s.
static int64_t *arena_live_bytes(const RtProgram *p) {
  int ns = p->n_steps, nb = p->n_bufs;
  int64_t *live = calloc((size_t)ns + 1, sizeof *live);
  int *first = malloc((size_t)nb * sizeof *first), *last = malloc((size_t)nb * sizeof *last);
  if (!live || !first || !last) {
    free(first);
    free(last);
    free(live);
    return NULL;
  }
  for (int b = 0; b < nb; b++) first[b] = -1, last[b] = -1;
  for (int s = 0; s < ns; s++)
    for (int a = 0; a < p->steps[s].n_args; a++) {
      int b = p->arg_ids[p->steps[s].args + a];
      if (p->bufs[b].kind == RT_BUF_ALIAS) b = p->bufs[b].alias;
      if (first[b] < 0) first[b] = s;
      last[b] = s;
    }
  for (int k = 0; k < p->n_outputs; k++) {
    int b = p->outputs[k].buf;
    if (p->bufs[b].kind == RT_BUF_ALIAS) b = p->bufs[b].alias;
    if (first[b] >= 0) last[b] = ns - 1;
  }
  for (int b = 0; b < nb; b++) {
    if (first[b] < 0 || p->bufs[b].kind != RT_BUF_ARENA) continue;
    live[first[b]] += (int64_t)p->bufs[b].bytes;  // a difference array: + at the first step,
    live[last[b] + 1] -= (int64_t)p->bufs[b].bytes;  // - after the last
  }
  for (int s = 1; s <= ns; s++) live[s] += live[s - 1];
  free(first);
  free(last);
  return live;
}

typedef struct TraceWrite {
  const KilnModel *m;
  const RtTrace *t;
  const int64_t *live;
} TraceWrite;

static bool write_trace(FILE *f, void *ctx) {
  const TraceWrite *w = ctx;
  const KilnModel *m = w->m;
  const RtTrace *t = w->t;
  fprintf(f, "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"model\": ");
  rt_json_put_string(f, m->g.file);
  fprintf(f, ", \"runs\": %d, \"runs_not_recorded\": %d},\n\"traceEvents\": [\n", (int)t->runs,
          (int)t->runs_dropped);
  fprintf(f, "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 1, \"args\": {\"name\": ");
  rt_json_put_string(f, m->g.file);
  fprintf(f, "}}");
  for (int k = 0; k < t->threads; k++)
    if (t->n[k])
      fprintf(f, ",\n{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": 1, \"tid\": %d, \"args\": "
              "{\"name\": \"thread %d\"}}", k, k);
  for (int k = 0; k < t->threads; k++)
    for (int64_t i = 0; i < t->n[k]; i++) {
      const RtTraceSpan *sp = &t->span[k * t->cap + i];
      // whole nanoseconds, so that a span printed ends exactly where the next one may begin
      long long b = llround(sp->begin * 1e9), e = llround(sp->end * 1e9), l = llround(sp->left * 1e9);
      char label[64];
      KilnStep st = kiln_step(m, sp->step, label, sizeof label);
      fprintf(f, ",\n{\"name\": ");
      char name[512];
      snprintf(name, sizeof name, "%s %s", st.label, st.node);
      rt_json_put_string(f, name);
      fprintf(f, ", \"cat\": \"step\", \"ph\": \"X\", \"pid\": 1, \"tid\": %d, \"ts\": %.3f, \"dur\": %.3f, "
              "\"args\": {\"step\": %d, \"run\": %d, \"kernel\": ", k, b / 1e3, (e - b) / 1e3,
              (int)sp->step, (int)sp->run);
      rt_json_put_string(f, st.kernel);
      fprintf(f, ", \"node\": ");
      rt_json_put_string(f, st.node);
      fprintf(f, "}}");
      if (l > e)
        fprintf(f, ",\n{\"name\": \"barrier\", \"cat\": \"barrier\", \"ph\": \"X\", \"pid\": 1, \"tid\": %d, "
                "\"ts\": %.3f, \"dur\": %.3f, \"args\": {\"step\": %d}}", k, e / 1e3, (l - e) / 1e3,
                (int)sp->step);
      if (k == 0 && w->live)
        fprintf(f, ",\n{\"name\": \"arena bytes in use\", \"ph\": \"C\", \"pid\": 1, \"ts\": %.3f, "
                "\"args\": {\"bytes\": %lld}}", b / 1e3, (long long)w->live[sp->step]);
    }
  fprintf(f, "\n]}\n");
  return !ferror(f);
}

bool kiln_trace_write(const KilnModel *m, const RtTrace *t, const char *path, Diag *d) {
  if (!kiln_is_jit(m) || !m->compiled) return diag_error(d, "%s: a trace needs a compiled JIT program", path);
  int64_t *live = arena_live_bytes(&m->p.prog);
  if (!live) return diag_error(d, "%s: out of memory", path);
  bool ok = rt_write_atomic(path, write_trace, &(TraceWrite){m, t, live}, d);
  free(live);
  return ok;
}
