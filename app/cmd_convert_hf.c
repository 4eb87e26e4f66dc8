// `kiln convert-hf DIR -o W.safetensors [--model MODEL]`: a Hugging Face VisualBERT
// checkpoint directory (config.json, model.safetensors) to kiln weights: the config mapped
// to --set values, every parameter of the model file checked by name and shape and
// converted to its dtype (fp16, bf16, f64 to f32), names the model lacks reported, and
// the settings written beside the weights (W.safetensors.sets: one --set NAME=VALUE a line).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "app/cli.h"
#include "runtime/files.h"

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR ""
#endif

// config.json key -> kiln config entry (models/visualbert-common.json).
static const struct {
  const char *hf, *kiln;
} config_map[] = {
    {"hidden_size", "hidden"},          {"num_hidden_layers", "layers"},
    {"num_attention_heads", "heads"},   {"intermediate_size", "intermediate"},
    {"visual_embedding_dim", "visual_dim"}, {"vocab_size", "vocab"},
    {"max_position_embeddings", "max_positions"}, {"type_vocab_size", "type_vocab"},
    {"layer_norm_eps", "layer_norm_eps"},
};

// The model file for config.json's architectures[0], in this source tree.
static const char *model_for(const cJSON *config) {
  const cJSON *arch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(config, "architectures"), 0);
  const char *a = cJSON_IsString(arch) ? arch->valuestring : "";
  if (!strcmp(a, "VisualBertForQuestionAnswering")) return "visualbert-vqa.json";
  if (!strcmp(a, "VisualBertForPreTraining")) return "visualbert-pretrain.json";
  if (!strcmp(a, "VisualBertForVisualReasoning")) return "visualbert-nlvr2.json";
  return NULL;
}

static cJSON *read_config(const char *path, Diag *d) {
  char *text;
  size_t len;
  if (!rt_read_text(path, 16 << 20, "a config.json", &text, &len, d)) return NULL;
  cJSON *c = cJSON_ParseWithLength(text, len);
  free(text);
  if (!cJSON_IsObject(c)) {
    cJSON_Delete(c);
    return diag_error(d, "%s: not a JSON object", path), NULL;
  }
  return c;
}

// The --set values config.json gives for entries the model has (numbers that read back exactly).
static int settings_of(const cJSON *config, const KilnModel *m, KilnSet *sets, char values[][32]) {
  int n = 0;
  for (size_t i = 0; i < sizeof config_map / sizeof *config_map; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, config_map[i].hf);
    if (!cJSON_IsNumber(v) || isnan(kiln_config(m, config_map[i].kiln, NAN))) continue;
    snprintf(values[n], 32, "%.15g", v->valuedouble);  // 1e-12, not 9.9999999999999998e-13,
    if (strtod(values[n], NULL) != v->valuedouble) snprintf(values[n], 32, "%.17g", v->valuedouble);  // when exact
    sets[n] = (KilnSet){config_map[i].kiln, values[n]};
    n++;
  }
  const cJSON *labels = cJSON_GetObjectItemCaseSensitive(config, "id2label");
  if (cJSON_IsObject(labels) && !isnan(kiln_config(m, "num_labels", NAN))) {
    snprintf(values[n], 32, "%d", cJSON_GetArraySize(labels));
    sets[n] = (KilnSet){"num_labels", values[n]};
    n++;
  }
  return n;
}

static bool write_sets(FILE *f, void *ctx) {
  const KilnOptions *ko = ctx;
  for (int i = 0; i < ko->n_sets; i++)
    if (fprintf(f, "--set %s=%s\n", ko->sets[i].name, ko->sets[i].value) < 0) return false;
  return true;
}

static const char *shape_str(int rank, const int64_t *shape, char *buf, size_t size) {
  size_t at = (size_t)snprintf(buf, size, "[");
  for (int k = 0; k < rank && at < size; k++) at += (size_t)snprintf(buf + at, size - at, "%s%lld", k ? ", " : "", (long long)shape[k]);
  if (at < size) snprintf(buf + at, size - at, "]");
  return buf;
}

// Every parameter of m from f (same name and shape), converted to its dtype, into out
// (tensors pointing into one buffer); the names of f that are no parameter, on stderr.
static bool convert(KilnModel *m, const StFile *f, StTensor **out, void **buffer, Diag *d) {
  int n = kiln_count(m, KILN_PARAM);
  size_t total = 0;
  for (int i = 0; i < n; i++) {
    KilnTensorInfo p = kiln_info(m, KILN_PARAM, i);
    int64_t count = 1;
    for (int k = 0; k < p.rank; k++) count *= p.shape[k];
    total += (size_t)count * dt_size(p.dtype);
  }
  char *buf = *buffer = malloc(total + 1);
  StTensor *t = *out = calloc((size_t)n + 1, sizeof *t);
  if (!buf || !t) return diag_error(d, "out of memory");
  char missing[1024] = "";
  int n_missing = 0;
  for (int i = 0; i < n; i++) {
    KilnTensorInfo p = kiln_info(m, KILN_PARAM, i);
    const StTensor *s = st_find(f, p.name);
    if (!s) {
      if (n_missing++ < 8)
        snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s\"%s\"", n_missing > 1 ? ", " : "", p.name);
      continue;
    }
    bool same = s->rank == p.rank;
    for (int k = 0; same && k < p.rank; k++) same = s->shape[k] == p.shape[k];
    char a[160], b[160];
    if (!same)
      return diag_error(d, "%s: tensor \"%s\" has shape %s, the model's parameter %s (%s)", f->path, s->name,
                        shape_str(s->rank, s->shape, a, sizeof a), shape_str(p.rank, p.shape, b, sizeof b), p.where);
    t[i] = (StTensor){.name = (char *)p.name, .dtype = p.dtype, .rank = p.rank, .data = buf,
                      .nbytes = (size_t)st_numel(s) * dt_size(p.dtype)};
    memcpy(t[i].shape, p.shape, sizeof t[i].shape);
    if (!dt_convert(s->dtype, s->data, p.dtype, buf, (size_t)st_numel(s), s->name, d))
      return diag_prefix(d, "%s: ", f->path);
    buf += t[i].nbytes;
  }
  if (n_missing)
    return diag_error(d, "%s: %d parameter%s of %s %s missing: %s%s", f->path, n_missing, n_missing > 1 ? "s" : "",
                      kiln_model_file(m), n_missing > 1 ? "are" : "is", missing, n_missing > 8 ? ", ..." : "");
  int unexpected = 0;
  KilnTensorInfo info;
  for (int k = 0; k < f->n; k++) {
    if (kiln_find(m, KILN_PARAM, f->tensors[k].name, &info)) continue;
    const char *why = strstr(f->tensors[k].name, "position_ids") ? " (a buffer, not a weight)"
                      : !strcmp(f->tensors[k].name, "cls.predictions.decoder.weight") ? " (tied to the word embeddings)"
                                                                                          : "";
    fprintf(stderr, "kiln: convert-hf: %s: \"%s\" is not a parameter of the model: ignored%s\n", f->path,
            f->tensors[k].name, why);
    unexpected++;
  }
  if (unexpected) fprintf(stderr, "kiln: convert-hf: %d tensors ignored\n", unexpected);
  return true;
}

int cmd_convert_hf(const CliOptions *o) {
  if (!o->output) {
    fprintf(stderr, "kiln: convert-hf needs -o FILE (kiln convert-hf --help)\n");
    return EXIT_USAGE;
  }
  Diag d = {0};
  char path[4096], model[4096], sets_path[4096];
  snprintf(path, sizeof path, "%s/config.json", o->model);
  cJSON *config = read_config(path, &d);
  if (!config) {
    cli_error(&d);
    return EXIT_USER;
  }
  const char *file = model_for(config);
  if (o->hf_model) {
    snprintf(model, sizeof model, "%s", o->hf_model);
  } else if (file) {
    snprintf(model, sizeof model, "%s%smodels/%s", KILN_SOURCE_DIR, *KILN_SOURCE_DIR ? "/" : "", file);
  } else {
    fprintf(stderr, "kiln: %s: architectures names no VisualBERT kiln has a model file for; give --model MODEL\n",
            path);
    cJSON_Delete(config);
    return EXIT_USER;
  }
  KilnModel *m = NULL;
  StFile f = {0};
  StTensor *out = NULL;
  void *buffer = NULL;
  KilnSet sets[16];
  char values[16][32];
  KilnOptions ko = {.backend = KILN_BACKEND_REF, .sets = sets};
  // Opened twice: first to learn which config entries the model has, then with the values.
  bool ok = kiln_model_open(model, &ko, &m, &d);
  if (ok) {
    ko.n_sets = settings_of(config, m, sets, values);
    kiln_model_free(m);
    m = NULL;
    ok = kiln_model_open(model, &ko, &m, &d);
  }
  snprintf(path, sizeof path, "%s/model.safetensors", o->model);
  if (ok && access(path, F_OK) != 0) {
    snprintf(sets_path, sizeof sets_path, "%s/pytorch_model.bin", o->model);
    ok = diag_error(&d, "%s: no model.safetensors%s", o->model,
                    (access(sets_path, F_OK) == 0) ? " (pytorch_model.bin is not read yet: save the state dict with "
                                                    "safetensors.torch.save_file first)" : "");
  }
  ok = ok && st_read(path, &f, &d) && convert(m, &f, &out, &buffer, &d) &&
       st_write(o->output, out, kiln_count(m, KILN_PARAM), &d);
  snprintf(sets_path, sizeof sets_path, "%s.sets", o->output);
  ok = ok && rt_write_atomic(sets_path, write_sets, &ko, &d);  // for kiln run $(cat W.sets) ...
  if (ok) {
    fprintf(stderr, "kiln: wrote %d parameters of %s to %s; its settings (--set lines) to %s\n",
            kiln_count(m, KILN_PARAM), model, o->output, sets_path);
  } else {
    cli_error(&d);
  }
  free(out);
  free(buffer);
  st_free(&f);
  kiln_model_free(m);
  cJSON_Delete(config);
  return ok ? 0 : EXIT_USER;
}
