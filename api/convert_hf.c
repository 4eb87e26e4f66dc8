// Hugging Face VisualBERT checkpoint directories to kiln weights (kiln_convert_hf, for
// `kiln convert-hf` and kiln.convert_hf): config.json mapped to --set values, every parameter
// of the model file checked by name and shape and converted to its dtype (fp16, bf16, f64 to
// f32), names the model lacks reported, the settings written beside the weights
// (W.safetensors.sets: one --set NAME=VALUE a line). A pytorch_model.bin (a pickle, never
// parsed here) is turned into a temporary safetensors by python/kiln_torch_to_safetensors.py
// under an interpreter with PyTorch.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api/kiln.h"
#include "runtime/files.h"
#include "runtime/process.h"

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
_Static_assert(sizeof config_map / sizeof *config_map < KILN_CONVERT_MAX_SETS, "room for num_labels");

// The model file for config.json's architectures[0] (in models/).
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
  const KilnConverted *r = ctx;
  for (int i = 0; i < r->n_sets; i++)
    if (fprintf(f, "--set %s=%s\n", r->sets[i].name, r->sets[i].value) < 0) return false;
  return true;
}

static const char *shape_str(int rank, const int64_t *shape, char *buf, size_t size) {
  size_t at = (size_t)snprintf(buf, size, "[");
  for (int k = 0; k < rank && at < size; k++) at += (size_t)snprintf(buf + at, size - at, "%s%lld", k ? ", " : "", (long long)shape[k]);
  if (at < size) snprintf(buf + at, size - at, "]");
  return buf;
}

// Every parameter of m from f (same name and shape), converted to its dtype, into out
// (tensors pointing into one buffer); the names of f that are no parameter, on notes.
static bool convert(KilnModel *m, const StFile *f, const char *shown, StTensor **out, void **buffer, FILE *notes,
                    Diag *d) {
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
      return diag_error(d, "%s: tensor \"%s\" has shape %s, the model's parameter %s (%s)", shown, s->name,
                        shape_str(s->rank, s->shape, a, sizeof a), shape_str(p.rank, p.shape, b, sizeof b), p.where);
    t[i] = (StTensor){.name = (char *)p.name, .dtype = p.dtype, .rank = p.rank, .data = buf,
                      .nbytes = (size_t)st_numel(s) * dt_size(p.dtype)};
    memcpy(t[i].shape, p.shape, sizeof t[i].shape);
    if (!dt_convert(s->dtype, s->data, p.dtype, buf, (size_t)st_numel(s), s->name, d))
      return diag_prefix(d, "%s: ", shown);
    buf += t[i].nbytes;
  }
  if (n_missing)
    return diag_error(d, "%s: %d parameter%s of %s %s missing: %s%s", shown, n_missing, n_missing > 1 ? "s" : "",
                      kiln_model_file(m), n_missing > 1 ? "are" : "is", missing, n_missing > 8 ? ", ..." : "");
  int unexpected = 0;
  KilnTensorInfo info;
  for (int k = 0; k < f->n; k++) {
    if (kiln_find(m, KILN_PARAM, f->tensors[k].name, &info)) continue;
    const char *why = strstr(f->tensors[k].name, "position_ids") ? " (a buffer, not a weight)"
                      : !strcmp(f->tensors[k].name, "cls.predictions.decoder.weight") ? " (tied to the word embeddings)"
                                                                                          : "";
    if (notes) fprintf(notes, "%s: \"%s\" is not a parameter of the model: ignored%s\n", shown, f->tensors[k].name, why);
    unexpected++;
  }
  if (unexpected && notes) fprintf(notes, "%s: %d tensors ignored\n", shown, unexpected);
  return true;
}

static bool exists(const char *dir, const char *name, char *path, size_t size) {
  snprintf(path, size, "%s/%s", dir, name);
  return access(path, F_OK) == 0;
}

// The checkpoint of o->dir read into f: model.safetensors, else pytorch_model.bin through
// Python into a temporary file beside the output (removed once read); *shown: the file named
// in messages.
static bool read_checkpoint(const KilnConvertOptions *o, StFile *f, char *shown, size_t size, Diag *d) {
  if (exists(o->dir, "model.safetensors", shown, size)) return st_read(shown, f, d);
  char other[4096];
  if (exists(o->dir, "model.safetensors.index.json", other, sizeof other) ||
      exists(o->dir, "pytorch_model.bin.index.json", other, sizeof other))
    return diag_error(d, "%s: sharded checkpoints are not supported: merge the shards into one model.safetensors", other);
  if (!exists(o->dir, "pytorch_model.bin", shown, size))
    return diag_error(d, "%s: no model.safetensors or pytorch_model.bin", o->dir);
  const char *fix = "install python3-torch, or save the state dict as model.safetensors";
  if (!o->python || !*o->python || !o->torch_script || !*o->torch_script)
    return diag_error(d, "%s: reading a PyTorch pickle needs Python with PyTorch, and this kiln was built without "
                         "Python (%s)", shown, fix);
  char tmp[4096 + 32];
  snprintf(tmp, sizeof tmp, "%s.torch-XXXXXX", o->output);
  int fd = mkstemp(tmp);
  if (fd < 0) return diag_error(d, "cannot create a temporary file %s for %s", tmp, shown);
  close(fd);
  int status = rt_spawn((char *[]){(char *)o->python, (char *)o->torch_script, (char *)shown, tmp, NULL}, d);
  bool ok = status == 0 && st_read(tmp, f, d);
  unlink(tmp);
  if (status == 3 || status == 127)
    diag_error(d, "%s: reading it needs PyTorch for %s, which %s (%s)", shown, o->python,
               status == 3 ? "cannot import torch" : "cannot be run", fix);
  else if (status > 0)
    diag_error(d, "%s: %s %s failed (exit %d; its message above)", shown, o->python, o->torch_script, status);
  return ok;
}

bool kiln_convert_hf(const KilnConvertOptions *o, KilnConverted *r, Diag *d) {
  memset(r, 0, sizeof *r);
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", o->dir);
  cJSON *config = read_config(path, d);
  if (!config) return false;
  const char *file = model_for(config);
  if (o->model) {
    snprintf(r->model, sizeof r->model, "%s", o->model);
  } else if (file) {
    const char *dir = o->models_dir ? o->models_dir : "models";
    snprintf(r->model, sizeof r->model, "%s/%s", dir, file);
  } else {
    cJSON_Delete(config);
    return diag_error(d, "%s: architectures names no VisualBERT kiln has a model file for; give the model file (--model MODEL; model= in Python)", path);
  }
  KilnModel *m = NULL;
  StFile f = {0};
  StTensor *out = NULL;
  void *buffer = NULL;
  KilnOptions ko = {.backend = KILN_BACKEND_REF, .sets = r->sets};
  // Opened twice: first to learn which config entries the model has, then with the values.
  bool ok = kiln_model_open(r->model, &ko, &m, d);
  if (ok) {
    ko.n_sets = r->n_sets = settings_of(config, m, r->sets, r->values);
    kiln_model_free(m);
    m = NULL;
    ok = kiln_model_open(r->model, &ko, &m, d);
  }
  char shown[4096];
  ok = ok && read_checkpoint(o, &f, shown, sizeof shown, d) && convert(m, &f, shown, &out, &buffer, o->notes, d) &&
       st_write(o->output, out, kiln_count(m, KILN_PARAM), d);
  snprintf(path, sizeof path, "%s.sets", o->output);
  ok = ok && rt_write_atomic(path, write_sets, r, d);  // for kiln run $(cat W.sets) ...
  if (ok) r->n_params = kiln_count(m, KILN_PARAM);
  free(out);
  free(buffer);
  st_free(&f);
  kiln_model_free(m);
  cJSON_Delete(config);
  return ok;
}
