// `kiln init` and `kiln run`: initialise weights; run a model (JIT or reference backend)
// through the library (api/kiln.h) on a weights and an inputs file.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"

static int need(const char *what, const char *opt, const char *cmd) {
  fprintf(stderr, "kiln: %s needs %s %s (kiln %s --help)\n", cmd, opt, what, cmd);
  return EXIT_USAGE;
}

int cmd_init(const CliOptions *o) {
  if (!o->output) return need("FILE", "-o", "init");
  KilnSet sets[CLI_MAX_SETS];
  KilnOptions ko = cli_kiln_options(o, sets);
  ko.backend = KILN_BACKEND_REF;  // initial values need no compiled code
  KilnModel *m = cli_open(o, &ko);
  if (!m) return EXIT_USER;
  Diag d = {0};
  bool ok = kiln_compile(m, &d) && kiln_init_params(m, o->seed, &d) &&
            kiln_write_params_as(m, o->output, o->weights_bf16 ? DT_BF16 : DT_F32, &d);
  if (ok) {
    fprintf(stderr, "kiln: wrote %d parameters (%lld values) to %s\n", kiln_count(m, KILN_PARAM), (long long)kiln_param_values(m),
            o->output);
  } else {
    cli_error(&d);
  }
  kiln_model_free(m);
  return ok ? 0 : EXIT_USER;
}

int cmd_run(const CliOptions *o) {
  if (!o->weights) return need("FILE", "--weights", "run");
  if (!o->inputs) return need("FILE", "--inputs", "run");
  if (!o->output) return need("FILE", "-o", "run");
  KilnSet sets[CLI_MAX_SETS];
  KilnOptions ko = cli_kiln_options(o, sets);
  KilnModel *m = cli_open(o, &ko);
  if (!m) return EXIT_USER;
  Diag d = {0};
  StFile wf = {0}, inf = {0};
  bool ok = st_open(o->weights, &wf, &d) && st_read(o->inputs, &inf, &d) &&
            (!o->text || cli_text_inputs(m, o->text, o->vocab, &inf, &d)) &&
            kiln_select_given(m, &inf, &d) && kiln_compile(m, &d) && kiln_bind_params(m, &wf, &d);
  st_free(&wf);  // read tensor by tensor into the parameters' buffers: the file is closed
  ok = ok && kiln_bind_inputs(m, &inf, &d) && kiln_run(m, o->seed, &d) &&
       kiln_write_outputs(m, o->output, &d);
  if (ok && o->verbose) fprintf(stderr, "kiln: wrote %d tensors to %s\n", kiln_count(m, KILN_OUTPUT), o->output);
  if (!ok) cli_error(&d);
  st_free(&inf);
  kiln_model_free(m);
  return ok ? 0 : EXIT_USER;
}
