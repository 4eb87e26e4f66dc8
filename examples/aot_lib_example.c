// Using a model compiled with `kiln compile MODEL --emit lib -o DIR` from C (docs/aot.md):
// create it from a weights file (or the embedded weights), list its inputs and outputs,
// fill the inputs, run, and write each output's raw bytes to OUTDIR/<name>.bin.
//
//   cc aot_lib_example.c -I DIR DIR/libkiln_model.a DIR/libkiln_rt.a -fopenmp -lcjson -lm
//   ./a.out WEIGHTS|- OUTDIR [THREADS]      (- : the weights embedded at compile time)
//
// The inputs are made up so that a script can rebuild them: element i of an integer input
// is i % 2 (a valid id, token type, mask or label), of a float input named *mask* 1, of any
// other float input 0.5 sin(0.1 i).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln_model.h"

static void fill(const KilnTensorInfo *t, void *buf) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->shape[i];
  for (int64_t i = 0; i < n; i++) {
    if (!strcmp(t->dtype, "i64")) ((int64_t *)buf)[i] = i % 2;
    else if (!strcmp(t->dtype, "i32")) ((int32_t *)buf)[i] = (int32_t)(i % 2);
    else if (!strcmp(t->dtype, "f32"))
      ((float *)buf)[i] = strstr(t->name, "mask") ? 1.0f : (float)(0.5 * sin(0.1 * (double)i));
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s WEIGHTS|- OUTDIR [THREADS]\n", argv[0]);
    return 2;
  }
  char msg[2048];
  KilnModel *m;
  int rc = kiln_model_create(strcmp(argv[1], "-") ? argv[1] : NULL, &m, msg, sizeof msg);
  if (rc != KILN_OK) {
    fprintf(stderr, "example: cannot create the model (code %d): %s\n", rc, msg);
    return 1;
  }
  if (argc > 3 && kiln_model_set_threads(m, atoi(argv[3])) != KILN_OK) {
    fprintf(stderr, "example: %s\n", kiln_model_error(m));
    kiln_model_destroy(m);
    return 2;
  }
  int n_in = kiln_model_n_inputs(m), n_out = kiln_model_n_outputs(m);
  void **in = calloc((size_t)n_in, sizeof *in), **out = calloc((size_t)n_out, sizeof *out);
  KilnTensorInfo t;
  for (int i = 0; i < n_in; i++) {
    kiln_model_input(m, i, &t);
    printf("input  %-24s %s rank %d, %zu bytes\n", t.name, t.dtype, t.rank, t.bytes);
    in[i] = malloc(t.bytes);
    fill(&t, in[i]);
  }
  for (int j = 0; j < n_out; j++) {
    kiln_model_output(m, j, &t);
    printf("output %-24s %s rank %d, %zu bytes\n", t.name, t.dtype, t.rank, t.bytes);
    out[j] = malloc(t.bytes);
  }
  rc = kiln_model_run(m, (const void *const *)in, out);
  if (rc != KILN_OK) fprintf(stderr, "example: run failed (code %d): %s\n", rc, kiln_model_error(m));
  for (int j = 0; j < n_out && rc == KILN_OK; j++) {
    kiln_model_output(m, j, &t);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", argv[2], t.name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(out[j], 1, t.bytes, f) != t.bytes) {
      fprintf(stderr, "example: cannot write %s\n", path);
      rc = 1;
    }
    if (f) fclose(f);
  }
  for (int i = 0; i < n_in; i++) free(in[i]);
  for (int j = 0; j < n_out; j++) free(out[j]);
  free(in);
  free(out);
  kiln_model_destroy(m);
  return rc == KILN_OK ? 0 : 1;
}
