// Files the user names: rt_open_read opens an input without blocking on a FIFO and refuses
// anything but a regular file; rt_output_not_input and rt_output_writable check an output
// path once, at the entry point, before any work is done.
#include "runtime/files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// "a FIFO", "a directory", ... for a mode that is not a regular file.
static const char *file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

FILE *rt_open_read(const char *path, Diag *d) {
  // O_NONBLOCK: opening a FIFO that has no writer returns at once instead of waiting for one.
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    diag_error(d, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    diag_error(d, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    return NULL;
  }
  if (!S_ISREG(sb.st_mode)) {
    diag_error(d, "%s: not a regular file (%s)", path, file_kind(sb.st_mode));
    close(fd);
    return NULL;
  }
  int flags = fcntl(fd, F_GETFL);
  FILE *f = flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0 ? fdopen(fd, "rb") : NULL;
  if (!f) {
    diag_error(d, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
  }
  return f;
}

bool rt_output_not_input(const char *option, const char *path, const RtNamedPath *inputs, int n,
                         Diag *d) {
  struct stat out;
  if (stat(path, &out) != 0) return true;  // a new file is no input
  for (int i = 0; i < n; i++) {
    struct stat in;
    if (!inputs[i].path || stat(inputs[i].path, &in) != 0) continue;
    if (in.st_dev == out.st_dev && in.st_ino == out.st_ino)
      return diag_error(d, "%s %s is the same file as %s %s: writing the output would replace the "
                        "input; choose another output file", option, path, inputs[i].option,
                        inputs[i].path);
  }
  return true;
}

bool rt_output_writable(const char *path, Diag *d) {
  struct stat sb;
  if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
    return diag_error(d, "%s: is %s; kiln writes an output by replacing it with a new regular "
                      "file, so it writes only to a regular file or a new path", path,
                      file_kind(sb.st_mode));
  size_t n = strlen(path);
  char *dir = malloc(n + 2);
  if (!dir) return diag_error(d, "%s: out of memory", path);
  memcpy(dir, path, n + 1);
  char *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = 0;  // "/x": the root
  else *slash = 0;
  bool ok = true;
  if (stat(dir, &sb) != 0)
    ok = diag_error(d, "%s: cannot create: the directory %s: %s", path, dir, strerror(errno));
  else if (!S_ISDIR(sb.st_mode))
    ok = diag_error(d, "%s: cannot create: %s is not a directory", path, dir);
  else if (access(dir, W_OK | X_OK) != 0)
    ok = diag_error(d, "%s: cannot create: the directory %s is not writable: %s", path, dir,
                    strerror(errno));
  free(dir);
  return ok;
}

int rt_output_check(const char *option, const char *path, const RtNamedPath *inputs, int n, Diag *d) {
  if (!rt_output_not_input(option, path, inputs, n, d)) return 2;
  return rt_output_writable(path, d) ? 0 : 1;
}
