// Files the user names: rt_open_read opens an input without blocking on a FIFO and refuses
// anything but a regular file; rt_output_not_input and rt_output_writable check an output
// path once, at the entry point, before any work is done; rt_write_atomic writes one.
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

// The directory path names a file in: "." for a bare name, "/" for "/x" (NULL when out of
// memory). Caller frees.
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
}

// The path a file that does not exist yet would have: its directory resolved, then its name
// (NULL when the directory does not resolve either). Caller frees.
static char *new_file_path(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = dir_of(path);
  char *real = dir ? realpath(dir, NULL) : NULL, *out = NULL;
  const char *name = slash ? slash + 1 : path;
  if (real && (out = malloc(strlen(real) + strlen(name) + 2))) sprintf(out, "%s/%s", real, name);
  free(dir);
  free(real);
  return out;
}

// Whether a and b name the same file: the same device and inode, or, when neither exists
// yet, the same path once their directories are resolved (two outputs of one command).
static bool same_file(const char *a, const char *b) {
  struct stat sa, sb;
  bool ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
  if (ea || eb) return ea && eb && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
  char *pa = new_file_path(a), *pb = new_file_path(b);
  bool same = pa && pb && strcmp(pa, pb) == 0;
  free(pa);
  free(pb);
  return same;
}

bool rt_output_not_input(const char *option, const char *path, const RtNamedPath *inputs, int n,
                         Diag *d) {
  for (int i = 0; i < n; i++) {
    if (inputs[i].path && same_file(inputs[i].path, path))
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
  char *dir = dir_of(path);
  if (!dir) return diag_error(d, "%s: out of memory", path);
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

static bool write_atomic(const char *path, RtWriteFn write, void *ctx, bool sync, Diag *d) {
  struct stat sb;
  if (lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
    return diag_error(d, "%s: is %s; kiln writes a file by replacing it with a new regular file, "
                      "so it writes only to a regular file or a new path", path, file_kind(sb.st_mode));
  size_t tmp_cap = strlen(path) + 32;
  char *tmp = malloc(tmp_cap);
  if (!tmp) return diag_error(d, "%s: out of memory", path);
  // A name no other file has or will have (mkstemp creates it, O_EXCL): a temporary that a
  // killed run left behind cannot make this write fail, as "PATH.tmp.PID" did once the PID
  // was reused. mkstemp's mode 0600 becomes what fopen would have given the file.
  snprintf(tmp, tmp_cap, "%s.tmp.XXXXXX", path);
  const char *step = "create";
  int fd = mkstemp(tmp);
  FILE *fp = NULL;
  if (fd >= 0) {
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(fp = fdopen(fd, "wb"))) {
      int err = errno;
      close(fd);
      remove(tmp);
      errno = err;
    }
  }
  bool created = fp != NULL, ok = created;
  if (ok) {
    step = "write";
    errno = 0;
    ok = write(fp, ctx);
  }
  if (ok) {
    step = "flush";
    ok = fflush(fp) == 0;
  }
  if (ok && sync) {
    step = "fsync";
    ok = fsync(fileno(fp)) == 0;
  }
  int err = errno;
  if (created && fclose(fp) != 0 && ok) {
    ok = false;
    step = "close";
    err = errno;
  }
  if (ok) {
    step = "rename";
    ok = rename(tmp, path) == 0;
    err = errno;
  }
  if (!ok) {
    if (created) remove(tmp);
    diag_error(d, "%s: cannot %s temporary file %s: %s", path, step, tmp, err ? strerror(err) : "out of memory");
  }
  free(tmp);
  return ok;
}

bool rt_write_atomic(const char *path, RtWriteFn write, void *ctx, Diag *d) {
  return write_atomic(path, write, ctx, true, d);
}

bool rt_write_atomic_unsynced(const char *path, RtWriteFn write, void *ctx, Diag *d) {
  return write_atomic(path, write, ctx, false, d);
}

bool rt_read_text(const char *path, size_t max_bytes, const char *what, char **out, size_t *len, Diag *d) {
  FILE *f = rt_open_read(path, d);  // a regular file: no FIFO, device or directory
  if (!f) return false;
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n + 65536 > cap) {
      cap = cap ? 2 * cap : 65536 * 2;
      buf = realloc(buf, cap + 1);
      if (!buf) abort();
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n > max_bytes) {
      fclose(f);
      free(buf);
      return diag_error(d, "%s: larger than %zu MiB; not %s", path, max_bytes >> 20, what);
    }
    if (got == 0) break;
  }
  bool err = ferror(f);
  int saved = errno;
  fclose(f);
  errno = saved;
  if (err) {
    free(buf);
    return diag_error(d, "%s: read error: %s", path, strerror(errno));
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return true;
}
