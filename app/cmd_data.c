// `kiln data synth`: writes the synthetic grounded data sets (data/synth.c).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cli.h"
#include "data/synth.h"

int cmd_data(const CliOptions *o) {
  if (strcmp(o->model, "synth") != 0) {
    fprintf(stderr, "kiln: unknown data subcommand \"%s\" (the one there is: synth)\n", o->model);
    return EXIT_USAGE;
  }
  if (!o->output) {
    fprintf(stderr, "kiln: data synth needs -o DIR (kiln data --help)\n");
    return EXIT_USAGE;
  }
  SynthOptions so = synth_defaults();
  so.seed = o->seed;
  if (o->n_train >= 0) so.n_train = o->n_train;
  if (o->n_val >= 0) so.n_val = o->n_val;
  if (o->n_test >= 0) so.n_test = o->n_test;
  for (int i = 0; i < o->n_sets; i++) {
    const FeSet *s = &o->sets[i];
    int *field = !strcmp(s->name, "visual_dim") ? &so.visual_dim
                 : !strcmp(s->name, "regions")  ? &so.regions
                 : !strcmp(s->name, "text_len") ? &so.text_len
                                                : NULL;
    char *end;
    errno = 0;
    long v = strtol(s->value, &end, 10);
    if (!field) {
      fprintf(stderr, "kiln: data synth: --set %s: unknown; the settings are visual_dim, regions, text_len\n",
              s->name);
      return EXIT_USAGE;
    }
    if (errno || end == s->value || *end || v < 1 || v > 1000000) {
      fprintf(stderr, "kiln: data synth: --set %s=%s: expected a positive integer\n", s->name, s->value);
      return EXIT_USAGE;
    }
    *field = (int)v;
  }
  Diag d = {0};
  if (!synth_write(o->output, &so, &d)) {
    cli_error(&d);
    return EXIT_USER;
  }
  fprintf(stderr, "kiln: wrote %s: %d/%d/%d examples per task (train/val/test), seed %llu; model settings in %s/config.txt\n",
          o->output, so.n_train, so.n_val, so.n_test, (unsigned long long)o->seed, o->output);
  return 0;
}
