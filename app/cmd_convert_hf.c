// `kiln convert-hf DIR -o W.safetensors [--model MODEL]`: a Hugging Face VisualBERT
// checkpoint directory to kiln weights and W.safetensors.sets (kiln_convert_hf in
// api/convert_hf.c); pytorch_model.bin through the Python meson found (KILN_PYTHON) and the
// source tree's python/torch_to_safetensors.py.
#include <stdio.h>

#include "app/cli.h"

#ifndef KILN_SOURCE_DIR
#define KILN_SOURCE_DIR "."
#endif
#ifndef KILN_PYTHON
#define KILN_PYTHON ""
#endif

int cmd_convert_hf(const CliOptions *o) {
  if (!o->output) {
    fprintf(stderr, "kiln: convert-hf needs -o FILE (kiln convert-hf --help)\n");
    return EXIT_USAGE;
  }
  KilnConvertOptions ko = {.dir = o->model, .output = o->output, .model = o->hf_model,
                           .models_dir = KILN_SOURCE_DIR "/models", .python = KILN_PYTHON,
                           .torch_script = KILN_SOURCE_DIR "/python/kiln_torch_to_safetensors.py", .notes = stderr};
  KilnConverted r;
  Diag d = {0};
  if (!kiln_convert_hf(&ko, &r, &d)) {
    cli_error(&d);
    return EXIT_USER;
  }
  fprintf(stderr, "kiln: wrote %d parameters of %s to %s; its settings (--set lines) to %s.sets\n", r.n_params,
          r.model, o->output, o->output);
  return 0;
}
