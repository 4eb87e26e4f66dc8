// Running another program and waiting for it (runtime/process.h).
#include "runtime/process.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int rt_spawn(char *const argv[], Diag *d) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return diag_error(d, "cannot start %s: %s", argv[0], strerror(errno)), -1;
  if (pid == 0) {
    execvp(argv[0], argv);
    fprintf(stderr, "kiln: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return diag_error(d, "waiting for %s: %s", argv[0], strerror(errno)), -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return diag_error(d, "%s was killed by signal %d", argv[0], WTERMSIG(status)), -1;
}

bool rt_run(char *const argv[], Diag *d) {
  int status = rt_spawn(argv, d);
  if (status == 0) return true;
  if (status < 0) return false;
  char cmd[2048] = "";
  for (int i = 0; argv[i]; i++)
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s%s", i ? " " : "", argv[i]);
  return diag_error(d, "%s failed (exit %d): %s", argv[0], status, cmd);
}
