// The end of every Check program: run its suite, print the results, and return the exit
// status meson reads (EXIT_FAILURE when any test failed).
#ifndef KILN_CHECK_RUN_H
#define KILN_CHECK_RUN_H

#include <check.h>
#include <stdlib.h>

static inline int check_run(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
