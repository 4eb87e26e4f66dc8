// Tests of the public C API (api/kiln.h) on docs/examples/mlp.json: the JIT and the
// reference backend give the same outputs and gradients through it; outputs are chosen by
// the inputs given; misuse and bad input are messages, not crashes; the trainer's compiled
// update equals an update written against kiln_trainer_param and is written in place;
// kiln_convert_hf refuses a pickle, saying what to install, when no Python with torch can
// read it.
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/kiln.h"
#include "tests/check_run.h"

static const char *const model = "docs/examples/mlp.json";

static KilnModel *open_model(KilnBackend backend, const char *grad_loss) {
  KilnOptions o = {.backend = backend, .grad_loss = grad_loss, .training = grad_loss != NULL,
                   .tuning = {.poison_buffers = true}};
  KilnModel *m = NULL;
  Diag d = {0};
  ck_assert_msg(kiln_model_open(model, &o, &m, &d), "%s", d.msg);
  return m;
}

// Inputs x (random-ish floats) and labels (valid class ids) for batch 4, features 10.
static float x_data[40];
static int64_t label_data[4] = {0, 2, 1, 2};
static StFile inputs_file(bool with_labels) {
  for (int i = 0; i < 40; i++) x_data[i] = (float)sin(i * 0.7) * 2.0f;
  StFile f = {.path = "inputs", .n = with_labels ? 2 : 1};
  f.tensors = calloc(2, sizeof *f.tensors);
  f.tensors[0] = (StTensor){.name = "x", .dtype = DT_F32, .rank = 2, .shape = {4, 10}, .nbytes = sizeof x_data, .data = x_data};
  f.tensors[1] = (StTensor){.name = "labels", .dtype = DT_I64, .rank = 1, .shape = {4}, .nbytes = sizeof label_data,
                            .data = label_data};
  return f;
}

// Runs m with weights from seed 7 and the inputs; returns output `name` as doubles.
static double *run_output(KilnModel *m, const StFile *in, const char *name, int64_t *count) {
  Diag d = {0};
  ck_assert_msg(kiln_select_given(m, in, &d) && kiln_compile(m, &d) && kiln_init_params(m, 7, &d) &&
                    kiln_bind_inputs(m, in, &d) && kiln_run(m, 3, &d),
                "%s", d.msg);
  StTensor t;
  ck_assert_msg(kiln_tensor(m, name, &t, &d), "%s", d.msg);
  *count = st_numel(&t);
  double *v = malloc((size_t)*count * sizeof *v);
  for (int64_t i = 0; i < *count; i++) v[i] = dt_load(t.dtype, t.data, (size_t)i);
  return v;
}

// Runs output `name` on a JIT and a reference model (opened with grad_loss) and asserts
// |jit - ref| <= 1e-5 * (floor + |ref|) elementwise (floor: 1, or the largest |ref|).
static void assert_backends_agree(const char *grad_loss, const char *name, bool relative_to_max, int64_t want_count) {
  StFile in = inputs_file(true);
  KilnModel *jit = open_model(KILN_BACKEND_JIT, grad_loss), *ref = open_model(KILN_BACKEND_REF, grad_loss);
  int64_t n1, n2;
  double *a = run_output(jit, &in, name, &n1), *b = run_output(ref, &in, name, &n2);
  ck_assert_int_eq(n1, n2);
  if (want_count) ck_assert_int_eq(n1, want_count);
  double big = 0;
  for (int64_t i = 0; i < n1; i++) big = fmax(big, fabs(b[i]));
  ck_assert(big > 1e-4);  // real values, not zeros
  for (int64_t i = 0; i < n1; i++) {
    double tol = 1e-5 * (relative_to_max ? big : 1 + fabs(b[i]));
    ck_assert_msg(fabs(a[i] - b[i]) <= tol, "%s[%lld]: %g vs %g", name, (long long)i, a[i], b[i]);
  }
  free(a);
  free(b);
  kiln_model_free(jit);
  kiln_model_free(ref);
  free(in.tensors);
}

START_TEST(test_jit_and_reference_agree_through_the_api) {
  const char *names[] = {"logits", "probs", "loss"};
  for (int k = 0; k < 3; k++) assert_backends_agree(NULL, names[k], false, 0);
}
END_TEST

START_TEST(test_gradients_agree_through_the_api) {
  KilnModel *m = open_model(KILN_BACKEND_JIT, "loss");
  ck_assert_int_eq(kiln_count(m, KILN_OUTPUT), 1 + kiln_count(m, KILN_PARAM));  // the loss, a gradient each
  ck_assert_str_eq(kiln_info(m, KILN_OUTPUT, 0).name, "loss");
  kiln_model_free(m);
  assert_backends_agree("loss", "head.weight", true, 3 * 40);  // [classes, hidden]
  assert_backends_agree("loss", "input.bias", true, 40);
}
END_TEST

START_TEST(test_outputs_follow_the_inputs_given) {
  StFile in = inputs_file(false);  // no labels: the loss cannot be computed
  KilnModel *m = open_model(KILN_BACKEND_JIT, NULL);
  Diag d = {0};
  ck_assert_int_eq(kiln_count(m, KILN_OUTPUT), 3);
  ck_assert(kiln_select_given(m, &in, &d));
  ck_assert_int_eq(kiln_count(m, KILN_OUTPUT), 2);
  KilnTensorInfo t;
  ck_assert(kiln_find(m, KILN_OUTPUT, "probs", &t) && !kiln_find(m, KILN_OUTPUT, "loss", &t));
  ck_assert(t.rank == 2 && t.shape[0] == 4 && t.shape[1] == 3);
  kiln_model_free(m);
  StFile none = {.path = "empty.safetensors"};
  m = open_model(KILN_BACKEND_JIT, NULL);
  ck_assert(!kiln_select_given(m, &none, &d));
  ck_assert_msg(strstr(d.msg, "empty.safetensors") && strstr(d.msg, "no output can be computed") && strstr(d.msg, "\"x\""), "%s", d.msg);
  kiln_model_free(m);
  free(in.tensors);
}
END_TEST

// A weight only GEMMs read is held only in its packed form after the first run: reading it
// is a message; binding again brings it back, and the outputs are the same bit for bit.
START_TEST(test_weights_read_only_by_gemms_are_held_packed_only) {
  StFile in = inputs_file(false);
  KilnModel *m = open_model(KILN_BACKEND_JIT, NULL);
  int64_t n1, n2;
  double *a = run_output(m, &in, "probs", &n1);
  Diag d = {0};
  StTensor t;
  ck_assert(!kiln_tensor(m, "input.weight", &t, &d));
  ck_assert_msg(strstr(d.msg, "parameter \"input.weight\" is held only in its packed form"), "%s", d.msg);
  ck_assert_msg(kiln_tensor(m, "input.bias", &t, &d), "%s", d.msg);  // read by an add: kept
  // (which may have changed it: the next run packs again, all but the released weights,
  // whose packed copies stand)
  ck_assert_msg(kiln_run(m, 3, &d), "%s", d.msg);
  ck_assert_msg(kiln_tensor(m, "probs", &t, &d), "%s", d.msg);
  for (int64_t i = 0; i < n1; i++) ck_assert(dt_load(t.dtype, t.data, (size_t)i) == a[i]);
  d = (Diag){0};
  ck_assert(!kiln_write_params(m, "/nonexistent/w.safetensors", &d));
  ck_assert_msg(strstr(d.msg, "packed form"), "%s", d.msg);
  KilnModel *fresh = open_model(KILN_BACKEND_JIT, NULL);
  d = (Diag){0};
  ck_assert(kiln_select_given(fresh, &in, &d) && kiln_compile(fresh, &d));
  ck_assert(!kiln_copy_params(fresh, m, &d));
  ck_assert_msg(strstr(d.msg, "packed form"), "%s", d.msg);
  double *b = run_output(m, &in, "probs", &n2);  // bound again (seed 7), packed again
  ck_assert_int_eq(n1, n2);
  for (int64_t i = 0; i < n1; i++) ck_assert_msg(a[i] == b[i], "probs[%lld]: %.9g then %.9g", (long long)i, a[i], b[i]);
  free(a);
  free(b);
  kiln_model_free(fresh);
  kiln_model_free(m);
  free(in.tensors);
}
END_TEST

START_TEST(test_misuse_is_a_message) {
  KilnModel *m = open_model(KILN_BACKEND_JIT, NULL);
  Diag d = {0};
  ck_assert(!kiln_run(m, 0, &d));
  ck_assert_msg(strstr(d.msg, "before kiln_compile"), "%s", d.msg);
  d = (Diag){0};
  ck_assert(kiln_compile(m, &d));
  ck_assert(!kiln_run(m, 0, &d));  // nothing bound
  ck_assert_msg(strstr(d.msg, "input \"x\" is missing"), "%s", d.msg);
  d = (Diag){0};
  StFile in = inputs_file(true);
  ck_assert(kiln_bind_inputs(m, &in, &d));
  ck_assert(!kiln_run(m, 0, &d));  // inputs, but no weights
  ck_assert_msg(strstr(d.msg, "has no value: bind weights first"), "%s", d.msg);
  free(in.tensors);
  d = (Diag){0};
  StTensor t;
  ck_assert(!kiln_tensor(m, "nope", &t, &d));
  ck_assert_msg(strstr(d.msg, "\"nope\""), "%s", d.msg);
  kiln_model_free(m);
  KilnOptions o = {.sets = (KilnSet[]){{"hidden", "0 -"}}, .n_sets = 1};
  d = (Diag){0};
  ck_assert(!kiln_model_open(model, &o, &m, &d));
  ck_assert_msg(strstr(d.msg, "--set hidden"), "%s", d.msg);
}
END_TEST

// Layers alike compile to the same kernels, dropout (on, in training) included: the masks'
// streams are data of the steps, not constants of the kernels. Three more hidden layers
// add steps, not kernels (but for the gradient norm's longer sum).
START_TEST(test_trainer_layers_alike_share_kernels) {
  KilnStats st[2];
  const char *layers[2] = {"3", "6"};
  for (int k = 0; k < 2; k++) {
    KilnOptions o = {.sets = (KilnSet[]){{"layers", layers[k]}, {"dropout", "0.1"}}, .n_sets = 2};
    KilnTrainOptions to = {.steps = 1};
    KilnTrainer *t = NULL;
    Diag d = {0};
    ck_assert_msg(kiln_trainer_open(model, &o, &to, &t, &d), "%s", d.msg);
    st[k] = kiln_stats(kiln_trainer_model(t));
    kiln_trainer_free(t);
  }
  ck_assert_int_gt(st[1].steps, st[0].steps + 50);
  ck_assert_msg(st[1].kernels < st[0].kernels + 3, "%d kernels at 3 layers, %d at 6", st[0].kernels, st[1].kernels);
}
END_TEST

// The compiled AdamW against the same update written against kiln_trainer_param, over 3
// steps on fixed inputs: they agree to rounding (f32 graph vs double intermediates).
START_TEST(test_trainer_update_matches_external_update) {
  KilnOptions o = {.sets = (KilnSet[]){{"dropout", "0"}}, .n_sets = 1};
  KilnTrainOptions to = {.steps = 3, .lr = 1e-2, .seed = 1};
  KilnTrainer *g = NULL, *c = NULL;
  Diag d = {0};
  ck_assert_msg(kiln_trainer_open(model, &o, &to, &g, &d), "%s", d.msg);
  to.external_update = true;
  ck_assert_msg(kiln_trainer_open(model, &o, &to, &c, &d), "%s", d.msg);
  StFile in = inputs_file(true);
  KilnTrainer *both[2] = {g, c};
  for (int k = 0; k < 2; k++)
    ck_assert_msg(kiln_init_params(kiln_trainer_model(both[k]), 5, &d) &&
                      kiln_bind_inputs(kiln_trainer_model(both[k]), &in, &d), "%s", d.msg);
  ck_assert_int_eq(kiln_trainer_n_params(g), kiln_trainer_n_params(c));
  for (int64_t step = 0; step < 3; step++) {
    KilnStepResult rg, rc;
    ck_assert_msg(kiln_trainer_step(g, step, &rg, &d) && kiln_trainer_step(c, step, &rc, &d), "%s", d.msg);
    ck_assert_msg(fabs(rg.loss - rc.loss) < 1e-5, "step %lld: loss %g vs %g", (long long)step, rg.loss, rc.loss);
    ck_assert(rg.grad_norm > 0);
    double sq = 0, lr = kiln_trainer_lr(c, step), t = (double)(step + 1);
    for (int k = 0; k < kiln_trainer_n_params(c); k++) {
      KilnParamView p = kiln_trainer_param(c, k);
      for (int64_t i = 0; i < p.numel; i++) sq += (double)p.grad[i] * p.grad[i];
    }
    ck_assert_msg(fabs(sqrt(sq) - rg.grad_norm) <= 1e-5 * rg.grad_norm, "norm %g vs %g", sqrt(sq), rg.grad_norm);
    double scale = sqrt(sq) > 1 ? 1 / (sqrt(sq) + 1e-6) : 1;
    for (int k = 0; k < kiln_trainer_n_params(c); k++) {  // AdamW, as tests/train_oracle.c
      KilnParamView p = kiln_trainer_param(c, k);
      for (int64_t i = 0; i < p.numel; i++) {
        float gr = (float)(p.grad[i] * scale);
        p.m[i] = (float)(0.9 * p.m[i] + 0.1 * gr);
        p.v[i] = (float)(0.999 * p.v[i] + 0.001 * (double)gr * gr);
        double w = p.value[i];
        if (p.decay) w -= lr * 0.01 * w;
        w -= lr * (p.m[i] / (1 - pow(0.9, t))) / (sqrt(p.v[i] / (1 - pow(0.999, t))) + 1e-6);
        p.value[i] = (float)w;
      }
    }
  }
  for (int k = 0; k < kiln_trainer_n_params(c); k++) {
    KilnParamView pg = kiln_trainer_param(g, k), pc = kiln_trainer_param(c, k);
    ck_assert_str_eq(pg.name, pc.name);
    for (int64_t i = 0; i < pg.numel; i++)
      ck_assert_msg(fabs(pg.value[i] - pc.value[i]) <= 1e-5, "%s[%lld]: %g vs %g", pg.name, (long long)i,
                    pg.value[i], pc.value[i]);
  }
  free(in.tensors);
  kiln_trainer_free(g);
  kiln_trainer_free(c);
}
END_TEST

// kiln_convert_hf without a Python that has torch: the pickle is refused with what to do,
// whether the interpreter cannot import torch (the script's exit 3), cannot be run, or is
// none; no temporary is left beside the output.
static bool only_two_files(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "test \"$(ls %s | tr '\\n' ' ')\" = 'config.json pytorch_model.bin '", dir);
  return system(cmd) == 0;
}

START_TEST(test_convert_hf_pickle_needs_torch) {
  char dir[] = "/tmp/kiln-convert-XXXXXX", path[128], out[128], script[128];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  const char *files[][2] = {{"config.json", "{\"architectures\": [\"Mlp\"]}"}, {"pytorch_model.bin", "PK"}};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(files[i][1], f);
    fclose(f);
  }
  snprintf(script, sizeof script, "%s.sh", dir);  // a "torch_script" for /bin/sh: no torch
  FILE *f = fopen(script, "w");
  ck_assert_ptr_nonnull(f);
  fputs("exit 3\n", f);
  fclose(f);
  snprintf(out, sizeof out, "%s/w.safetensors", dir);
  struct {
    const char *python, *says;
  } cases[] = {{"/bin/sh", "which cannot import torch (install python3-torch, or save the state dict as model.safetensors)"},
               {"/nonexistent/python3", "which cannot be run (install python3-torch"},
               {NULL, "built without Python (install python3-torch"}};
  for (int i = 0; i < 3; i++) {
    KilnConvertOptions o = {.dir = dir, .output = out, .model = model, .python = cases[i].python, .torch_script = script};
    KilnConverted r;
    Diag d = {0};
    ck_assert(!kiln_convert_hf(&o, &r, &d));
    ck_assert_msg(strstr(d.msg, "/pytorch_model.bin: ") && strstr(d.msg, cases[i].says), "%s", d.msg);
    ck_assert_msg(only_two_files(dir), "%s", d.msg);
  }
  remove(script);
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
    remove(path);
  }
  rmdir(dir);
}
END_TEST

// The compiled update writes each parameter's new value and optimiser state over the old
// ones (codegen/memory.c): the update's outputs are the parameter's own buffers, so
// nothing is copied back and no arena memory holds them.
START_TEST(test_trainer_updates_parameters_in_place) {
  KilnOptions o = {.sets = (KilnSet[]){{"dropout", "0"}}, .n_sets = 1, .tuning = {.poison_buffers = true}};
  KilnTrainOptions to = {.steps = 2, .lr = 1e-2, .seed = 1};
  KilnTrainer *t = NULL;
  Diag d = {0};
  ck_assert_msg(kiln_trainer_open(model, &o, &to, &t, &d), "%s", d.msg);
  KilnModel *m = kiln_trainer_model(t);
  StFile in = inputs_file(true);
  ck_assert_msg(kiln_init_params(m, 5, &d) && kiln_bind_inputs(m, &in, &d), "%s", d.msg);
  KilnParamView p0 = kiln_trainer_param(t, 0);
  float before = p0.value[0];
  KilnStepResult r;
  ck_assert_msg(kiln_trainer_step(t, 0, &r, &d), "%s", d.msg);
  ck_assert_msg(p0.value[0] != before, "the step left %s unchanged", p0.name);
  int n = kiln_trainer_n_params(t), found = 0;
  for (int k = 0; k < n; k++) {
    KilnParamView p = kiln_trainer_param(t, k);
    const void *bufs[3] = {p.value, p.m, p.v};
    for (int b = 0; b < 3; b++)
      for (int j = 0; j < kiln_count(m, KILN_OUTPUT); j++) {
        StTensor x;
        ck_assert_msg(kiln_tensor(m, kiln_info(m, KILN_OUTPUT, j).name, &x, &d), "%s", d.msg);
        if (x.data == bufs[b]) {
          found++;
          break;
        }
      }
  }
  ck_assert_int_eq(found, 3 * n);  // AdamW: value, m and v of every parameter
  free(in.tensors);
  kiln_trainer_free(t);
}
END_TEST

int main(void) {
  Suite *s = suite_create("api");
  TCase *tc = tcase_create("api");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_jit_and_reference_agree_through_the_api);
  tcase_add_test(tc, test_gradients_agree_through_the_api);
  tcase_add_test(tc, test_outputs_follow_the_inputs_given);
  tcase_add_test(tc, test_misuse_is_a_message);
  tcase_add_test(tc, test_weights_read_only_by_gemms_are_held_packed_only);
  tcase_add_test(tc, test_trainer_update_matches_external_update);
  tcase_add_test(tc, test_trainer_layers_alike_share_kernels);
  tcase_add_test(tc, test_convert_hf_pickle_needs_torch);
  tcase_add_test(tc, test_trainer_updates_parameters_in_place);
  suite_add_tcase(s, tc);
  return check_run(s);
}
