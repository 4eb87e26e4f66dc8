// libFuzzer target: the input as a data file for kiln train / kiln eval (safetensors, read
// by st_read_memory) loaded by fe_load_examples (api/bind.c) against a small fixed model's
// inputs: i64 token ids, an f32 mask and i64 labels, each with a leading batch dimension.
// Contract: the examples load (that many rows, converted) or are refused with a message.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/bind.h"
#include "frontend/frontend.h"
#include "tests/fuzz/fuzz_util.h"

static const char model[] =
    "{\"format\": \"kiln-model/1\",\n"
    " \"config\": {\"batch\": 2, \"text_len\": 4, \"vocab\": 8, \"dim\": 3, \"labels\": 2},\n"
    " \"inputs\": [{\"name\": \"input_ids\", \"dtype\": \"i64\", \"shape\": [\"batch\", \"text_len\"]},\n"
    "            {\"name\": \"attention_mask\", \"dtype\": \"f32\", \"shape\": [\"batch\", \"text_len\"]},\n"
    "            {\"name\": \"labels\", \"dtype\": \"i64\", \"shape\": [\"batch\"]}],\n"
    " \"params\": [{\"name\": \"emb\", \"shape\": [\"vocab\", \"dim\"], \"init\": \"normal(0.02)\"},\n"
    "            {\"name\": \"w\", \"shape\": [\"dim\", \"labels\"], \"init\": \"normal(0.02)\"}],\n"
    " \"nodes\": [{\"op\": \"gather\", \"in\": [\"emb\", \"input_ids\"], \"out\": \"e\"},\n"
    "           {\"op\": \"reduce_sum\", \"in\": [\"e\"], \"out\": \"pooled\", \"attrs\": {\"axes\": [1]}},\n"
    "           {\"op\": \"matmul\", \"in\": [\"pooled\", \"w\"], \"out\": \"logits\"},\n"
    "           {\"op\": \"cross_entropy\", \"in\": [\"logits\", \"labels\"], \"out\": \"loss\"}],\n"
    " \"outputs\": [\"logits\"], \"losses\": {\"loss\": \"loss\"}}\n";

static IrGraph g_graph;
static void **g_value;  // non-NULL for every input: the program reads them all

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char path[4200];
  fuzz_write("data-model.json", model, sizeof model - 1, path, sizeof path);
  Diag d = {0};
  bool ok = fe_load_model(path, NULL, 0, &g_graph, &d);
  unlink(path);
  if (!ok) {
    fprintf(stderr, "fuzz_data: the fixed model does not load: %s\n", d.msg);
    abort();
  }
  static char used;
  g_value = calloc((size_t)g_graph.n_nodes, sizeof *g_value);
  if (!g_value) abort();
  for (int i = 0; i < g_graph.n_nodes; i++)
    if (g_graph.nodes[i]->op == IR_OP_INPUT) g_value[i] = &used;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  StFile f;
  Diag d = {0};
  if (!st_read_memory("fuzz-data.safetensors", data, size, &f, &d)) return 0;  // fuzz_safetensors' job
  FeExamples *ex = calloc((size_t)g_graph.n_nodes, sizeof *ex);
  if (!ex) abort();
  int n_ex = 0;
  int64_t batch = -1, n_examples = -1;
  bool ok = fe_load_examples(&g_graph, &f, g_value, &batch, NULL, ex, &n_ex, &n_examples, &d);
  fuzz_check("fe_load_examples", ok, &d);
  if (ok) {
    if (batch != 2 || n_examples < 0) abort();
    for (int i = 0; i < n_ex; i++) {  // touch the last row of each input
      volatile char sink = 0;
      if (n_examples > 0) sink = ex[i].rows[(size_t)n_examples * ex[i].row_bytes - 1];
      (void)sink;
    }
  }
  fe_examples_free(ex, n_ex);
  free(ex);
  st_free(&f);
  return 0;
}
