// The runner of ahead-of-time models (see aot.h): buffers from the generated tables,
// binding by name with kiln run's checks, the plan of the steps a run needs, data errors.
#include "runtime/aot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dtype.h"

int64_t rt_aot_numel(const RtAotTensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->shape[i];
  return n;
}

size_t rt_aot_bytes(const RtAotTensor *t) { return (size_t)rt_aot_numel(t) * dt_size((DType)t->dtype); }

// Aliases share their buffer's memory; each step's table points at its buffers.
static void link_buffers(RtAot *a) {
  const RtAotModel *m = a->m;
  for (int b = 0; b < m->n_bufs; b++)
    if (m->bufs[b].alias >= 0) a->buf[b] = a->buf[m->bufs[b].alias];
  for (int s = 0; s < m->n_steps; s++)
    for (int k = 0; k < m->steps[s].n_args; k++)
      a->steps[s].bufs[k] = a->buf[m->arg_ids[m->steps[s].args + k]];
}

bool rt_aot_create(const RtAotModel *m, const RtTuning *t, RtAot *a, Diag *d) {
  memset(a, 0, sizeof *a);
  a->m = m;
  a->threads = rt_default_threads(t ? t->threads : 0);
  a->poison = t && t->poison_buffers;
  a->buf = calloc((size_t)m->n_bufs + 1, sizeof *a->buf);
  a->borrowed = calloc((size_t)m->n_bufs + 1, sizeof *a->borrowed);
  a->steps = calloc((size_t)m->n_steps + 1, sizeof *a->steps);
  a->step_bufs = calloc((size_t)m->n_arg_ids + 1, sizeof *a->step_bufs);
  if (!a->buf || !a->borrowed || !a->steps || !a->step_bufs) {
    rt_aot_free(a);
    return diag_error(d, "out of memory for the model's plan");
  }
  for (int b = 0; b < m->n_bufs; b++) {
    if (m->bufs[b].alias >= 0) continue;
    size_t bytes = b == m->n_bufs - 2 ? 4 * sizeof(int64_t) : b == m->n_bufs - 1 ? sizeof(uint64_t)
                                                                               : m->bufs[b].bytes;
    if (!bytes) continue;
    if (!(a->buf[b] = rt_alloc_buffer(bytes, a->poison))) {
      rt_aot_free(a);
      return diag_error(d, "out of memory for the model's buffers (%zu bytes)", bytes);
    }
  }
  memset(a->buf[m->n_bufs - 2], 0, 4 * sizeof(int64_t));
  memset(a->buf[m->n_bufs - 1], 0, sizeof(uint64_t));
  for (int s = 0; s < m->n_steps; s++) {
    const RtAotStep *st = &m->steps[s];
    a->steps[s] = (RtStep){.fn = st->fn, .work = st->work, .once = st->once,
                           .bufs = &a->step_bufs[st->args]};
  }
  link_buffers(a);
  return true;
}

void rt_aot_free(RtAot *a) {
  if (a->buf)
    for (int b = 0; b < a->m->n_bufs; b++)
      if (a->m->bufs[b].alias < 0 && !(a->borrowed && a->borrowed[b])) free(a->buf[b]);
  free(a->buf);
  free(a->borrowed);
  free(a->steps);
  free(a->step_bufs);
  memset(a, 0, sizeof *a);
}

static void shape_str(int rank, const int64_t *shape, char *buf, size_t n) {
  size_t len = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && len < n; i++)
    len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? "," : "", (long long)shape[i]);
  if (len < n) snprintf(buf + len, n - len, "]");
}

bool rt_aot_convert(const RtAotTensor *want, const StTensor *t, const char *file, void *dst,
                    Diag *d) {
  bool same = t->rank == want->rank;
  for (int i = 0; same && i < t->rank; i++) same = t->shape[i] == want->shape[i];
  if (!same) {
    char a[160], b[160];
    shape_str(t->rank, t->shape, a, sizeof a);
    shape_str(want->rank, want->shape, b, sizeof b);
    return diag_error(d, "%s: tensor \"%s\" has shape %s but the model needs %s", file, t->name, a, b);
  }
  if (!dt_convert(t->dtype, t->data, (DType)want->dtype, dst, (size_t)rt_aot_numel(want), t->name, d))
    return diag_prefix(d, "%s: ", file);
  return true;
}

// t can serve as p's buffer as it is: same shape and dtype, aligned for the dtype.
static bool usable_in_place(const RtAotTensor *p, const StTensor *t) {
  bool same = t->rank == p->rank && t->dtype == (DType)p->dtype;
  for (int i = 0; same && i < t->rank; i++) same = t->shape[i] == p->shape[i];
  return same && (uintptr_t)t->data % dt_size(t->dtype) == 0;
}

bool rt_aot_bind_weights(RtAot *a, const StFile *f, uint64_t wanted, bool borrow, Diag *d) {
  const RtAotModel *m = a->m;
  for (int k = 0; k < m->n_params; k++) {
    const RtAotTensor *p = &m->params[k];
    if (!a->buf[p->buf] || !(p->feeds & wanted)) continue;  // as kiln run: only what is used
    const StTensor *t = st_find(f, p->name);
    if (!t)
      return diag_error(d, "%s: parameter \"%s\" is missing (declared at %s)", f->path, p->name,
                        p->where);
    int b = p->buf;
    if (borrow && usable_in_place(p, t)) {
      // Kernels only read parameters: the read-only image serves, with no copy and no
      // fresh pages to fault in.
      if (!a->borrowed[b]) free(a->buf[b]);
      a->buf[b] = t->data;
      a->borrowed[b] = true;
      continue;
    }
    if (a->borrowed[b]) {  // bound in place before: a buffer of its own again
      if (!(a->buf[b] = rt_alloc_buffer(m->bufs[b].bytes, a->poison)))
        return diag_error(d, "out of memory for parameter \"%s\"", p->name);
      a->borrowed[b] = false;
    }
    if (!rt_aot_convert(p, t, f->path, a->buf[b], d)) return false;
  }
  link_buffers(a);
  rt_plan_prepare(&(RtPlan){a->steps, m->n_steps}, a->threads);
  return true;
}

bool rt_aot_bind_inputs(RtAot *a, const StFile *f, uint64_t wanted, Diag *d) {
  const RtAotModel *m = a->m;
  uint64_t used = 0;  // as kiln run: only inputs of the wanted outputs are bound and checked
  for (int j = 0; j < m->n_outputs; j++)
    if (wanted >> j & 1) used |= m->outputs[j].needs;
  for (int k = 0; k < m->n_inputs; k++) {
    const RtAotTensor *in = &m->inputs[k];
    const StTensor *t = st_find(f, in->name);
    if (t && (used >> k & 1) && !rt_aot_convert(in, t, f->path, a->buf[in->buf], d)) return false;
  }
  return true;
}

static bool status_error(const RtAot *a, Diag *d) {
  int64_t *status = a->buf[a->m->n_bufs - 2];
  int64_t code = status[0];
  if (code == 0) return true;
  long long value = (long long)status[2], index = (long long)status[3];
  const RtAotCheck *c = NULL;
  for (int k = 0; k < a->m->n_checks; k++)
    if (a->m->checks[k].node == status[1]) c = &a->m->checks[k];
  memset(status, 0, 4 * sizeof *status);  // the next run starts clean
  if (!c) return diag_error(d, "internal error: data error %lld from an unknown node", (long long)code);
  // Codes and wording as codegen/lower.h CG_STATUS_* and cg_program_status.
  if (code == 1)
    return diag_error(d, "%s \"%s\": %s: index %lld out of range [0, %lld) at element %lld",
                      c->where, c->name, c->op, value, (long long)c->range, index);
  if (code == 3 || code == 5) {
    uint32_t bits = (uint32_t)value;
    float f;
    memcpy(&f, &bits, sizeof f);
    if (code == 5)
      return diag_error(d, "%s \"%s\": %s: target element %lld is %g; a target must be a "
                        "probability, >= 0", c->where, c->name, c->op, index, (double)f);
    return diag_error(d, "%s \"%s\": %s: element %lld is %g, which %s cannot hold", c->where,
                      c->name, c->op, index, (double)f, c->dtype);
  }
  if (code == 4)
    return diag_error(d, "%s \"%s\": %s: element %lld overflows: %s cannot hold the result",
                      c->where, c->name, c->op, index, c->dtype);
  return diag_error(d, "%s \"%s\": %s: label %lld out of range [0, %lld) at element %lld",
                    c->where, c->name, c->op, value, (long long)c->range, index);
}

bool rt_aot_run(RtAot *a, uint64_t wanted, Diag *d) {
  const RtAotModel *m = a->m;
  RtStep *sel = malloc(((size_t)m->n_steps + 1) * sizeof *sel);
  if (!sel) return diag_error(d, "out of memory for the plan");
  int n = 0;
  for (int s = 0; s < m->n_steps; s++)
    if (!m->steps[s].once && (m->steps[s].feeds & wanted)) sel[n++] = a->steps[s];
  rt_plan_run(&(RtPlan){sel, n}, a->threads);
  free(sel);
  return status_error(a, d);
}
