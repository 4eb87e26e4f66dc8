// The C API of libraries built by `kiln compile --emit lib` (declared in the generated
// kiln_model.h; docs/aot.md): a model instance over caller-owned buffers. Errors are
// returned as codes with a message, never exit().
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/aot.h"
#include "runtime/aot_api.h"
#include "runtime/dtype.h"

struct KilnModel {
  RtAot a;
  char error[DIAG_MAX];
};

static int fail(char *msg, size_t size, const Diag *d, int code) {
  if (msg && size) snprintf(msg, size, "%s", d->set ? d->msg : "error");
  return code;
}

int rt_aot_api_create(const RtProgram *m, const char *weights, KilnModel **out, char *msg,
                      size_t msg_size) {
  Diag d = {0};
  *out = NULL;
  if (!weights && !m->weights) {
    diag_error(&d, "no weights file given and none were embedded at compile time");
    return fail(msg, msg_size, &d, KILN_ERR_ARG);
  }
  KilnModel *k = calloc(1, sizeof *k);
  if (!k) return fail(msg, msg_size, &d, KILN_ERR_NOMEM);
  StFile wf;
  if (!(weights ? st_open(weights, &wf, &d)
                : st_read_memory("embedded weights", m->weights, m->weights_size, &wf, &d))) {
    free(k);
    return fail(msg, msg_size, &d, KILN_ERR_FILE);
  }
  if (!rt_aot_create(m, NULL, 0, &k->a, &d)) {
    st_free(&wf);
    free(k);
    return fail(msg, msg_size, &d, KILN_ERR_NOMEM);
  }
  bool ok = rt_aot_bind_weights(&k->a, &wf, ~0ull, !weights, &d);
  st_free(&wf);
  if (!ok) {
    kiln_model_destroy(k);
    return fail(msg, msg_size, &d, KILN_ERR_FILE);
  }
  *out = k;
  return KILN_OK;
}

static int info(const RtTensor *t, KilnTensorInfo *out) {
  out->name = t->name;
  out->dtype = dt_name((DType)t->dtype);
  out->rank = t->rank;
  out->shape = t->shape;
  out->bytes = rt_tensor_bytes(t);
  return KILN_OK;
}

int kiln_model_n_inputs(const KilnModel *k) { return k->a.m->n_inputs; }
int kiln_model_n_outputs(const KilnModel *k) { return k->a.m->n_outputs; }

int kiln_model_input(const KilnModel *k, int i, KilnTensorInfo *out) {
  if (i < 0 || i >= k->a.m->n_inputs) return KILN_ERR_ARG;
  return info(&k->a.m->inputs[i], out);
}

int kiln_model_output(const KilnModel *k, int i, KilnTensorInfo *out) {
  if (i < 0 || i >= k->a.m->n_outputs) return KILN_ERR_ARG;
  return info(&k->a.m->outputs[i], out);
}

int kiln_model_set_threads(KilnModel *k, int threads) {
  if (threads < 1 || threads > 1024) {
    snprintf(k->error, sizeof k->error, "thread count %d is not in [1, 1024]", threads);
    return KILN_ERR_ARG;
  }
  k->a.threads = threads;
  return KILN_OK;
}

int kiln_model_run(KilnModel *k, const void *const *inputs, void *const *outputs) {
  const RtProgram *m = k->a.m;
  uint64_t given = 0, wanted = 0;
  for (int i = 0; i < m->n_inputs; i++)
    if (inputs[i]) given |= 1ull << i;
  for (int j = 0; j < m->n_outputs; j++) {
    if (!outputs[j]) continue;
    uint64_t missing = m->outputs[j].needs & ~given;
    if (missing) {
      int i = 0;
      while (!(missing >> i & 1)) i++;
      snprintf(k->error, sizeof k->error, "output \"%s\" needs input \"%s\" (NULL was given)",
               m->outputs[j].name, m->inputs[i].name);
      return KILN_ERR_ARG;
    }
    wanted |= 1ull << j;
  }
  for (int i = 0; i < m->n_inputs; i++)
    if (inputs[i] && k->a.in.buf[m->inputs[i].buf])
      memcpy(k->a.in.buf[m->inputs[i].buf], inputs[i], rt_tensor_bytes(&m->inputs[i]));
  Diag d = {0};
  if (!rt_aot_run(&k->a, wanted, &d)) {
    snprintf(k->error, sizeof k->error, "%s", d.msg);
    return KILN_ERR_DATA;
  }
  for (int j = 0; j < m->n_outputs; j++)
    if (outputs[j]) memcpy(outputs[j], k->a.in.buf[m->outputs[j].buf], rt_tensor_bytes(&m->outputs[j]));
  return KILN_OK;
}

const char *kiln_model_error(const KilnModel *k) { return k->error; }

void kiln_model_destroy(KilnModel *k) {
  if (!k) return;
  if (k->a.m) rt_aot_free(&k->a);
  free(k);
}
