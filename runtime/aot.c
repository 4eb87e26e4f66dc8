// The runner of ahead-of-time models (see aot.h): an instance of the generated program,
// binding by name with kiln run's checks, the plan of the steps a run needs, data errors.
#include "runtime/aot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/dtype.h"

bool rt_aot_create(const RtProgram *m, const RtTuning *t, uint64_t max_memory, RtAot *a, Diag *d) {
  memset(a, 0, sizeof *a);
  a->m = m;
  a->threads = rt_default_threads(t ? t->threads : 0);
  // As kiln run refuses it before compiling: before any buffer is allocated.
  return rt_memory_fits(rt_program_bytes(m), max_memory, "the program", d) &&
         rt_instance_create(m, t && t->poison_buffers, &a->in, d);
}

void rt_aot_free(RtAot *a) {
  if (a->in.p) rt_instance_free(&a->in);
  memset(a, 0, sizeof *a);
}

// t can serve as p's buffer as it is: same shape and dtype, aligned for the dtype.
static bool usable_in_place(const RtTensor *p, const StTensor *t) {
  bool same = t->rank == p->rank && t->dtype == (DType)p->dtype;
  for (int i = 0; same && i < t->rank; i++) same = t->shape[i] == p->shape[i];
  return same && t->data && (uintptr_t)t->data % dt_size(t->dtype) == 0;
}

bool rt_aot_bind_weights(RtAot *a, const StFile *f, uint64_t wanted, bool borrow, Diag *d) {
  const RtProgram *m = a->m;
  if (!rt_instance_restore(&a->in, d)) return false;  // bound again: the released ones too
  a->in.drop_borrowed = borrow;  // the embedded image: its pages come back from the executable
  for (int k = 0; k < m->n_params; k++) {
    const RtTensor *p = &m->params[k];
    if (!a->in.buf[p->buf] || !(p->feeds & wanted)) continue;  // as kiln run: only what is used
    const StTensor *t = st_find(f, p->name);
    if (!t)
      return diag_error(d, "%s: parameter \"%s\" is missing (declared at %s)", f->path, p->name,
                        p->where);
    // Kernels only read parameters: the read-only image serves, with no copy and no fresh
    // pages to fault in.
    bool in_place = borrow && usable_in_place(p, t);
    if (!rt_instance_borrow(&a->in, p->buf, in_place ? t->data : NULL, d))
      return diag_prefix(d, "parameter \"%s\": ", p->name);
    if (!in_place && !rt_tensor_convert(p, f, t, a->in.buf[p->buf], d)) return false;
  }
  a->prepared = false;
  return true;
}

bool rt_aot_bind_inputs(RtAot *a, const StFile *f, uint64_t wanted, Diag *d) {
  const RtProgram *m = a->m;
  uint64_t used = 0;  // as kiln run: only inputs of the wanted outputs are bound and checked
  for (int j = 0; j < m->n_outputs; j++)
    if (wanted >> j & 1) used |= m->outputs[j].needs;
  for (int k = 0; k < m->n_inputs; k++) {
    const RtTensor *in = &m->inputs[k];
    const StTensor *t = st_find(f, in->name);
    if (t && (used >> k & 1) && !rt_tensor_convert(in, f, t, a->in.buf[in->buf], d)) return false;
  }
  return true;
}

bool rt_aot_run(RtAot *a, uint64_t wanted, Diag *d) {
  const RtProgram *m = a->m;
  RtStep *sel = malloc(((size_t)m->n_steps + 1) * sizeof *sel);
  if (!sel) return diag_error(d, "out of memory for the plan");
  // The once-steps (packed weights) at the first run, as kiln run: after the caller has
  // dropped the weights file, whose bytes and the packed copies are then never resident
  // at once.
  if (!a->prepared) rt_instance_prepare(&a->in, a->threads, true);  // weights only packing reads: packed only
  a->prepared = true;
  int n = 0;
  for (int s = 0; s < m->n_steps; s++)
    if (!m->steps[s].once && (m->steps[s].feeds & wanted)) sel[n++] = a->in.plan.steps[s];
  rt_plan_run(&(RtPlan){sel, n}, a->threads);
  free(sel);
  return rt_program_status(m, a->in.status, d);
}
