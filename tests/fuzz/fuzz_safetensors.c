// libFuzzer target: the input as a safetensors file image, read by st_read_memory
// (runtime/safetensors.c); then every tensor is looked up by name (st_find), every element
// read (dt_load) and the tensor converted into every dtype (dt_convert, runtime/dtype.c).
// Contract: a file is accepted with tensors inside it, or refused with a message.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  StFile f;
  Diag d = {0};
  bool ok = st_read_memory("fuzz.safetensors", data, size, &f, &d);
  fuzz_check("st_read_memory", ok, &d);
  if (!ok) return 0;
  volatile double sink = 0;
  for (int i = 0; i < f.n; i++) {
    const StTensor *t = &f.tensors[i];
    // Inside the image, and exactly its shape's bytes (ASan checks the reads below too).
    if (st_find(&f, t->name) != t || (const uint8_t *)t->data < data ||
        (const uint8_t *)t->data + t->nbytes > data + size ||
        (size_t)st_numel(t) * dt_size(t->dtype) != t->nbytes) {
      fprintf(stderr, "tensor \"%s\" is not what the header says\n", t->name);
      abort();
    }
    size_t count = (size_t)st_numel(t);
    for (size_t k = 0; k < count; k++) sink += dt_load(t->dtype, t->data, k);
    for (int to = 0; to < DT_COUNT; to++) {
      void *dst = malloc(count * dt_size((DType)to) + 1);
      if (!dst) abort();
      Diag cd = {0};
      bool converted = dt_convert(t->dtype, t->data, (DType)to, dst, count, t->name, &cd);
      if (!converted && (!cd.set || !cd.msg[0])) abort();
      free(dst);
    }
  }
  (void)sink;
  st_free(&f);
  return 0;
}
