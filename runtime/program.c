// Instances of compiled programs (see program.h): the arena and buffers, the plan over
// them, the status word's messages, binding a tensor against its description.
#include "runtime/program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "runtime/dtype.h"

// Aliases share their buffer's memory; each step's table points at its buffers.
static void link_buffers(RtInstance *in) {
  const RtProgram *p = in->p;
  for (int b = 0; b < p->n_bufs; b++)
    if (p->bufs[b].kind == RT_BUF_ALIAS) in->buf[b] = in->buf[p->bufs[b].alias];
  for (int s = 0; s < p->n_steps; s++)
    for (int k = 0; k < p->steps[s].n_args; k++)
      in->plan.steps[s].bufs[k] = in->buf[p->arg_ids[p->steps[s].args + k]];
}

uint64_t rt_program_bytes(const RtProgram *p) {
  uint64_t bytes = p->arena_bytes;
  for (int b = 0; b < p->n_bufs; b++)
    if (p->bufs[b].kind == RT_BUF_OWN) bytes += p->bufs[b].bytes;
  return bytes;
}

bool rt_instance_create(const RtProgram *p, bool poison, RtInstance *in, Diag *d) {
  memset(in, 0, sizeof *in);
  in->p = p;
  in->poison = poison;
  in->buf = calloc((size_t)p->n_bufs + 1, sizeof *in->buf);
  in->borrowed = calloc((size_t)p->n_bufs + 1, sizeof *in->borrowed);
  in->released = calloc((size_t)p->n_bufs + 1, sizeof *in->released);
  in->plan.steps = calloc((size_t)p->n_steps + 1, sizeof *in->plan.steps);
  in->step_bufs = calloc((size_t)p->n_arg_ids + 1, sizeof *in->step_bufs);
  if (!in->buf || !in->borrowed || !in->released || !in->plan.steps || !in->step_bufs) {
    rt_instance_free(in);
    return diag_error(d, "out of memory for the model's plan");
  }
  if (p->arena_bytes && !(in->arena = rt_alloc_buffer(p->arena_bytes, poison))) {
    rt_instance_free(in);
    return diag_error(d, "out of memory for the arena (%zu bytes)", p->arena_bytes);
  }
  for (int b = 0; b < p->n_bufs; b++) {
    const RtBuf *rb = &p->bufs[b];
    if (rb->kind == RT_BUF_ARENA) in->buf[b] = (char *)in->arena + rb->offset;
    if (rb->kind == RT_BUF_CONST) memcpy(&in->buf[b], &rb->data, sizeof rb->data);  // kernels only read it
    if (rb->kind == RT_BUF_OWN && !(in->buf[b] = rt_alloc_buffer(rb->bytes, poison))) {
      rt_instance_free(in);
      return diag_error(d, "out of memory for the model's buffers (%zu bytes)", rb->bytes);
    }
  }
  in->status = in->buf[p->n_bufs - 2];
  in->seed = in->buf[p->n_bufs - 1];
  memset(in->status, 0, 4 * sizeof *in->status);
  in->seed[0] = in->seed[1] = 0;
  for (int s = 0; s < p->n_steps; s++) {
    const RtProgramStep *st = &p->steps[s];
    in->plan.steps[s] = (RtStep){.fn = st->fn, .work = st->work, .once = st->once, .name = st->name,
                                 .bufs = &in->step_bufs[st->args]};
  }
  in->plan.n_steps = p->n_steps;
  link_buffers(in);
  return true;
}

void rt_instance_free(RtInstance *in) {
  if (in->buf)
    for (int b = 0; b < in->p->n_bufs; b++)
      if (in->p->bufs[b].kind == RT_BUF_OWN && !in->borrowed[b] && !in->released[b])
        rt_free_buffer(in->buf[b], in->p->bufs[b].bytes);
  if (in->arena) rt_free_buffer(in->arena, in->p->arena_bytes);
  free(in->buf);
  free(in->borrowed);
  free(in->released);
  free(in->plan.steps);
  free(in->step_bufs);
  memset(in, 0, sizeof *in);
}

bool rt_instance_borrow(RtInstance *in, int b, void *mem, Diag *d) {
  if (in->released[b] && !rt_instance_restore(in, d)) return false;
  if (mem) {
    if (!in->borrowed[b]) rt_free_buffer(in->buf[b], in->p->bufs[b].bytes);
    in->buf[b] = mem;
    in->borrowed[b] = true;
  } else if (in->borrowed[b]) {  // bound in place before: a buffer of its own again
    if (!(in->buf[b] = rt_alloc_buffer(in->p->bufs[b].bytes, in->poison)))
      return diag_error(d, "out of memory (%zu bytes)", in->p->bufs[b].bytes);
    in->borrowed[b] = false;
  }
  link_buffers(in);
  return true;
}

// ---------------------------------------------------------------------------------------
// Weights held once: a parameter that only once-steps read (a GEMM's B, packed) is needed
// only until they have run.

// Per buffer (aliases counted as the buffer they share): the last once-step reading it (-1:
// none) and whether any other step reads or writes it.
static void step_readers(const RtProgram *p, int *last_once, bool *every_run) {
  for (int b = 0; b < p->n_bufs; b++) last_once[b] = -1, every_run[b] = false;
  for (int s = 0; s < p->n_steps; s++)
    for (int k = 0; k < p->steps[s].n_args; k++) {
      int b = p->arg_ids[p->steps[s].args + k];
      if (p->bufs[b].kind == RT_BUF_ALIAS) b = p->bufs[b].alias;
      if (p->steps[s].once) last_once[b] = s;
      else every_run[b] = true;
    }
}

// Parameter k's buffer is read by once-steps only.
static bool pack_only(const RtProgram *p, int k, const int *last_once, const bool *every_run) {
  int b = p->params[k].buf;
  return b >= 0 && p->bufs[b].kind == RT_BUF_OWN && last_once[b] >= 0 && !every_run[b];
}

void rt_program_weight_bytes(const RtProgram *p, uint64_t *pack, uint64_t *all, uint64_t *largest) {
  int *last_once = malloc(((size_t)p->n_bufs + 1) * sizeof *last_once);
  bool *every_run = malloc((size_t)p->n_bufs + 1);
  *pack = *all = *largest = 0;
  if (last_once && every_run) {
    step_readers(p, last_once, every_run);
    for (int k = 0; k < p->n_params; k++) {
      int b = p->params[k].buf;
      if (b < 0 || p->bufs[b].kind != RT_BUF_OWN) continue;
      *all += p->bufs[b].bytes;
      if (!pack_only(p, k, last_once, every_run)) continue;
      *pack += p->bufs[b].bytes;
      if (p->bufs[b].bytes > *largest) *largest = p->bufs[b].bytes;
    }
  }
  free(last_once);
  free(every_run);
}

// Frees buffer b's memory (a borrowed file image: drops its pages, which the file still holds).
static void release(RtInstance *in, int b) {
  size_t bytes = in->p->bufs[b].bytes;
  if (!in->borrowed[b]) {
    rt_free_buffer(in->buf[b], bytes);
  } else if (in->drop_borrowed) {
    uintptr_t lo = ((uintptr_t)in->buf[b] + 4095) / 4096 * 4096, hi = ((uintptr_t)in->buf[b] + bytes) / 4096 * 4096;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);  // advice: pages another buffer shares stay
  }
  in->buf[b] = NULL;
  in->borrowed[b] = false;
  in->released[b] = true;
}

// Step s reads a released buffer: its packed copy is still the one made before the release
// (a released weight cannot change until it is bound again, which restores every one).
static bool reads_released(const RtInstance *in, int s) {
  const RtProgramStep *st = &in->p->steps[s];
  for (int k = 0; k < st->n_args; k++) {
    int b = in->p->arg_ids[st->args + k];
    if (in->p->bufs[b].kind == RT_BUF_ALIAS) b = in->p->bufs[b].alias;
    if (in->released[b]) return true;
  }
  return false;
}

void rt_instance_prepare(RtInstance *in, int threads, bool release_weights) {
  const RtProgram *p = in->p;
  int *last_once = malloc(((size_t)p->n_bufs + 1) * sizeof *last_once);
  bool *every_run = malloc((size_t)p->n_bufs + 1);
  release_weights = release_weights && last_once && every_run;  // (out of memory: all kept)
  bool any_released = false;
  for (int b = 0; b < p->n_bufs; b++) any_released |= in->released[b];
  if (!release_weights && !any_released) {  // (a trainer, each step: one parallel region)
    free(last_once);
    free(every_run);
    rt_plan_prepare(&in->plan, threads);
    return;
  }
  if (release_weights) step_readers(p, last_once, every_run);
  for (int s = 0; s < p->n_steps; s++) {
    if (!p->steps[s].once || reads_released(in, s)) continue;
    rt_plan_prepare(&(RtPlan){&in->plan.steps[s], 1}, threads);
    for (int k = 0; release_weights && k < p->n_params; k++)
      if (pack_only(p, k, last_once, every_run) && last_once[p->params[k].buf] == s) release(in, p->params[k].buf);
  }
  link_buffers(in);
  free(last_once);
  free(every_run);
}

bool rt_instance_restore(RtInstance *in, Diag *d) {
  for (int b = 0; b < in->p->n_bufs; b++) {
    if (!in->released[b]) continue;
    if (!(in->buf[b] = rt_alloc_buffer(in->p->bufs[b].bytes, in->poison)))
      return diag_error(d, "out of memory (%zu bytes)", in->p->bufs[b].bytes);
    in->released[b] = false;
  }
  link_buffers(in);
  return true;
}

bool rt_instance_released(const RtInstance *in, int b) { return in->released[b]; }

bool rt_program_status(const RtProgram *p, int64_t *status, Diag *d) {
  int64_t code = status[0];
  if (code == RT_STATUS_OK) return true;
  long long value = (long long)status[2], index = (long long)status[3];
  const RtCheck *c = NULL;
  for (int k = 0; k < p->n_checks; k++)
    if (p->checks[k].node == status[1]) c = &p->checks[k];
  memset(status, 0, 4 * sizeof *status);  // the next run starts clean
  if (!c) return diag_error(d, "internal error: data error %lld from an unknown node", (long long)code);
  if (code == RT_STATUS_INDEX_RANGE)
    return diag_error(d, "%s \"%s\": %s: index %lld out of range [0, %lld) at element %lld",
                      c->where, c->name, c->op, value, (long long)c->range, index);
  if (code == RT_STATUS_CAST_RANGE || code == RT_STATUS_TARGET_RANGE) {
    uint32_t bits = (uint32_t)value;
    float f;
    memcpy(&f, &bits, sizeof f);
    if (code == RT_STATUS_TARGET_RANGE)
      return diag_error(d, "%s \"%s\": %s: target element %lld is %g; a target must be a "
                        "probability, >= 0", c->where, c->name, c->op, index, (double)f);
    return diag_error(d, "%s \"%s\": %s: element %lld is %g, which %s cannot hold", c->where,
                      c->name, c->op, index, (double)f, c->dtype);
  }
  if (code == RT_STATUS_INT_OVERFLOW)
    return diag_error(d, "%s \"%s\": %s: element %lld overflows: %s cannot hold the result",
                      c->where, c->name, c->op, index, c->dtype);
  if (code == RT_STATUS_LABEL_RANGE)
    return diag_error(d, "%s \"%s\": %s: label %lld out of range [0, %lld) at element %lld",
                      c->where, c->name, c->op, value, (long long)c->range, index);
  return diag_error(d, "%s \"%s\": %s: internal error: unknown data error %lld", c->where, c->name,
                    c->op, (long long)code);
}

int64_t rt_tensor_numel(const RtTensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->shape[i];
  return n;
}

size_t rt_tensor_bytes(const RtTensor *t) {
  return (size_t)rt_tensor_numel(t) * dt_size((DType)t->dtype);
}

static void shape_str(int rank, const int64_t *shape, char *buf, size_t n) {
  size_t len = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < rank && len < n; i++)
    len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? "," : "", (long long)shape[i]);
  if (len < n) snprintf(buf + len, n - len, "]");
}

bool rt_tensor_convert(const RtTensor *want, const StFile *f, const StTensor *t, void *dst, Diag *d) {
  const char *file = f->path;
  bool same = t->rank == want->rank;
  for (int i = 0; same && i < t->rank; i++) same = t->shape[i] == want->shape[i];
  if (!same) {
    char a[160], b[160];
    shape_str(t->rank, t->shape, a, sizeof a);
    shape_str(want->rank, want->shape, b, sizeof b);
    return diag_error(d, "%s: tensor \"%s\" has shape %s but the model needs %s", file, t->name, a, b);
  }
  if (!t->data && t->dtype == (DType)want->dtype) return st_load(f, t, dst, d);  // no conversion
  void *tmp = t->data ? NULL : malloc(t->nbytes + 1);  // read, then converted
  if (!t->data && !tmp) return diag_error(d, "%s: out of memory reading \"%s\"", file, t->name);
  bool ok = t->data || st_load(f, t, tmp, d);
  if (ok && !dt_convert(t->dtype, t->data ? t->data : tmp, (DType)want->dtype, dst, (size_t)rt_tensor_numel(want),
                        t->name, d))
    ok = diag_prefix(d, "%s: ", file);
  free(tmp);
  return ok;
}
