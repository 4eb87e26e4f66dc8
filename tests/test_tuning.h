// The tuning the Check programs compile with: what tests/meson.build puts in their
// environment (KILN_POISON_BUFFERS=1; KILN_CPU and KILN_CPU_FEATURES for the *_avx2
// variants), read as the kiln command's entry point reads it. Library code does not read
// the environment, so a test that wants these settings passes them in CgOptions.tuning.
#ifndef KILN_TEST_TUNING_H
#define KILN_TEST_TUNING_H

#include <stdlib.h>

#include "runtime/tuning.h"

static inline RtTuning test_tuning(void) {
  RtTuning t = {0};
  rt_tuning_read(&t, getenv);
  return t;
}

#endif
