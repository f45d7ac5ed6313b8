#include "io/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"

/* The rename is only durable once the directory entry itself is on disk. Some file
 * systems cannot fsync a directory (EINVAL); the data is in place there anyway. */
static asink_status sync_parent_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = NULL;
  if (!slash) {
    dir = asink_strdup(".");
  } else {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if ((dir = asink_alloc(n + 1, 1))) {
      memcpy(dir, path, n);
      dir[n] = 0;
    }
  }
  if (!dir) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate directory name of '%s'", path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    asink_status s = asink_fail(ASINK_ERR_IO, "'%s' written but cannot open its directory '%s' to sync it: %s",
                                path, dir, strerror(errno));
    free(dir);
    return s;
  }
  asink_status s = ASINK_OK;
  if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
    s = asink_fail(ASINK_ERR_IO, "'%s' written but fsync of directory '%s' failed: %s", path, dir,
                   strerror(errno));
  close(fd);
  free(dir);
  return s;
}

asink_status asink_atomic_write(const char *path, asink_write_fn fn, void *ctx) {
  if (!path || !*path) return asink_fail(ASINK_ERR_ARG, "atomic write: path is NULL or empty");
  if (!fn) return asink_fail(ASINK_ERR_ARG, "atomic write of '%s': no writer callback", path);

  size_t tmp_len = strlen(path) + 32;
  char *tmp = asink_alloc(tmp_len, 1);
  if (!tmp) return asink_fail(ASINK_ERR_NOMEM, "cannot allocate temp name for '%s'", path);
  snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());

  /* O_NOFOLLOW: a link planted at the temp name must not redirect the write. */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0) {
    asink_status s = asink_fail(ASINK_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
    free(tmp);
    return s;
  }
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    asink_status s = asink_fail(ASINK_ERR_IO, "cannot open stream on '%s': %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    free(tmp);
    return s;
  }

  asink_status s = fn(f, ctx);
  if (s == ASINK_OK && (fflush(f) != 0 || ferror(f)))
    s = asink_fail(ASINK_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
  if (s == ASINK_OK && fsync(fileno(f)) != 0)
    s = asink_fail(ASINK_ERR_IO, "fsync of '%s' failed: %s", tmp, strerror(errno));
  if (fclose(f) != 0 && s == ASINK_OK)
    s = asink_fail(ASINK_ERR_IO, "cannot close '%s': %s", tmp, strerror(errno));
  if (s == ASINK_OK && rename(tmp, path) != 0)
    s = asink_fail(ASINK_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
  if (s != ASINK_OK) {
    unlink(tmp);
    free(tmp);
    return s;
  }
  free(tmp);
  return sync_parent_dir(path);
}

typedef struct {
  const char *path;
  const void *buf;
  size_t len;
} buffer_ctx;

static asink_status write_buffer(FILE *f, void *ctx) {
  const buffer_ctx *b = ctx;
  if (b->len && fwrite(b->buf, 1, b->len, f) != b->len)
    return asink_fail(ASINK_ERR_IO, "cannot write %zu bytes to '%s': %s", b->len, b->path, strerror(errno));
  return ASINK_OK;
}

asink_status asink_atomic_write_buffer(const char *path, const void *buf, size_t len) {
  if (!buf && len)
    return asink_fail(ASINK_ERR_ARG, "atomic write of '%s': NULL buffer of %zu bytes", path ? path : "(null)", len);
  buffer_ctx b = {path, buf, len};
  return asink_atomic_write(path, write_buffer, &b);
}

asink_status asink_make_dir(const char *dir) {
  if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
    struct stat sb;
    if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return ASINK_OK;
    return asink_fail(ASINK_ERR_IO, "%s: exists and is not a directory", dir);
  }
  return asink_fail(ASINK_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
}
