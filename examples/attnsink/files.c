#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"

int read_whole_file(const char *path, unsigned char **data, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || S_ISDIR(sb.st_mode)) {
    if (S_ISDIR(sb.st_mode)) errno = EISDIR;
    fclose(f);
    return -1;
  }
  /* st_size is only a hint (pipes, /proc): read until end of file. */
  size_t cap = sb.st_size > 0 ? (size_t)sb.st_size + 1 : 65536, len = 0;
  unsigned char *buf = xmalloc(cap + 1);
  for (;;) {
    if (len == cap) {
      cap *= 2;
      unsigned char *nb = realloc(buf, cap + 1);
      if (!nb) {
        free(buf);
        fclose(f);
        errno = ENOMEM;
        return -1;
      }
      buf = nb;
    }
    size_t r = fread(buf + len, 1, cap - len, f);
    len += r;
    if (r == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    errno = EIO;
    return -1;
  }
  buf[len] = 0; /* text callers may treat it as a C string */
  *data = buf;
  *n = len;
  return 0;
}

int write_file_atomic(const char *path, const void *data, size_t n) {
  char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (fd < 0) {
    cli_error("%s: cannot write: %s", path, strerror(errno));
    free(tmp);
    return -1;
  }
  const char *p = data;
  size_t left = n;
  int err = 0;
  while (left && !err) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) err = errno ? errno : EIO;
    else p += w, left -= (size_t)w;
  }
  if (!err && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && !err) err = errno;
  if (!err && rename(tmp, path) != 0) err = errno;
  if (err) {
    unlink(tmp);
    cli_error("%s: cannot write: %s", path, strerror(err));
  }
  free(tmp);
  return err ? -1 : 0;
}

int append_line(const char *path, const char *line) {
  size_t n = strlen(line);
  char *buf = xmalloc(n + 1);
  memcpy(buf, line, n);
  buf[n] = '\n';
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0666);
  int err = fd < 0 ? errno : 0;
  if (!err) {
    ssize_t w;
    do w = write(fd, buf, n + 1);
    while (w < 0 && errno == EINTR);
    if (w != (ssize_t)(n + 1)) err = w < 0 ? errno : EIO;
    if (close(fd) != 0 && !err) err = errno;
  }
  free(buf);
  if (err) cli_error("%s: cannot append: %s", path, strerror(err));
  return err ? -1 : 0;
}

int write_json_atomic(const char *path, const json_t *v, size_t flags) {
  char *text = json_dumps(v, flags);
  if (!text) {
    cli_error("%s: cannot format JSON", path);
    return -1;
  }
  size_t n = strlen(text);
  char *withnl = xmalloc(n + 2);
  memcpy(withnl, text, n);
  withnl[n] = '\n';
  free(text);
  int r = write_file_atomic(path, withnl, n + 1);
  free(withnl);
  return r;
}

int make_dir(const char *dir, bool *created) {
  *created = false;
  if (mkdir(dir, 0777) == 0) {
    *created = true;
    return 0;
  }
  if (errno == EEXIST && is_dir(dir)) return 0;
  cli_error("%s: cannot create directory: %s", dir,
            errno == EEXIST ? "a file of that name exists" : strerror(errno));
  return -1;
}

bool path_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

bool is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

void remove_files_in(const char *dir, const char *const *names, bool rmdir_too) {
  for (; *names; names++) {
    char *p = path_join(dir, *names);
    unlink(p);
    free(p);
  }
  if (rmdir_too) rmdir(dir); /* fails harmlessly when something else is still there */
}

int check_output_path(const char *cmd, const char *flag, const char *path) {
  if (!path) return 0;
  char *dir = xstrdup(path), *slash = strrchr(dir, '/');
  const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
  bool ok = is_dir(d) && access(d, W_OK) == 0 && !is_dir(path);
  if (!ok)
    cli_error("%s: --%s %s: %s", cmd, flag, path,
              is_dir(path) ? "is a directory" : "its directory does not exist or is not writable");
  free(dir);
  return ok ? 0 : -1;
}

char *path_join(const char *dir, const char *name) { return xasprintf("%s/%s", dir, name); }

json_t *json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }
